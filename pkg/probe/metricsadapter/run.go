package metricsadapter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	basecmd "sigs.k8s.io/custom-metrics-apiserver/pkg/cmd"
)

// DefaultPort is the port the adapter serves HTTPS on.
const DefaultPort = 6443

// Options configure Run.
type Options struct {
	// PrometheusURL is Prometheus' base URL (required).
	PrometheusURL string
	// Metrics are listed in discovery; DefaultMetric when empty.
	Metrics []string
	// Kubeconfig reaches the API server; "" uses the pod's service account.
	Kubeconfig string
	// Port is served when Listener is nil; DefaultPort when 0.
	Port int
	// Listener, when set, is served instead of Port.
	Listener net.Listener
	// QueryTimeout bounds each Prometheus query; 10s when 0.
	QueryTimeout time.Duration
	// NoDelegatedAuth serves every request without asking the API server
	// who sent it and whether it may (for control planes whose aggregator
	// has no front-proxy client certificate, as in tests). By default the
	// adapter authenticates and authorizes requests with the API server.
	NoDelegatedAuth bool
}

// Run serves custom.metrics.k8s.io until ctx ends. Its serving
// certificate is self-signed, generated at start and kept in memory: the
// APIServices registering it skip verifying it.
func Run(ctx context.Context, o Options) error {
	b, err := NewAdapter(o)
	if err != nil {
		return err
	}
	return b.Run(ctx)
}

// NewAdapter builds the adapter Run serves, ready to run.
func NewAdapter(o Options) (*basecmd.AdapterBase, error) {
	if o.PrometheusURL == "" {
		return nil, errors.New("the Prometheus URL is required")
	}
	if u, err := url.Parse(o.PrometheusURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus URL %q: want http(s)://host[:port]", o.PrometheusURL)
	}
	if len(o.Metrics) == 0 {
		o.Metrics = []string{DefaultMetric}
	}
	for _, m := range o.Metrics {
		if err := ValidMetricName(m); err != nil {
			return nil, err
		}
	}
	if o.QueryTimeout == 0 {
		o.QueryTimeout = 10 * time.Second
	}
	b := &basecmd.AdapterBase{Name: "kaic-metrics-adapter", FlagSet: pflag.NewFlagSet("kaic-metrics-adapter", pflag.ContinueOnError)}
	b.InstallFlags()
	b.RemoteKubeConfigFile = o.Kubeconfig
	so := b.CustomMetricsAdapterServerOptions
	if o.NoDelegatedAuth {
		so.Authentication, so.Authorization = nil, nil
	} else if o.Kubeconfig != "" {
		so.Authentication.RemoteKubeConfigFile = o.Kubeconfig
		so.Authorization.RemoteKubeConfigFile = o.Kubeconfig
	}
	// Certificates generated at start stay in memory: the image's file
	// system need not be writable.
	so.SecureServing.ServerCert.CertDirectory = ""
	so.SecureServing.BindPort = o.Port
	if so.SecureServing.BindPort == 0 {
		so.SecureServing.BindPort = DefaultPort
	}
	if o.Listener != nil {
		so.SecureServing.Listener = o.Listener
		if a, ok := o.Listener.Addr().(*net.TCPAddr); ok {
			so.SecureServing.BindPort = a.Port
		}
	}
	cfg, err := b.ClientConfig()
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for the API server: %w", err)
	}
	b.WithCustomMetrics(&Provider{
		Prometheus: &Prometheus{URL: o.PrometheusURL, Client: &http.Client{Timeout: o.QueryTimeout}},
		Client:     client,
		Metrics:    o.Metrics,
	})
	if _, err := b.Server(); err != nil {
		return nil, fmt.Errorf("custom metrics server: %w", err)
	}
	return b, nil
}
