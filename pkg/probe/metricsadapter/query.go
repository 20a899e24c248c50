// Package metricsadapter is kaic's own custom metrics adapter: it serves
// Pods metrics of the custom.metrics.k8s.io API (v1beta1 and v1beta2) by
// asking Prometheus for the sum of each pod's series of the metric named,
// for clusters where no other adapter can be installed. It runs from the
// probe image as `kaic probe metrics-adapter` (charts/kaic-metrics-adapter).
package metricsadapter

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// DefaultMetric is the metric listed when none is configured: the gauge
// `kaic probe serve` exposes.
const DefaultMetric = "kaic_probe_load"

var metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// ValidMetricName reports whether name is a Prometheus metric name, the
// only names the adapter puts into a query.
func ValidMetricName(name string) error {
	if !metricName.MatchString(name) {
		return fmt.Errorf("%q is not a Prometheus metric name", name)
	}
	return nil
}

// PodsQuery is the PromQL query for metric summed per pod over the pods
// named in namespace:
//
//	sum by (pod) (<metric>{namespace="<ns>",pod=~"<p1>|<p2>"})
//
// Pod names are matched literally (regular expression meta characters are
// escaped) and every label value is a quoted PromQL string.
func PodsQuery(metric, namespace string, pods []string) (string, error) {
	if err := ValidMetricName(metric); err != nil {
		return "", err
	}
	if len(pods) == 0 {
		return "", fmt.Errorf("no pods to query %s for", metric)
	}
	alts := make([]string, len(pods))
	for i, p := range pods {
		alts[i] = regexp.QuoteMeta(p)
	}
	return fmt.Sprintf("sum by (pod) (%s{namespace=%s,pod=~%s})",
		metric, strconv.Quote(namespace), strconv.Quote(strings.Join(alts, "|"))), nil
}
