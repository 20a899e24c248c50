package sandboxing

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kaic-dev/kaic/pkg/probe"
)

// initNames are the names of a node's init; a container's own process 1
// is its entrypoint.
var initNames = []string{"systemd", "init"}

// nodeDevicePrefixes name the interfaces that live in a node's network
// namespace and none of a pod's: container and CNI bridges, the node ends
// of pods' veth pairs, overlay and IPVS devices.
var nodeDevicePrefixes = []string{
	"docker0", "cni0", "cbr0", "kube-bridge", "kube-ipvs0", "br-", "veth", "virbr",
	"flannel", "cali", "cilium_", "vxlan", "weave", "kaic-podnet",
}

// procProblems fails a sandboxed pod whose /proc is the node's: process 1
// is the node's init, or it lists processes that are not its own.
func procProblems(s probe.Isolation) []string {
	var out []string
	if isInit(s.Init) {
		out = append(out, fmt.Sprintf("the sandboxed pod sees the node's init as process 1: /proc/1/cmdline is %q", s.Init))
	}
	foreign := foreignProcesses(s)
	// Processes past the report's list are foreign too: a container's own
	// process space is never that large.
	count := len(foreign) + max(0, s.ProcessCount-len(s.Processes))
	if count > 0 {
		names := []string{}
		for _, p := range foreign[:min(len(foreign), 10)] {
			names = append(names, p.String())
		}
		if count > len(names) {
			names = append(names, fmt.Sprintf("and %d more", count-len(names)))
		}
		out = append(out, fmt.Sprintf("%d of the %d processes the sandboxed pod's /proc lists are not its own: %s",
			count, s.ProcessCount, strings.Join(names, ", ")))
	}
	return out
}

// isInit reports whether cmdline is a node's init (/sbin/init,
// /lib/systemd/systemd --system…).
func isInit(cmdline string) bool {
	f := strings.Fields(cmdline)
	return len(f) > 0 && slices.Contains(initNames, path.Base(f[0]))
}

// foreignProcesses returns the processes in s's /proc that are neither
// the probe, nor one of its ancestors, nor one of its descendants. A
// container's own process space holds only those; the node's holds its
// agents, kernel threads and every other pod.
func foreignProcesses(s probe.Isolation) []probe.Process {
	parent := map[int]int{}
	for _, p := range s.Processes {
		parent[p.PID] = p.PPID
	}
	own := map[int]bool{}
	for pid, seen := s.Self, 0; pid > 0 && seen <= len(parent); pid, seen = parent[pid], seen+1 {
		own[pid] = true
	}
	descends := func(pid int) bool {
		for seen := 0; pid > 0 && seen <= len(parent); pid, seen = parent[pid], seen+1 {
			if pid == s.Self {
				return true
			}
		}
		return false
	}
	var out []probe.Process
	for _, p := range s.Processes {
		if !own[p.PID] && !descends(p.PID) {
			out = append(out, p)
		}
	}
	return out
}

// socketProblems fails a sandboxed pod that reaches a container runtime's
// socket, through which it would command the node's runtime.
func socketProblems(s probe.Isolation) []string {
	var out []string
	for _, a := range probe.Reached(s.Files) {
		if a.What == probe.WhatRuntimeSocket {
			out = append(out, "the sandboxed pod reaches the container runtime's socket "+a.Target+": "+string(a.Outcome))
		}
	}
	return out
}

// nodeFileProblems fails a sandboxed pod that reaches the node's
// configuration or directories, or whose host name is the node's.
func nodeFileProblems(s probe.Isolation, node string) []string {
	var out []string
	for _, a := range probe.Reached(s.Files) {
		if a.What != probe.WhatRuntimeSocket {
			out = append(out, fmt.Sprintf("the sandboxed pod reaches the node's %s %s: %s", a.What, a.Target, a.Outcome))
		}
	}
	for _, h := range []struct{ where, name string }{{"host name", s.Hostname}, {"/etc/hostname", s.EtcHostname}} {
		if node != "" && strings.EqualFold(h.name, node) {
			out = append(out, fmt.Sprintf("the sandboxed pod's %s is the node's, %s", h.where, node))
		}
	}
	return out
}

// mountProblems fails a sandboxed pod whose mounts the runtime shares
// from the node's own paths.
func mountProblems(s probe.Isolation) []string {
	if len(s.NodeMounts) == 0 {
		return nil
	}
	return []string{"the sandboxed pod's mounts name the node's own paths, so the runtime shares the node's files with it directly: " + strings.Join(s.NodeMounts, "; ")}
}

// interfaceProblems fails a sandboxed pod that sees a node's interface
// (a bridge, the node end of a veth) or one of the node's addresses.
func interfaceProblems(s probe.Isolation, nodeAddrs []string) []string {
	var out []string
	node := map[netip.Addr]bool{}
	for _, a := range nodeAddrs {
		// Every network namespace has its own loopback address.
		if ip, err := netip.ParseAddr(a); err == nil && !ip.IsLoopback() {
			node[ip] = true
		}
	}
	for _, i := range s.Interfaces {
		if slices.ContainsFunc(nodeDevicePrefixes, func(p string) bool { return strings.HasPrefix(i.Name, p) }) {
			out = append(out, fmt.Sprintf("the sandboxed pod sees interface %s, which lives on the node, not in a pod", i.Name))
		}
		for _, a := range i.Addrs {
			ip, err := netip.ParsePrefix(a)
			if err == nil && node[ip.Addr()] {
				out = append(out, fmt.Sprintf("the sandboxed pod's interface %s holds the node's address %s: it is on the node's network", i.Name, ip.Addr()))
			}
		}
	}
	return out
}

// loopbackProblems fails a sandboxed pod that reaches a service listening
// on the node's loopback address only.
func loopbackProblems(s probe.Isolation) []string {
	var out []string
	for _, a := range probe.Reached(s.NodeServices) {
		out = append(out, fmt.Sprintf("the sandboxed pod reaches the node's %s at %s: its loopback is the node's", a.What, a.Target))
	}
	return out
}

// nodeAddresses are the node's internal and external IP addresses.
func nodeAddresses(node *corev1.Node) []string {
	out := []string{}
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			out = append(out, a.Address)
		}
	}
	return out
}

// pairedInterfaces names r's interfaces that are one end of a pair.
func pairedInterfaces(r probe.Isolation) []string {
	var out []string
	for _, i := range r.Interfaces {
		if i.PeerIndex > 0 {
			out = append(out, i.Name)
		}
	}
	return out
}

// attemptTable lines up both pods' tries, target by target:
// "<target> (<what>): <sandboxed outcome> / <plain outcome>".
func attemptTable(sandboxed, control []probe.Attempt) []string {
	plain := map[string]probe.Outcome{}
	for _, a := range control {
		plain[a.Target] = a.Outcome
	}
	out := []string{}
	for _, a := range sandboxed {
		p := plain[a.Target]
		if p == "" {
			p = "not tried"
		}
		out = append(out, fmt.Sprintf("%s (%s): %s / %s", a.Target, a.What, a.Outcome, p))
	}
	return out
}

// unreached says which targets of kind what (every kind but runtime
// sockets when what is "") the sandboxed pod tried and did not reach,
// after lead.
func unreached(attempts []probe.Attempt, what, lead string) string {
	var names []string
	for _, a := range attempts {
		if (what == "" && a.What == probe.WhatRuntimeSocket) || (what != "" && a.What != what) || a.Outcome.Reached() {
			continue
		}
		names = append(names, fmt.Sprintf("%s %s", a.Target, a.Outcome))
	}
	if len(names) == 0 {
		return lead
	}
	return lead + ": " + strings.Join(names, ", ")
}

// procView is what a pod sees in /proc, for the transcript.
func procView(r probe.Isolation) map[string]any {
	procs := []string{}
	for _, p := range r.Processes {
		procs = append(procs, p.String())
	}
	return map[string]any{"process 1": r.Init, "self": r.Self, "processes": procs, "count": r.ProcessCount}
}

// interfaceList is a pod's interfaces with their addresses.
func interfaceList(r probe.Isolation) []string {
	out := []string{}
	for _, i := range r.Interfaces {
		out = append(out, i.String())
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
