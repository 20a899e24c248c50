package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer serves each request with handle, passing the 1-based number
// of the request.
type countingServer struct {
	*httptest.Server
	n atomic.Int32
}

func newServer(t *testing.T, handle func(n int, w http.ResponseWriter, r *http.Request)) *countingServer {
	t.Helper()
	s := &countingServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handle(int(s.n.Add(1)), w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *countingServer) requests() int { return int(s.n.Load()) }

// fastClient retries quickly so that tests stay short.
func fastClient(attempts int) *Client {
	return New(WithMaxAttempts(attempts), WithWait(time.Millisecond, 5*time.Millisecond))
}

// truncate answers with a Content-Length for body but sends only half of it
// and drops the connection.
func truncate(t *testing.T, w http.ResponseWriter, body []byte) {
	t.Helper()
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n", len(body))
	buf.Write(body[:len(body)/2])
	buf.Flush()
}

func TestGetRetriesFlakyServer(t *testing.T) {
	srv := newServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "payload")
	})
	body, err := fastClient(5).Get(t.Context(), srv.URL+"/file")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(body) != "payload" {
		t.Errorf("body = %q, want %q", body, "payload")
	}
	if got := srv.requests(); got != 3 {
		t.Errorf("server saw %d requests, want 3", got)
	}
}

func TestGetGivesUpAfterMaxAttempts(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "broken", http.StatusBadGateway)
	})
	url := srv.URL + "/always-broken"
	_, err := fastClient(3).Get(t.Context(), url)
	var fe *Error
	if !errors.As(err, &fe) {
		t.Fatalf("Get error = %v, want *Error", err)
	}
	if fe.Attempts != 3 || fe.Status != http.StatusBadGateway {
		t.Errorf("Attempts, Status = %d, %d; want 3, 502", fe.Attempts, fe.Status)
	}
	for _, want := range []string{url, "3 attempts", "502"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if got := srv.requests(); got != 3 {
		t.Errorf("server saw %d requests, want 3", got)
	}
}

func TestGetDoesNotRetryClientErrors(t *testing.T) {
	for _, code := range []int{http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusNotImplemented} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "no", code)
			})
			_, err := fastClient(5).Get(t.Context(), srv.URL+"/x")
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("Get error = %v, want *Error", err)
			}
			if fe.Attempts != 1 || fe.Status != code {
				t.Errorf("Attempts, Status = %d, %d; want 1, %d", fe.Attempts, fe.Status, code)
			}
			if got := srv.requests(); got != 1 {
				t.Errorf("server saw %d requests, want 1", got)
			}
			if IsNotFound(err) != (code == http.StatusNotFound) {
				t.Errorf("IsNotFound = %v for %d", IsNotFound(err), code)
			}
		})
	}
}

func TestGetHonoursRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var seen []time.Time
	srv := newServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		seen = append(seen, time.Now())
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		fmt.Fprint(w, "ok")
	})
	if _, err := fastClient(3).Get(t.Context(), srv.URL); err != nil {
		t.Fatalf("Get: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("server saw %d requests, want 2", len(seen))
	}
	// The client's own backoff is at most 5ms; only Retry-After explains a
	// pause of a second.
	if gap := seen[1].Sub(seen[0]); gap < 900*time.Millisecond {
		t.Errorf("retried after %v, want about 1s as the server asked", gap)
	}
}

func TestRetryAfterCappedByOption(t *testing.T) {
	srv := newServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "3600")
			http.Error(w, "later", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})
	c := New(WithMaxAttempts(2), WithWait(time.Millisecond, time.Millisecond), WithMaxRetryAfter(10*time.Millisecond))
	start := time.Now()
	if _, err := c.Get(t.Context(), srv.URL); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Get took %v, the Retry-After cap was not applied", d)
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
		ok    bool
	}{
		{"", 0, false},
		{"7", 7 * time.Second, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
	}
	for _, tt := range tests {
		got, ok := retryAfter(tt.value, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tt.value, got, ok, tt.want, tt.ok)
		}
	}
}

func TestBackoffIsExponentialWithJitterAndBounded(t *testing.T) {
	c := New(WithWait(100*time.Millisecond, time.Second))
	for attempt, ceiling := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		ceiling *= time.Millisecond
		for range 50 {
			got := c.backoff(c.waitMin, c.waitMax, attempt, nil)
			if got < ceiling/2 || got > ceiling {
				t.Fatalf("backoff(attempt %d) = %v, want within [%v, %v]", attempt, got, ceiling/2, ceiling)
			}
		}
	}
	if got := c.backoff(c.waitMin, c.waitMax, 200, nil); got > time.Second {
		t.Errorf("backoff after many attempts = %v, want at most 1s", got)
	}
}

func TestGetRetriesConnectionErrors(t *testing.T) {
	srv := newServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n <= 2 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		fmt.Fprint(w, "recovered")
	})
	body, err := fastClient(6).Get(t.Context(), srv.URL)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(body) != "recovered" {
		t.Errorf("body = %q", body)
	}
	if got := srv.requests(); got < 3 {
		t.Errorf("server saw %d requests, want at least 3", got)
	}
}

func TestGetRetriesTruncatedBody(t *testing.T) {
	payload := []byte(strings.Repeat("0123456789", 100))
	srv := newServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			truncate(t, w, payload)
			return
		}
		w.Write(payload)
	})
	body, err := fastClient(3).Get(t.Context(), srv.URL)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(body) != string(payload) {
		t.Errorf("got %d bytes, want %d", len(body), len(payload))
	}
	if got := srv.requests(); got != 2 {
		t.Errorf("server saw %d requests, want 2", got)
	}
}

func TestGetStopsWhenContextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		cancel()
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	c := New(WithMaxAttempts(10), WithWait(50*time.Millisecond, 100*time.Millisecond))
	start := time.Now()
	_, err := c.Get(ctx, srv.URL)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Get error = %v, want context.Canceled", err)
	}
	var fe *Error
	if !errors.As(err, &fe) || fe.Attempts != 1 {
		t.Errorf("error %v: want *Error after 1 attempt", err)
	}
	if got := srv.requests(); got != 1 {
		t.Errorf("server saw %d requests, want 1", got)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Get took %v after cancellation", d)
	}
}

func TestErrorRedactsPassword(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusUnauthorized)
	})
	url := strings.Replace(srv.URL, "http://", "http://user:s3cret@", 1)
	_, err := fastClient(2).Get(t.Context(), url)
	if err == nil {
		t.Fatal("Get succeeded, want 401 error")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error leaks the password: %v", err)
	}
	if !strings.Contains(err.Error(), "401") {
		t.Errorf("error %q does not name the status", err)
	}
}

func TestHTTPClientRetriesServerErrors(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if r.Method == http.MethodPut {
			b, _ := io.ReadAll(r.Body)
			_, _ = w.Write(b)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	hc := New(WithWait(time.Millisecond, 5*time.Millisecond)).HTTPClient()

	req, err := http.NewRequest(http.MethodPut, srv.URL, strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "payload" {
		t.Fatalf("got %d %q, want 200 with the request body replayed", resp.StatusCode, body)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("server saw %d requests, want 3", n)
	}

	calls.Store(-100) // every further request fails
	resp, err = hc.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after giving up: status %d, want the last 503", resp.StatusCode)
	}
	if n := calls.Load(); n != -100+DefaultMaxAttempts {
		t.Fatalf("server saw %d requests after reset, want %d", n+100, DefaultMaxAttempts)
	}
}

func TestHTTPClientDoesNotRetryClientErrors(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	resp, err := New(WithWait(time.Millisecond, 5*time.Millisecond)).HTTPClient().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || calls.Load() != 1 {
		t.Fatalf("status %d after %d requests, want 401 after 1", resp.StatusCode, calls.Load())
	}
}

// A name the resolver says does not exist is not retried: offline, every
// attempt would get the same answer after a longer wait.
func TestUnknownHostIsNotRetried(t *testing.T) {
	var dials atomic.Int32
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: "charts.example.invalid", IsNotFound: true}}
	}}}
	c := New(WithMaxAttempts(5), WithWait(time.Millisecond, 5*time.Millisecond), WithHTTPClient(hc))
	if _, err := c.Get(t.Context(), "https://charts.example.invalid/index.yaml"); err == nil || !strings.Contains(err.Error(), "no such host") {
		t.Fatalf("Get: %v, want the resolver's answer", err)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("Get dialled %d times, want 1", n)
	}
	dials.Store(0)
	resp, err := c.HTTPClient().Get("https://charts.example.invalid/index.yaml")
	if err == nil {
		resp.Body.Close()
		t.Fatal("HTTPClient reached a host that does not exist")
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("HTTPClient dialled %d times, want 1", n)
	}
}
