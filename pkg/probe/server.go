package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric names the probe serves.
const (
	MetricRequests = "kaic_probe_requests_total"
	MetricLatency  = "kaic_probe_request_duration_seconds"
	MetricLoad     = "kaic_probe_load"
)

// Identity is what the probe answers on / : who served the request, so a
// check sending traffic through a gateway can count backends.
type Identity struct {
	Backend   string            `json:"backend"`
	Pod       string            `json:"pod"`
	Namespace string            `json:"namespace"`
	Node      string            `json:"node"`
	Path      string            `json:"path"`
	Headers   map[string]string `json:"headers,omitempty"`
}

// Server is the probe's HTTP mode: identity on /, an inference-like
// endpoint /v1/infer that counts requests and records their latency, a
// gauge set with PUT /load?value=N (what a pod autoscaling check raises and
// lowers), Prometheus metrics on /metrics and /healthz. It also passes for
// a vLLM model server where an endpoint picker looks: OpenAI-style POST
// /v1/completions, and vLLM's queue and KV-cache gauges on /metrics,
// reporting the load set with PUT /model-load.
type Server struct {
	// Backend names this workload in answers (default: the pod name).
	Backend string
	// Pod, Namespace and Node come from the downward API.
	Pod, Namespace, Node string

	registry *prometheus.Registry
	requests prometheus.Counter
	latency  prometheus.Histogram
	load     prometheus.Gauge
	model    *modelServer
	served   atomic.Int64
}

// NewServer builds a server with its own metrics registry.
func NewServer(backend, pod, namespace, node string) *Server {
	s := &Server{Backend: backend, Pod: pod, Namespace: namespace, Node: node, registry: prometheus.NewRegistry()}
	if s.Backend == "" {
		s.Backend = pod
	}
	s.requests = prometheus.NewCounter(prometheus.CounterOpts{Name: MetricRequests, Help: "Inference requests served by this probe."})
	s.latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricLatency, Help: "Latency of inference requests.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8)})
	s.load = prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricLoad, Help: "Load level set through PUT /load; drives autoscaling checks."})
	s.registry.MustRegister(s.requests, s.latency, s.load)
	s.model = newModelServer(s.registry)
	return s
}

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/v1/infer", s.infer)
	mux.HandleFunc("PUT /load", s.setLoad)
	mux.HandleFunc("POST /load", s.setLoad)
	mux.HandleFunc("POST /v1/completions", s.completions)
	mux.HandleFunc("PUT /model-load", s.setModelLoad)
	mux.HandleFunc("GET /model-load", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.model.get()) })
	mux.HandleFunc("/", s.identify)
	return mux
}

func (s *Server) identity(r *http.Request) Identity {
	id := Identity{Backend: s.Backend, Pod: s.Pod, Namespace: s.Namespace, Node: s.Node, Path: r.URL.Path, Headers: map[string]string{}}
	for k, v := range r.Header {
		if len(v) > 0 {
			id.Headers[k] = v[0]
		}
	}
	return id
}

func (s *Server) identify(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.identity(r))
}

func (s *Server) infer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.requests.Inc()
	s.served.Add(1)
	id := s.identity(r)
	writeJSON(w, map[string]any{"served_by": id, "output": "ok"})
	s.latency.Observe(time.Since(start).Seconds())
}

func (s *Server) setLoad(w http.ResponseWriter, r *http.Request) {
	v, err := strconv.ParseFloat(r.URL.Query().Get("value"), 64)
	if err != nil {
		http.Error(w, "value must be a number: PUT /load?value=42", http.StatusBadRequest)
		return
	}
	s.load.Set(v)
	_, _ = fmt.Fprintf(w, "%sLOAD=%g\n", ResultPrefix, v)
}

// SetModelLoad sets the load reported as a vLLM model server.
func (s *Server) SetModelLoad(l ModelLoad) error {
	if err := l.Validate(); err != nil {
		return err
	}
	s.model.set(l)
	return nil
}

// Served returns how many inference requests were served.
func (s *Server) Served() int64 { return s.served.Load() }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Serve listens on addr until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, addr string, ready func(net.Addr)) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	if ready != nil {
		ready(l.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// DownwardEnv reads the pod identity the probe's manifests pass through
// the downward API.
func DownwardEnv() (pod, namespace, node string) {
	return os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE"), os.Getenv("NODE_NAME")
}
