package stack_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// deleteCRDAtEnd removes a cluster-scoped CRD when the test ends: Helm
// never deletes the CRDs of a chart's crds/ directory.
func deleteCRDAtEnd(t *testing.T, env *testenv.Env, name string) {
	t.Cleanup(func() {
		_ = env.Dynamic().Resource(crdResource).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// Custom resources whose status does not follow the Kubernetes conventions
// (kstatus cannot compute it) or that have no status at all do not hold up
// a release; one with a standard status that says it is not ready does.
func TestCustomResourcesWithoutStandardStatus(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	deleteCRDAtEnd(t, env, "gadgets.odd.test.kaic.dev")
	const timeout = 20 * time.Second

	odd := writeChart(t, "odd-status", "0.1.0", map[string]string{
		"crds/gadgets.yaml": crdYAML("odd.test.kaic.dev", "Gadget", "gadgets"),
		"templates/gadgets.yaml": `apiVersion: odd.test.kaic.dev/v1
kind: Gadget
metadata:
  name: string-generation
status:
  observedGeneration: first-pass
  phase: Running
---
apiVersion: odd.test.kaic.dev/v1
kind: Gadget
metadata:
  name: condition-map
status:
  conditions:
    ready: true
---
apiVersion: odd.test.kaic.dev/v1
kind: Gadget
metadata:
  name: no-status
spec:
  size: 1
`,
	})
	in := newInstaller(t, env, nil)
	start := time.Now()
	recs, err := in.Install(t.Context(), []profile.Component{localComponent("odd-status", ns, odd, timeout, profile.Readiness{})})
	if err != nil {
		t.Fatalf("a chart with custom resources without a standard status: %v", err)
	}
	if elapsed := time.Since(start); elapsed > timeout/2 {
		t.Errorf("install took %s: the wait hung on the custom resources", elapsed)
	}
	if r := recs[0]; r.Action != stack.ActionInstalled {
		t.Errorf("record %+v", r)
	}
	gadgets := schema.GroupVersionResource{Group: "odd.test.kaic.dev", Version: "v1", Resource: "gadgets"}
	g, err := env.Dynamic().Resource(gadgets).Namespace(ns).Get(t.Context(), "string-generation", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _, _ := unstructuredString(g.Object, "status", "observedGeneration"); v != "first-pass" {
		t.Fatalf("the gadget's status is %v: the test does not exercise a non-standard status", g.Object["status"])
	}

	// The same through kaic's own wait, for manifests.
	file := filepath.Join(t.TempDir(), "gadget.yaml")
	if err := os.WriteFile(file, []byte("apiVersion: odd.test.kaic.dev/v1\nkind: Gadget\nmetadata:\n  name: from-manifests\nstatus:\n  observedGeneration: first-pass\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	_, err = in.Install(t.Context(), []profile.Component{{
		Name: "odd-manifests", Namespace: ns, Manifests: &profile.Manifests{Files: []string{file}},
		Readiness: &profile.Readiness{Timeout: profile.Duration{Duration: timeout}},
	}})
	if err != nil {
		t.Fatalf("manifests with a custom resource without a standard status: %v", err)
	}
	if elapsed := time.Since(start); elapsed > timeout/2 {
		t.Errorf("applying manifests took %s: the wait hung on the custom resource", elapsed)
	}

	// A standard Ready condition that is False is still waited for.
	standard := writeChart(t, "standard-status", "0.1.0", map[string]string{
		"templates/gadget.yaml": `apiVersion: odd.test.kaic.dev/v1
kind: Gadget
metadata:
  name: starting
status:
  conditions:
    - type: Ready
      status: "False"
      reason: Starting
      message: waiting for its operator
`,
	})
	_, err = in.Install(t.Context(), []profile.Component{localComponent("standard-status", ns, standard, 8*time.Second, profile.Readiness{})})
	var notReady *stack.NotReadyError
	if !errors.As(err, &notReady) {
		t.Fatalf("a custom resource whose Ready condition is False: error %v, want a NotReadyError", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "Gadget "+ns+"/starting") || !strings.Contains(msg, "waiting for its operator") {
		t.Errorf("error does not name the unready gadget and why:\n%s", msg)
	}
}

func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[f]
	}
	s, ok := cur.(string)
	return s, ok, nil
}
