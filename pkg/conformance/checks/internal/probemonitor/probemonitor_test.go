package probemonitor

import (
	"maps"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kaic-dev/kaic/internal/charttest"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/stacks"
)

// rendered renders the built-in component kaic-probe-monitor with its
// values, as kaic installs it, and returns its one PodMonitor.
func rendered(t *testing.T) *unstructured.Unstructured {
	t.Helper()
	catalog, err := profile.LoadComponentCatalog(stacks.FS)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := catalog.Get("kaic-probe-monitor")
	if !ok {
		t.Fatal("no built-in component kaic-probe-monitor")
	}
	if c.Helm == nil || c.Helm.Chart != "kaic://kaic-probe-monitor" || c.Namespace != "monitoring" {
		t.Fatalf("built-in component %+v", c)
	}
	objs, err := charttest.RenderEmbedded(t, "kaic-probe-monitor", c.Namespace, maps.Clone(c.Values))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].GetKind() != "PodMonitor" {
		t.Fatalf("rendered %d objects, want one PodMonitor", len(objs))
	}
	return objs[0]
}

// TestChartIsUsable: what the chart installs is what the checks look for,
// with the run label copied onto the series.
func TestChartIsUsable(t *testing.T) {
	u := rendered(t)
	if got := u.GetLabels()[NameLabel]; got != Name {
		t.Errorf("label %s=%q, want %q: Find would not list it", NameLabel, got, Name)
	}
	m, why := Usable(u)
	if m == nil {
		t.Fatalf("the chart's PodMonitor is not usable: %s", why)
	}
	want := map[string]string{"app.kubernetes.io/name": "kaic-probe", "kaic.dev/scrape": "probe"}
	if !maps.Equal(m.PodLabels, want) {
		t.Errorf("pod labels %v, want %v", m.PodLabels, want)
	}
	if !m.RunLabel {
		t.Error("the chart's PodMonitor does not copy kaic.dev/run onto the series as kaic_run")
	}
	if m.Interval != "2s" {
		t.Errorf("interval %q, want the component's 2s", m.Interval)
	}
	if got := m.ScrapePool(); got != "podMonitor/monitoring/kaic-probe/" {
		t.Errorf("scrape pool %q", got)
	}
	if got := m.Labels(map[string]string{"a": "b"}); len(got) != 3 || got["a"] != "b" || got["kaic.dev/scrape"] != "probe" {
		t.Errorf("Labels = %v", got)
	}
}

// TestUsableRefuses: a monitor a check cannot rely on by labelling its pod
// is refused with the reason.
func TestUsableRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, path, want string
		set              func(spec map[string]any)
	}{
		{"one namespace", "", "every namespace", func(s map[string]any) {
			s["namespaceSelector"] = map[string]any{"matchNames": []any{"monitoring"}}
		}},
		{"expressions", "", "match expressions", func(s map[string]any) {
			s["selector"].(map[string]any)["matchExpressions"] = []any{map[string]any{"key": "x", "operator": "Exists"}}
		}},
		{"no labels", "", "by no label", func(s map[string]any) { s["selector"] = map[string]any{} }},
		{"other port", "", `no port "http"`, func(s map[string]any) {
			s["podMetricsEndpoints"].([]any)[0].(map[string]any)["port"] = "metrics"
		}},
		{"other path", "", `no port "http" on path /metrics`, func(s map[string]any) {
			s["podMetricsEndpoints"].([]any)[0].(map[string]any)["path"] = "/stats"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := rendered(t)
			tc.set(u.Object["spec"].(map[string]any))
			m, why := Usable(u)
			if m != nil || !strings.Contains(why, tc.want) {
				t.Errorf("Usable = %v, %q; want refused with %q", m, why, tc.want)
			}
		})
	}
}

// TestRunLabelRule: only a relabeling that copies the pod label unchanged
// counts.
func TestRunLabelRule(t *testing.T) {
	rule := func(kv ...any) map[string]any {
		r := map[string]any{"sourceLabels": []any{"__meta_kubernetes_pod_label_kaic_dev_run"}, "targetLabel": "kaic_run"}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(r, kv[i].(string))
				continue
			}
			r[kv[i].(string)] = kv[i+1]
		}
		return r
	}
	for _, tc := range []struct {
		rule map[string]any
		want bool
	}{
		{rule(), true},
		{rule("action", "replace", "regex", "(.*)", "replacement", "$1"), true},
		{rule("action", "labelmap"), false},
		{rule("targetLabel", "run"), false},
		{rule("sourceLabels", []any{"__meta_kubernetes_pod_label_run"}), false},
		{rule("replacement", "fixed"), false},
		{rule("regex", "run-(.*)"), false},
		{rule("sourceLabels", nil), false},
	} {
		if got := copiesRunLabel(tc.rule); got != tc.want {
			t.Errorf("copiesRunLabel(%v) = %v, want %v", tc.rule, got, tc.want)
		}
	}
}
