package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

// testPicker is an ext_proc server that answers as the Inference
// Extension's endpoint picker does in full-duplex streamed mode: after the
// whole request body, a header response naming the endpoint (header and
// envoy.lb metadata), then the body back as a streamed mutation; after the
// response, a header response and the response body. choose decides the
// endpoint from the request's model, or answers immediately with a status.
type testPicker struct {
	extprocv3.UnimplementedExternalProcessorServer
	choose func(model string) (endpoint string, status int)
	served chan string
}

func (p *testPicker) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	var body []byte
	for {
		req, err := s.Recv()
		if err != nil {
			return nil
		}
		switch v := req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			if v.RequestHeaders.EndOfStream {
				return s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode_BadRequest}}}})
			}
		case *extprocv3.ProcessingRequest_RequestBody:
			body = append(body, v.RequestBody.Body...)
			if !v.RequestBody.EndOfStream {
				continue
			}
			var r struct{ Model string }
			_ = json.Unmarshal(body, &r)
			ep, status := p.choose(r.Model)
			if status != 0 {
				return s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode(status)}, Body: []byte("picked none")}}})
			}
			meta, _ := structpb.NewStruct(map[string]any{destinationNamespace: map[string]any{destinationKey: ep}})
			_ = s.Send(&extprocv3.ProcessingResponse{DynamicMetadata: meta, Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
				HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: destinationKey, RawValue: []byte(ep)}}, {Header: &corev3.HeaderValue{Key: "x-picked", RawValue: []byte(ep)}}}},
			}}}})
			// The body comes back in two chunks, the model rewritten.
			out := []byte(strings.Replace(string(body), `"model":"alias"`, `"model":"base"`, 1))
			for i, chunk := range [][]byte{out[:len(out)/2], out[len(out)/2:]} {
				_ = s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
					BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: chunk, EndOfStream: i == 1}}},
				}}}})
			}
			body = nil
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			if p.served != nil {
				p.served <- req.GetMetadataContext().GetFilterMetadata()[destinationNamespace].GetFields()[servedKey].GetStringValue()
			}
			_ = s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}})
		case *extprocv3.ProcessingRequest_ResponseBody:
			body = append(body, v.ResponseBody.Body...)
			if v.ResponseBody.EndOfStream {
				_ = s.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
					BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: body, EndOfStream: true}}},
				}}}})
			}
		}
	}
}

// startPicker serves p over gRPC on loopback and returns its address.
func startPicker(t *testing.T, p *testPicker) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(s, p)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

// modelServer answers with its name and the model and headers it got.
func modelServer(t *testing.T, name string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Model string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		_ = json.NewEncoder(w).Encode(map[string]string{"server": name, "model": req.Model, "picked": r.Header.Get("x-picked"), "host": r.Host})
	}))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

type answer struct {
	status                      int
	Server, Model, Picked, Host string
	raw                         string
}

func send(t *testing.T, p *proxy, host, body string) answer {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "http://"+host+"/v1/completions", strings.NewReader(body))
	w := httptest.NewRecorder()
	p.ServeHTTP(w, r)
	raw, _ := io.ReadAll(w.Result().Body)
	a := answer{status: w.Code, raw: string(raw)}
	_ = json.Unmarshal(raw, &a)
	return a
}

func testProxy(t *testing.T, pickerAddr string, failOpen bool, members ...string) *proxy {
	p := newProxy(func(context.Context, pool) ([]string, error) { return members, nil }, "cluster.local", slog.New(slog.NewTextHandler(io.Discard, nil)))
	p.pickers.plaintext = true
	p.table.Store(&table{
		Routes: []route{{Namespace: "ns", Name: "r", Hostnames: []string{"pool.example"}, Rules: []rule{{Backends: []backend{{Kind: kindInferencePool, Namespace: "ns", Name: "pool", Weight: 1}}}}}},
		Pools:  map[string]pool{"ns/pool": {Namespace: "ns", Name: "pool", Picker: pickerAddr, FailOpen: failOpen, TargetPort: 8000}},
	})
	return p
}

func TestProxyForwardsToTheEndpointThePickerNames(t *testing.T) {
	a, b := modelServer(t, "a"), modelServer(t, "b")
	picker := &testPicker{served: make(chan string, 10), choose: func(model string) (string, int) {
		switch model {
		case "alias", "to-a":
			return a, 0
		case "to-b":
			return b + "," + a, 0 // the first that answers
		}
		return "", http.StatusTooManyRequests
	}}
	p := testProxy(t, startPicker(t, picker), false)
	for _, tc := range []struct{ model, server, seenModel string }{{"to-a", "a", "to-a"}, {"to-b", "b", "to-b"}, {"alias", "a", "base"}} {
		got := send(t, p, "pool.example", `{"model":"`+tc.model+`","prompt":"hi"}`)
		if got.status != http.StatusOK || got.Server != tc.server || got.Model != tc.seenModel || got.Host != "pool.example" {
			t.Errorf("model %s: %d %s, want server %s seeing model %s", tc.model, got.status, got.raw, tc.server, tc.seenModel)
		}
		if got.Picked == "" {
			t.Errorf("model %s: the picker's header mutation did not reach the model server: %s", tc.model, got.raw)
		}
		if served := <-picker.served; (tc.server == "a" && served != a) || (tc.server == "b" && served != b) {
			t.Errorf("model %s: the picker was told %q served it", tc.model, served)
		}
	}
	if got := send(t, p, "pool.example", `{"model":"unknown"}`); got.status != http.StatusTooManyRequests || got.raw != "picked none" {
		t.Errorf("an immediate response of the picker: %d %q", got.status, got.raw)
	}
	if got := send(t, p, "other.example", `{"model":"to-a"}`); got.status != http.StatusNotFound {
		t.Errorf("a host no route names: %d", got.status)
	}
}

func TestProxyHonoursFailureMode(t *testing.T) {
	member := modelServer(t, "member")
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down := l.Addr().String()
	l.Close()
	if got := send(t, testProxy(t, down, false, member), "pool.example", `{"model":"m"}`); got.status != http.StatusServiceUnavailable {
		t.Errorf("FailClose with the picker down: %d %s, want 503", got.status, got.raw)
	}
	if got := send(t, testProxy(t, down, true, member), "pool.example", `{"model":"m"}`); got.status != http.StatusOK || got.Server != "member" {
		t.Errorf("FailOpen with the picker down: %d %s, want the pool's member", got.status, got.raw)
	}
}

func TestRouteLookup(t *testing.T) {
	svc := func(n string) []backend { return []backend{{Kind: kindService, Name: n, Weight: 1}} }
	tb := &table{Routes: []route{
		{Name: "h", Hostnames: []string{"a.example"}, Rules: []rule{
			{Matches: []match{{PathValue: "/", Headers: map[string]string{"x-model": "b"}}}, Backends: svc("b")},
			{Matches: []match{{PathType: "Exact", PathValue: "/exact"}}, Backends: svc("exact")},
			{Matches: []match{{PathValue: "/v1"}}, Backends: svc("v1")},
		}},
		{Name: "wild", Hostnames: []string{"*.wild.example"}, Rules: []rule{{Backends: svc("wild")}}},
	}}
	for _, tc := range []struct{ host, path, header, want string }{
		{"a.example", "/v1/completions", "", "v1"},
		{"a.example:80", "/v1", "", "v1"},
		{"a.example", "/v10", "", ""},
		{"a.example", "/exact", "", "exact"},
		{"a.example", "/exact/x", "", ""},
		{"a.example", "/anything", "b", "b"},
		{"x.wild.example", "/", "", "wild"},
		{"wild.example", "/", "", ""},
	} {
		r := httptest.NewRequest(http.MethodGet, "http://"+tc.host+tc.path, nil)
		if tc.header != "" {
			r.Header.Set("X-Model", tc.header)
		}
		_, ru, ok := tb.lookup(r)
		got := ""
		if ok {
			got = ru.Backends[0].Name
		}
		if got != tc.want {
			t.Errorf("%s%s (x-model %q) → %q, want %q", tc.host, tc.path, tc.header, got, tc.want)
		}
	}
	counts := map[string]int{}
	n := 0
	for range 100 {
		b, _ := pick([]backend{{Name: "x", Weight: 80}, {Name: "y", Weight: 20}}, func(total int) int { n = (n + 1) % total; return n })
		counts[b.Name]++
	}
	if counts["x"] != 80 || counts["y"] != 20 {
		t.Errorf("weights 80/20 over every draw gave %v", counts)
	}
	if _, ok := pick([]backend{{Name: "z"}}, nil); ok {
		t.Error("a rule of weightless backends picked one")
	}
}
