package cmd

import (
	"bytes"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kaic-dev/kaic/internal/charttest"
	"github.com/kaic-dev/kaic/pkg/probe/image"
)

// kaic's own charts run the probe image with arguments after its
// entrypoint: with the charts' defaults and with the most verbose logging
// they offer, every such container must name a kaic command with flags it
// accepts, or the pods crash on start.
func TestEmbeddedChartsRunValidProbeCommands(t *testing.T) {
	const probeRef = "kaic.dev/probe:test"
	for _, tc := range []struct {
		chart  string
		values map[string]any
	}{
		{"kaic-fake-gpu", map[string]any{"image": probeRef}},
		{"kaic-fake-gpu", map[string]any{"image": probeRef, "logVerbosity": 2}},
		{"kaic-fake-gpu", map[string]any{"image": probeRef, "mode": "device-plugin", "logVerbosity": 2}},
		{"kaic-metrics-adapter", map[string]any{"image": probeRef}},
	} {
		objs, err := charttest.RenderEmbedded(t, tc.chart, "kaic-test", tc.values)
		if err != nil {
			t.Fatalf("%s: %v", tc.chart, err)
		}
		seen := 0
		for _, o := range objs {
			var tmpl corev1.PodTemplateSpec
			switch o.GetKind() {
			case "DaemonSet":
				var ds appsv1.DaemonSet
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &ds); err != nil {
					t.Fatal(err)
				}
				tmpl = ds.Spec.Template
			case "Deployment":
				var d appsv1.Deployment
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
					t.Fatal(err)
				}
				tmpl = d.Spec.Template
			default:
				continue
			}
			for _, c := range tmpl.Spec.Containers {
				if c.Image != probeRef {
					continue
				}
				seen++
				root := NewRootCommand(&bytes.Buffer{}, &bytes.Buffer{})
				args := append(append([]string(nil), image.Entrypoint[1:]...), c.Args...)
				cmd, rest, err := root.Find(args)
				if err == nil {
					err = cmd.ParseFlags(rest)
				}
				if err != nil {
					t.Errorf("%s %v: %q: %v", tc.chart, tc.values, args, err)
				}
			}
		}
		if seen == 0 {
			t.Errorf("%s renders no container running the probe image", tc.chart)
		}
	}
}
