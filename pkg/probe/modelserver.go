package probe

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names of vLLM's Prometheus endpoint that the serve mode exposes,
// so that an endpoint picker scraping a model server (the Gateway API
// Inference Extension's reads these by default) sees the load the probe is
// told to report.
const (
	VLLMRequestsWaiting = "vllm:num_requests_waiting"
	VLLMRequestsRunning = "vllm:num_requests_running"
	VLLMKVCacheUsage    = "vllm:kv_cache_usage_perc"
	VLLMLoRARequests    = "vllm:lora_requests_info"
	VLLMCacheConfig     = "vllm:cache_config_info"
)

// ModelLoad is the load the serve mode reports as a vLLM model server:
// requests waiting in its queue, requests running, and the fraction of its
// KV cache in use (0 to 1). It is what the probe is told, not what it
// does: the probe serves every request at once.
type ModelLoad struct {
	Waiting int     `json:"waiting"`
	Running int     `json:"running"`
	KVCache float64 `json:"kvCache"`
}

// Validate reports a load no model server could report.
func (l ModelLoad) Validate() error {
	switch {
	case l.Waiting < 0:
		return fmt.Errorf("waiting must not be negative, got %d", l.Waiting)
	case l.Running < 0:
		return fmt.Errorf("running must not be negative, got %d", l.Running)
	case l.KVCache < 0 || l.KVCache > 1:
		return fmt.Errorf("kvCache is a fraction from 0 to 1, got %g", l.KVCache)
	}
	return nil
}

// Query is the load as the query of PUT /model-load.
func (l ModelLoad) Query() string {
	return fmt.Sprintf("waiting=%d&running=%d&kvCache=%s", l.Waiting, l.Running, strconv.FormatFloat(l.KVCache, 'g', -1, 64))
}

func (l ModelLoad) String() string {
	return fmt.Sprintf("%d waiting, %d running, KV cache %.0f%% used", l.Waiting, l.Running, l.KVCache*100)
}

// modelServer holds the vLLM-compatible side of the serve mode.
type modelServer struct {
	mu      sync.Mutex
	load    ModelLoad
	waiting prometheus.Gauge
	running prometheus.Gauge
	kvCache prometheus.Gauge
}

func newModelServer(reg *prometheus.Registry) *modelServer {
	m := &modelServer{
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: VLLMRequestsWaiting, Help: "Requests waiting to be processed (as told to the probe)."}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: VLLMRequestsRunning, Help: "Requests running on the model server (as told to the probe)."}),
		kvCache: prometheus.NewGauge(prometheus.GaugeOpts{Name: VLLMKVCacheUsage, Help: "KV-cache usage, 1 meaning 100 percent (as told to the probe)."}),
	}
	// vLLM labels these two info gauges; an endpoint picker reads the
	// labels: no LoRA adapters loaded, and a cache geometry.
	lora := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: VLLMLoRARequests, Help: "Running and waiting LoRA adapters."}, []string{"running_lora_adapters", "waiting_lora_adapters", "max_lora"})
	lora.WithLabelValues("", "", "0").Set(1)
	cache := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: VLLMCacheConfig, Help: "Cache configuration."}, []string{"block_size", "num_gpu_blocks"})
	cache.WithLabelValues("16", "1024").Set(1)
	reg.MustRegister(m.waiting, m.running, m.kvCache, lora, cache)
	return m
}

func (m *modelServer) set(l ModelLoad) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.load = l
	m.waiting.Set(float64(l.Waiting))
	m.running.Set(float64(l.Running))
	m.kvCache.Set(l.KVCache)
}

func (m *modelServer) get() ModelLoad {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.load
}

// ParseModelLoad reads a load from a query (waiting, running, kvCache);
// missing keys are zero.
func ParseModelLoad(get func(string) string) (ModelLoad, error) {
	var l ModelLoad
	var err error
	if v := get("waiting"); v != "" {
		if l.Waiting, err = strconv.Atoi(v); err != nil {
			return l, fmt.Errorf("waiting: %q is not a whole number", v)
		}
	}
	if v := get("running"); v != "" {
		if l.Running, err = strconv.Atoi(v); err != nil {
			return l, fmt.Errorf("running: %q is not a whole number", v)
		}
	}
	if v := get("kvCache"); v != "" {
		if l.KVCache, err = strconv.ParseFloat(v, 64); err != nil {
			return l, fmt.Errorf("kvCache: %q is not a number", v)
		}
	}
	return l, l.Validate()
}

// setModelLoad is PUT /model-load?waiting=N&running=N&kvCache=F: the load
// reported from now on. It answers with the load as JSON.
func (s *Server) setModelLoad(w http.ResponseWriter, r *http.Request) {
	l, err := ParseModelLoad(r.URL.Query().Get)
	if err != nil {
		http.Error(w, err.Error()+" (PUT /model-load?waiting=N&running=N&kvCache=0.5)", http.StatusBadRequest)
		return
	}
	s.model.set(l)
	writeJSON(w, l)
}

// CompletionAnswer is what POST /v1/completions answers: an OpenAI-style
// completion naming the model asked for, and who served it.
type CompletionAnswer struct {
	ID       string   `json:"id"`
	Object   string   `json:"object"`
	Model    string   `json:"model"`
	Choices  []any    `json:"choices"`
	ServedBy Identity `json:"served_by"`
}

// completions is POST /v1/completions: an OpenAI-style request whose JSON
// body names the model. The answer says which pod served it; a body that
// names no model is a 400, as a model server would answer.
func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model  string `json:"model"`
		Prompt any    `json:"prompt"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil || req.Model == "" {
		http.Error(w, `the body must be JSON naming the model: {"model": "...", "prompt": "..."}`, http.StatusBadRequest)
		return
	}
	s.requests.Inc()
	n := s.served.Add(1)
	writeJSON(w, CompletionAnswer{
		ID:       fmt.Sprintf("cmpl-%s-%d", s.Backend, n),
		Object:   "text_completion",
		Model:    req.Model,
		Choices:  []any{map[string]any{"index": 0, "text": "ok", "finish_reason": "stop"}},
		ServedBy: s.identity(r),
	})
}
