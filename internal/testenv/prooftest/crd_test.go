package prooftest

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/internal/testenv"
)

const fieldManager = "kaic-prooftest"

const widgetCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.proof.kaic.dev
spec:
  group: proof.kaic.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
`

var widgets = schema.GroupVersionResource{Group: "proof.kaic.dev", Version: "v1", Resource: "widgets"}

func TestServerSideApplyCRDThenCustomResource(t *testing.T) {
	env := testenv.Shared(t)
	dyn := env.Dynamic()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	crd := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(widgetCRD), &crd.Object); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(testenv.CRDResource).Apply(ctx, crd.GetName(), crd, metav1.ApplyOptions{FieldManager: fieldManager}); err != nil {
		t.Fatalf("apply CRD: %v", err)
	}
	began := time.Now()
	if err := testenv.WaitForCRDEstablished(ctx, dyn, crd.GetName()); err != nil {
		t.Fatal(err)
	}
	t.Logf("CRD %s established %s after apply", crd.GetName(), time.Since(began))

	ns := createNamespace(ctx, t, env, "crd-apply-")
	widget := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "proof.kaic.dev/v1",
		"kind":       "Widget",
		"metadata":   map[string]any{"name": "first", "namespace": ns},
		"spec":       map[string]any{"size": int64(3)},
	}}
	applied, err := dyn.Resource(widgets).Namespace(ns).Apply(ctx, "first", widget, metav1.ApplyOptions{FieldManager: fieldManager})
	if err != nil {
		t.Fatalf("apply Widget: %v", err)
	}
	if size, _, _ := unstructured.NestedInt64(applied.Object, "spec", "size"); size != 3 {
		t.Errorf("spec.size = %d, want 3", size)
	}
	if managers := applied.GetManagedFields(); len(managers) != 1 || managers[0].Manager != fieldManager || managers[0].Operation != metav1.ManagedFieldsOperationApply {
		t.Errorf("managedFields = %+v, want one Apply entry by %s", managers, fieldManager)
	}

	// The CRD's schema is enforced: the API server validates custom resources.
	invalid := widget.DeepCopy()
	invalid.SetName("invalid")
	_ = unstructured.SetNestedField(invalid.Object, int64(0), "spec", "size")
	if _, err := dyn.Resource(widgets).Namespace(ns).Apply(ctx, "invalid", invalid, metav1.ApplyOptions{FieldManager: fieldManager}); err == nil {
		t.Error("a Widget with spec.size 0 was accepted despite minimum: 1")
	}
}

func TestWaitForCRDEstablishedEndsWithContext(t *testing.T) {
	env := testenv.Shared(t)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if err := testenv.WaitForCRDEstablished(ctx, env.Dynamic(), "absent.proof.kaic.dev"); err == nil {
		t.Fatal("waiting for a CRD that does not exist succeeded")
	}
}
