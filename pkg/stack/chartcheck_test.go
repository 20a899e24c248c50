package stack_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
)

// A readiness name the chart never renders and a values key its
// values.yaml does not have are each named; what the chart does render and
// know passes, subcharts and free-form maps included.
func TestCheckAgainstChart(t *testing.T) {
	in, err := stack.New(stack.WithCache(nil))
	if err != nil {
		t.Fatal(err)
	}
	good := profile.Component{
		Name:      "check",
		Namespace: "check-system",
		Helm:      &profile.HelmChart{Chart: "testdata/checkchart", Version: "0.1.0", ReleaseName: "chk"},
		Values: map[string]any{
			"controller": map[string]any{
				"image":        map[string]any{"tag": "1.1"},
				"nodeSelector": map[string]any{"kaic.dev/any": "label"},
			},
			"logLevel": "debug",
			"extra":    map[string]any{"enabled": true, "agent": map[string]any{"port": 9091}},
			"global":   map[string]any{"anything": true},
		},
		Readiness: &profile.Readiness{
			CRDs:        []string{"widgets.checkchart.test.kaic.dev"},
			Deployments: []string{"chk-controller", "check-system/chk-controller"},
			DaemonSets:  []string{"chk-agent"},
		},
	}
	if err := in.CheckAgainstChart(t.Context(), good); err != nil {
		t.Fatalf("a component that matches its chart: %v", err)
	}

	tests := []struct {
		name string
		edit func(c *profile.Component)
		want []string
	}{
		{"deployment the chart does not render", func(c *profile.Component) {
			c.Readiness.Deployments = []string{"chk-manager"}
		}, []string{"readiness.deployments names Deployment check-system/chk-manager, which it never creates"}},
		{"deployment in another namespace", func(c *profile.Component) {
			c.Readiness.Deployments = []string{"kube-system/chk-controller"}
		}, []string{"Deployment kube-system/chk-controller"}},
		{"daemonset and crd", func(c *profile.Component) {
			c.Readiness.DaemonSets = []string{"chk-controller"}
			c.Readiness.CRDs = []string{"gadgets.checkchart.test.kaic.dev"}
		}, []string{"DaemonSet check-system/chk-controller", "CustomResourceDefinition gadgets.checkchart.test.kaic.dev"}},
		{"nested values key", func(c *profile.Component) {
			c.Values = map[string]any{"controller": map[string]any{"image": map[string]any{"tagg": "1.1"}}}
		}, []string{"values key controller.image.tagg is not in the chart's values.yaml"}},
		{"top-level values key", func(c *profile.Component) {
			c.Values = map[string]any{"loglevel": "debug"}
		}, []string{"values key loglevel "}},
		{"subchart values key", func(c *profile.Component) {
			c.Values = map[string]any{"extra": map[string]any{"agent": map[string]any{"prot": 1}}}
		}, []string{"values key extra.agent.prot "}},
		{"both kinds at once", func(c *profile.Component) {
			c.Readiness.Deployments = []string{"nope"}
			c.Values = map[string]any{"nope": 1}
		}, []string{"Deployment check-system/nope", "values key nope "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			r := *good.Readiness
			c.Readiness = &r
			tt.edit(&c)
			err := in.CheckAgainstChart(t.Context(), c)
			var mismatch *stack.ChartMismatchError
			if !errors.As(err, &mismatch) {
				t.Fatalf("got %v, want a ChartMismatchError", err)
			}
			if mismatch.Component != "check" || !strings.Contains(err.Error(), "chart checkchart 0.1.0") {
				t.Errorf("error %q does not name the component and chart", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if len(mismatch.Problems) != len(tt.want) {
				t.Errorf("problems %q, want %d", mismatch.Problems, len(tt.want))
			}
		})
	}
}
