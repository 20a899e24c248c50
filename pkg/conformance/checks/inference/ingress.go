package inference

import (
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kaic-dev/kaic/pkg/conditions"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/probe"
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
	poolName       = "probe-pool"
	poolRoute      = "pool-route"
	poolHost       = "pool.inference.kaic.test"
	missingPool    = "no-such-pool"
	missingPoolRt  = "missing-pool"
	missingPoolHst = "missing-pool.inference.kaic.test"
	// modelServerA and modelServerB are the pool's two model servers, one
	// pod each, told to report different loads.
	modelServerA = "pool-model-a"
	modelServerB = "pool-model-b"
	// poolModel is the model the requests name in their JSON body.
	poolModel = "probe-model"
	// endpointPicker is the pool's endpoint picker: its Deployment,
	// Service, ServiceAccount, Role and RoleBinding.
	endpointPicker     = "probe-pool-epp"
	endpointPickerPort = 9002
	// endpointPickerPortName names the picker Service's gRPC port.
	endpointPickerPortName = "grpc-ext-proc"
	endpointPickerHealth   = 9003
	endpointPickerMetrics  = 9090
	// poolLabel selects the pool's pods.
	poolLabel = "kaic.dev/inference-pool"
)

// DefaultEndpointPickerImage is the Gateway API Inference Extension's
// endpoint picker at the release whose CRDs the built-in
// gateway-api-inference-extension component installs.
const DefaultEndpointPickerImage = "registry.k8s.io/gateway-api-inference-extension/epp:v1.5.0"

// The loads the model servers report (vLLM's queue depth and KV-cache use)
// and the share of requests the idle one must get.
//
// The picker's default scheduling profile scores each pod by queue depth
// (weight 2: 1 for the shortest queue, 0 for the longest), KV-cache use
// (weight 2: 1 minus the fraction used) and prefix-cache affinity (weight
// 3: the share of the prompt's prefix blocks the pod was last sent; the
// requests' prompts share no prefix, so 0), and takes the highest score.
// The idle pod scores 4, the busy one 0.2: once the picker has scraped
// both, every request goes to the idle pod. steerShare leaves room for a
// request or two around the moment the picker refreshes; a gateway that
// spreads requests without asking the picker sends about half to each pod,
// and 95 of 100 on one pod by chance has a probability below 1e-20.
var (
	busyLoad   = probe.ModelLoad{Waiting: 20, Running: 4, KVCache: 0.9}
	idleLoad   = probe.ModelLoad{Waiting: 0, Running: 0, KVCache: 0.05}
	steerShare = 0.95
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
	class := findGatewayClass(t, env, o.ingressClass())
	t.Step("Run model servers %s (reporting %s) and %s (reporting %s): probe pods that pass for vLLM, one each, in InferencePool %s", modelServerA, busyLoad, modelServerB, idleLoad, poolName)
	startModelServer(t, env, modelServerA, busyLoad)
	startModelServer(t, env, modelServerB, idleLoad)
	t.Step("Run the pool's endpoint picker %s (image %s) with a ServiceAccount and a Role to read the pool and its pods", endpointPicker, o.EndpointPickerImage)
	startEndpointPicker(t, env, o.EndpointPickerImage)
	gw := createGateway(t, env, ingressGateway, class, o.ReadyTimeout)

	t.Run("RouteToInferencePool", func(t *conformance.T) {
		t.Step("Create InferencePool %s selecting %s=%s on port %d, its endpoint picker %s failing closed, and route host %s to it", poolName, poolLabel, poolName, backendPort, endpointPicker, poolHost)
		t.Apply(poolObject(poolName, map[string]string{poolLabel: poolName}))
		t.Apply(routeObject(poolRoute, ingressGateway, poolHost, map[string]any{"backendRefs": []any{poolRef(poolName)}}))
		waitRouteResolved(t, env, httpRoutesGVR, poolRoute, ingressGateway, o.ReadyTimeout)
		pool, err := waitObject(t.Context(), env, inferencePoolsGVR, env.Namespace, poolName, o.ReadyTimeout, func(u *unstructured.Unstructured) bool {
			return current(u, findCondition(parentStatus(u, ingressGateway), "Accepted")) == "True"
		})
		if err != nil {
			t.Fatalf("InferencePool %s is not Accepted by Gateway %s within %s: %s", poolName, ingressGateway, o.ReadyTimeout, describeParents(pool, ingressGateway))
		}
		t.Observe("status of InferencePool "+poolName+" for Gateway "+ingressGateway, strings.Join(conditions.Strings(parentStatus(pool, ingressGateway)), ", "))

		t.Run("PickerSteersByLoad", func(t *conformance.T) { steerByLoad(t, env, gw, o) })
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

// pickerWarmUp bounds the requests sent through the Gateway before the
// counted ones, until one is answered. The picker's Service having a ready
// endpoint does not mean the nodes' Service rules have caught up, nor that
// the Gateway's connection to the picker, refused before, has been retried:
// seen on a busy 2-core kind cluster, every request of a phase refused
// within 8 s of the endpoint being ready. The counted requests are judged
// as before.
const pickerWarmUp = 60 * time.Second

// steerByLoad sends requests through the Gateway while model server A
// reports a deep queue and a full KV cache and B is idle, then with the
// loads swapped: each time the idle one must serve them.
func steerByLoad(t *conformance.T, env *conformance.Env, gw *unstructured.Unstructured, o Options) {
	waitBackends(t, env, o.ReadyTimeout, modelServerA, modelServerB)
	podA, podB := modelServerPod(t, env, modelServerA), modelServerPod(t, env, modelServerB)
	skipWithoutContainers(t, env, podA)
	if err := waitDeployment(t, env, endpointPicker, o.ReadyTimeout); err != nil {
		describePicker(t, env)
		t.Unverifiedf("endpoint picker %s (image %s) is not ready within %s (%v): without it the routing it decides cannot be shown", endpointPicker, o.EndpointPickerImage, o.ReadyTimeout, err)
	}
	pickerP := onePod(t, env, endpointPicker)
	picker := pickerP.Name
	waitPickerServed(t, env, pickerP, o.ReadyTimeout)
	url := strings.TrimSuffix(gatewayURL(t, env, gw), "/") + "/v1/completions"
	phases := []struct {
		name       string
		busy, idle *corev1.Pod
	}{{"requests-pool-b", podA, podB}, {"requests-pool-a", podB, podA}}
	for i, ph := range phases {
		if i > 0 {
			t.Step("Swap the loads: %s now reports %s, %s reports %s", ph.busy.Name, busyLoad, ph.idle.Name, idleLoad)
			setModelLoad(t, env, ph.busy.Name, busyLoad)
			setModelLoad(t, env, ph.idle.Name, idleLoad)
		}
		seen := waitPickerSees(t, env, picker, map[string]int{ph.busy.Name: busyLoad.Waiting, ph.idle.Name: idleLoad.Waiting}, o.ReadyTimeout)
		if !seen {
			t.Unverifiedf("endpoint picker %s never reported the queue depths the model servers serve (%s: %d, %s: %d) within %s: it does not read their load, so no routing by load can be shown", picker, ph.busy.Name, busyLoad.Waiting, ph.idle.Name, idleLoad.Waiting, o.ReadyTimeout)
		}
		rep := sendCompletions(t, env, ph.name, url, poolModel, o.Requests, pickerWarmUp, o.TrafficTimeout, "Host:"+poolHost)
		t.Logf("%s (%s) served %d, %s (%s) served %d of %d requests; statuses %v", ph.idle.Name, idleLoad, rep.Backends[ph.idle.Name], ph.busy.Name, busyLoad, rep.Backends[ph.busy.Name], rep.Requests, rep.Statuses)
		expectOnly(t, rep, ph.idle.Name, ph.busy.Name)
		if got, want := rep.Backends[ph.idle.Name], int(steerShare*float64(rep.Requests)+0.5); got < want {
			t.Fatalf("with %s reporting %s and %s idle, %s got %d of %d requests (want at least %d): the Gateway does not route where the endpoint picker, which sees those loads, points", ph.busy.Name, busyLoad, ph.idle.Name, ph.idle.Name, got, rep.Requests, want)
		}
	}
	t.Shown("requests to an InferencePool went to the model server its endpoint picker found idle, and followed when the loads were swapped")
}

// poolObject is an InferencePool of the pods with selector, on the probe's
// port, whose endpoint picker fails closed: no request reaches the pool
// without the picker's choice.
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
				"failureMode": "FailClose",
			},
		},
	}}
}

// poolRef is a backendRef to an InferencePool.
func poolRef(name string) map[string]any {
	return map[string]any{"group": InferenceGroup, "kind": "InferencePool", "name": name}
}
