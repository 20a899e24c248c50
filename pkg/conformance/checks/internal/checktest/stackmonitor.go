package checktest

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kaic-dev/kaic/internal/charttest"
	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/stacks"
)

// ServeMonitoring serves prometheus-operator's monitoring.coreos.com/v1
// resource plural of kind, schema-less (which is all the checks need of
// its CRDs), until the end of the test when remove is set.
func ServeMonitoring(t *testing.T, env *testenv.Env, plural, kind string, remove bool) {
	t.Helper()
	name := plural + ".monitoring.coreos.com"
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"group": "monitoring.coreos.com",
			"scope": "Namespaced",
			"names": map[string]any{"plural": plural, "singular": strings.ToLower(kind), "kind": kind, "listKind": kind + "List"},
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
			}},
		},
	}}
	crds := env.Dynamic().Resource(testenv.CRDResource)
	if _, err := crds.Create(t.Context(), crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if remove {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := crds.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("deleting CRD %s: %v", name, err)
				return
			}
			if err := waitServed(ctx, env, plural, false); err != nil {
				t.Errorf("%s are still served: %v", plural, err)
			}
		})
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := waitServed(ctx, env, plural, true); err != nil {
		t.Fatalf("%s CRD not served: %v", kind, err)
	}
}

// waitServed waits until discovery lists monitoring.coreos.com/v1
// plural, or no longer does.
func waitServed(ctx context.Context, env *testenv.Env, plural string, served bool) error {
	return wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		list, err := env.Clientset().Discovery().ServerResourcesForGroupVersion("monitoring.coreos.com/v1")
		switch {
		case apierrors.IsNotFound(err):
			return !served, nil
		case err != nil:
			return false, nil
		}
		return slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == plural }) == served, nil
	})
}

// InstallStackProbeMonitor serves PodMonitors and creates, until the end of
// the test, what kaic's stack component kaic-probe-monitor installs,
// rendered from its chart with the component's values, in its namespace
// (created when missing). It returns the objects created.
func InstallStackProbeMonitor(t *testing.T, env *testenv.Env) []*unstructured.Unstructured {
	t.Helper()
	// First, so that its removal runs last.
	ServeMonitoring(t, env, "podmonitors", "PodMonitor", true)
	catalog, err := profile.LoadComponentCatalog(stacks.FS)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := catalog.Get("kaic-probe-monitor")
	if !ok || c.Helm == nil {
		t.Fatal("no built-in component kaic-probe-monitor with a chart")
	}
	objs, err := charttest.RenderEmbedded(t, strings.TrimPrefix(c.Helm.Chart, "kaic://"), c.Namespace, maps.Clone(c.Values))
	if err != nil {
		t.Fatal(err)
	}
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": c.Namespace}}}
	if _, err := env.Dynamic().Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(t.Context(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	res := env.Dynamic().Resource(schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "podmonitors"})
	for _, o := range objs {
		if o.GetKind() != "PodMonitor" {
			t.Fatalf("the chart renders a %s, which this helper does not create", o.GetKind())
		}
		if _, err := res.Namespace(c.Namespace).Create(t.Context(), o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := res.Namespace(c.Namespace).Delete(ctx, o.GetName(), metav1.DeleteOptions{}); err != nil {
				t.Errorf("deleting PodMonitor %s: %v", o.GetName(), err)
			}
		})
	}
	return objs
}
