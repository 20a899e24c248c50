package inference

import (
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kaic-dev/kaic/pkg/conditions"
	"github.com/kaic-dev/kaic/pkg/conformance"
)

// Gateway API Inference Extension group and version the ingress check
// needs.
const (
	InferenceGroup        = "inference.networking.k8s.io"
	InferenceGroupVersion = InferenceGroup + "/v1"
)

var inferencePoolsGVR = schema.GroupVersionResource{Group: InferenceGroup, Version: "v1", Resource: "inferencepools"}

// Names of the objects the advanced_inference_ingress check creates.
const (
	ingressGateway = "inference-ingress"
	poolBackend    = "pool-model"
	poolName       = "probe-pool"
	poolRoute      = "pool-route"
	poolHost       = "pool.inference.kaic.test"
	missingPool    = "no-such-pool"
	missingPoolRt  = "missing-pool"
	missingPoolHst = "missing-pool.inference.kaic.test"
	// endpointPicker is the Service the pool names as its endpoint picker.
	// None runs (kaic has no endpoint picker); the pool fails open, so
	// the implementation forwards to a pod of the pool itself.
	endpointPicker     = "probe-pool-endpoint-picker"
	endpointPickerPort = 9002
	poolReplicas       = 2
)

// IngressCheck returns the advanced_inference_ingress check with default
// options.
func IngressCheck() conformance.Check { return IngressCheckWith(Options{}) }

// IngressCheckWith returns the advanced_inference_ingress check with o.
func IngressCheckWith(o Options) conformance.Check {
	o = o.withDefaults()
	return conformance.NewCheck(IngressID, func(t *conformance.T, env *conformance.Env) { runIngress(t, env, o) })
}

func runIngress(t *conformance.T, env *conformance.Env, o Options) {
	t.Step("Discover the resources of %s", InferenceGroupVersion)
	served, err := conformance.ServedResources(t, env, InferenceGroupVersion)
	switch {
	case apierrors.IsNotFound(err) || (err == nil && !slices.Contains(served, "inferencepools")):
		t.Skipf("the API server does not serve %s inferencepools: the Gateway API Inference Extension is not installed, so no route can target an InferencePool", InferenceGroupVersion)
	case err != nil:
		t.Fatalf("discovering %s: %v", InferenceGroupVersion, err)
	}
	gatewayAPIServed(t, env)
	class := findGatewayClass(t, env, o.GatewayClass)
	t.Step("Run backend %s: %d probe pods answering with their pod names, without a Service", poolBackend, poolReplicas)
	startBackend(t, env, backend{Name: poolBackend, Replicas: poolReplicas, NoService: true})
	gw := createGateway(t, env, ingressGateway, class, o.ReadyTimeout)

	t.Run("RouteToInferencePool", func(t *conformance.T) {
		t.Step("Create InferencePool %s selecting the pods of %s on port %d, and route host %s to it", poolName, poolBackend, backendPort, poolHost)
		t.Apply(poolObject(poolName, backendLabels(poolBackend)))
		t.Apply(routeObject(poolRoute, ingressGateway, poolHost, map[string]any{"backendRefs": []any{poolRef(poolName)}}))
		waitRouteResolved(t, env, httpRoutesGVR, poolRoute, ingressGateway, o.ReadyTimeout)
		pool, err := waitObject(t.Context(), env, inferencePoolsGVR, env.Namespace, poolName, o.ReadyTimeout, func(u *unstructured.Unstructured) bool {
			return current(u, findCondition(parentStatus(u, ingressGateway), "Accepted")) == "True"
		})
		if err != nil {
			t.Fatalf("InferencePool %s is not Accepted by Gateway %s within %s: %s", poolName, ingressGateway, o.ReadyTimeout, describeParents(pool, ingressGateway))
		}
		t.Observe("status of InferencePool "+poolName+" for Gateway "+ingressGateway, strings.Join(conditions.Strings(parentStatus(pool, ingressGateway)), ", "))

		t.Run("TrafficReachesPool", func(t *conformance.T) {
			waitBackends(t, env, o.ReadyTimeout, poolBackend)
			pods, err := env.Client.CoreV1().Pods(env.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: labels.SelectorFromSet(backendLabels(poolBackend)).String()})
			if err != nil {
				t.Fatalf("listing the pods of %s: %v", poolBackend, err)
			}
			var members []string
			for _, p := range pods.Items {
				if p.DeletionTimestamp == nil {
					members = append(members, p.Name)
				}
			}
			url := gatewayURL(t, env, gw)
			rep := sendRequests(t, env, "requests-pool", strings.TrimSuffix(url, "/")+"/v1/infer", o.Requests, o.TrafficTimeout, "Host:"+poolHost, ModelHeader+":"+poolName)
			expectOnly(t, rep, members...)
			t.Logf("all %d requests were served by pods of InferencePool %s: %v", rep.Requests, poolName, rep.Backends)
		})
	})

	t.Run("MissingPoolRejected", func(t *conformance.T) {
		t.Step("Route host %s to InferencePool %s, which does not exist: the controller must not resolve it", missingPoolHst, missingPool)
		t.Apply(routeObject(missingPoolRt, ingressGateway, missingPoolHst, map[string]any{"backendRefs": []any{poolRef(missingPool)}}))
		c := waitRouteUnresolved(t, env, missingPoolRt, ingressGateway, o.ReadyTimeout)
		if c.Reason != "BackendNotFound" {
			t.Errorf("HTTPRoute %s to a missing InferencePool is %s, want reason BackendNotFound", missingPoolRt, c)
		}
	})
}

// poolObject is an InferencePool of the pods with selector, on the probe's
// port, whose endpoint picker fails open.
func poolObject(name string, selector map[string]string) *unstructured.Unstructured {
	match := map[string]any{}
	for k, v := range selector {
		match[k] = v
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": InferenceGroupVersion,
		"kind":       "InferencePool",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"selector":    map[string]any{"matchLabels": match},
			"targetPorts": []any{map[string]any{"number": int64(backendPort)}},
			"endpointPickerRef": map[string]any{
				"name":        endpointPicker,
				"port":        map[string]any{"number": int64(endpointPickerPort)},
				"failureMode": "FailOpen",
			},
		},
	}}
}

// poolRef is a backendRef to an InferencePool.
func poolRef(name string) map[string]any {
	return map[string]any{"group": InferenceGroup, "kind": "InferencePool", "name": name}
}
