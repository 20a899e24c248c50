package cmd

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/probe"
	"github.com/kaic-dev/kaic/pkg/probe/metricsadapter"
)

func newProbeMetricsAdapterCommand(o *globalOptions) *cobra.Command {
	opts := metricsadapter.Options{}
	c := &cobra.Command{
		Use:   "metrics-adapter",
		Short: "Serve the custom metrics API for pods from Prometheus",
		Long: `metrics-adapter serves custom.metrics.k8s.io (v1beta1 and v1beta2) for
pods in a namespace, run by the kaic-metrics-adapter chart behind its
APIServices. The value of metric M for a pod is the answer of Prometheus to

  sum by (pod) (M{namespace="<namespace>",pod=~"<pod>|..."})

for any metric name; --metric names those listed in discovery. It serves
HTTPS with a self-signed certificate generated at start, authenticates and
authorizes requests with the API server, and talks to it with the pod's
service account, or the kubeconfig given with --kubeconfig.`,
		Example: "  kaic probe metrics-adapter --prometheus-url http://prometheus-operated.monitoring.svc:9090",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if opts.PrometheusURL == "" {
				return usageError("--prometheus-url is required")
			}
			opts.Kubeconfig = o.kubeconfig
			b, err := metricsadapter.NewAdapter(opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(o.stdout, "%sSERVING=:%d\n", probe.ResultPrefix, opts.Port)
			return b.Run(c.Context())
		},
	}
	o.addClusterFlags(c)
	c.Flags().StringVar(&opts.PrometheusURL, "prometheus-url", "", "Prometheus base URL, e.g. http://prometheus-operated.monitoring.svc:9090")
	c.Flags().StringArrayVar(&opts.Metrics, "metric", []string{metricsadapter.DefaultMetric}, "metric listed in discovery (repeatable)")
	c.Flags().IntVar(&opts.Port, "secure-port", metricsadapter.DefaultPort, "HTTPS port")
	c.Flags().DurationVar(&opts.QueryTimeout, "query-timeout", 10*time.Second, "time limit of each Prometheus query")
	return c
}
