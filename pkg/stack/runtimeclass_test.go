package stack_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The gvisor component creates the RuntimeClass the offline kind node
// image's containerd serves (handler runsc, hack/kindnode).
func TestGVisorRuntimeClassComponent(t *testing.T) {
	c := builtinComponent(t, "gvisor")
	objs, err := renderEmbedded(t, "runtime-class", c.Namespace, c.Values)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].GetKind() != "RuntimeClass" || objs[0].GetAPIVersion() != "node.k8s.io/v1" {
		t.Fatalf("rendered %v, want one node.k8s.io/v1 RuntimeClass", objs)
	}
	rc := objs[0]
	if h, _, _ := unstructured.NestedString(rc.Object, "handler"); rc.GetName() != "gvisor" || h != "runsc" {
		t.Errorf("RuntimeClass %s with handler %q, want gvisor with runsc", rc.GetName(), h)
	}
	if _, found, _ := unstructured.NestedMap(rc.Object, "scheduling"); found {
		t.Errorf("scheduling set without a nodeSelector: %v", rc.Object["scheduling"])
	}

	pinned, err := renderEmbedded(t, "runtime-class", "ns", map[string]any{"name": "kata", "handler": "kata-qemu", "nodeSelector": map[string]any{"katacontainers.io/kata-runtime": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	if sel, _, _ := unstructured.NestedStringMap(pinned[0].Object, "scheduling", "nodeSelector"); sel["katacontainers.io/kata-runtime"] != "true" {
		t.Errorf("nodeSelector %v", sel)
	}
	for _, missing := range []map[string]any{{"name": "gvisor"}, {"handler": "runsc"}} {
		if _, err := renderEmbedded(t, "runtime-class", "ns", missing); err == nil || !strings.Contains(err.Error(), "is required") {
			t.Errorf("rendering with only %v: %v, want an error naming the missing value", missing, err)
		}
	}
}
