// Package preflight checks that this machine can run a profile's cluster:
// a reachable container runtime, cgroup v2, inotify limits, free disk, no
// leftover cluster of the same name and, for a kind cluster given host
// GPUs, what passing NVIDIA GPUs into its nodes needs (see nvidia.go).
// Every finding says what to do.
package preflight

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Status of a finding.
type Status string

// Finding statuses: a failure stops provisioning, a warning does not.
const (
	OK   Status = "ok"
	Warn Status = "warning"
	Fail Status = "fail"
)

// Finding is the result of one check.
type Finding struct {
	Check  string `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	// Fix says what to do when the status is not ok.
	Fix string `json:"fix,omitempty"`
}

// Host is what the checks read; tests point it at fixtures.
type Host struct {
	// Root prefixes the paths read: /proc, /sys, /dev and /etc ("" is the
	// real root).
	Root string
	// LookPath finds a command (default exec.LookPath).
	LookPath func(string) (string, error)
	// Run runs a command and returns its combined output (default exec).
	Run func(ctx context.Context, name string, args ...string) ([]byte, error)
	// FreeBytes reports free disk space under a path (default statfs).
	FreeBytes func(path string) (uint64, error)
}

func (h *Host) path(p string) string { return filepath.Join(h.Root, p) }

func (h *Host) lookPath(name string) (string, error) {
	if h.LookPath != nil {
		return h.LookPath(name)
	}
	return exec.LookPath(name)
}

func (h *Host) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	if h.Run != nil {
		return h.Run(ctx, name, args...)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

func (h *Host) freeBytes(path string) (uint64, error) {
	if h.FreeBytes != nil {
		return h.FreeBytes(path)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Options select what the checks look for.
type Options struct {
	// Runtime is docker, podman, nerdctl or auto.
	Runtime string
	// ClusterName is the kind cluster a run would create.
	ClusterName string
	// Dir is where the run directory and node data live (free disk).
	Dir string
	// MinFreeBytes is the free disk below which the check fails.
	MinFreeBytes uint64
	// GPUs are the host NVIDIA GPUs passed into the cluster's nodes, as
	// spec.cluster.kind.gpus says: "all", "none" (or "") or a
	// comma-separated list of indexes. Anything but none checks the
	// host's GPUs and NVIDIA container runtime.
	GPUs string
}

// Recommended inotify limits for several kind nodes.
const (
	minWatches   = 524288
	minInstances = 512
)

// Check runs every host check.
func Check(ctx context.Context, h *Host, opts Options) []Finding {
	if opts.MinFreeBytes == 0 {
		opts.MinFreeBytes = 20 << 30
	}
	runtime, f := checkRuntime(ctx, h, opts.Runtime)
	out := []Finding{f}
	out = append(out, checkCgroup(h), checkInotify(h, "max_user_watches", minWatches), checkInotify(h, "max_user_instances", minInstances))
	out = append(out, checkDisk(h, opts.Dir, opts.MinFreeBytes))
	if runtime != "" && opts.ClusterName != "" {
		out = append(out, checkExistingCluster(ctx, h, runtime, opts.ClusterName))
	}
	if opts.GPUs != "" && opts.GPUs != "none" {
		out = append(out, checkNVIDIA(ctx, h, runtime, opts.GPUs)...)
	}
	return out
}

// Failed reports whether any finding is a failure.
func Failed(fs []Finding) bool {
	for _, f := range fs {
		if f.Status == Fail {
			return true
		}
	}
	return false
}

func checkRuntime(ctx context.Context, h *Host, want string) (string, Finding) {
	candidates := []string{"docker", "nerdctl", "podman"}
	if want != "" && want != "auto" {
		candidates = []string{want}
	}
	var tried []string
	for _, rt := range candidates {
		if _, err := h.lookPath(rt); err != nil {
			tried = append(tried, rt+" not found")
			continue
		}
		out, err := h.run(ctx, rt, "info", "--format", "{{.ServerVersion}}")
		if err != nil {
			return "", Finding{Check: "container runtime", Status: Fail,
				Detail: fmt.Sprintf("%s is installed but its engine does not answer: %s", rt, firstLine(string(out), err)),
				Fix:    fmt.Sprintf("start the %s engine (e.g. systemctl start %s) and make sure this user may use it", rt, rt)}
		}
		return rt, Finding{Check: "container runtime", Status: OK, Detail: fmt.Sprintf("%s, engine %s", rt, strings.TrimSpace(string(out)))}
	}
	return "", Finding{Check: "container runtime", Status: Fail, Detail: strings.Join(tried, ", "),
		Fix: "install Docker (or podman / nerdctl) and start its engine; kind runs each node as a container"}
}

func checkCgroup(h *Host) Finding {
	if _, err := os.Stat(h.path("/sys/fs/cgroup/cgroup.controllers")); err == nil {
		return Finding{Check: "cgroups", Status: OK, Detail: "cgroup v2"}
	}
	return Finding{Check: "cgroups", Status: Warn, Detail: "the host uses cgroup v1, which kubelet 1.35+ refuses by default",
		Fix: "boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2; until then kaic sets failCgroupV1: false in the kind nodes' kubelet configuration"}
}

func checkInotify(h *Host, name string, min int) Finding {
	check := "inotify " + name
	data, err := os.ReadFile(h.path("/proc/sys/fs/inotify/" + name))
	if err != nil {
		return Finding{Check: check, Status: Warn, Detail: fmt.Sprintf("cannot read it: %v", err)}
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return Finding{Check: check, Status: Warn, Detail: fmt.Sprintf("unreadable value %q", strings.TrimSpace(string(data)))}
	}
	if v < min {
		return Finding{Check: check, Status: Warn, Detail: fmt.Sprintf("%d is below %d: pods on multi-node clusters fail with 'too many open files'", v, min),
			Fix: fmt.Sprintf("sudo sysctl -w fs.inotify.%s=%d (add it to /etc/sysctl.d/ to keep it)", name, min)}
	}
	return Finding{Check: check, Status: OK, Detail: strconv.Itoa(v)}
}

func checkDisk(h *Host, dir string, min uint64) Finding {
	if dir == "" {
		dir = "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			dir = d
			break
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	free, err := h.freeBytes(dir)
	if err != nil {
		return Finding{Check: "free disk", Status: Warn, Detail: fmt.Sprintf("cannot read free space of %s: %v", dir, err)}
	}
	gib := float64(free) / (1 << 30)
	if free < min {
		return Finding{Check: "free disk", Status: Fail, Detail: fmt.Sprintf("%.1f GiB free under %s; a cluster with the stack needs about %d GiB", gib, dir, min>>30),
			Fix: "free disk space (docker system prune removes unused images) or choose another --out"}
	}
	return Finding{Check: "free disk", Status: OK, Detail: fmt.Sprintf("%.1f GiB free under %s", gib, dir)}
}

// checkExistingCluster looks for node containers of a kind cluster with
// the same name, which kind refuses to create over.
func checkExistingCluster(ctx context.Context, h *Host, runtime, name string) Finding {
	out, err := h.run(ctx, runtime, "ps", "-a", "--filter", "label=io.x-k8s.kind.cluster="+name, "--format", "{{.Names}}")
	if err != nil {
		return Finding{Check: "kind cluster " + name, Status: Warn, Detail: "cannot list containers: " + firstLine(string(out), err)}
	}
	nodes := strings.Fields(string(out))
	if len(nodes) > 0 {
		return Finding{Check: "kind cluster " + name, Status: Fail, Detail: fmt.Sprintf("already exists (%s)", strings.Join(nodes, ", ")),
			Fix: "remove it with 'kaic down <run dir>' if kaic created it, or choose another spec.cluster.kind.name"}
	}
	return Finding{Check: "kind cluster " + name, Status: OK, Detail: "no cluster of that name"}
}

func firstLine(out string, err error) string {
	out = strings.TrimSpace(out)
	if i := strings.IndexByte(out, '\n'); i >= 0 {
		out = out[:i]
	}
	if out == "" {
		return err.Error()
	}
	return out
}
