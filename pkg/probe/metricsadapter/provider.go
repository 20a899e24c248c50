package metricsadapter

import (
	"context"
	"fmt"
	"math"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
)

// Querier evaluates an instant PromQL query returning a vector.
type Querier interface {
	Query(ctx context.Context, query string) ([]Sample, error)
}

// Provider answers custom metrics requests for namespaced pods from
// Prometheus; it implements provider.CustomMetricsProvider.
type Provider struct {
	// Prometheus answers the queries.
	Prometheus Querier
	// Client looks up the pods a request describes.
	Client kubernetes.Interface
	// Metrics are those listed in discovery; any valid metric name is
	// answered.
	Metrics []string
}

var _ provider.CustomMetricsProvider = (*Provider)(nil)

var podsResource = schema.GroupResource{Resource: "pods"}

// check refuses what the adapter does not serve: other resources than
// pods, pods across all namespaces, metric selectors and names that are
// not Prometheus metric names.
func check(info provider.CustomMetricInfo, namespace string, metricSelector labels.Selector) error {
	if info.GroupResource != podsResource || !info.Namespaced || namespace == "" {
		return apierrors.NewBadRequest(fmt.Sprintf("only metrics of pods in a namespace are served, not %s", info.GroupResource))
	}
	if metricSelector != nil && !metricSelector.Empty() {
		return apierrors.NewBadRequest("metric label selectors are not supported")
	}
	if err := ValidMetricName(info.Metric); err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	return nil
}

// GetMetricByName answers the metric of one pod.
func (p *Provider) GetMetricByName(ctx context.Context, name types.NamespacedName, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValue, error) {
	if err := check(info, name.Namespace, metricSelector); err != nil {
		return nil, err
	}
	pod, err := p.Client.CoreV1().Pods(name.Namespace).Get(ctx, name.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	values, err := p.values(ctx, info.Metric, name.Namespace, []corev1.Pod{*pod})
	if err != nil {
		return nil, err
	}
	if len(values) == 0 {
		return nil, provider.NewMetricNotFoundForError(info.GroupResource, info.Metric, name.Name)
	}
	return &values[0], nil
}

// GetMetricBySelector answers the metric of the pods selector selects in
// namespace; pods Prometheus has no series of are left out, and the
// metric is not found when none has one.
func (p *Provider) GetMetricBySelector(ctx context.Context, namespace string, selector labels.Selector, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValueList, error) {
	if err := check(info, namespace, metricSelector); err != nil {
		return nil, err
	}
	pods, err := p.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return nil, err
	}
	out := &custom_metrics.MetricValueList{}
	if len(pods.Items) == 0 {
		return out, nil
	}
	if out.Items, err = p.values(ctx, info.Metric, namespace, pods.Items); err != nil {
		return nil, err
	}
	if len(out.Items) == 0 {
		return nil, provider.NewMetricNotFoundError(info.GroupResource, info.Metric)
	}
	return out, nil
}

// values queries the metric of pods, in the order of pods.
func (p *Provider) values(ctx context.Context, metric, namespace string, pods []corev1.Pod) ([]custom_metrics.MetricValue, error) {
	names := make([]string, len(pods))
	for i := range pods {
		names[i] = pods[i].Name
	}
	q, err := PodsQuery(metric, namespace, names)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	samples, err := p.Prometheus.Query(ctx, q)
	if err != nil {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("%s: %v", q, err))
	}
	byPod := make(map[string]Sample, len(samples))
	for _, s := range samples {
		byPod[s.Labels["pod"]] = s
	}
	var out []custom_metrics.MetricValue
	for i := range pods {
		s, ok := byPod[pods[i].Name]
		if !ok || math.IsNaN(s.Value) || math.IsInf(s.Value, 0) {
			continue
		}
		out = append(out, custom_metrics.MetricValue{
			DescribedObject: custom_metrics.ObjectReference{Kind: "Pod", APIVersion: "v1",
				Namespace: namespace, Name: pods[i].Name, UID: pods[i].UID, ResourceVersion: pods[i].ResourceVersion},
			Metric:    custom_metrics.MetricIdentifier{Name: metric},
			Timestamp: metav1.NewTime(s.Time),
			Value:     quantity(s.Value),
		})
	}
	return out, nil
}

// quantity is v with milli precision, as the HPA reads custom metrics.
func quantity(v float64) resource.Quantity {
	return *resource.NewMilliQuantity(int64(math.Round(v*1000)), resource.DecimalSI)
}

// ListAllMetrics lists the configured metrics, for pods in namespaces.
func (p *Provider) ListAllMetrics() []provider.CustomMetricInfo {
	out := make([]provider.CustomMetricInfo, 0, len(p.Metrics))
	for _, m := range p.Metrics {
		out = append(out, provider.CustomMetricInfo{GroupResource: podsResource, Namespaced: true, Metric: m})
	}
	return out
}
