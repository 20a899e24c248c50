package probe

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// IsolationKey is the RESULT key of the isolation report: the probe prints
// "RESULT: ISOLATION=<json>".
const IsolationKey = "ISOLATION"

// hostProcessNames are the node agents a sandboxed container must not see.
var hostProcessNames = []string{"kubelet", "containerd"}

// maxProcesses bounds the processes a report lists; ProcessCount counts
// them all.
const maxProcesses = 100

// What the probe tries to reach, grouped by what it is.
const (
	WhatRuntimeSocket = "container runtime socket"
	WhatNodeConfig    = "node configuration"
	WhatNodeDir       = "node directory"
	WhatNodeService   = "node-local service"
)

// runtimeSockets are where container runtimes listen.
var runtimeSockets = []string{
	"/run/containerd/containerd.sock", "/var/run/containerd/containerd.sock",
	"/run/crio/crio.sock", "/var/run/crio/crio.sock",
	"/run/docker.sock", "/var/run/docker.sock",
	"/run/k3s/containerd/containerd.sock",
}

// nodeFiles are node configuration files no workload needs to see.
var nodeFiles = []string{
	"/etc/kubernetes/kubelet.conf", "/etc/kubernetes/admin.conf", "/var/lib/kubelet/config.yaml",
	"/var/lib/kubelet/kubeconfig", "/etc/kubernetes/pki/ca.key",
}

// nodeDirs are the node's own directories: the kubelet's, the container
// runtime's and the pods' logs. A container sees them only if the node's
// file system is shared with it.
var nodeDirs = []string{
	"/etc/kubernetes", "/var/lib/kubelet", "/var/log/pods", "/var/lib/containerd", "/run/containerd",
}

// NodeServices are the node's services that listen on the node's loopback
// address only: a container with its own network stack reaches none of
// them at 127.0.0.1, one on the node's network reaches at least the
// kubelet's.
var NodeServices = []Target{
	{Address: "127.0.0.1:10248", What: "kubelet health endpoint"},
	{Address: "127.0.0.1:10249", What: "kube-proxy metrics"},
	{Address: "127.0.0.1:10257", What: "kube-controller-manager (control-plane nodes)"},
	{Address: "127.0.0.1:10259", What: "kube-scheduler (control-plane nodes)"},
	{Address: "127.0.0.1:2381", What: "etcd metrics (control-plane nodes)"},
}

// Target is a TCP address the probe tries to connect to.
type Target struct {
	Address string `json:"address"`
	What    string `json:"what"`
}

// nodePathPrefixes are the node directories runtimes share container
// files from.
var nodePathPrefixes = []string{"/var/lib/kubelet/", "/var/lib/containerd/", "/var/lib/docker/", "/var/lib/containers/", "/run/containerd/"}

// Isolation is what a container can see of the kernel and the node it
// runs on. A check compares a sandboxed pod's report with that of a plain
// pod on the same node: a sandbox has its own kernel (or a user-space one),
// so the kernel identity and the boot id differ, and it sees neither the
// node's memory devices, processes, files and runtime nor its network.
type Isolation struct {
	// KernelRelease is what uname reports (uname -r).
	KernelRelease string `json:"kernelRelease"`
	// ProcVersion is the content of /proc/version.
	ProcVersion string `json:"procVersion"`
	// BootID is /proc/sys/kernel/random/boot_id, new at every kernel boot.
	BootID string `json:"bootID"`
	// DevMem and DevKmem say whether /dev/mem and /dev/kmem could be
	// opened for reading.
	DevMem  DeviceAccess `json:"devMem"`
	DevKmem DeviceAccess `json:"devKmem"`
	// HostProcesses are the node agents (kubelet, containerd…) visible in
	// /proc, as "<pid>:<name>".
	HostProcesses []string `json:"hostProcesses"`
	// Self is the probe's own process id, as /proc/self names it.
	Self int `json:"self"`
	// Init is the command line of process 1 as /proc/1/cmdline shows it
	// (arguments joined by spaces): in a container's own process space
	// that is the container's first process, on the node its init.
	Init string `json:"init"`
	// ProcessCount is the number of processes listed in /proc.
	ProcessCount int `json:"processCount"`
	// Processes are the processes listed in /proc, by id (at most 100).
	Processes []Process `json:"processes"`
	// Hostname is the container's host name (the kernel's).
	Hostname string `json:"hostname"`
	// EtcHostname is the content of /etc/hostname.
	EtcHostname string `json:"etcHostname"`
	// Interfaces are the network interfaces the container sees.
	Interfaces []Interface `json:"interfaces"`
	// RuntimeSockets are container runtime sockets the container can see
	// (containerd, CRI-O, Docker): through one, a workload commands the
	// node's runtime.
	RuntimeSockets []string `json:"runtimeSockets"`
	// NodeFiles are node configuration files and directories the
	// container can see (the kubelet's, the runtime's, the control
	// plane's).
	NodeFiles []string `json:"nodeFiles"`
	// Files are the probe's tries to reach the node's runtime sockets,
	// configuration files and directories, reached or not.
	Files []Attempt `json:"files"`
	// NodeServices are the probe's tries to connect to the node's
	// loopback-only services at 127.0.0.1.
	NodeServices []Attempt `json:"nodeServices"`
	// NodeMounts are the container's mounts, from /proc/self/mountinfo,
	// whose root or options name a path of the node's own file system
	// (/var/lib/kubelet, /var/lib/containerd…): the runtime shares the
	// node's files with it directly, rather than through a sandbox.
	NodeMounts []string `json:"nodeMounts"`
	// Problems are what could not be read, e.g. a missing /proc file.
	Problems []string `json:"problems,omitempty"`
}

// Process is one entry of /proc.
type Process struct {
	PID  int    `json:"pid"`
	PPID int    `json:"ppid"`
	Comm string `json:"comm"`
}

func (p Process) String() string { return fmt.Sprintf("%d:%s", p.PID, p.Comm) }

// Interface is a network interface and its addresses.
type Interface struct {
	Name  string   `json:"name"`
	Addrs []string `json:"addrs,omitempty"`
	// PeerIndex is the index of the interface's peer (iflink in
	// /sys/class/net) when it differs from its own: the interface is one
	// end of a pair, e.g. a veth whose other end lives in the node.
	PeerIndex int `json:"peerIndex,omitempty"`
}

func (i Interface) String() string {
	s := i.Name
	if len(i.Addrs) > 0 {
		s += " " + strings.Join(i.Addrs, " ")
	}
	if i.PeerIndex > 0 {
		s += fmt.Sprintf(" (peer ifindex %d)", i.PeerIndex)
	}
	return s
}

// InterfaceNames returns the names of r's interfaces.
func (r Isolation) InterfaceNames() []string {
	out := []string{}
	for _, i := range r.Interfaces {
		out = append(out, i.Name)
	}
	return out
}

// Attempt is one try to reach something of the node: a path or a TCP
// address, what it is, and how far the try got.
type Attempt struct {
	Target  string  `json:"target"`
	What    string  `json:"what"`
	Outcome Outcome `json:"outcome"`
	// Detail is the error that stopped the try, if any.
	Detail string `json:"detail,omitempty"`
}

func (a Attempt) String() string {
	s := fmt.Sprintf("%s (%s): %s", a.Target, a.What, a.Outcome)
	if a.Detail != "" {
		s += ": " + a.Detail
	}
	return s
}

// Outcome is how far an Attempt got.
type Outcome string

// The outcomes of an Attempt.
const (
	// OutcomeAbsent: the path does not exist.
	OutcomeAbsent Outcome = "absent"
	// OutcomeDenied: the path exists but could not be opened.
	OutcomeDenied Outcome = "exists, denied"
	// OutcomeExists: the path exists (a socket that did not accept).
	OutcomeExists Outcome = "exists"
	// OutcomeRead: the file was read or the directory listed.
	OutcomeRead Outcome = "read"
	// OutcomeConnected: a connection was accepted.
	OutcomeConnected Outcome = "connected"
	// OutcomeRefused: nothing listens there.
	OutcomeRefused Outcome = "refused"
	// OutcomeNoAnswer: the connection timed out or had no route.
	OutcomeNoAnswer Outcome = "no answer"
)

// Reached reports whether the try found what it looked for: a path that
// exists, whether or not it could be opened, or an address that answered.
func (o Outcome) Reached() bool {
	switch o {
	case OutcomeDenied, OutcomeExists, OutcomeRead, OutcomeConnected:
		return true
	}
	return false
}

// Reached returns the attempts that reached their target.
func Reached(attempts []Attempt) []Attempt {
	out := []Attempt{}
	for _, a := range attempts {
		if a.Outcome.Reached() {
			out = append(out, a)
		}
	}
	return out
}

// DeviceAccess is how far a device file is reachable.
type DeviceAccess string

// The ways a device file can be reachable.
const (
	DeviceAbsent   DeviceAccess = "absent"
	DeviceDenied   DeviceAccess = "denied"
	DeviceReadable DeviceAccess = "readable"
)

// Accessible reports whether the device could be opened.
func (a DeviceAccess) Accessible() bool { return a == DeviceReadable }

// IsolationOptions say where InspectIsolation looks.
type IsolationOptions struct {
	// Root is prepended to every path read (/proc, /dev, /sys, /etc and
	// the node's paths); "" is "/". Tests point it at a fake tree.
	Root string
	// Uname returns the kernel release; nil calls uname(2), or reads
	// <Root>/proc/sys/kernel/osrelease (which uname mirrors) when Root is
	// set.
	Uname func() (string, error)
	// Addrs returns the addresses of the named interface; nil asks the
	// kernel when Root is unset and lists none when it is set.
	Addrs func(iface string) ([]string, error)
	// NodeServices are the addresses tried as the node's loopback-only
	// services; nil tries NodeServices when Root is unset and none when
	// it is set.
	NodeServices []Target
	// DialTimeout bounds each connection try (default 2s).
	DialTimeout time.Duration
}

// InspectIsolation reads what the container sees of its kernel and node,
// and tries to reach the node's files, runtime and loopback services.
// Files that cannot be read are listed in Problems rather than failing
// the report, since a sandbox may hide them on purpose.
func InspectIsolation(o IsolationOptions) Isolation {
	root := o.Root
	if root == "" {
		root = "/"
	}
	path := func(p string) string { return filepath.Join(root, p) }
	if o.DialTimeout <= 0 {
		o.DialTimeout = 2 * time.Second
	}
	var r Isolation
	read := func(p string) string {
		b, err := os.ReadFile(path(p))
		if err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("reading %s: %v", p, err))
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	uname := o.Uname
	if uname == nil && o.Root == "" {
		uname = unameRelease
	}
	if uname != nil {
		rel, err := uname()
		if err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("uname: %v", err))
		}
		r.KernelRelease = strings.TrimSpace(rel)
	} else {
		r.KernelRelease = read("/proc/sys/kernel/osrelease")
	}
	r.ProcVersion = read("/proc/version")
	r.BootID = read("/proc/sys/kernel/random/boot_id")
	r.DevMem = deviceAccess(path("/dev/mem"))
	r.DevKmem = deviceAccess(path("/dev/kmem"))

	if self, err := os.Readlink(path("/proc/self")); err == nil {
		r.Self, _ = strconv.Atoi(self)
	} else if o.Root == "" {
		r.Self = os.Getpid()
	} else {
		r.Problems = append(r.Problems, fmt.Sprintf("reading /proc/self: %v", err))
	}
	if b, err := os.ReadFile(path("/proc/1/cmdline")); err == nil {
		r.Init = strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	} else {
		r.Problems = append(r.Problems, fmt.Sprintf("reading /proc/1/cmdline: %v", err))
	}
	procs, err := processes(path("/proc"))
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	r.ProcessCount = len(procs)
	r.HostProcesses = []string{}
	for _, p := range procs {
		if isHostAgent(p.Comm) {
			r.HostProcesses = append(r.HostProcesses, p.String())
		}
	}
	r.Processes = procs[:min(len(procs), maxProcesses)]

	if h := read("/proc/sys/kernel/hostname"); h != "" {
		r.Hostname = h
	} else if h, err := os.Hostname(); err == nil && o.Root == "" {
		r.Hostname = h
	}
	if b, err := os.ReadFile(path("/etc/hostname")); err == nil {
		r.EtcHostname = strings.TrimSpace(string(b))
	}

	addrs := o.Addrs
	if addrs == nil && o.Root == "" {
		addrs = kernelAddrs
	}
	ifaces, err := netInterfaces(path("/proc/net/dev"))
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
		if o.Root == "" {
			ifaces = kernelInterfaces()
		}
	}
	for _, name := range ifaces {
		i := Interface{Name: name}
		if addrs != nil {
			a, err := addrs(name)
			if err != nil {
				r.Problems = append(r.Problems, fmt.Sprintf("addresses of %s: %v", name, err))
			}
			i.Addrs = a
		}
		i.PeerIndex = peerIndex(path("/sys/class/net/" + name))
		r.Interfaces = append(r.Interfaces, i)
	}

	for _, s := range runtimeSockets {
		r.Files = append(r.Files, socketAttempt(path(s), s, o.DialTimeout))
	}
	for _, f := range nodeFiles {
		r.Files = append(r.Files, fileAttempt(path(f), f, WhatNodeConfig))
	}
	for _, d := range nodeDirs {
		r.Files = append(r.Files, fileAttempt(path(d), d, WhatNodeDir))
	}
	r.RuntimeSockets, r.NodeFiles = []string{}, []string{}
	for _, a := range Reached(r.Files) {
		if a.What == WhatRuntimeSocket {
			r.RuntimeSockets = append(r.RuntimeSockets, a.Target)
		} else {
			r.NodeFiles = append(r.NodeFiles, a.Target)
		}
	}
	services := o.NodeServices
	if services == nil && o.Root == "" {
		services = NodeServices
	}
	r.NodeServices = []Attempt{}
	for _, s := range services {
		r.NodeServices = append(r.NodeServices, tcpAttempt(s, o.DialTimeout))
	}

	mounts, err := nodeMounts(path("/proc/self/mountinfo"))
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	r.NodeMounts = mounts
	return r
}

// socketAttempt looks for a runtime socket and, when it exists, connects
// to it.
func socketAttempt(full, name string, timeout time.Duration) Attempt {
	a := Attempt{Target: name, What: WhatRuntimeSocket}
	if _, err := os.Lstat(full); err != nil {
		a.Outcome, a.Detail = statOutcome(err)
		return a
	}
	c, err := net.DialTimeout("unix", full, timeout)
	if err != nil {
		a.Outcome, a.Detail = OutcomeExists, "connecting: "+err.Error()
		return a
	}
	_ = c.Close()
	a.Outcome = OutcomeConnected
	return a
}

// fileAttempt reads a file (one byte) or lists a directory.
func fileAttempt(full, name, what string) Attempt {
	a := Attempt{Target: name, What: what}
	fi, err := os.Stat(full)
	if err != nil {
		a.Outcome, a.Detail = statOutcome(err)
		return a
	}
	if fi.IsDir() {
		_, err = os.ReadDir(full)
	} else {
		var f *os.File
		if f, err = os.Open(full); err == nil {
			_, err = f.Read(make([]byte, 1))
			if errors.Is(err, io.EOF) {
				err = nil
			}
			_ = f.Close()
		}
	}
	if err != nil {
		a.Outcome, a.Detail = OutcomeDenied, err.Error()
		return a
	}
	a.Outcome = OutcomeRead
	return a
}

func statOutcome(err error) (Outcome, string) {
	if errors.Is(err, os.ErrNotExist) {
		return OutcomeAbsent, ""
	}
	return OutcomeDenied, err.Error()
}

// tcpAttempt connects to a TCP address.
func tcpAttempt(t Target, timeout time.Duration) Attempt {
	a := Attempt{Target: t.Address, What: t.What}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", t.Address)
	switch {
	case err == nil:
		_ = c.Close()
		a.Outcome = OutcomeConnected
	case errors.Is(err, syscall.ECONNREFUSED):
		a.Outcome = OutcomeRefused
	default:
		a.Outcome, a.Detail = OutcomeNoAnswer, err.Error()
	}
	return a
}

// peerIndex returns the iflink of an interface in sysfs when it differs
// from its ifindex, else 0.
func peerIndex(dir string) int {
	num := func(f string) int {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return 0
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	if idx, link := num("ifindex"), num("iflink"); idx > 0 && link > 0 && link != idx {
		return link
	}
	return 0
}

// kernelAddrs returns the addresses of the named interface.
func kernelAddrs(name string) ([]string, error) {
	i, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	as, err := i.Addrs()
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, a := range as {
		out = append(out, a.String())
	}
	return out, nil
}

// kernelInterfaces lists the interface names the kernel reports, for when
// /proc/net/dev cannot be read.
func kernelInterfaces() []string {
	is, err := net.Interfaces()
	if err != nil {
		return nil
	}
	out := []string{}
	for _, i := range is {
		out = append(out, i.Name)
	}
	sort.Strings(out)
	return out
}

// nodeMounts returns the mount points of mountinfo whose root or mount
// options name a node directory, as "<mount point> from <node path>".
func nodeMounts(mountinfo string) ([]string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return nil, fmt.Errorf("listing mounts: %w", err)
	}
	defer f.Close()
	out := []string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		root, point := fields[3], fields[4]
		if from := nodePath(root); from != "" {
			out = append(out, point+" from "+from)
			continue
		}
		if i := slices.Index(fields, "-"); i >= 0 && i+3 < len(fields) {
			for _, opt := range strings.Split(fields[i+3], ",") {
				_, val, _ := strings.Cut(opt, "=")
				for _, p := range strings.Split(val, ":") {
					if from := nodePath(p); from != "" {
						out = append(out, point+" from "+from)
						break
					}
				}
				if len(out) > 0 && strings.HasPrefix(out[len(out)-1], point+" from ") {
					break
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", mountinfo, err)
	}
	return out, nil
}

// nodePath returns p when it lies in a node directory runtimes share
// container files from, else "".
func nodePath(p string) string {
	for _, prefix := range nodePathPrefixes {
		if strings.HasPrefix(p, prefix) {
			return p
		}
	}
	return ""
}

// deviceAccess opens a device file read-only (without reading it).
func deviceAccess(p string) DeviceAccess {
	f, err := os.Open(p)
	switch {
	case err == nil:
		_ = f.Close()
		return DeviceReadable
	case errors.Is(err, os.ErrNotExist):
		return DeviceAbsent
	default:
		return DeviceDenied
	}
}

// processes lists the processes in procDir by id, with their parent and
// name.
func processes(procDir string) ([]Process, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("listing processes in %s: %w", procDir, err)
	}
	out := []Process{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, e.Name(), "comm"))
		if err != nil {
			continue // the process ended, or its comm is hidden
		}
		out = append(out, Process{PID: pid, PPID: parentPID(filepath.Join(procDir, e.Name(), "stat")), Comm: strings.TrimSpace(string(b))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

// parentPID reads the parent's id from a /proc/<pid>/stat file:
// "pid (comm) state ppid ...", where comm may hold spaces and parentheses.
func parentPID(stat string) int {
	b, err := os.ReadFile(stat)
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// isHostAgent matches kubelet and containerd with its shims.
func isHostAgent(name string) bool {
	for _, agent := range hostProcessNames {
		if name == agent || strings.HasPrefix(name, agent+"-") {
			return true
		}
	}
	return false
}

// netInterfaces reads the interface names from /proc/net/dev.
func netInterfaces(devFile string) ([]string, error) {
	f, err := os.Open(devFile)
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	defer f.Close()
	out := []string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, _, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.Contains(name, "|") {
			continue // the two header lines
		}
		out = append(out, strings.TrimSpace(name))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", devFile, err)
	}
	sort.Strings(out)
	return out, nil
}

// WriteIsolationReport prints the report as one RESULT line,
// "RESULT: ISOLATION=<json>".
func WriteIsolationReport(w io.Writer, r Isolation) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding the isolation report: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s%s=%s\n", ResultPrefix, IsolationKey, b)
	return err
}

// ParseIsolation finds the isolation report in a probe's log. It reports
// false when the log holds none yet.
func ParseIsolation(log string) (Isolation, bool, error) {
	raw, ok := ParseResults(log)[IsolationKey]
	if !ok {
		return Isolation{}, false, nil
	}
	var r Isolation
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return Isolation{}, true, fmt.Errorf("malformed isolation report %q: %w", raw, err)
	}
	return r, true, nil
}
