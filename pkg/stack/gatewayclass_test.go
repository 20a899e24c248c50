package stack_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The envoy-gateway-class component gives Envoy Gateway, whose chart
// creates no GatewayClass, the class Envoy Gateway's controller accepts.
func TestEnvoyGatewayClassComponent(t *testing.T) {
	c := builtinComponent(t, "envoy-gateway-class")
	if len(c.DependsOn) != 1 || c.DependsOn[0] != "envoy-gateway" {
		t.Errorf("dependsOn = %v, want the implementation first", c.DependsOn)
	}
	objs, err := renderEmbedded(t, "gateway-class", c.Namespace, c.Values)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].GetKind() != "GatewayClass" || objs[0].GetAPIVersion() != "gateway.networking.k8s.io/v1" {
		t.Fatalf("rendered %v, want one gateway.networking.k8s.io/v1 GatewayClass", objs)
	}
	gc := objs[0]
	if gc.GetName() != "eg" {
		t.Errorf("name = %s", gc.GetName())
	}
	if got, _, _ := unstructured.NestedString(gc.Object, "spec", "controllerName"); got != "gateway.envoyproxy.io/gatewayclass-controller" {
		t.Errorf("controllerName = %q: Envoy Gateway would not accept the class", got)
	}
	for _, missing := range []map[string]any{{"name": "eg"}, {"controllerName": "x/y"}} {
		if _, err := renderEmbedded(t, "gateway-class", "ns", missing); err == nil || !strings.Contains(err.Error(), "is required") {
			t.Errorf("rendering with only %v: %v, want an error naming the missing value", missing, err)
		}
	}
}
