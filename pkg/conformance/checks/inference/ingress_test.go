package inference

import (
	"testing"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
)

func TestAdvancedInferenceIngressPasses(t *testing.T) {
	env := gatewayEnv(t)
	res := run(t, env, IngressCheckWith(Options{GatewayClass: standInGatewayClass}), conformance.Should)
	if res.Status != conformance.Passed || res.TestName != "TestAdvancedInferenceIngress" {
		t.Fatalf("%s: status %s, reason %q", res.TestName, res.Status, res.Reason)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"RouteToInferencePool":                    conformance.Passed,
		"RouteToInferencePool/PickerSteersByLoad": conformance.Skipped,
		"MissingPoolRejected":                     conformance.Passed,
	})
	checktest.ExpectSkippedOnKwok(t, res, "RouteToInferencePool/PickerSteersByLoad")
	checktest.ExpectTranscript(t, res,
		"kind: InferencePool",
		"failureMode: FailClose",
		"name: probe-pool-epp",
		"image: "+DefaultEndpointPickerImage,
		"--pool-name=probe-pool",
		"kind: Role",
		"--waiting=20",
		"--kv-cache=0.05",
		"status of InferencePool probe-pool for Gateway inference-ingress\nAccepted=True",
		"deleted namespace "+res.Namespace,
	)
	checktest.ExpectCleanedUp(t, env, res)
}

func TestAdvancedInferenceIngressFailsWhenRoutesNeverAccepted(t *testing.T) {
	env := gatewayEnv(t)
	o := quick
	o.GatewayClass = routelessClass
	res := run(t, env, IngressCheckWith(o), conformance.Should)
	expectFailed(t, res, "HTTPRoute pool-route is not Accepted with ResolvedRefs by Gateway inference-ingress within 10s")
}

func TestAdvancedInferenceIngressFailsWhenMissingPoolResolves(t *testing.T) {
	env := gatewayEnv(t)
	o := quick
	o.GatewayClass = blindClass
	res := run(t, env, IngressCheckWith(o), conformance.Should)
	expectFailed(t, res, "HTTPRoute missing-pool references a backend that does not exist, yet Gateway inference-ingress reports ResolvedRefs=True")
}

// The picker's metrics name the queue depth it read from each model
// server; only that gauge counts. Since v1.5 the picker names each
// endpoint of a pod "<pod>-rank-<n>" (as the real v1.5.0 picker served it
// on kind): the pod's depth is its deepest rank's.
func TestParsePickerQueues(t *testing.T) {
	raw := []byte(`# HELP inference_pool_per_pod_queue_size The total number of requests pending in the model server queue for each underlying pod.
# TYPE inference_pool_per_pod_queue_size gauge
inference_pool_per_pod_queue_size{model_server_pod="pool-model-a-1-rank-0",name="probe-pool"} 20
inference_pool_per_pod_queue_size{model_server_pod="pool-model-a-1-rank-1",name="probe-pool"} 3
inference_pool_per_pod_queue_size{model_server_pod="pool-model-b-2",name="probe-pool"} 0
# TYPE inference_pool_ready_pods gauge
inference_pool_ready_pods{name="probe-pool"} 2
`)
	got, err := parsePickerQueues(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["pool-model-a-1"] != 20 || got["pool-model-b-2"] != 0 {
		t.Errorf("queues = %v", got)
	}
	if _, err := parsePickerQueues([]byte("not metrics {")); err == nil {
		t.Error("malformed metrics parsed")
	}
}
