package sandboxing

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/kaic-dev/kaic/pkg/probe"
)

// tries are the probe's tries with every target at outcome, but those
// named in reached.
func tries(outcome probe.Outcome, reached map[string]probe.Outcome) []probe.Attempt {
	out := []probe.Attempt{}
	for _, f := range []struct{ target, what string }{
		{"/run/containerd/containerd.sock", probe.WhatRuntimeSocket},
		{"/var/run/docker.sock", probe.WhatRuntimeSocket},
		{"/etc/kubernetes/kubelet.conf", probe.WhatNodeConfig},
		{"/var/lib/kubelet", probe.WhatNodeDir},
		{"/var/log/pods", probe.WhatNodeDir},
	} {
		o := outcome
		if r, ok := reached[f.target]; ok {
			o = r
		}
		out = append(out, probe.Attempt{Target: f.target, What: f.what, Outcome: o})
	}
	return out
}

func services(reached map[string]probe.Outcome) []probe.Attempt {
	out := []probe.Attempt{}
	for _, s := range probe.NodeServices[:2] {
		o := probe.OutcomeRefused
		if r, ok := reached[s.Address]; ok {
			o = r
		}
		out = append(out, probe.Attempt{Target: s.Address, What: s.What, Outcome: o})
	}
	return out
}

// gvisorView is what gVisor shows a pod: its own kernel, its own process
// alone, nothing of the node's files, runtime or loopback.
func gvisorView() probe.Isolation {
	return probe.Isolation{
		KernelRelease: "4.19.0-gvisor", ProcVersion: "Linux version 4.19.0-gvisor #1 SMP Sun Jan 10 15:06:54 PST 2016", BootID: "boot-sandbox",
		DevMem: probe.DeviceAbsent, DevKmem: probe.DeviceAbsent, HostProcesses: []string{},
		Self: 1, Init: "/kaic probe isolation --hold=1h0m0s", ProcessCount: 1, Processes: []probe.Process{{PID: 1, Comm: "kaic"}},
		Hostname: "sandboxed-probe", EtcHostname: "sandboxed-probe",
		Interfaces:   []probe.Interface{{Name: "eth0", Addrs: []string{"10.244.1.7/24"}}, {Name: "lo", Addrs: []string{"127.0.0.1/8"}}},
		Files:        tries(probe.OutcomeAbsent, nil),
		NodeServices: services(nil),
		NodeMounts:   []string{},
	}
}

// plainView is what runc shows a pod on the same node: the node's kernel,
// its own process space and network namespace (eth0 one end of a veth
// pair), mounts from the kubelet's and containerd's directories.
func plainView() probe.Isolation {
	r := gvisorView()
	r.KernelRelease, r.ProcVersion, r.BootID = "6.8.0-45-generic", "Linux version 6.8.0-45-generic #45-Ubuntu SMP", "boot-node"
	r.Hostname, r.EtcHostname = "control-probe", "control-probe"
	r.Interfaces = []probe.Interface{{Name: "eth0", Addrs: []string{"10.244.1.8/24"}, PeerIndex: 9}, {Name: "lo", Addrs: []string{"127.0.0.1/8"}}}
	r.NodeMounts = []string{"/etc/hosts from /var/lib/kubelet/pods/8f1c/etc-hosts"}
	return r
}

// nodeView is what a container that shares the node sees: the node's
// kernel, init, agents and files, its interfaces and loopback.
func nodeView(node, addr string) probe.Isolation {
	r := plainView()
	r.Self, r.Init, r.ProcessCount = 4242, "/sbin/init", 180
	r.Processes = []probe.Process{proc(1, 0, "systemd"), proc(2, 0, "kthreadd"), proc(640, 1, "containerd"), proc(812, 1, "kubelet"), proc(2210, 1, "containerd-shim"), proc(4242, 2210, "kaic")}
	r.HostProcesses = []string{"640:containerd", "812:kubelet", "2210:containerd-shim"}
	r.Hostname, r.EtcHostname = node, node
	r.Interfaces = []probe.Interface{{Name: "eth0", Addrs: []string{addr + "/16"}}, {Name: "lo", Addrs: []string{"127.0.0.1/8"}}, {Name: "veth3f2a", PeerIndex: 2}}
	r.Files = tries(probe.OutcomeAbsent, map[string]probe.Outcome{
		"/run/containerd/containerd.sock": probe.OutcomeConnected,
		"/etc/kubernetes/kubelet.conf":    probe.OutcomeRead,
		"/var/lib/kubelet":                probe.OutcomeDenied,
	})
	r.NodeServices = services(map[string]probe.Outcome{"127.0.0.1:10248": probe.OutcomeConnected})
	r.NodeMounts = []string{"/data from /var/lib/kubelet/pods/1234/volumes/data"}
	return r
}

// expectProblems fails t unless got holds one problem per want, each
// containing its want, in order.
func expectProblems(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: problems %q, want %d", what, got, len(want))
		return
	}
	for i, w := range want {
		if !strings.Contains(got[i], w) {
			t.Errorf("%s: problem %q lacks %q", what, got[i], w)
		}
	}
}

func TestProcProblems(t *testing.T) {
	expectProblems(t, "gVisor", procProblems(gvisorView()))
	expectProblems(t, "plain pod", procProblems(plainView()))
	expectProblems(t, "the node's /proc", procProblems(nodeView("node-1", "172.29.0.3")),
		`the sandboxed pod sees the node's init as process 1: /proc/1/cmdline is "/sbin/init"`,
		"177 of the 180 processes the sandboxed pod's /proc lists are not its own: 2:kthreadd, 640:containerd, 812:kubelet, and 174 more")

	// A shell as process 1 starting the probe, the probe's own child:
	// the pod's own.
	wrapped := gvisorView()
	wrapped.Self, wrapped.Init, wrapped.ProcessCount = 7, "/bin/sh -c kaic probe isolation", 3
	wrapped.Processes = []probe.Process{proc(1, 0, "sh"), proc(7, 1, "kaic"), proc(9, 7, "cat")}
	expectProblems(t, "wrapped probe", procProblems(wrapped))
	wrapped.Processes = append(wrapped.Processes, probe.Process{PID: 12, PPID: 1, Comm: "sleep"})
	wrapped.ProcessCount = 4
	expectProblems(t, "sibling", procProblems(wrapped), "1 of the 4 processes the sandboxed pod's /proc lists are not its own: 12:sleep")

	for _, init := range []string{"/lib/systemd/systemd --system --deserialize 18", "/usr/lib/systemd/systemd", "init"} {
		if !isInit(init) {
			t.Errorf("%q is not taken for an init", init)
		}
	}
	for _, init := range []string{"/kaic probe isolation", "/pause", "", "/usr/bin/tini -- app"} {
		if isInit(init) {
			t.Errorf("%q is taken for an init", init)
		}
	}
}

func TestFileProblems(t *testing.T) {
	expectProblems(t, "gVisor sockets", socketProblems(gvisorView()))
	expectProblems(t, "gVisor files", nodeFileProblems(gvisorView(), "node-1"))
	expectProblems(t, "gVisor mounts", mountProblems(gvisorView()))
	leaky := nodeView("node-1", "172.29.0.3")
	expectProblems(t, "node sockets", socketProblems(leaky), "reaches the container runtime's socket /run/containerd/containerd.sock: connected")
	expectProblems(t, "node files", nodeFileProblems(leaky, "node-1"),
		"reaches the node's node configuration /etc/kubernetes/kubelet.conf: read",
		"reaches the node's node directory /var/lib/kubelet: exists, denied",
		"host name is the node's, node-1",
		"/etc/hostname is the node's, node-1")
	expectProblems(t, "node mounts", mountProblems(leaky), "shares the node's files with it directly: /data from /var/lib/kubelet/pods/1234/volumes/data")
	// A socket that exists but refuses is still the node's runtime in
	// reach of the pod.
	refusing := gvisorView()
	refusing.Files = tries(probe.OutcomeAbsent, map[string]probe.Outcome{"/var/run/docker.sock": probe.OutcomeExists})
	expectProblems(t, "refusing socket", socketProblems(refusing), "/var/run/docker.sock: exists")
}

func TestNetworkProblems(t *testing.T) {
	node := []string{"172.29.0.3"}
	expectProblems(t, "gVisor interfaces", interfaceProblems(gvisorView(), node))
	expectProblems(t, "gVisor loopback", loopbackProblems(gvisorView()))
	expectProblems(t, "plain pod interfaces", interfaceProblems(plainView(), node))
	leaky := nodeView("node-1", "172.29.0.3")
	expectProblems(t, "node interfaces", interfaceProblems(leaky, node),
		"interface eth0 holds the node's address 172.29.0.3: it is on the node's network",
		"sees interface veth3f2a, which lives on the node")
	expectProblems(t, "node loopback", loopbackProblems(leaky), "reaches the node's kubelet health endpoint at 127.0.0.1:10248")
	expectProblems(t, "no node address known", interfaceProblems(gvisorView(), nil))
	expectProblems(t, "a loopback node address", interfaceProblems(gvisorView(), []string{"127.0.0.1"}))

	n := &corev1.Node{Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeHostName, Address: "node-1"}, {Type: corev1.NodeInternalIP, Address: "172.29.0.3"}, {Type: corev1.NodeExternalIP, Address: "203.0.113.9"},
	}}}
	if got := nodeAddresses(n); !slices.Equal(got, []string{"172.29.0.3", "203.0.113.9"}) {
		t.Errorf("node addresses %q", got)
	}
	if got := pairedInterfaces(plainView()); !slices.Equal(got, []string{"eth0"}) {
		t.Errorf("paired interfaces %q", got)
	}
}

func TestTranscriptLines(t *testing.T) {
	s, c := gvisorView(), plainView()
	c.Files[0].Outcome = probe.OutcomeConnected
	table := attemptTable(s.Files, c.Files[:4])
	for _, want := range []string{
		"/run/containerd/containerd.sock (container runtime socket): absent / connected",
		"/var/log/pods (node directory): absent / not tried",
	} {
		if !slices.Contains(table, want) {
			t.Errorf("table %q lacks %q", table, want)
		}
	}
	if got := unreached(s.Files, probe.WhatRuntimeSocket, "no socket"); got != "no socket: /run/containerd/containerd.sock absent, /var/run/docker.sock absent" {
		t.Errorf("unreached sockets: %q", got)
	}
	if got := unreached(s.Files, "", "no files"); got != "no files: /etc/kubernetes/kubelet.conf absent, /var/lib/kubelet absent, /var/log/pods absent" {
		t.Errorf("unreached files: %q", got)
	}
	if got := unreached(nodeView("n", "10.0.0.1").NodeServices, "", "x"); got != "x: 127.0.0.1:10249 refused" {
		t.Errorf("unreached services: %q", got)
	}
}

func proc(pid, ppid int, comm string) probe.Process {
	return probe.Process{PID: pid, PPID: ppid, Comm: comm}
}
