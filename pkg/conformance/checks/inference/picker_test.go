package inference

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
)

// pickerServedCheck runs the endpoint picker's Deployment and Service (kwok
// makes its pod Ready; kube-controller-manager writes the Service's
// EndpointSlices) and waits for the pod that pick returns to be served.
func pickerServedCheck(pick func(*corev1.Pod) *corev1.Pod, timeout time.Duration) conformance.Check {
	return conformance.NewCheck(IngressID, func(t *conformance.T, env *conformance.Env) {
		startEndpointPicker(t, env, "kaic.invalid/epp:never-pulled")
		if err := waitDeployment(t, env, endpointPicker, time.Minute); err != nil {
			t.Fatalf("picker Deployment: %v", err)
		}
		waitPickerServed(t, env, pick(onePod(t, env, endpointPicker)), timeout)
		t.Shown("the picker's Service serves its pod")
	})
}

func TestWaitPickerServedWaitsForTheReadyEndpoint(t *testing.T) {
	env := testenv.Shared(t)
	res := run(t, env, pickerServedCheck(func(p *corev1.Pod) *corev1.Pod { return p }, time.Minute), conformance.Should)
	if res.Status != conformance.Passed {
		t.Fatalf("status %s, reason %q; want it to pass", res.Status, res.Reason)
	}
	checktest.ExpectTranscript(t, res, "Wait until Service probe-pool-epp has picker pod probe-pool-epp-", "Service probe-pool-epp serves picker pod probe-pool-epp-")
}

// A ready endpoint of another pod (a picker replaced since the check read
// its queue depths) is not the picker the check asked; the wait ends not
// verified and says what the Service holds.
func TestWaitPickerServedIgnoresOtherPods(t *testing.T) {
	env := testenv.Shared(t)
	gone := func(p *corev1.Pod) *corev1.Pod {
		p = p.DeepCopy()
		p.Name, p.UID = "probe-pool-epp-gone", "00000000-0000-0000-0000-000000000000"
		return p
	}
	res := run(t, env, pickerServedCheck(gone, 3*time.Second), conformance.Should)
	if res.Status != conformance.Skipped {
		t.Fatalf("status %s, reason %q; want it not verified", res.Status, res.Reason)
	}
	for _, want := range []string{
		"Service probe-pool-epp has no ready endpoint for picker pod probe-pool-epp-gone on port grpc-ext-proc within 3s",
		"1 EndpointSlices: probe-pool-epp-",
		"ready=true on port grpc-ext-proc=true",
		"no gateway can reach the endpoint picker",
	} {
		if !strings.Contains(res.Reason, want) {
			t.Errorf("reason lacks %q: %q", want, res.Reason)
		}
	}
}
