package probe

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// IsolationKey is the RESULT key of the isolation report: the probe prints
// "RESULT: ISOLATION=<json>".
const IsolationKey = "ISOLATION"

// hostProcessNames are the node agents a sandboxed container must not see.
var hostProcessNames = []string{"kubelet", "containerd"}

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

// nodePathPrefixes are the node directories runtimes share container
// files from.
var nodePathPrefixes = []string{"/var/lib/kubelet/", "/var/lib/containerd/", "/var/lib/docker/", "/var/lib/containers/", "/run/containerd/"}

// Isolation is what a container can see of the kernel and the node it
// runs on. A check compares a sandboxed pod's report with that of a plain
// pod on the same node: a sandbox has its own kernel (or a user-space one),
// so the kernel identity and the boot id differ, and it sees neither the
// node's memory devices nor its agents.
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
	// Hostname is the container's host name.
	Hostname string `json:"hostname"`
	// Interfaces are the network interfaces the container sees.
	Interfaces []string `json:"interfaces"`
	// RuntimeSockets are container runtime sockets the container can see
	// (containerd, CRI-O, Docker): through one, a workload commands the
	// node's runtime.
	RuntimeSockets []string `json:"runtimeSockets"`
	// NodeFiles are node configuration files the container can see
	// (the kubelet's, the control plane's).
	NodeFiles []string `json:"nodeFiles"`
	// NodeMounts are the container's mounts, from /proc/self/mountinfo,
	// whose root or options name a path of the node's own file system
	// (/var/lib/kubelet, /var/lib/containerd…): the runtime shares the
	// node's files with it directly, rather than through a sandbox.
	NodeMounts []string `json:"nodeMounts"`
	// Problems are what could not be read, e.g. a missing /proc file.
	Problems []string `json:"problems,omitempty"`
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
	// Root is prepended to every path read (/proc, /dev); "" is "/".
	// Tests point it at a fake tree.
	Root string
	// Uname returns the kernel release; nil calls uname(2), or reads
	// <Root>/proc/sys/kernel/osrelease (which uname mirrors) when Root is
	// set.
	Uname func() (string, error)
}

// InspectIsolation reads what the container sees of its kernel and node.
// Files that cannot be read are listed in Problems rather than failing
// the report, since a sandbox may hide them on purpose.
func InspectIsolation(o IsolationOptions) Isolation {
	root := o.Root
	if root == "" {
		root = "/"
	}
	path := func(p string) string { return filepath.Join(root, p) }
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
	procs, err := hostProcesses(path("/proc"))
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	r.HostProcesses = procs
	if h := read("/proc/sys/kernel/hostname"); h != "" {
		r.Hostname = h
	} else if h, err := os.Hostname(); err == nil && o.Root == "" {
		r.Hostname = h
	}
	ifaces, err := netInterfaces(path("/proc/net/dev"))
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	r.Interfaces = ifaces
	r.RuntimeSockets = existing(path, runtimeSockets)
	r.NodeFiles = existing(path, nodeFiles)
	mounts, err := nodeMounts(path("/proc/self/mountinfo"))
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
	}
	r.NodeMounts = mounts
	return r
}

// existing returns the paths that exist, as the container names them.
func existing(path func(string) string, paths []string) []string {
	out := []string{}
	for _, p := range paths {
		if _, err := os.Lstat(path(p)); err == nil {
			out = append(out, p)
		}
	}
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

// hostProcesses lists the processes in procDir whose name is a node
// agent's.
func hostProcesses(procDir string) ([]string, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("listing processes in %s: %w", procDir, err)
	}
	found := []string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, e.Name(), "comm"))
		if err != nil {
			continue // the process ended, or its comm is hidden
		}
		name := strings.TrimSpace(string(b))
		if isHostAgent(name) {
			found = append(found, fmt.Sprintf("%d:%s", pid, name))
		}
	}
	return found, nil
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
