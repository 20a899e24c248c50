package sandboxing

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
	"github.com/kaic-dev/kaic/pkg/probe"
)

// sandboxNodeLabel marks the one node a RuntimeClass of the tests
// schedules onto.
const sandboxNodeLabel = "sandbox.kaic.dev/gvisor"

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithNodes(
		testenv.Node{Name: "kwok-node-0"},
		testenv.Node{Name: "kwok-node-1", Labels: map[string]string{sandboxNodeLabel: "true"}},
	))
}

func run(t *testing.T, env *testenv.Env, check conformance.Check) conformance.Result {
	t.Helper()
	return checktest.RunWith(t, env, check, checktest.Options{Version: "1.37", Category: "security", Level: conformance.Should, Timeout: 3 * time.Minute})
}

// runtimeClass creates a RuntimeClass for the test.
func runtimeClass(t *testing.T, env *testenv.Env, name, handler string, nodeSelector map[string]string) {
	t.Helper()
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Handler: handler}
	if nodeSelector != nil {
		rc.Scheduling = &nodev1.Scheduling{NodeSelector: nodeSelector}
	}
	classes := env.Clientset().NodeV1().RuntimeClasses()
	if _, err := classes.Create(t.Context(), rc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := classes.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting RuntimeClass %s: %v", name, err)
		}
	})
}

func TestWorkloadSandboxingSkipsWithoutSandboxRuntimeClass(t *testing.T) {
	env := testenv.Shared(t)
	runtimeClass(t, env, "runc", "runc", nil)
	res := run(t, env, Check())
	if res.Status != conformance.Skipped || !strings.HasPrefix(res.Reason, "not verified: no sandbox RuntimeClass found") || !strings.Contains(res.Reason, "runc (handler runc)") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{"SchedulingAndExecution": ""})
}

// The detected sandbox pod runs on the node its RuntimeClass selects and
// the control pod is pinned beside it; what the containers see cannot be
// observed on kwok.
func TestWorkloadSandboxingDetectsSandboxAndRunsPods(t *testing.T) {
	env := testenv.Shared(t)
	runtimeClass(t, env, "runc", "runc", nil)
	runtimeClass(t, env, "gvisor", "runsc", map[string]string{sandboxNodeLabel: "true"})
	res := run(t, env, Check())
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	if res.TestName != "TestWorkloadSandboxing" {
		t.Errorf("test name %q", res.TestName)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{"SchedulingAndExecution": conformance.Passed})
	checktest.ExpectSkippedOnKwok(t, res, "KernelAndMemoryIsolation", "ProcessIsolation", "FilesystemIsolation", "NetworkIsolation")
	checktest.ExpectTranscript(t, res,
		"sandbox RuntimeClass gvisor (handler runsc)",
		"runtimeClassName: gvisor",
		"Run control pod control-probe without a RuntimeClass on node kwok-node-1",
		"nodeName: kwok-node-1",
		"node: kwok-node-1",
		"- isolation", // the probe mode
	)
	checktest.ExpectCleanedUp(t, env, res)
}

func TestWorkloadSandboxingFailsWhenConfiguredRuntimeClassIsMissing(t *testing.T) {
	env := testenv.Shared(t)
	res := run(t, env, New(Options{RuntimeClass: "kata-fc"}))
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "RuntimeClass kata-fc, configured as the sandbox runtime, does not exist") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
}

// A sandbox pod that never runs fails the check with what holds it back.
// On kwok every bound pod "runs", so the pod is kept from running by a
// RuntimeClass that schedules onto no node; on a real node a handler the
// container runtime does not know keeps it in ContainerCreating, which
// the same wait reports (see TestPodState).
func TestWorkloadSandboxingFailsWhenSandboxedPodNeverRuns(t *testing.T) {
	env := testenv.Shared(t)
	runtimeClass(t, env, "kata-broken", "kata-missing", map[string]string{"sandbox.kaic.dev/kata": "true"})
	res := run(t, env, New(Options{RuntimeClass: "kata-broken", RunTimeout: 10 * time.Second}))
	if res.Status != conformance.Failed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	for _, want := range []string{
		"pod sandboxed-probe with RuntimeClass kata-broken (handler kata-missing) did not run: it is not Running after 10s",
		"PodScheduled=False (Unschedulable)",
	} {
		if !strings.Contains(res.Reason, want) {
			t.Errorf("reason %q lacks %q", res.Reason, want)
		}
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"SchedulingAndExecution":   conformance.Failed,
		"KernelAndMemoryIsolation": "",
		"ProcessIsolation":         "",
		"FilesystemIsolation":      "",
		"NetworkIsolation":         "",
	})
	checktest.ExpectCleanedUp(t, env, res)
}

func TestLooksSandboxed(t *testing.T) {
	for _, tc := range []struct {
		name, handler string
		want          bool
	}{
		{"gvisor", "runsc", true},
		{"secure", "runsc", true},
		{"kata-qemu", "kata-qemu", true},
		{"Sandboxed-Workloads", "x", true},
		{"quark", "quark", true},
		{"libkrun", "krun", true},
		{"runc", "runc", false},
		{"nvidia", "nvidia", false},
		{"crun", "crun", false},
	} {
		rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: tc.name}, Handler: tc.handler}
		if got := looksSandboxed(rc); got != tc.want {
			t.Errorf("%s/%s: %t, want %t", tc.name, tc.handler, got, tc.want)
		}
	}
}

func TestKernelAndProcessProblems(t *testing.T) {
	node := probe.Isolation{KernelRelease: "6.8.0-45-generic", ProcVersion: "Linux version 6.8.0-45-generic #45", BootID: "boot-a",
		DevMem: probe.DeviceAbsent, DevKmem: probe.DeviceAbsent}
	gvisor := probe.Isolation{KernelRelease: "4.4.0", ProcVersion: "Linux version 4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016", BootID: "boot-b",
		DevMem: probe.DeviceAbsent, DevKmem: probe.DeviceAbsent}
	for _, tc := range []struct {
		name      string
		sandboxed probe.Isolation
		want      []string
	}{
		{"isolated", gvisor, nil},
		{"same kernel and boot", node, []string{"sees the node's kernel: release \"6.8.0-45-generic\"", "sees the node's boot id boot-a"}},
		{"same release, other /proc/version", func() probe.Isolation { r := gvisor; r.KernelRelease = node.KernelRelease; return r }(), nil},
		{"same boot", func() probe.Isolation { r := gvisor; r.BootID = node.BootID; return r }(), []string{"boot id boot-a"}},
		{"boot id hidden", func() probe.Isolation { r := gvisor; r.BootID = ""; return r }(), nil},
		{"memory devices", func() probe.Isolation {
			r := gvisor
			r.DevMem, r.DevKmem = probe.DeviceReadable, probe.DeviceReadable
			return r
		}(), []string{"can open /dev/mem", "can open /dev/kmem"}},
		{"denied device", func() probe.Isolation { r := gvisor; r.DevMem = probe.DeviceDenied; return r }(), nil},
	} {
		got := kernelProblems(tc.sandboxed, node)
		if len(got) != len(tc.want) {
			t.Errorf("%s: problems %q, want %d", tc.name, got, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(got[i], w) {
				t.Errorf("%s: problem %q lacks %q", tc.name, got[i], w)
			}
		}
	}
	if p := processProblems(gvisor); p != nil {
		t.Errorf("isolated processes: %q", p)
	}
	leaky := gvisor
	leaky.HostProcesses = []string{"812:kubelet", "640:containerd"}
	if p := processProblems(leaky); len(p) != 1 || !strings.Contains(p[0], "sees the node's processes: 812:kubelet, 640:containerd") {
		t.Errorf("visible agents: %q", p)
	}
}

// A RuntimeClass whose handler the node's runtime lacks leaves the pod
// bound but its sandbox never created; the failure says so.
func TestPodState(t *testing.T) {
	pod := &corev1.Pod{
		Spec: corev1.PodSpec{NodeName: "node-1"},
		Status: corev1.PodStatus{
			Phase: corev1.PodPending,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
				{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionFalse},
			},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "probe", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}},
		},
	}
	got := podState(pod)
	for _, want := range []string{"phase Pending", "node node-1", "PodReadyToStartContainers=False", "container probe waiting (ContainerCreating)"} {
		if !strings.Contains(got, want) {
			t.Errorf("state %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "PodScheduled") {
		t.Errorf("state %q lists a condition that holds", got)
	}
	if podState(nil) != "the pod was never seen" {
		t.Errorf("nil pod: %q", podState(nil))
	}
}

// sandboxNode returns the node the tests' gvisor RuntimeClass schedules
// onto, with one of its addresses.
func sandboxNode(t *testing.T, env *testenv.Env) (name, addr string) {
	t.Helper()
	node, err := env.Clientset().CoreV1().Nodes().Get(t.Context(), "kwok-node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// kwok reports 127.0.0.1 as the node's address, which every pod has
	// on its own loopback: the node is given the address a kind node has.
	const kindNodeAddr = "172.29.0.3"
	if !slices.Contains(nodeAddresses(node), kindNodeAddr) {
		node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: kindNodeAddr})
		if _, err := env.Clientset().CoreV1().Nodes().UpdateStatus(t.Context(), node, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return node.Name, kindNodeAddr
}

// The judgements of what the containers saw, on the real control plane:
// kwok runs no containers, so the probes' reports are stand-ins (what
// gVisor and runc show a pod, see judge_test.go), while the pods, the node
// and its addresses are the API server's.
func TestWorkloadSandboxingJudgesAnIsolatedSandbox(t *testing.T) {
	env := testenv.Shared(t)
	runtimeClass(t, env, "gvisor", "runsc", map[string]string{sandboxNodeLabel: "true"})
	_, addr := sandboxNode(t, env)
	reports := &standInReports{byPod: map[string]probe.Isolation{sandboxedPod: gvisorView(), controlPod: plainView()}}
	res := run(t, env, New(Options{standIn: reports}))
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s\n%s", res.Status, res.Reason, checktest.Transcript(res))
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"KernelAndMemoryIsolation":          conformance.Passed,
		"ProcessIsolation":                  conformance.Passed,
		"FilesystemIsolation/NodeProc":      conformance.Passed,
		"FilesystemIsolation/RuntimeSocket": conformance.Passed,
		"FilesystemIsolation/NodeFiles":     conformance.Passed,
		"FilesystemIsolation/NodeMounts":    conformance.Passed,
		"NetworkIsolation/OwnInterfaces":    conformance.Passed,
		"NetworkIsolation/NodeLoopback":     conformance.Passed,
	})
	checktest.ExpectTranscript(t, res,
		"stand-in isolation report of pod sandboxed-probe (the node runs no containers)",
		"/run/containerd/containerd.sock (container runtime socket): absent / absent",
		"/var/lib/kubelet (node directory): absent / absent",
		"127.0.0.1:10248 (kubelet health endpoint): refused / refused",
		"the sandboxed pod could not reach a container runtime socket: /run/containerd/containerd.sock absent, /var/run/docker.sock absent",
		"the sandboxed pod could not reach the node's configuration and directories: /etc/kubernetes/kubelet.conf absent",
		`its host name is "sandboxed-probe", not the node's`,
		`the sandboxed pod's /proc lists only its own 1 process; process 1 is "/kaic probe isolation --hold=1h0m0s"`,
		"while the plain pod's 1 mount comes from the node's own directories (/etc/hosts from /var/lib/kubelet/pods/8f1c/etc-hosts)",
		"the sandboxed pod sees only its own interfaces (eth0, lo): none of the node's bridges or veths, none of the node's addresses (",
		addr+")",
		"the plain pod's eth0 is one end of a pair whose other end is in the node's kernel",
		"the sandboxed pod's 127.0.0.1 is its own: it could not reach the node's loopback-only services: 127.0.0.1:10248 refused, 127.0.0.1:10249 refused",
	)
	checktest.ExpectCleanedUp(t, env, res)
}

// A "sandbox" that shares the node fails every judgement, each saying
// what it reached.
func TestWorkloadSandboxingFailsASandboxThatSharesTheNode(t *testing.T) {
	env := testenv.Shared(t)
	runtimeClass(t, env, "gvisor", "runsc", map[string]string{sandboxNodeLabel: "true"})
	node, addr := sandboxNode(t, env)
	reports := &standInReports{byPod: map[string]probe.Isolation{sandboxedPod: nodeView(node, addr), controlPod: plainView()}}
	res := run(t, env, New(Options{standIn: reports}))
	if res.Status != conformance.Failed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"SchedulingAndExecution":            conformance.Passed,
		"KernelAndMemoryIsolation":          conformance.Failed,
		"ProcessIsolation":                  conformance.Failed,
		"FilesystemIsolation/NodeProc":      conformance.Failed,
		"FilesystemIsolation/RuntimeSocket": conformance.Failed,
		"FilesystemIsolation/NodeFiles":     conformance.Failed,
		"FilesystemIsolation/NodeMounts":    conformance.Failed,
		"NetworkIsolation/OwnInterfaces":    conformance.Failed,
		"NetworkIsolation/NodeLoopback":     conformance.Failed,
	})
	for _, want := range []string{
		`the sandboxed pod sees the node's init as process 1: /proc/1/cmdline is "/sbin/init"`,
		"reaches the container runtime's socket /run/containerd/containerd.sock: connected",
		"host name is the node's, " + node,
		"interface eth0 holds the node's address " + addr,
		"reaches the node's kubelet health endpoint at 127.0.0.1:10248",
	} {
		if !strings.Contains(res.Reason, want) && !strings.Contains(checktest.Transcript(res), want) {
			t.Errorf("result lacks %q", want)
		}
	}
	checktest.ExpectCleanedUp(t, env, res)
}

// A sandbox that hides its /proc and interfaces altogether leaves those
// judgements not verified, never passed.
func TestWorkloadSandboxingDoesNotPassWhatItCouldNotSee(t *testing.T) {
	env := testenv.Shared(t)
	runtimeClass(t, env, "gvisor", "runsc", map[string]string{sandboxNodeLabel: "true"})
	hidden := gvisorView()
	hidden.Init, hidden.ProcessCount, hidden.Processes, hidden.Interfaces, hidden.NodeServices = "", 0, nil, nil, nil
	hidden.Problems = []string{"listing processes in /proc: permission denied", "listing network interfaces: no such file"}
	reports := &standInReports{byPod: map[string]probe.Isolation{sandboxedPod: hidden, controlPod: plainView()}}
	res := run(t, env, New(Options{standIn: reports}))
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"FilesystemIsolation/NodeProc":      conformance.Skipped,
		"FilesystemIsolation/RuntimeSocket": conformance.Passed,
		"NetworkIsolation/OwnInterfaces":    conformance.Skipped,
		"NetworkIsolation/NodeLoopback":     conformance.Skipped,
	})
	for _, name := range []string{"FilesystemIsolation/NodeProc", "NetworkIsolation/OwnInterfaces", "NetworkIsolation/NodeLoopback"} {
		if tr := checktest.Subtest(res, name); tr != nil && !strings.Contains(strings.Join(tr.Output, "\n"), "not verified: ") {
			t.Errorf("%s skips without saying it is not verified: %q", name, tr.Output)
		}
	}
	if tr := checktest.Subtest(res, "FilesystemIsolation/NodeProc"); tr != nil && !strings.Contains(strings.Join(tr.Output, "\n"), "permission denied") {
		t.Errorf("NodeProc does not say why: %q", tr.Output)
	}
}
