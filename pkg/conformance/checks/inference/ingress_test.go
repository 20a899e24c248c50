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
		"RouteToInferencePool/TrafficReachesPool": conformance.Skipped,
		"MissingPoolRejected":                     conformance.Passed,
	})
	checktest.ExpectSkippedOnKwok(t, res, "RouteToInferencePool/TrafficReachesPool")
	checktest.ExpectTranscript(t, res,
		"kind: InferencePool",
		"failureMode: FailOpen",
		"status of InferencePool probe-pool for Gateway inference-ingress\nAccepted=True",
		"--url=http://stand-in-",
		"/v1/infer",
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
