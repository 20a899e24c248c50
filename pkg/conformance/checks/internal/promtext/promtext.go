// Package promtext is what the metrics checks share: reaching a Service
// (or each pod behind it) through the API server's proxy, as an operator
// with only API access would, and reading the Prometheus text exposition
// format that metrics endpoints serve.
package promtext

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// Service names a port of a Service: namespace/name:port, the port given
// by name or number.
type Service struct {
	Namespace, Name, Port string
}

// ParseService reads "namespace/name:port".
func ParseService(s string) (Service, error) {
	ns, rest, ok := strings.Cut(s, "/")
	if !ok || ns == "" {
		return Service{}, fmt.Errorf("service %q: want namespace/name:port", s)
	}
	name, port, ok := strings.Cut(rest, ":")
	if !ok || name == "" || port == "" {
		return Service{}, fmt.Errorf("service %q: want namespace/name:port", s)
	}
	return Service{Namespace: ns, Name: name, Port: port}, nil
}

func (s Service) String() string { return s.Namespace + "/" + s.Name + ":" + s.Port }

// Get sends GET path?params to the Service through the API server's
// service proxy (/api/v1/namespaces/<ns>/services/<name>:<port>/proxy/<path>)
// and returns the answer's body. The proxy forwards to one of the
// Service's ready endpoints.
func Get(ctx context.Context, client kubernetes.Interface, s Service, path string, params url.Values) ([]byte, error) {
	req := client.CoreV1().RESTClient().Get().Namespace(s.Namespace).Resource("services").
		Name(s.Name + ":" + s.Port).SubResource("proxy").Suffix(strings.TrimPrefix(path, "/"))
	for k, vs := range params {
		for _, v := range vs {
			req = req.Param(k, v)
		}
	}
	body, err := req.DoRaw(ctx)
	if err != nil {
		return body, fmt.Errorf("GET %s through the service proxy of %s: %w", path, s, err)
	}
	return body, nil
}

// Endpoint is one pod behind a Service's port.
type Endpoint struct {
	// Pod and Node are those of the endpoint's target; Pod is empty when
	// the endpoint names no pod.
	Namespace, Pod, Node string
	Address              string
	Port                 int32
	Ready                bool
}

func (e Endpoint) String() string {
	who := e.Address
	if e.Pod != "" {
		who = "pod " + e.Namespace + "/" + e.Pod
	}
	if e.Node != "" {
		who += " on node " + e.Node
	}
	return fmt.Sprintf("%s port %d", who, e.Port)
}

// Endpoints resolves the Service's port and lists the endpoints of its
// EndpointSlices serving it. It returns the Service as found; a missing
// Service is the client's NotFound error.
func Endpoints(ctx context.Context, client kubernetes.Interface, s Service) (*corev1.Service, []Endpoint, error) {
	svc, err := client.CoreV1().Services(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	var port *corev1.ServicePort
	for i, p := range svc.Spec.Ports {
		if p.Name == s.Port || strconv.Itoa(int(p.Port)) == s.Port {
			port = &svc.Spec.Ports[i]
		}
	}
	if port == nil {
		var have []string
		for _, p := range svc.Spec.Ports {
			have = append(have, fmt.Sprintf("%s/%d", p.Name, p.Port))
		}
		return svc, nil, fmt.Errorf("service %s/%s has no port %s (ports: %s)", s.Namespace, s.Name, s.Port, strings.Join(have, ", "))
	}
	list, err := client.DiscoveryV1().EndpointSlices(s.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: s.Name}).String(),
	})
	if err != nil {
		return svc, nil, fmt.Errorf("listing the EndpointSlices of service %s/%s: %w", s.Namespace, s.Name, err)
	}
	var out []Endpoint
	for _, slice := range list.Items {
		var num int32
		for _, p := range slice.Ports {
			if p.Port != nil && ptrValue(p.Name) == port.Name {
				num = *p.Port
			}
		}
		if num == 0 {
			continue
		}
		for _, ep := range slice.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			e := Endpoint{Namespace: s.Namespace, Address: ep.Addresses[0], Port: num, Node: ptrValue(ep.NodeName)}
			e.Ready = ep.Conditions.Ready == nil || *ep.Conditions.Ready
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				e.Pod = ep.TargetRef.Name
				if ep.TargetRef.Namespace != "" {
					e.Namespace = ep.TargetRef.Namespace
				}
			}
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return svc, out, nil
}

// GetPod sends GET path to the pod's port through the API server's pod
// proxy (/api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy/<path>).
func GetPod(ctx context.Context, client kubernetes.Interface, namespace, pod string, port int32, path string) ([]byte, error) {
	body, err := client.CoreV1().RESTClient().Get().Namespace(namespace).Resource("pods").
		Name(pod + ":" + strconv.Itoa(int(port))).SubResource("proxy").Suffix(strings.TrimPrefix(path, "/")).DoRaw(ctx)
	if err != nil {
		return body, fmt.Errorf("GET %s through the pod proxy of %s/%s:%d: %w", path, namespace, pod, port, err)
	}
	return body, nil
}

func ptrValue[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// Sample is one value of a scraped series. Histograms and summaries
// appear as their _count, _sum and _bucket (or quantile) series.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// String writes the sample as the exposition format does, labels sorted.
func (s Sample) String() string {
	return s.Series() + " " + strconv.FormatFloat(s.Value, 'g', -1, 64)
}

// Series is the sample's name and labels, name{k="v",...}.
func (s Sample) Series() string {
	if len(s.Labels) == 0 {
		return s.Name
	}
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Quote(s.Labels[k])
	}
	return s.Name + "{" + strings.Join(parts, ",") + "}"
}

// Parse reads the Prometheus text exposition format into samples, in the
// order of their family names.
func Parse(text []byte) ([]Sample, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("parsing the Prometheus text format: %w", err)
	}
	names := make([]string, 0, len(families))
	for n := range families {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []Sample
	for _, n := range names {
		out = append(out, flatten(families[n])...)
	}
	return out, nil
}

func flatten(f *dto.MetricFamily) []Sample {
	var out []Sample
	name := f.GetName()
	for _, m := range f.GetMetric() {
		base := map[string]string{}
		for _, l := range m.GetLabel() {
			base[l.GetName()] = l.GetValue()
		}
		with := func(suffix string, v float64, extra ...string) {
			l := make(map[string]string, len(base)+1)
			for k, v := range base {
				l[k] = v
			}
			for i := 0; i+1 < len(extra); i += 2 {
				l[extra[i]] = extra[i+1]
			}
			out = append(out, Sample{Name: name + suffix, Labels: l, Value: v})
		}
		switch {
		case m.Counter != nil:
			with("", m.GetCounter().GetValue())
		case m.Gauge != nil:
			with("", m.GetGauge().GetValue())
		case m.Untyped != nil:
			with("", m.GetUntyped().GetValue())
		case m.Histogram != nil:
			h := m.GetHistogram()
			with("_count", float64(h.GetSampleCount()))
			with("_sum", h.GetSampleSum())
			inf := false
			for _, b := range h.GetBucket() {
				inf = inf || math.IsInf(b.GetUpperBound(), 1)
				with("_bucket", float64(b.GetCumulativeCount()), "le", formatBound(b.GetUpperBound()))
			}
			if !inf {
				with("_bucket", float64(h.GetSampleCount()), "le", "+Inf")
			}
		case m.Summary != nil:
			s := m.GetSummary()
			with("_count", float64(s.GetSampleCount()))
			with("_sum", s.GetSampleSum())
			for _, q := range s.GetQuantile() {
				with("", q.GetValue(), "quantile", formatBound(q.GetQuantile()))
			}
		}
	}
	return out
}

func formatBound(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Named returns the samples called name.
func Named(samples []Sample, name string) []Sample {
	var out []Sample
	for _, s := range samples {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// Names lists the distinct sample names, sorted.
func Names(samples []Sample) []string {
	var out []string
	for _, s := range samples {
		if !slices.Contains(out, s.Name) {
			out = append(out, s.Name)
		}
	}
	sort.Strings(out)
	return out
}
