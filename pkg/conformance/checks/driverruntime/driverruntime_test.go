package driverruntime

import (
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
)

// Two kwok nodes with two fake devices each.
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithGPUNodes(2, 2))
}

func runCheck(t *testing.T, env *testenv.Env, driver, class string) conformance.Result {
	t.Helper()
	return checktest.Run(t, env, Check(), conformance.Should, checktest.ExampleModel(driver, class))
}

// On kwok the versions are verified; the runtime and what a container
// sees are not observable, and the subtests say so.
func TestDriverRuntimeManagementPasses(t *testing.T) {
	env := testenv.Shared(t)
	checktest.EnsureDeviceClass(t, env, "gpu.example.com", testenv.DefaultDRADriver)
	res := runCheck(t, env, testenv.DefaultDRADriver, "gpu.example.com")
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	if res.TestName != "TestAcceleratorDriverRuntimeManagement" {
		t.Errorf("test name %q", res.TestName)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{"VerifiableMechanismExposed": conformance.Passed})
	checktest.ExpectSkippedOnKwok(t, res, "ContainerRuntimeReported", "DriverAndRuntimeCompatibility")
	all := checktest.Transcript(res)
	for _, want := range []string{
		"driverVersion of the 4 devices of gpu.example.com",
		"1.0.0: 4 devices (kwok-gpu-0/gpu-0, kwok-gpu-0/gpu-1, kwok-gpu-1/gpu-0, kwok-gpu-1/gpu-1)",
		`kwok-gpu-0: "kwok-`, // the runtime kwok reports, recorded though not accepted
		"driverVersion: 1.0.0",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	checktest.ExpectCleanedUp(t, env, res)
}

func TestDriverRuntimeManagementFailsWithoutDriverVersion(t *testing.T) {
	env := testenv.Shared(t)
	const driver = "gpu.unversioned.example.com"
	slice := testenv.FakeGPUSlice("kwok-gpu-1", driver, 2)
	delete(slice.Spec.Devices[1].Attributes, "driverVersion")
	checktest.PublishSlice(t, env, slice)
	checktest.EnsureDeviceClass(t, env, driver, driver)
	res := runCheck(t, env, driver, driver)
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "1 of the 2 devices of driver gpu.unversioned.example.com advertise no driverVersion attribute: kwok-gpu-1/gpu-1") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{"VerifiableMechanismExposed": conformance.Failed})
	checktest.ExpectCleanedUp(t, env, res)
}

func TestDriverRuntimeManagementFailsWhenDriverPublishesNothing(t *testing.T) {
	env := testenv.Shared(t)
	checktest.EnsureDeviceClass(t, env, "gpu.absent.example.com", "gpu.absent.example.com")
	res := runCheck(t, env, "gpu.absent.example.com", "gpu.absent.example.com")
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "driver gpu.absent.example.com publishes no devices") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
}
