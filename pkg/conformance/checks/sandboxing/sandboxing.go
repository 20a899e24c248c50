// Package sandboxing verifies the workload_sandboxing requirement: the
// platform offers a sandboxed runtime, selected with a RuntimeClass, whose
// pods run and are isolated from the node. A sandboxed probe pod and a
// plain control pod on the same node report what they see and reach of
// the node. The sandboxed one must see another kernel (release or
// /proc/version) and another boot, no /dev/mem or /dev/kmem, none of the
// node's agents; a /proc of its own processes whose process 1 is not the
// node's init; no runtime socket, node configuration or directory, node
// host name or mount from the node's paths; only its own interfaces,
// without the node's addresses, and a loopback on which none of the
// node's loopback-only services answer. Each judgement is a subtest; one
// the sandbox hides the evidence of is skipped as not verified.
package sandboxing

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
	"github.com/kaic-dev/kaic/pkg/probe"
)

// ID is the requirement this package verifies.
const ID = "workload_sandboxing"

// Names of the objects the check creates.
const (
	sandboxedPod = "sandboxed-probe"
	controlPod   = "control-probe"
)

// Default time limits.
const (
	// DefaultRunTimeout bounds the wait for each probe pod to run.
	DefaultRunTimeout = 3 * time.Minute
	// DefaultProbeTimeout bounds the wait for a probe's report.
	DefaultProbeTimeout = 90 * time.Second
	// hold keeps the probe running after it reported, so its log stays
	// readable while the check compares the two pods.
	hold = time.Hour
)

// sandboxHints are what the name or handler of a sandbox RuntimeClass
// contains.
var sandboxHints = []string{"gvisor", "runsc", "kata", "sandboxed", "quark", "krun"}

// Options override what the check detects.
type Options struct {
	// RuntimeClass names the sandbox RuntimeClass; "" detects one whose
	// name or handler looks like a sandbox (gvisor, runsc, kata, sandboxed,
	// quark, krun).
	RuntimeClass string
	// RunTimeout bounds the wait for each probe pod to run (default
	// DefaultRunTimeout).
	RunTimeout time.Duration
	// ProbeTimeout bounds the wait for each probe's report (default
	// DefaultProbeTimeout).
	ProbeTimeout time.Duration

	// standIn, when set, gives the reports in place of the probes' logs,
	// for tests on nodes that run no containers.
	standIn *standInReports
}

// standInReports are isolation reports by pod name.
type standInReports struct{ byPod map[string]probe.Isolation }

// Check returns the workload_sandboxing check, which detects the sandbox
// RuntimeClass.
func Check() conformance.Check { return New(Options{}) }

// New returns the workload_sandboxing check with o's overrides.
func New(o Options) conformance.Check {
	if o.RunTimeout <= 0 {
		o.RunTimeout = DefaultRunTimeout
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = DefaultProbeTimeout
	}
	return conformance.NewCheck(ID, o.run)
}

func (o Options) run(t *conformance.T, env *conformance.Env) {
	rc := o.runtimeClass(t, env)
	t.Logf("sandbox RuntimeClass %s (handler %s)", rc.Name, rc.Handler)

	var sandboxed *corev1.Pod
	if !t.Run("SchedulingAndExecution", func(t *conformance.T) { sandboxed = o.schedule(t, env, rc) }) {
		t.Logf("the sandboxed pod did not run, so its isolation was not examined")
		return
	}
	// The subtests judge the same two reports, read by whichever runs
	// first, against the node both pods run on.
	var v views
	read := false
	reports := func(t *conformance.T) {
		node, err := env.Client.CoreV1().Nodes().Get(t.Context(), sandboxed.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("getting node %s of pod %s: %v", sandboxed.Spec.NodeName, sandboxed.Name, err)
		}
		if o.standIn == nil {
			if why, none := conformance.NodeRunsNoContainers(node); none {
				t.Skipf("not verified: pod %s runs on %s: %s, so what the sandbox hides from its container cannot be observed there", sandboxed.Name, node.Name, why)
			}
		}
		if read {
			return
		}
		t.Step("Read the isolation reports of pods %s and %s", sandboxedPod, controlPod)
		v = views{node: node, sandboxed: o.report(t, env, sandboxedPod), control: o.report(t, env, controlPod)}
		read = true
	}
	t.Run("KernelAndMemoryIsolation", func(t *conformance.T) {
		reports(t)
		for _, p := range kernelProblems(v.sandboxed, v.control) {
			t.Errorf("%s", p)
		}
	})
	t.Run("ProcessIsolation", func(t *conformance.T) {
		reports(t)
		for _, p := range processProblems(v.sandboxed) {
			t.Errorf("%s", p)
		}
	})
	t.Run("FilesystemIsolation", func(t *conformance.T) {
		reports(t)
		v.filesystem(t)
	})
	t.Run("NetworkIsolation", func(t *conformance.T) {
		reports(t)
		v.network(t)
	})
}

// views are what the sandboxed and the control pod saw on node.
type views struct {
	node               *corev1.Node
	sandboxed, control probe.Isolation
}

// judge runs one judgement as a subtest: its problems fail it; without
// any, shown says what the sandbox kept out of reach.
func judge(t *conformance.T, name string, problems []string, shown string) {
	t.Run(name, func(t *conformance.T) {
		for _, p := range problems {
			t.Errorf("%s", p)
		}
		if len(problems) == 0 && shown != "" {
			t.Shown("%s", shown)
		}
	})
}

// filesystem judges what the sandboxed pod reached of the node's /proc,
// runtime sockets, files and mounts, beside what the plain pod reached.
func (v views) filesystem(t *conformance.T) {
	s, c := v.sandboxed, v.control
	t.Observe("what each pod reached of the node's files (sandboxed / plain)", attemptTable(s.Files, c.Files))
	t.Observe("what each pod sees in /proc", map[string]any{sandboxedPod: procView(s), controlPod: procView(c)})
	t.Observe("host names (node "+v.node.Name+")", map[string]map[string]string{
		sandboxedPod: {"kernel": s.Hostname, "/etc/hostname": s.EtcHostname},
		controlPod:   {"kernel": c.Hostname, "/etc/hostname": c.EtcHostname},
	})

	t.Run("NodeProc", func(t *conformance.T) {
		if s.ProcessCount == 0 && s.Init == "" {
			t.Skipf("not verified: the sandboxed pod could read neither /proc nor /proc/1/cmdline (%s)", strings.Join(s.Problems, "; "))
		}
		problems := procProblems(s)
		for _, p := range problems {
			t.Errorf("%s", p)
		}
		if len(problems) == 0 {
			t.Shown("the sandboxed pod's /proc lists only its own %s; process 1 is %q, not the node's init", plural(s.ProcessCount, "process", "processes"), s.Init)
		}
	})
	judge(t, "RuntimeSocket", socketProblems(s), unreached(s.Files, probe.WhatRuntimeSocket, "the sandboxed pod could not reach a container runtime socket"))
	judge(t, "NodeFiles", nodeFileProblems(s, v.node.Name),
		unreached(s.Files, "", "the sandboxed pod could not reach the node's configuration and directories")+
			fmt.Sprintf("; its host name is %q, not the node's", s.Hostname))
	mounts := ""
	if len(c.NodeMounts) > 0 {
		mounts = fmt.Sprintf("the sandboxed pod's mounts name none of the node's paths, while the plain pod's %s from the node's own directories (%s)",
			plural(len(c.NodeMounts), "mount comes", "mounts come"), strings.Join(c.NodeMounts, "; "))
	}
	judge(t, "NodeMounts", mountProblems(s), mounts)
}

// network judges whether the sandboxed pod has a network of its own: none
// of the node's interfaces or addresses, and the node's loopback services
// out of reach.
func (v views) network(t *conformance.T) {
	s, c := v.sandboxed, v.control
	t.Observe("network interfaces", map[string][]string{sandboxedPod: interfaceList(s), controlPod: interfaceList(c)})
	addrs := nodeAddresses(v.node)
	t.Observe("addresses of node "+v.node.Name, addrs)
	t.Observe("the node's loopback-only services each pod tried (sandboxed / plain)", attemptTable(s.NodeServices, c.NodeServices))

	t.Run("OwnInterfaces", func(t *conformance.T) {
		if len(s.Interfaces) == 0 {
			t.Skipf("not verified: the sandboxed pod could not list its network interfaces (%s)", strings.Join(s.Problems, "; "))
		}
		problems := interfaceProblems(s, addrs)
		for _, p := range problems {
			t.Errorf("%s", p)
		}
		if len(problems) > 0 {
			return
		}
		shown := fmt.Sprintf("the sandboxed pod sees only its own interfaces (%s): none of the node's bridges or veths, none of the node's addresses (%s)",
			strings.Join(s.InterfaceNames(), ", "), strings.Join(addrs, ", "))
		if peers := pairedInterfaces(c); len(peers) > 0 && len(pairedInterfaces(s)) == 0 {
			shown += "; the plain pod's " + strings.Join(peers, ", ") + " is one end of a pair whose other end is in the node's kernel, none of the sandboxed pod's is"
		}
		t.Shown("%s", shown)
	})
	t.Run("NodeLoopback", func(t *conformance.T) {
		if len(s.NodeServices) == 0 {
			t.Skipf("not verified: the sandboxed pod's report holds no try to reach the node's loopback-only services")
		}
		problems := loopbackProblems(s)
		for _, p := range problems {
			t.Errorf("%s", p)
		}
		if len(problems) == 0 {
			t.Shown("%s", unreached(s.NodeServices, "", "the sandboxed pod's 127.0.0.1 is its own: it could not reach the node's loopback-only services"))
		}
	})
}

// runtimeClass returns the RuntimeClass to test: the one Options names, or
// the first (by name) that looks like a sandbox. It skips the check when
// there is none.
func (o Options) runtimeClass(t *conformance.T, env *conformance.Env) *nodev1.RuntimeClass {
	classes := env.Client.NodeV1().RuntimeClasses()
	if o.RuntimeClass != "" {
		t.Step("Get RuntimeClass %s, the configured sandbox runtime", o.RuntimeClass)
		rc, err := classes.Get(t.Context(), o.RuntimeClass, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			t.Fatalf("RuntimeClass %s, configured as the sandbox runtime, does not exist", o.RuntimeClass)
		} else if err != nil {
			t.Fatalf("getting RuntimeClass %s: %v", o.RuntimeClass, err)
		}
		t.Observe("RuntimeClass "+rc.Name, describeClass(rc))
		return rc
	}
	t.Step("Look for a RuntimeClass whose name or handler looks like a sandbox (%s)", strings.Join(sandboxHints, ", "))
	list, err := classes.List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing RuntimeClasses: %v", err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	all := []string{}
	var found []*nodev1.RuntimeClass
	for i := range list.Items {
		rc := &list.Items[i]
		all = append(all, rc.Name+" (handler "+rc.Handler+")")
		if looksSandboxed(rc) {
			found = append(found, rc)
		}
	}
	t.Observe("RuntimeClasses", all)
	if len(found) == 0 {
		known := "the cluster has no RuntimeClass"
		if len(all) > 0 {
			known = "the cluster's RuntimeClasses are " + strings.Join(all, ", ")
		}
		t.Skipf("not verified: no sandbox RuntimeClass found: none is named or has a handler like %s (%s); name one in the check's options if the platform's sandbox is called otherwise",
			strings.Join(sandboxHints, ", "), known)
	}
	if len(found) > 1 {
		t.Logf("%d RuntimeClasses look like sandboxes; testing the first, %s", len(found), found[0].Name)
	}
	t.Observe("RuntimeClass "+found[0].Name, describeClass(found[0]))
	return found[0]
}

func looksSandboxed(rc *nodev1.RuntimeClass) bool {
	name, handler := strings.ToLower(rc.Name), strings.ToLower(rc.Handler)
	return slices.ContainsFunc(sandboxHints, func(h string) bool {
		return strings.Contains(name, h) || strings.Contains(handler, h)
	})
}

func describeClass(rc *nodev1.RuntimeClass) map[string]any {
	d := map[string]any{"handler": rc.Handler}
	if s := rc.Scheduling; s != nil {
		if len(s.NodeSelector) > 0 {
			d["nodeSelector"] = labels.Set(s.NodeSelector).String()
		}
		if len(s.Tolerations) > 0 {
			d["tolerations"] = len(s.Tolerations)
		}
	}
	if rc.Overhead != nil {
		d["overhead"] = fmt.Sprint(rc.Overhead.PodFixed)
	}
	return d
}

// schedule runs the sandboxed pod and then the control pod on its node,
// and returns the sandboxed pod.
func (o Options) schedule(t *conformance.T, env *conformance.Env, rc *nodev1.RuntimeClass) *corev1.Pod {
	t.Step("Run pod %s with RuntimeClass %s", sandboxedPod, rc.Name)
	o.start(t, env, probePod(env, sandboxedPod, rc, ""))
	sandboxed := o.waitRunning(t, env, sandboxedPod, fmt.Sprintf("with RuntimeClass %s (handler %s)", rc.Name, rc.Handler))
	if sandboxed.Spec.RuntimeClassName == nil || *sandboxed.Spec.RuntimeClassName != rc.Name {
		t.Errorf("pod %s runs without RuntimeClass %s: runtimeClassName is %v", sandboxedPod, rc.Name, sandboxed.Spec.RuntimeClassName)
	}
	if s := rc.Scheduling; s != nil && len(s.NodeSelector) > 0 {
		node, err := env.Client.CoreV1().Nodes().Get(t.Context(), sandboxed.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("getting node %s: %v", sandboxed.Spec.NodeName, err)
		}
		if sel := labels.SelectorFromSet(s.NodeSelector); !sel.Matches(labels.Set(node.Labels)) {
			t.Errorf("pod %s runs on node %s, which lacks the labels %s RuntimeClass %s schedules onto", sandboxedPod, node.Name, sel, rc.Name)
		}
	}
	node := sandboxed.Spec.NodeName
	t.Step("Run control pod %s without a RuntimeClass on node %s", controlPod, node)
	o.start(t, env, probePod(env, controlPod, rc, node))
	o.waitRunning(t, env, controlPod, "without a RuntimeClass on node "+node)
	return sandboxed
}

// probePod is a probe pod reporting isolation: sandboxed with rc, or, when
// node is set, a plain pod bound to node that tolerates what rc's pods
// tolerate.
func probePod(env *conformance.Env, name string, rc *nodev1.RuntimeClass, node string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": "kaic-probe"}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name:  "probe",
				Image: env.ProbeImage,
				Args:  probe.Args("isolation", "--hold="+hold.String()),
			}},
		},
	}
	if node == "" {
		pod.Spec.RuntimeClassName = &rc.Name
	} else {
		pod.Spec.NodeName = node
		if rc.Scheduling != nil {
			pod.Spec.Tolerations = slices.Clone(rc.Scheduling.Tolerations)
		}
	}
	return pod
}

func (o Options) start(t *conformance.T, env *conformance.Env, pod *corev1.Pod) {
	t.Apply(pod)
	t.Cleanup(func(ctx context.Context) {
		err := env.Client.CoreV1().Pods(env.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Logf("cleanup: deleting pod %s: %v", pod.Name, err)
		}
	})
}

// waitRunning waits until pod name runs and fails the test with the pod's
// conditions, container states and events when it does not.
func (o Options) waitRunning(t *conformance.T, env *conformance.Env, name, how string) *corev1.Pod {
	ctx, cancel := context.WithTimeout(t.Context(), o.RunTimeout)
	defer cancel()
	// The kubelet retries a sandbox the runtime failed to create without
	// end; a failure it keeps repeating is the answer, not a reason to
	// wait out the timeout.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var sandboxFailure string
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(sandboxEventPoll)
		defer tick.Stop()
		for {
			select {
			case <-watchCtx.Done():
				return
			case <-tick.C:
			}
			events, err := env.Client.CoreV1().Events(env.Namespace).List(watchCtx, metav1.ListOptions{
				FieldSelector: "involvedObject.kind=Pod,involvedObject.name=" + name + ",reason=" + failedSandbox,
			})
			if err != nil {
				continue
			}
			if msg := RepeatedSandboxFailure(events.Items); msg != "" {
				sandboxFailure = msg
				stopWatch()
				return
			}
		}
	}()
	pod, err := conformance.WaitForPod(watchCtx, env.Client, env.Namespace, name, conformance.PodRunning)
	stopWatch()
	<-done
	if err != nil {
		devicepod.Describe(t, env, name)
		why := err.Error()
		switch {
		case sandboxFailure != "":
			why = fmt.Sprintf("the container runtime failed to create its sandbox %d times or more (%s): %s", sandboxFailureRepeats, failedSandbox, sandboxFailure)
		case ctx.Err() != nil && t.Context().Err() == nil:
			why = "it is not Running after " + o.RunTimeout.String()
		}
		t.Fatalf("pod %s %s did not run: %s; %s", name, how, why, podState(pod))
	}
	t.Observe("pod "+name, devicepod.Summary(pod))
	return pod
}

// What waitRunning reads of the kubelet's events.
const (
	failedSandbox         = "FailedCreatePodSandBox"
	sandboxFailureRepeats = 3
	sandboxEventPoll      = 10 * time.Second
)

// RepeatedSandboxFailure returns the latest message of the kubelet's
// FailedCreatePodSandBox events among events when they add up to
// sandboxFailureRepeats or more, and "" otherwise.
func RepeatedSandboxFailure(events []corev1.Event) string {
	var n int32
	var msg string
	var last time.Time
	for _, e := range events {
		if e.Reason != failedSandbox {
			continue
		}
		if e.Series != nil {
			n += max(e.Series.Count, 1)
		} else {
			n += max(e.Count, 1)
		}
		if when := eventTime(e); msg == "" || when.After(last) {
			msg, last = strings.TrimSpace(e.Message), when
		}
	}
	if n < sandboxFailureRepeats {
		return ""
	}
	return msg
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case e.Series != nil:
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.FirstTimestamp.Time
}

// podState says where a pod that does not run is stuck: its phase and
// node, its conditions with their messages and its containers' waiting or
// terminated reasons.
func podState(pod *corev1.Pod) string {
	if pod == nil {
		return "the pod was never seen"
	}
	parts := []string{"phase " + string(pod.Status.Phase)}
	if pod.Spec.NodeName != "" {
		parts = append(parts, "node "+pod.Spec.NodeName)
	}
	for _, c := range pod.Status.Conditions {
		if c.Status == corev1.ConditionTrue {
			continue
		}
		s := fmt.Sprintf("%s=%s", c.Type, c.Status)
		if c.Reason != "" {
			s += " (" + c.Reason + ")"
		}
		if c.Message != "" {
			s += ": " + c.Message
		}
		parts = append(parts, s)
	}
	for _, cs := range pod.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			parts = append(parts, fmt.Sprintf("container %s waiting (%s) %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message))
		case cs.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("container %s terminated (%s, exit %d) %s", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode, cs.State.Terminated.Message))
		}
	}
	return strings.Join(parts, "; ")
}

// report returns the isolation report of pod name: from its log, or the
// stand-in's.
func (o Options) report(t *conformance.T, env *conformance.Env, name string) probe.Isolation {
	if o.standIn == nil {
		return o.read(t, env, name)
	}
	r := o.standIn.byPod[name]
	t.Observe("stand-in isolation report of pod "+name+" (the node runs no containers)", r)
	return r
}

// read waits for the isolation report in the log of pod name.
func (o Options) read(t *conformance.T, env *conformance.Env, name string) probe.Isolation {
	ctx, cancel := context.WithTimeout(t.Context(), o.ProbeTimeout)
	defer cancel()
	var logs string
	var lastErr error
	for {
		raw, err := env.Client.CoreV1().Pods(env.Namespace).GetLogs(name, &corev1.PodLogOptions{Container: "probe"}).DoRaw(ctx)
		lastErr = err
		if err == nil {
			logs = string(raw)
			r, found, err := probe.ParseIsolation(logs)
			if err != nil {
				t.Observe("probe output of "+name, strings.TrimSpace(logs))
				t.Fatalf("the probe in pod %s: %v", name, err)
			}
			if found {
				t.Observe("isolation report of pod "+name, r)
				return r
			}
		}
		select {
		case <-ctx.Done():
			t.Observe("probe output of "+name, logs)
			t.Fatalf("the probe in pod %s printed no isolation report within %s (last error: %v)", name, o.ProbeTimeout, lastErr)
		case <-time.After(2 * time.Second):
		}
	}
}

// kernelProblems compares the sandboxed pod's report with the control
// pod's: a sandbox runs on another kernel (a VM's, or a user-space one),
// so the kernel identity and the boot id differ, and the node's memory is
// out of reach.
func kernelProblems(sandboxed, control probe.Isolation) []string {
	var out []string
	if sandboxed.KernelRelease == control.KernelRelease && sandboxed.ProcVersion == control.ProcVersion {
		out = append(out, fmt.Sprintf("the sandboxed pod sees the node's kernel: release %q and /proc/version %q, the same as the control pod",
			sandboxed.KernelRelease, sandboxed.ProcVersion))
	}
	switch {
	case sandboxed.BootID == "":
		// Hiding the boot id is isolation too.
	case sandboxed.BootID == control.BootID:
		out = append(out, fmt.Sprintf("the sandboxed pod sees the node's boot id %s, the same as the control pod", sandboxed.BootID))
	}
	for _, d := range []struct {
		path   string
		access probe.DeviceAccess
	}{{"/dev/mem", sandboxed.DevMem}, {"/dev/kmem", sandboxed.DevKmem}} {
		if d.access.Accessible() {
			out = append(out, fmt.Sprintf("the sandboxed pod can open %s", d.path))
		}
	}
	return out
}

// processProblems fails a sandboxed pod that sees the node's agents.
func processProblems(sandboxed probe.Isolation) []string {
	if len(sandboxed.HostProcesses) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("the sandboxed pod sees the node's processes: %s", strings.Join(sandboxed.HostProcesses, ", "))}
}
