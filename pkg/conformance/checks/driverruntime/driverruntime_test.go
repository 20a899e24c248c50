package driverruntime

import (
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
)

func TestMain(m *testing.M) { checktest.MainWithGPUNodes(m) }

// check is the check as its tests run it.
var check = checktest.AcceleratorCheck{Check: Check(), Level: conformance.Should}

// On kwok the versions are verified; the runtime and what a container
// sees are not observable, and the subtests say so.
func TestDriverRuntimeManagementPasses(t *testing.T) {
	env, res := check.RunPassing(t, "TestAcceleratorDriverRuntimeManagement")
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{"VerifiableMechanismExposed": conformance.Passed})
	checktest.ExpectSkippedOnKwok(t, res, "ContainerRuntimeReported", "DriverAndRuntimeCompatibility")
	checktest.ExpectTranscript(t, res,
		"driverVersion of the 4 devices of gpu.example.com",
		"1.0.0: 4 devices (kwok-gpu-0/gpu-0, kwok-gpu-0/gpu-1, kwok-gpu-1/gpu-0, kwok-gpu-1/gpu-1)",
		`"kwok-`, "2 node(s): kwok-gpu-0, kwok-gpu-1", // the runtime kwok reports, recorded though not accepted
		"driverVersion: 1.0.0",
	)
	checktest.ExpectCleanedUp(t, env, res)
}

func TestDriverRuntimeManagementFailsWithoutDriverVersion(t *testing.T) {
	env := testenv.Shared(t)
	const driver = "gpu.unversioned.example.com"
	slice := testenv.FakeGPUSlice("kwok-gpu-1", driver, 2)
	delete(slice.Spec.Devices[1].Attributes, "driverVersion")
	checktest.PublishSlice(t, env, slice)
	checktest.EnsureDeviceClass(t, env, driver, driver)
	res := check.Run(t, env, driver, driver)
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "1 of the 2 devices of driver gpu.unversioned.example.com advertise no driverVersion attribute: kwok-gpu-1/gpu-1") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{"VerifiableMechanismExposed": conformance.Failed})
	checktest.ExpectCleanedUp(t, env, res)
}

func TestDriverRuntimeManagementFailsWhenDriverPublishesNothing(t *testing.T) {
	check.ExpectFailsWhenDriverPublishesNothing(t)
}
