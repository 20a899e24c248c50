package inference

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
)

// The shared control plane runs pods on one kwok node (which runs no
// containers) and gets the Gateway API and InferencePool CRDs and the
// stand-in controller of standin_test.go on first use.
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithNodes(testenv.Node{Name: "kwok-0"}))
}

var setupOnce struct {
	sync.Mutex
	done bool
}

// gatewayEnv returns the shared control plane with the CRDs and the
// stand-in controller.
func gatewayEnv(t *testing.T) *testenv.Env {
	t.Helper()
	env := testenv.Shared(t)
	setupOnce.Lock()
	defer setupOnce.Unlock()
	if !setupOnce.done {
		installGatewayAPI(t, env)
		installInferencePool(t, env)
		startStandIn(t, env)
		setupOnce.done = true
	}
	return env
}

// quick makes the controller waits short where a test expects them to
// time out.
var quick = Options{GatewayClass: standInGatewayClass, ReadyTimeout: 10 * time.Second}

func run(t *testing.T, env *testenv.Env, check conformance.Check, level conformance.Level) conformance.Result {
	t.Helper()
	return checktest.RunWith(t, env, check, checktest.Options{Version: "1.37", Category: "networking", Level: level, Timeout: 4 * time.Minute})
}

func expectFailed(t *testing.T, res conformance.Result, want ...string) {
	t.Helper()
	if res.Status != conformance.Failed {
		t.Fatalf("status %s, reason %q; want it to fail", res.Status, res.Reason)
	}
	for _, w := range want {
		if !strings.Contains(res.Reason, w) {
			t.Errorf("reason lacks %q: %q", w, res.Reason)
		}
	}
}

func TestAIInferencePasses(t *testing.T) {
	env := gatewayEnv(t)
	res := run(t, env, Check(), conformance.Must)
	if res.Status != conformance.Passed || res.TestName != "TestAIInference" {
		t.Fatalf("%s: status %s, reason %q", res.TestName, res.Status, res.Reason)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"WeightedTrafficSplitting":                       conformance.Passed,
		"WeightedTrafficSplitting/TrafficFollowsWeights": conformance.Skipped,
		"HeaderBasedRouting":                             conformance.Passed,
		"HeaderBasedRouting/TrafficFollowsHeader":        conformance.Skipped,
		"UnresolvedBackendRejected":                      conformance.Passed,
	})
	// The traffic tests got as far as the request pods, which kwok never
	// runs, and say so.
	checktest.ExpectSkippedOnKwok(t, res, "WeightedTrafficSplitting/TrafficFollowsWeights", "HeaderBasedRouting/TrafficFollowsHeader")
	checktest.ExpectTranscript(t, res,
		"GatewayClass stand-in\n", // picked as the first Accepted class by name
		"Programmed=True",
		"weight: 80",
		"name: x-model",
		"Service of Gateway inference-gateway\n"+standInGatewaysNS+"/stand-in-",
		"--url=http://stand-in-",
		"--header=Host:weighted.inference.kaic.test",
		"--header=x-model:model-b",
		"ResolvedRefs=False (BackendNotFound",
		"deleted namespace "+res.Namespace,
	)
	checktest.ExpectCleanedUp(t, env, res)
}

// A controller that resolves routes without looking at their backends
// fails the negative test.
func TestAIInferenceFailsWhenMissingBackendResolves(t *testing.T) {
	env := gatewayEnv(t)
	o := quick
	o.GatewayClass = blindClass
	res := run(t, env, CheckWith(o), conformance.Must)
	expectFailed(t, res, "HTTPRoute missing-backend references a backend that does not exist, yet Gateway inference-gateway reports ResolvedRefs=True")
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"WeightedTrafficSplitting":  conformance.Passed,
		"HeaderBasedRouting":        conformance.Passed,
		"UnresolvedBackendRejected": conformance.Failed,
	})
}

func TestAIInferenceFailsWhenGatewayNeverProgrammed(t *testing.T) {
	env := gatewayEnv(t)
	o := quick
	o.GatewayClass = unprogrammedClass
	res := run(t, env, CheckWith(o), conformance.Must)
	expectFailed(t, res, "Gateway inference-gateway of class stand-in-unprogrammed was not Programmed within 10s", "Programmed=False (Pending")
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{"WeightedTrafficSplitting": ""})
}

func TestAIInferenceFailsWhenRoutesNeverAccepted(t *testing.T) {
	env := gatewayEnv(t)
	o := quick
	o.GatewayClass = routelessClass
	res := run(t, env, CheckWith(o), conformance.Must)
	expectFailed(t, res, "HTTPRoute weighted-split is not Accepted with ResolvedRefs by Gateway inference-gateway within 10s: no status for Gateway inference-gateway")
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"WeightedTrafficSplitting":  conformance.Failed,
		"HeaderBasedRouting":        conformance.Failed,
		"UnresolvedBackendRejected": conformance.Failed,
	})
}

func TestAIInferenceFailsWhenNamedClassNotAccepted(t *testing.T) {
	env := gatewayEnv(t)
	o := quick
	o.GatewayClass = unacceptedClass
	res := run(t, env, CheckWith(o), conformance.Must)
	expectFailed(t, res, "GatewayClass nobody-runs-this (controller kaic.dev/nobody) is not Accepted")
	o.GatewayClass = "no-such-class"
	res = run(t, env, CheckWith(o), conformance.Must)
	expectFailed(t, res, "GatewayClass no-such-class does not exist", "stand-in (controller kaic.dev/stand-in, Accepted=True")
}

// On a control plane of its own: without the Gateway API CRDs
// ai_inference fails and advanced_inference_ingress is skipped; with them
// but no controller accepting a class, ai_inference fails saying so.
func TestFailsWithoutGatewayAPIOrController(t *testing.T) {
	env := testenv.New(t, testenv.WithControlLoops()) // the namespace controller deletes the checks' namespaces
	res := run(t, env, Check(), conformance.Must)
	expectFailed(t, res, "does not serve gateway.networking.k8s.io/v1", "the Gateway API CRDs are not installed")

	res = run(t, env, IngressCheck(), conformance.Should)
	if res.Status != conformance.Skipped || !strings.Contains(res.Reason, "does not serve inference.networking.k8s.io/v1 inferencepools") {
		t.Errorf("ingress without the inference extension: status %s, reason %q; want skipped", res.Status, res.Reason)
	}

	installGatewayAPI(t, env)
	createGatewayClass(t, env, unacceptedClass, unacceptedController)
	res = run(t, env, Check(), conformance.Must)
	expectFailed(t, res, "no GatewayClass is Accepted", "nobody-runs-this (controller kaic.dev/nobody, ")

	// The Gateway API alone does not make the inference extension served.
	res = run(t, env, IngressCheck(), conformance.Should)
	if res.Status != conformance.Skipped {
		t.Errorf("ingress with the Gateway API but without the inference extension: status %s, reason %q; want skipped", res.Status, res.Reason)
	}
}
