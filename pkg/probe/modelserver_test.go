package probe

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// startServer runs s on loopback until the test ends and returns its URL.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, "127.0.0.1:0", func(a net.Addr) { addrc <- a }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + (<-addrc).String()
}

// vllmGauges scrapes base/metrics with the Prometheus text parser (as an
// endpoint picker does) and returns the value of each vLLM gauge.
func vllmGauges(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := map[string]float64{}
	for _, name := range []string{VLLMRequestsWaiting, VLLMRequestsRunning, VLLMKVCacheUsage, VLLMLoRARequests, VLLMCacheConfig} {
		f, ok := families[name]
		if !ok || len(f.GetMetric()) != 1 {
			t.Fatalf("/metrics has no single %s: %v", name, f)
		}
		out[name] = f.GetMetric()[0].GetGauge().GetValue()
	}
	return out
}

func TestServerReportsTheModelLoadItIsTold(t *testing.T) {
	s := NewServer("", "pod-a", "ns", "node-1")
	if err := s.SetModelLoad(ModelLoad{Waiting: 20, Running: 3, KVCache: 0.9}); err != nil {
		t.Fatal(err)
	}
	base := startServer(t, s)
	g := vllmGauges(t, base)
	if g[VLLMRequestsWaiting] != 20 || g[VLLMRequestsRunning] != 3 || g[VLLMKVCacheUsage] != 0.9 {
		t.Errorf("gauges at start = %v", g)
	}

	put := func(query string) *http.Response {
		req, _ := http.NewRequest(http.MethodPut, base+"/model-load?"+query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := put(ModelLoad{Waiting: 0, KVCache: 0.05}.Query()); resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /model-load: %s", resp.Status)
	}
	g = vllmGauges(t, base)
	if g[VLLMRequestsWaiting] != 0 || g[VLLMRequestsRunning] != 0 || g[VLLMKVCacheUsage] != 0.05 {
		t.Errorf("gauges after PUT = %v", g)
	}
	for _, bad := range []string{"waiting=-1", "kvCache=1.5", "waiting=many", "kvCache=x"} {
		if resp := put(bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("PUT /model-load?%s: %s, want 400", bad, resp.Status)
		}
	}
	if g := vllmGauges(t, base); g[VLLMKVCacheUsage] != 0.05 {
		t.Errorf("a rejected load changed the gauges: %v", g)
	}
	if err := s.SetModelLoad(ModelLoad{KVCache: -0.1}); err == nil {
		t.Error("a negative KV-cache use was accepted")
	}
}

func TestServerAnswersCompletions(t *testing.T) {
	s := NewServer("", "pod-b", "ns", "node-2")
	base := startServer(t, s)
	resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(string(CompletionBody("probe-model", 3))))
	if err != nil {
		t.Fatal(err)
	}
	var a CompletionAnswer
	err = json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/completions: %s, %v", resp.Status, err)
	}
	if a.Model != "probe-model" || a.ServedBy.Pod != "pod-b" || a.ServedBy.Backend != "pod-b" || a.Object != "text_completion" {
		t.Errorf("answer = %+v", a)
	}
	resp, err = http.Post(base+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"no model"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a body naming no model: %s, want 400", resp.Status)
	}
	if s.Served() != 1 {
		t.Errorf("served = %d, want 1", s.Served())
	}
}

func TestSendRequestsPostsCompletions(t *testing.T) {
	s := NewServer("", "pod-c", "ns", "node-3")
	base := startServer(t, s)
	rep, err := SendRequests(context.Background(), RequestOptions{URL: base + "/v1/completions", Count: 5, CompletionModel: "probe-model", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Backends["pod-c"] != 5 || rep.Model != "probe-model" {
		t.Errorf("report = %s (model %q)", rep, rep.Model)
	}
	if a, b := string(CompletionBody("m", 1)), string(CompletionBody("m", 2)); a == b || !strings.Contains(a, `"model":"m"`) {
		t.Errorf("completion bodies %s and %s", a, b)
	}
}
