package dra

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// Two kwok nodes with two fake devices each: the most on one node is 2.
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithGPUNodes(2, 2))
}

// runCheck runs the dra_support check through the runner with the given
// accelerator model.
func runCheck(t *testing.T, env *testenv.Env, acc profile.Accelerator) conformance.Result {
	t.Helper()
	return checktest.RunWith(t, env, Check(), checktest.Options{
		Version: "1.35", Category: "accelerators", Level: conformance.Must,
		Timeout: 3 * time.Minute, Accelerator: &acc,
	})
}

func exampleModel(deviceClass string) profile.Accelerator {
	return profile.Accelerator{Model: "example", DRADriver: testenv.DefaultDRADriver, DeviceClass: deviceClass, DeviceEnvPrefix: "GPU_DEVICE_"}
}

func TestDRASupportPasses(t *testing.T) {
	env := testenv.Shared(t)
	if _, err := env.CreateDeviceClass(t.Context(), "gpu.example.com"); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	res := runCheck(t, env, exampleModel("gpu.example.com"))
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{
		"APIServed":                            conformance.Passed,
		"DeviceClassExists":                    conformance.Passed,
		"ResourceSlicesOnReadyNodes":           conformance.Passed,
		"ClaimAllocatedAndPodRuns":             conformance.Passed,
		"ProbeSeesAllocatedDevice":             conformance.Skipped,
		"ClaimBeyondNodeCapacityUnschedulable": conformance.Passed,
	})
	if out := strings.Join(checktest.Subtest(res, "ProbeSeesAllocatedDevice").Output, "\n"); !strings.Contains(out, "kwok") {
		t.Errorf("the probe subtest does not say why it skips: %q", out)
	}
	// The decisive values are in the transcript: the allocation, the
	// scheduler's reason, and the manifests applied.
	var text []string
	applied := 0
	for _, e := range res.Transcript {
		text = append(text, e.Text+"\n"+e.Body)
		if e.Kind == conformance.EntryApply {
			applied++
		}
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{"allocation of ResourceClaim", "driver: gpu.example.com", "cannot allocate all claims", "Claim 3 gpu.example.com devices", "deleted namespace " + res.Namespace} {
		if !strings.Contains(all, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	if applied != 4 {
		t.Errorf("%d manifests recorded, want 4 (template, pod, claim, pod)", applied)
	}
	// Cleanup removed the check's namespace.
	if _, err := env.Clientset().CoreV1().Namespaces().Get(t.Context(), res.Namespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace %s still exists after cleanup (err %v); problems %q", res.Namespace, err, res.CleanupProblems)
	}
}

func TestDRASupportFailsWithoutDeviceClass(t *testing.T) {
	env := testenv.Shared(t)
	res := runCheck(t, env, exampleModel("missing.example.com"))
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "DeviceClass missing.example.com does not exist") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	if tr := checktest.Subtest(res, "ClaimAllocatedAndPodRuns"); tr != nil {
		t.Errorf("the check went on after the DeviceClass was missing: %+v", tr)
	}
}

func TestDRASupportFailsWhenDriverPublishesNothing(t *testing.T) {
	env := testenv.Shared(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	class := testenv.DeviceClassFor("gpu.absent.example.com", "gpu.absent.example.com")
	if _, err := env.Clientset().ResourceV1().DeviceClasses().Create(ctx, class, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	acc := exampleModel("gpu.absent.example.com")
	acc.DRADriver = "gpu.absent.example.com"
	res := runCheck(t, env, acc)
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "no Ready node has devices of driver gpu.absent.example.com") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
}

// A device-plugin profile still verifies DRA itself with the model's
// DeviceClass and driver, and says so; without them it fails naming why
// they are needed.
func TestDRASupportWithDevicePluginAllocation(t *testing.T) {
	env := testenv.Shared(t)
	if _, err := env.CreateDeviceClass(t.Context(), "gpu.example.com"); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	acc := exampleModel("gpu.example.com")
	acc.Allocation, acc.ResourceName = profile.AllocationDevicePlugin, string(testenv.GPUResourceName)
	res := runCheck(t, env, acc)
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	checktest.ExpectTranscript(t, res, "dra_support is about the DRA API itself", "allocation of ResourceClaim")

	acc.DRADriver, acc.DeviceClass = "", ""
	res = runCheck(t, env, acc)
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "the requirement is DRA itself, so even with allocation device-plugin it needs a DRA driver") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
}
