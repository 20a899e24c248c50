package probe

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// runscEnv names the runsc binary TestInspectIsolationUnderGVisor runs
// the probe with (hack/kindnode builds one into its cache's bin/).
const runscEnv = "KAIC_RUNSC"

// reportEnv makes TestIsolationReportInThisProcess print the report of
// the process it runs in.
const reportEnv = "KAIC_PROBE_ISOLATION_REPORT"

// TestIsolationReportInThisProcess is the probe run by
// TestInspectIsolationUnderGVisor inside a gVisor sandbox.
func TestIsolationReportInThisProcess(t *testing.T) {
	if os.Getenv(reportEnv) == "" {
		t.Skip("runs inside a sandbox for TestInspectIsolationUnderGVisor")
	}
	if err := WriteIsolationReport(os.Stdout, InspectIsolation(IsolationOptions{DialTimeout: time.Second})); err != nil {
		t.Fatal(err)
	}
}

// The probe in a real gVisor sandbox (runsc do, platform systrap, no
// network) against the same probe on this machine: another kernel, a
// process space of its own, a loopback of its own. What runsc do shares
// of this machine's root file system is not judged: a pod's sandbox gets
// its image's root instead.
func TestInspectIsolationUnderGVisor(t *testing.T) {
	runsc := os.Getenv(runscEnv)
	if runsc == "" {
		t.Skipf("not verified: %s names no runsc binary", runscEnv)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), runsc, "--root="+t.TempDir(), "--platform=systrap", "--network=none", "--ignore-cgroups",
		"do", "--", self, "-test.run=^TestIsolationReportInThisProcess$")
	cmd.Env = append(os.Environ(), reportEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("not verified: runsc could not run the probe here: %v\n%s", err, stderr.String())
	}
	sandbox, found, err := ParseIsolation(string(out))
	if err != nil || !found {
		t.Fatalf("no report from the sandbox (found %t, %v):\n%s\n%s", found, err, out, stderr.String())
	}
	host := InspectIsolation(IsolationOptions{NodeServices: []Target{}})
	t.Logf("in gVisor: kernel %s, process 1 %q, %d processes, interfaces %v", sandbox.KernelRelease, sandbox.Init, sandbox.ProcessCount, sandbox.Interfaces)

	if sandbox.KernelRelease == host.KernelRelease || sandbox.BootID == host.BootID {
		t.Errorf("the sandbox sees this machine's kernel %s, boot %s", sandbox.KernelRelease, sandbox.BootID)
	}
	if sandbox.Self != 1 || sandbox.ProcessCount != 1 || len(sandbox.Processes) != 1 || sandbox.Processes[0].PID != 1 || sandbox.Init == "" {
		t.Errorf("the sandbox's /proc: self %d, process 1 %q, processes %v (%d)", sandbox.Self, sandbox.Init, sandbox.Processes, sandbox.ProcessCount)
	}
	if len(sandbox.HostProcesses) != 0 || host.ProcessCount <= 1 {
		t.Errorf("agents seen in the sandbox %v; processes here %d", sandbox.HostProcesses, host.ProcessCount)
	}
	if names := sandbox.InterfaceNames(); !slices.Equal(names, []string{"lo"}) {
		t.Errorf("interfaces of a sandbox without network: %v", sandbox.Interfaces)
	}
	if len(sandbox.Interfaces) == 1 && !slices.Contains(sandbox.Interfaces[0].Addrs, "127.0.0.1/8") {
		t.Errorf("loopback addresses %v", sandbox.Interfaces[0].Addrs)
	}
	if r := Reached(sandbox.NodeServices); len(r) != 0 || len(sandbox.NodeServices) != len(NodeServices) {
		t.Errorf("node services from the sandbox: %v", sandbox.NodeServices)
	}
	if len(sandbox.NodeMounts) != 0 {
		t.Errorf("mounts from node paths in the sandbox: %v", sandbox.NodeMounts)
	}
}
