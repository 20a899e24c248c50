package probe

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeRoot writes files (path → content) under a temporary root. A
// content "-> target" makes a symbolic link, one ending in "/" a
// directory.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasPrefix(content, "-> "):
			err = os.Symlink(strings.TrimPrefix(content, "-> "), full)
		case content == "/":
			err = os.MkdirAll(full, 0o755)
		default:
			err = os.WriteFile(full, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const netDev = `Inter-|   Receive                            |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
  eth0: 1296      16    0    0    0     0          0         0     1052      14    0    0    0     0       0          0
    lo:    0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
`

func TestInspectIsolationOfAHostLikeRoot(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"proc/sys/kernel/osrelease":      "6.8.0-45-generic\n",
		"proc/version":                   "Linux version 6.8.0-45-generic (buildd@lcy02) #45-Ubuntu SMP\n",
		"proc/sys/kernel/random/boot_id": "3f1c2f9e-7d7e-4a57-9a0e-0d4f3c1b2a10\n",
		"proc/sys/kernel/hostname":       "node-1\n",
		"proc/net/dev":                   netDev,
		"proc/1/comm":                    "systemd\n",
		"proc/1/cmdline":                 "/sbin/init\x00",
		"proc/1/stat":                    "1 (systemd) S 0 1 1 0 -1",
		"proc/812/comm":                  "kubelet\n",
		"proc/812/stat":                  "812 (kubelet) S 1 812 812 0 -1",
		"proc/640/comm":                  "containerd\n",
		"proc/2210/comm":                 "containerd-shim\n",
		"proc/2300/comm":                 "kubeletish\n",
		"proc/4242/comm":                 "kaic\n",
		"proc/4242/stat":                 "4242 (kaic probe) (x) S 2210 4242 4242 0 -1",
		"proc/4242/mountinfo":            "",
		"proc/self":                      "-> 4242",
		"dev/mem":                        "",
		"etc/hostname":                   "node-1\n",
	})
	r := InspectIsolation(IsolationOptions{Root: root})
	if r.KernelRelease != "6.8.0-45-generic" || !strings.HasPrefix(r.ProcVersion, "Linux version 6.8.0-45") {
		t.Errorf("kernel %q, /proc/version %q", r.KernelRelease, r.ProcVersion)
	}
	if r.BootID != "3f1c2f9e-7d7e-4a57-9a0e-0d4f3c1b2a10" || r.Hostname != "node-1" {
		t.Errorf("boot id %q, hostname %q", r.BootID, r.Hostname)
	}
	if r.DevMem != DeviceReadable || !r.DevMem.Accessible() || r.DevKmem != DeviceAbsent || r.DevKmem.Accessible() {
		t.Errorf("/dev/mem %s, /dev/kmem %s", r.DevMem, r.DevKmem)
	}
	slices.Sort(r.HostProcesses)
	if want := []string{"2210:containerd-shim", "640:containerd", "812:kubelet"}; !slices.Equal(r.HostProcesses, want) {
		t.Errorf("host processes %v, want %v", r.HostProcesses, want)
	}
	if want := []string{"eth0", "lo"}; !slices.Equal(r.InterfaceNames(), want) {
		t.Errorf("interfaces %v, want %v", r.Interfaces, want)
	}
	if r.Self != 4242 || r.Init != "/sbin/init" || r.ProcessCount != 6 || r.EtcHostname != "node-1" {
		t.Errorf("self %d, init %q, %d processes, /etc/hostname %q", r.Self, r.Init, r.ProcessCount, r.EtcHostname)
	}
	want := []Process{{1, 0, "systemd"}, {640, 0, "containerd"}, {812, 1, "kubelet"}, {2210, 0, "containerd-shim"}, {2300, 0, "kubeletish"}, {4242, 2210, "kaic"}}
	if !slices.Equal(r.Processes[:6], want) {
		t.Errorf("processes %v, want %v", r.Processes, want)
	}
	if len(r.Problems) != 0 {
		t.Errorf("problems %q", r.Problems)
	}
}

func TestInspectIsolationOfASandboxLikeRoot(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"proc/version":                   "Linux version 4.4.0 #1 SMP Sun Jan 10 15:06:54 PST 2016\n",
		"proc/sys/kernel/random/boot_id": "0b7e5a52-1111-2222-3333-444455556666\n",
		"proc/1/comm":                    "kaic\n",
	})
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A device file that exists but cannot be opened: a directory without
	// permissions stands in for it when not running as root.
	denied := filepath.Join(root, "dev", "kmem")
	if err := os.Mkdir(denied, 0o000); err != nil {
		t.Fatal(err)
	}
	r := InspectIsolation(IsolationOptions{Root: root, Uname: func() (string, error) { return "4.4.0", nil }})
	if r.KernelRelease != "4.4.0" {
		t.Errorf("kernel release %q", r.KernelRelease)
	}
	if len(r.HostProcesses) != 0 {
		t.Errorf("host processes %v", r.HostProcesses)
	}
	if r.DevMem != DeviceAbsent {
		t.Errorf("/dev/mem %s", r.DevMem)
	}
	if os.Geteuid() != 0 && r.DevKmem != DeviceDenied {
		t.Errorf("/dev/kmem %s, want denied", r.DevKmem)
	}
	// Missing files are problems, not errors: a sandbox may hide them.
	if !slices.ContainsFunc(r.Problems, func(p string) bool { return strings.Contains(p, "/proc/net/dev") }) {
		t.Errorf("problems %q lack the missing /proc/net/dev", r.Problems)
	}
	failing := InspectIsolation(IsolationOptions{Root: root, Uname: func() (string, error) { return "", errors.New("not permitted") }})
	if !slices.Contains(failing.Problems, "uname: not permitted") {
		t.Errorf("problems %q", failing.Problems)
	}
}

func TestIsolationReportRoundTrip(t *testing.T) {
	in := Isolation{KernelRelease: "6.8.0", ProcVersion: "Linux version 6.8.0 (a=b)", BootID: "x", DevMem: DeviceDenied, DevKmem: DeviceAbsent,
		HostProcesses: []string{"812:kubelet"}, Hostname: "pod-1", Interfaces: []Interface{{Name: "eth0", Addrs: []string{"10.244.1.5/24"}}, {Name: "lo"}},
		Files: []Attempt{{Target: "/run/containerd/containerd.sock", What: WhatRuntimeSocket, Outcome: OutcomeAbsent}}}
	var buf bytes.Buffer
	if err := WriteIsolationReport(&buf, in); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "RESULT: ISOLATION={") {
		t.Errorf("report line %q", buf.String())
	}
	out, ok, err := ParseIsolation("starting\n" + buf.String())
	if err != nil || !ok {
		t.Fatalf("parse: %v, found %t", err, ok)
	}
	if out.ProcVersion != in.ProcVersion || out.DevMem != DeviceDenied || !slices.Equal(out.HostProcesses, in.HostProcesses) ||
		len(out.Interfaces) != 2 || out.Interfaces[0].Addrs[0] != "10.244.1.5/24" || out.Files[0] != in.Files[0] {
		t.Errorf("round trip: %+v", out)
	}
	if _, ok, _ := ParseIsolation("no report yet\n"); ok {
		t.Error("found a report in a log without one")
	}
	if _, ok, err := ParseIsolation("RESULT: ISOLATION={broken\n"); !ok || err == nil {
		t.Errorf("malformed report: found %t, err %v", ok, err)
	}
}

// The real root of the test machine: a kernel, a boot id and interfaces
// are always there.
func TestInspectIsolationOfThisMachine(t *testing.T) {
	if _, err := os.Stat("/proc/version"); err != nil {
		t.Skip("no /proc here")
	}
	r := InspectIsolation(IsolationOptions{})
	if r.KernelRelease == "" || r.ProcVersion == "" || r.BootID == "" || len(r.Interfaces) == 0 {
		t.Errorf("report %+v", r)
	}
	if !strings.Contains(r.ProcVersion, r.KernelRelease) {
		t.Errorf("/proc/version %q does not name the kernel release %q", r.ProcVersion, r.KernelRelease)
	}
}

// What a runc container's mountinfo looks like: its root from containerd's
// snapshots (overlay options), /etc/hosts bound from the kubelet's
// directory; a sandbox's shows neither.
const runcMountinfo = `1052 964 0:62 / / rw,relatime master:339 - overlay overlay rw,lowerdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/41/fs,upperdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/42/fs,workdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/42/work
1053 1052 0:64 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1061 1052 254:1 /var/lib/kubelet/pods/8f1c/etc-hosts /etc/hosts rw,relatime - ext4 /dev/vda1 rw
1062 1052 254:1 /var/lib/kubelet/pods/8f1c/containers/probe/7a1b /dev/termination-log rw,relatime - ext4 /dev/vda1 rw
`

const sandboxMountinfo = `1 0 0:3 / / rw,relatime - 9p none rw,trans=fd,rfdno=4,wfdno=4
2 1 0:4 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
3 1 0:5 / /etc/hosts rw,relatime - 9p none rw,trans=fd
`

func TestInspectIsolationSeesTheNodesFiles(t *testing.T) {
	node := InspectIsolation(IsolationOptions{Root: fakeRoot(t, map[string]string{
		"proc/self/mountinfo":            runcMountinfo,
		"run/containerd/containerd.sock": "",
		"etc/kubernetes/kubelet.conf":    "apiVersion: v1\n",
		"proc/sys/kernel/osrelease":      "6.8.0\n",
		"proc/net/dev":                   netDev,
		"proc/sys/kernel/random/boot_id": "b\n",
		"proc/version":                   "Linux version 6.8.0\n",
		"proc/sys/kernel/hostname":       "node-1\n",
	})})
	if strings.Join(node.RuntimeSockets, ",") != "/run/containerd/containerd.sock" || strings.Join(node.NodeFiles, ",") != "/etc/kubernetes/kubelet.conf,/etc/kubernetes,/run/containerd" {
		t.Errorf("sockets %q, node files %q", node.RuntimeSockets, node.NodeFiles)
	}
	want := []string{
		"/ from /var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/41/fs",
		"/etc/hosts from /var/lib/kubelet/pods/8f1c/etc-hosts",
		"/dev/termination-log from /var/lib/kubelet/pods/8f1c/containers/probe/7a1b",
	}
	if !slices.Equal(node.NodeMounts, want) {
		t.Errorf("node mounts\n%q\nwant\n%q", node.NodeMounts, want)
	}

	sandbox := InspectIsolation(IsolationOptions{Root: fakeRoot(t, map[string]string{"proc/self/mountinfo": sandboxMountinfo})})
	if len(sandbox.RuntimeSockets)+len(sandbox.NodeFiles)+len(sandbox.NodeMounts) != 0 {
		t.Errorf("a sandbox's view: sockets %q, files %q, mounts %q", sandbox.RuntimeSockets, sandbox.NodeFiles, sandbox.NodeMounts)
	}
}

// What a plain container on a node that shares too much would reach: the
// runtime's socket answering, the kubelet's directory listed, its
// configuration read, a node service on 127.0.0.1 answering; and what a
// sandbox reaches of the same tries: nothing.
func TestInspectIsolationTriesToReachTheNode(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"var/lib/kubelet/config.yaml": "kind: KubeletConfiguration\n",
		"var/log/pods/":               "/",
	})
	if err := os.MkdirAll(filepath.Join(root, "run/containerd"), 0o755); err != nil {
		t.Fatal(err)
	}
	sock, err := net.Listen("unix", filepath.Join(root, "run/containerd/containerd.sock"))
	if err != nil {
		t.Skipf("cannot listen on a unix socket here: %v", err)
	}
	defer sock.Close()
	service, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer service.Close()
	closed := closedPort(t)
	services := []Target{{Address: service.Addr().String(), What: "kubelet health endpoint"}, {Address: closed, What: "kube-proxy metrics"}}

	leaky := InspectIsolation(IsolationOptions{Root: root, NodeServices: services})
	outcomes := map[string]Outcome{}
	for _, a := range append(slices.Clone(leaky.Files), leaky.NodeServices...) {
		outcomes[a.Target] = a.Outcome
	}
	for target, want := range map[string]Outcome{
		"/run/containerd/containerd.sock": OutcomeConnected,
		"/run/crio/crio.sock":             OutcomeAbsent,
		"/var/lib/kubelet/config.yaml":    OutcomeRead,
		"/var/lib/kubelet":                OutcomeRead,
		"/var/log/pods":                   OutcomeRead,
		"/run/containerd":                 OutcomeRead,
		"/etc/kubernetes":                 OutcomeAbsent,
		"/etc/kubernetes/admin.conf":      OutcomeAbsent,
		service.Addr().String():           OutcomeConnected,
		closed:                            OutcomeRefused,
	} {
		if outcomes[target] != want {
			t.Errorf("%s: %q, want %q", target, outcomes[target], want)
		}
	}
	if !slices.Equal(leaky.RuntimeSockets, []string{"/run/containerd/containerd.sock"}) {
		t.Errorf("runtime sockets %q", leaky.RuntimeSockets)
	}
	if want := []string{"/var/lib/kubelet/config.yaml", "/var/lib/kubelet", "/var/log/pods", "/run/containerd"}; !slices.Equal(leaky.NodeFiles, want) {
		t.Errorf("node files %q, want %q", leaky.NodeFiles, want)
	}
	if got := Reached(leaky.NodeServices); len(got) != 1 || got[0].Target != service.Addr().String() {
		t.Errorf("reached services %v", got)
	}

	sandbox := InspectIsolation(IsolationOptions{Root: fakeRoot(t, map[string]string{"etc/hostname": "sandboxed-probe\n"}), NodeServices: services[1:]})
	if r := Reached(append(sandbox.Files, sandbox.NodeServices...)); len(r) != 0 {
		t.Errorf("a sandbox reached %v", r)
	}
	if len(sandbox.Files) != len(runtimeSockets)+len(nodeFiles)+len(nodeDirs) {
		t.Errorf("%d tries recorded, want one per path", len(sandbox.Files))
	}
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// Interfaces come with their addresses and, for one end of a pair (a
// veth), the index of the other end.
func TestInspectIsolationInterfaces(t *testing.T) {
	root := fakeRoot(t, map[string]string{
		"proc/net/dev":               netDev,
		"sys/class/net/eth0/ifindex": "2\n",
		"sys/class/net/eth0/iflink":  "7\n",
		"sys/class/net/lo/ifindex":   "1\n",
		"sys/class/net/lo/iflink":    "1\n",
		"proc/sys/kernel/hostname":   "pod-1\n",
		"proc/1/cmdline":             "/kaic\x00probe\x00isolation\x00",
		"proc/1/comm":                "kaic\n",
		"proc/self":                  "-> 1",
		"proc/1/stat":                "1 (kaic) S 0 1 1 0 -1",
	})
	addrs := map[string][]string{"eth0": {"10.244.1.5/24", "fe80::1/64"}, "lo": {"127.0.0.1/8"}}
	r := InspectIsolation(IsolationOptions{Root: root, Addrs: func(n string) ([]string, error) { return addrs[n], nil }})
	want := []Interface{{Name: "eth0", Addrs: addrs["eth0"], PeerIndex: 7}, {Name: "lo", Addrs: addrs["lo"]}}
	if len(r.Interfaces) != 2 || r.Interfaces[0].String() != want[0].String() || r.Interfaces[1].String() != want[1].String() {
		t.Errorf("interfaces %v, want %v", r.Interfaces, want)
	}
	if r.Self != 1 || r.Init != "/kaic probe isolation" || r.ProcessCount != 1 {
		t.Errorf("self %d, init %q, %d processes", r.Self, r.Init, r.ProcessCount)
	}
	failing := InspectIsolation(IsolationOptions{Root: root, Addrs: func(string) ([]string, error) { return nil, errors.New("no netlink") }})
	if !slices.Contains(failing.Problems, "addresses of eth0: no netlink") {
		t.Errorf("problems %q", failing.Problems)
	}
}
