package probe

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Two probe servers behind a stand-in proxy that alternates between them
// and routes x-model: b to the second: the report counts each backend.
func TestSendRequestsCountsBackends(t *testing.T) {
	a := httptest.NewServer(NewServer("backend-a", "pod-a", "ns", "node").Handler())
	defer a.Close()
	b := httptest.NewServer(NewServer("backend-b", "pod-b", "ns", "node").Handler())
	defer b.Close()
	var n atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := a.URL
		if r.Header.Get("x-model") == "b" || n.Add(1)%4 == 0 {
			target = b.URL
		}
		resp, err := http.Get(target + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		_, _ = w.Write(buf.Bytes())
	}))
	defer proxy.Close()

	rep, err := SendRequests(t.Context(), RequestOptions{URL: proxy.URL + "/", Count: 100})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 100 || rep.Backends["backend-a"] != 75 || rep.Backends["backend-b"] != 25 || rep.Statuses["200"] != 100 || rep.OK() != 100 || rep.Failed() != 0 {
		t.Errorf("report %s", rep)
	}

	rep, err = SendRequests(t.Context(), RequestOptions{URL: proxy.URL + "/v1/infer", Count: 10, Header: http.Header{"X-Model": {"b"}}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Backends["backend-b"] != 10 || len(rep.Backends) != 1 || rep.Headers["X-Model"] != "b" {
		t.Errorf("report with header %s (headers %v)", rep, rep.Headers)
	}
}

// Error statuses are counted by code and name no backend; a body that is
// not the probe's identity counts as the unknown backend.
func TestSendRequestsCountsStatusesAndForeignAnswers(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "gateway.example.com" {
			http.Error(w, "wrong host "+r.Host, http.StatusMisdirectedRequest)
			return
		}
		if n.Add(1)%2 == 0 {
			http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("hello"))
	}))
	defer srv.Close()
	rep, err := SendRequests(t.Context(), RequestOptions{URL: srv.URL, Count: 6, Header: http.Header{"Host": {"gateway.example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Statuses["503"] != 3 || rep.Statuses["200"] != 3 || rep.Backends[UnknownBackend] != 3 || len(rep.Backends) != 1 || rep.Failed() != 3 {
		t.Errorf("report %s", rep)
	}
	// What the refusing gateway said is kept, once per status, and shown.
	if len(rep.Answers) != 1 || rep.Answers["503"] != "no healthy upstream" {
		t.Errorf("answers %q, want the 503's body only", rep.Answers)
	}
	if !strings.Contains(rep.String(), `first 503 answer "no healthy upstream"`) {
		t.Errorf("report %s does not say what the 503 said", rep)
	}
}

// Unanswered requests are counted as errors, not as a failure to report.
func TestSendRequestsCountsTransportErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
	}))
	defer srv.Close()
	rep, err := SendRequests(t.Context(), RequestOptions{URL: srv.URL, Count: 2, Timeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors["timeout"] != 2 || rep.OK() != 0 || rep.Failed() != 2 {
		t.Errorf("report %s", rep)
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	rep, err = SendRequests(t.Context(), RequestOptions{URL: closed.URL, Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors["dial: connect: connection refused"] != 3 {
		t.Errorf("report %s", rep)
	}
}

func TestSendRequestsRejectsBadOptions(t *testing.T) {
	for _, o := range []RequestOptions{{URL: "http://x", Count: 0}, {URL: "x.example.com/", Count: 1}, {URL: "ftp://x/", Count: 1}} {
		if _, err := SendRequests(t.Context(), o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := SendRequests(ctx, RequestOptions{URL: "http://127.0.0.1:1/", Count: 1}); err == nil {
		t.Error("a cancelled context was not reported")
	}
}

func TestRequestReportRoundTrip(t *testing.T) {
	in := RequestReport{URL: "http://gw/", Headers: map[string]string{"X-Model": "b=c"}, Requests: 3,
		Backends: map[string]int{"a": 2}, Statuses: map[string]int{"200": 2, "503": 1}, Errors: map[string]int{}}
	var buf bytes.Buffer
	if err := WriteRequestReport(&buf, in); err != nil {
		t.Fatal(err)
	}
	if strings.Count(buf.String(), "\n") != 1 || !strings.HasPrefix(buf.String(), ResultPrefix+RequestsKey+"={") {
		t.Errorf("not one RESULT line: %q", buf.String())
	}
	out, ok, err := ParseRequestReport("RESULT: LISTENING=x\n" + buf.String())
	if err != nil || !ok {
		t.Fatalf("ok %v, err %v", ok, err)
	}
	if out.String() != in.String() || out.Headers["X-Model"] != "b=c" {
		t.Errorf("round trip: %s, want %s", out, in)
	}
	if _, ok, _ := ParseRequestReport("RESULT: LISTENING=x\n"); ok {
		t.Error("a log without the report parsed")
	}
	if _, ok, err := ParseRequestReport("RESULT: REQUESTS={broken\n"); !ok || err == nil {
		t.Errorf("a malformed report: ok %v, err %v", ok, err)
	}
}

// A route that refuses its first requests, as while a Service's rules are
// still being written: the warm-up waits for the first 2xx, and the
// counted requests all get one.
func TestSendRequestsWarmUpWaitsForTheFirstAnswer(t *testing.T) {
	backend := NewServer("backend-a", "pod-a", "ns", "node").Handler()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 3 {
			http.Error(w, "the endpoint picker did not answer", http.StatusServiceUnavailable)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	defer srv.Close()
	rep, err := SendRequests(t.Context(), RequestOptions{URL: srv.URL + "/", Count: 10, WarmUp: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if rep.WarmUpRequests != 4 || !rep.WarmUpOK || !strings.Contains(rep.WarmUpFirstFailure, "status 503") {
		t.Errorf("warm-up %d requests, ok %v, first failure %q; want 4, the last answered, a 503 first", rep.WarmUpRequests, rep.WarmUpOK, rep.WarmUpFirstFailure)
	}
	if rep.Requests != 10 || rep.Backends["backend-a"] != 10 || rep.Failed() != 0 {
		t.Errorf("counted requests %s, want 10 answered by backend-a", rep)
	}
	if !strings.Contains(rep.String(), "after 4 warm-up requests") {
		t.Errorf("report %q does not tell of the warm-up", rep)
	}
	back, ok, err := ParseRequestReport(reportLine(t, rep))
	if err != nil || !ok || back.WarmUpRequests != 4 || !back.WarmUpOK {
		t.Errorf("report after a round trip %+v (%v, %v), want the warm-up kept", back, ok, err)
	}
}

// A route that never answers: the warm-up gives up after its time, and
// the counted requests are still sent and fail.
func TestSendRequestsWarmUpGivesUp(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	rep, err := SendRequests(t.Context(), RequestOptions{URL: srv.URL + "/", Count: 5, WarmUp: 1200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.WarmUpOK || rep.WarmUpRequests < 2 || rep.WarmUpRequests > 4 {
		t.Errorf("warm-up %d requests, ok %v; want 2 to 4 requests half a second apart, none answered", rep.WarmUpRequests, rep.WarmUpOK)
	}
	if rep.Requests != 5 || rep.Failed() != 5 || !strings.Contains(rep.String(), "none got a 2xx answer") {
		t.Errorf("counted requests %s, want 5 refused", rep)
	}
}

// reportLine is the RESULT line the probe prints for rep.
func reportLine(t *testing.T, rep RequestReport) string {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteRequestReport(&buf, rep); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}
