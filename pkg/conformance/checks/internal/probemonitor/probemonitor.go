// Package probemonitor finds the PodMonitor that kaic's stack installs
// for the probe pods of its checks (component kaic-probe-monitor, chart
// charts/kaic-probe-monitor), so that a check whose pod Prometheus must
// scrape can label the pod for it instead of creating a monitor of its own.
//
// A monitor a check creates reaches Prometheus only once
// prometheus-operator's new configuration does: the operator writes it to
// a Secret, and the kubelet hands that to the Prometheus pod at its next
// periodic sync, up to about 90 s later. A monitor installed with the stack
// is already in the configuration when verification starts; a new pod it
// selects is found by Prometheus' pod discovery, which watches the API
// server, within seconds.
package probemonitor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Labels and names the chart and the checks agree on.
const (
	// NameLabel and Name mark the PodMonitor.
	NameLabel = "app.kubernetes.io/name"
	Name      = "kaic-probe-monitor"
	// RunPodLabel is the pod label whose value the monitor copies onto
	// every series of the pod as RunSeriesLabel.
	RunPodLabel    = "kaic.dev/run"
	RunSeriesLabel = "kaic_run"
	// Port is the name of the probe's HTTP port, which the monitor
	// scrapes.
	Port = "http"
)

// GVR is prometheus-operator's PodMonitor resource.
var GVR = schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "podmonitors"}

// Monitor is a usable PodMonitor of kaic's stack.
type Monitor struct {
	Namespace, Name string
	// PodLabels are the labels a pod carries to be scraped: the
	// monitor's selector.
	PodLabels map[string]string
	// Interval is the monitor's scrape interval ("" for Prometheus'
	// global one).
	Interval string
	// RunLabel reports whether the monitor copies RunPodLabel onto the
	// series as RunSeriesLabel.
	RunLabel bool
}

// String is namespace/name.
func (m *Monitor) String() string { return m.Namespace + "/" + m.Name }

// ScrapePool is the prefix of the scrape pool prometheus-operator gives the
// monitor's endpoints.
func (m *Monitor) ScrapePool() string { return "podMonitor/" + m.Namespace + "/" + m.Name + "/" }

// Labels returns base with the monitor's pod labels added.
func (m *Monitor) Labels(base map[string]string) map[string]string {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, m.PodLabels)
	return out
}

// Find returns the first PodMonitor labelled NameLabel=Name, in namespace
// and name order, that a check can use (see Usable). When none can be
// used, it returns nil and why, one reason per monitor found or a sentence
// saying none was; an error is only for a list that failed for another
// reason than the API not being served.
func Find(ctx context.Context, client dynamic.Interface) (*Monitor, string, error) {
	list, err := client.Resource(GVR).Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: NameLabel + "=" + Name})
	switch {
	case apierrors.IsNotFound(err):
		return nil, "the cluster does not serve " + GVR.GroupVersion().String() + " PodMonitors", nil
	case err != nil:
		return nil, "", fmt.Errorf("listing PodMonitors labelled %s=%s: %w", NameLabel, Name, err)
	}
	items := list.Items
	sort.Slice(items, func(i, j int) bool {
		return items[i].GetNamespace()+"/"+items[i].GetName() < items[j].GetNamespace()+"/"+items[j].GetName()
	})
	var why []string
	for i := range items {
		m, reason := Usable(&items[i])
		if m != nil {
			return m, "", nil
		}
		why = append(why, fmt.Sprintf("PodMonitor %s/%s %s", items[i].GetNamespace(), items[i].GetName(), reason))
	}
	if len(why) == 0 {
		return nil, fmt.Sprintf("no PodMonitor is labelled %s=%s (kaic's stack component kaic-probe-monitor installs one)", NameLabel, Name), nil
	}
	return nil, strings.Join(why, "; "), nil
}

// Usable returns the monitor when u scrapes probe pods of every namespace
// on port Port, selected by labels alone; otherwise it says why not.
func Usable(u *unstructured.Unstructured) (*Monitor, string) {
	if all, _, _ := unstructured.NestedBool(u.Object, "spec", "namespaceSelector", "any"); !all {
		return nil, "does not select pods of every namespace (spec.namespaceSelector.any is not true)"
	}
	if exprs, _, _ := unstructured.NestedSlice(u.Object, "spec", "selector", "matchExpressions"); len(exprs) > 0 {
		return nil, "selects pods with match expressions, which a check cannot satisfy by labelling its pod"
	}
	match, _, err := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
	if err != nil || len(match) == 0 {
		return nil, "selects pods by no label (spec.selector.matchLabels is empty)"
	}
	endpoints, _, _ := unstructured.NestedSlice(u.Object, "spec", "podMetricsEndpoints")
	for _, raw := range endpoints {
		ep, _ := raw.(map[string]any)
		if port, _ := ep["port"].(string); port != Port {
			continue
		}
		if path, _ := ep["path"].(string); path != "" && path != "/metrics" {
			continue
		}
		m := &Monitor{Namespace: u.GetNamespace(), Name: u.GetName(), PodLabels: match}
		m.Interval, _ = ep["interval"].(string)
		rules, _ := ep["relabelings"].([]any)
		m.RunLabel = slices.ContainsFunc(rules, copiesRunLabel)
		return m, ""
	}
	return nil, fmt.Sprintf("scrapes no port %q on path /metrics", Port)
}

// copiesRunLabel reports whether a relabeling copies the pod label
// RunPodLabel to the series label RunSeriesLabel unchanged.
func copiesRunLabel(raw any) bool {
	r, _ := raw.(map[string]any)
	action, _ := r["action"].(string)
	target, _ := r["targetLabel"].(string)
	sources, _ := r["sourceLabels"].([]any)
	regex, _ := r["regex"].(string)
	replacement, _ := r["replacement"].(string)
	return (action == "" || strings.EqualFold(action, "replace")) && target == RunSeriesLabel &&
		len(sources) == 1 && sources[0] == metaLabel(RunPodLabel) &&
		(regex == "" || regex == "(.*)") && (replacement == "" || replacement == "$1" || replacement == "${1}")
}

// metaLabel is the discovery label Prometheus gives a pod label.
func metaLabel(podLabel string) string {
	var b strings.Builder
	for _, r := range podLabel {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return "__meta_kubernetes_pod_label_" + b.String()
}
