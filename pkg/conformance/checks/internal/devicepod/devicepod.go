// Package devicepod is what the accelerator checks share: pods that run
// the probe and hold accelerators through DRA claims or, in device-plugin
// mode, by requesting the model's extended resource (deviceplugin.go),
// waiting for them to run (and saying why they do not), reading the
// allocation of their claims and what the probe in each container
// reports, and releasing them so the devices are free for the next test.
package devicepod

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/probe"
)

// ScheduleTimeout bounds the wait for a pod to run, within the check's
// own deadline. Tests of a busy cluster shorten it: that wait is the whole
// of their run.
var ScheduleTimeout = 2 * time.Minute

// Time limits of the other waits, each within the check's own deadline.
const (
	// ProbeTimeout bounds the wait for the probe's RESULT lines.
	ProbeTimeout = 90 * time.Second
	// ReleaseTimeout bounds the wait for deleted pods' claims to be
	// deallocated.
	ReleaseTimeout = 2 * time.Minute
	// unschedulableGrace is how long a pod may stay unschedulable before
	// kaic looks for free devices, and then again how long it may stay so
	// with devices free before that is a failure rather than the
	// scheduler not having retried yet.
	unschedulableGrace = 20 * time.Second
	// slowStart is how long a pod may take from creation to Running
	// before the transcript records its timeline and events: on a
	// healthy node a probe pod runs within seconds.
	slowStart = 20 * time.Second
	// hold keeps the probe running after it reported, so that pods hold
	// their devices at the same time and their logs stay readable.
	hold = time.Hour
)

// GracePeriod is the termination grace period, in seconds, of pods that
// hold devices. Never 0: a pod whose grace period is 0 leaves the API the
// moment it is deleted, before its kubelet has stopped its containers and
// unprepared its claims; its devices are then given to the next claim
// while the node still holds them prepared for the old one, and the
// driver refuses to prepare them again (kaic-fake-gpu: "device … is
// already prepared for claim …") until the kubelet catches up, which cost
// pods 70 to 90 s of backoff on kind. With a grace period the kubelet
// unprepares before the pod is gone; the probe stops at once on SIGTERM.
const GracePeriod int64 = 1

// RequestName is the name of the device request in claims made here.
const RequestName = "single-accelerator"

// Container is a probe container and the pod claims it references, or
// in device-plugin mode the units of the extended resource it requests.
type Container struct {
	Name    string
	Claims  []string
	Devices int64
}

// Spec describes a probe pod.
type Spec struct {
	Name string
	// Claims are the pod's resource claims.
	Claims []corev1.PodResourceClaim
	// Containers default to one container "probe" referencing every claim.
	Containers []Container
	// NodeName binds the pod to a node without the scheduler; only for
	// pods without claims, which then need no allocation.
	NodeName string
	// PreferNode asks the scheduler to favour this node.
	PreferNode string
	// RequireNode confines the pod to this node through the scheduler
	// (unlike NodeName, its resources are accounted for); it wins over
	// PreferNode.
	RequireNode string
}

// FromTemplate is a pod claim generated from a ResourceClaimTemplate.
func FromTemplate(name, template string) corev1.PodResourceClaim {
	return corev1.PodResourceClaim{Name: name, ResourceClaimTemplateName: &template}
}

// FromClaim is a pod claim that references an existing ResourceClaim.
func FromClaim(name, claim string) corev1.PodResourceClaim {
	return corev1.PodResourceClaim{Name: name, ResourceClaimName: &claim}
}

// oneDevice is a claim spec for exactly one device of class.
func oneDevice(class string) resourcev1.ResourceClaimSpec {
	return resourcev1.ResourceClaimSpec{Devices: resourcev1.DeviceClaim{Requests: []resourcev1.DeviceRequest{{
		Name: RequestName,
		Exactly: &resourcev1.ExactDeviceRequest{
			DeviceClassName: class,
			AllocationMode:  resourcev1.DeviceAllocationModeExactCount,
			Count:           1,
		},
	}}}}
}

// OneDeviceTemplate is a ResourceClaimTemplate for one device of class.
func OneDeviceTemplate(name, class string) *resourcev1.ResourceClaimTemplate {
	return &resourcev1.ResourceClaimTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       resourcev1.ResourceClaimTemplateSpec{Spec: oneDevice(class)},
	}
}

// OneDeviceClaim is a ResourceClaim for one device of class.
func OneDeviceClaim(name, class string) *resourcev1.ResourceClaim {
	return &resourcev1.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: oneDevice(class)}
}

// Pod is the probe pod of spec for the accelerator model of env: every
// container reports the devices it sees and then holds them; the pod
// tolerates the model's node taint.
func Pod(env *conformance.Env, spec Spec) *corev1.Pod {
	acc := env.Accelerator
	args := probe.Args("devices", "--hold="+hold.String())
	if acc.DeviceEnvPrefix != "" {
		args = append(args, "--env-prefix="+acc.DeviceEnvPrefix)
	}
	if acc.DeviceGlob != "" {
		args = append(args, "--device-glob="+acc.DeviceGlob)
	}
	containers := spec.Containers
	if len(containers) == 0 {
		all := make([]string, len(spec.Claims))
		for i, c := range spec.Claims {
			all[i] = c.Name
		}
		containers = []Container{{Name: "probe", Claims: all}}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Labels: map[string]string{"app.kubernetes.io/name": "kaic-probe"}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			ResourceClaims:                spec.Claims,
			NodeName:                      spec.NodeName,
			TerminationGracePeriodSeconds: new(GracePeriod),
		},
	}
	for _, c := range containers {
		ctr := corev1.Container{Name: c.Name, Image: env.ProbeImage, Args: args, Resources: Resources(env, c)}
		pod.Spec.Containers = append(pod.Spec.Containers, ctr)
	}
	if acc.NodeTaintKey != "" {
		pod.Spec.Tolerations = []corev1.Toleration{{Key: acc.NodeTaintKey, Operator: corev1.TolerationOpExists}}
	}
	if spec.RequireNode != "" {
		pod.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{spec.RequireNode},
				}},
			}}},
		}}
	} else if spec.PreferNode != "" {
		pod.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
				Weight: 100,
				Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{spec.PreferNode},
				}}},
			}},
		}}
	}
	return pod
}

// Start applies the pod of spec and registers its release for the
// check's cleanup (a test releases its pods earlier with Release).
func Start(t *conformance.T, env *conformance.Env, spec Spec) {
	t.Apply(Pod(env, spec))
	t.Cleanup(func(ctx context.Context) {
		if err := Release(ctx, env, spec.Name); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
}

// WaitRunning waits until pod name is bound and running and returns it.
// A pod that stays unschedulable while devices it could get are free (in
// DRA mode, those the model's DeviceClass admits; any of the driver's when
// it admits none) fails the test with what the scheduler said, once they
// were free on two looks a short grace apart.
// One that waits for busy devices waits up to ScheduleTimeout for one to
// be released; then, if workloads kaic did not create hold them, the
// check is not verified (the cluster has the devices, but not for kaic),
// and if only kaic's own checks held them, the test fails.
func WaitRunning(t *conformance.T, env *conformance.Env, name string) *corev1.Pod {
	ctx, cancel := context.WithTimeout(t.Context(), ScheduleTimeout)
	defer cancel()
	pod, err := conformance.WaitForPod(ctx, env.Client, env.Namespace, name, func(p *corev1.Pod) (bool, error) {
		if running, err := conformance.PodRunning(p); running || err != nil {
			return running, err
		}
		return unschedulable(p), nil
	})
	if err == nil && unschedulable(pod) {
		cond := conformance.PodCondition(pod, corev1.PodScheduled)
		t.Logf("pod %s is unschedulable for now: %s", name, cond.Message)
		graceCtx, cancelGrace := context.WithTimeout(ctx, unschedulableGrace)
		pod, err = conformance.WaitForPod(graceCtx, env.Client, env.Namespace, name, conformance.PodRunning)
		cancelGrace()
		if err != nil && ctx.Err() == nil {
			if free, what, _ := freeForPod(t, env); len(free) > 0 {
				// The devices may have been released a moment ago by
				// another check, and the scheduler retries a pod only
				// after its backoff: the verdict needs them free for a
				// second grace with the pod still unschedulable.
				t.Logf("pod %s is still unschedulable while %d %s are free (%s); giving the scheduler %s to retry",
					name, countAll(free), what, strings.Join(slices.Sorted(maps.Keys(free)), ", "), unschedulableGrace)
				graceCtx, cancelGrace := context.WithTimeout(ctx, unschedulableGrace)
				pod, err = conformance.WaitForPod(graceCtx, env.Client, env.Namespace, name, conformance.PodRunning)
				cancelGrace()
			}
		}
		if err != nil && ctx.Err() == nil {
			if free, what, why := freeForPod(t, env); len(free) > 0 {
				Describe(t, env, name)
				t.Fatalf("pod %s stays unschedulable although %d %s are free on Ready nodes (%s): %s; the scheduler says: %s",
					name, countAll(free), what, strings.Join(slices.Sorted(maps.Keys(free)), ", "), why, SchedulerMessage(pod))
			}
			holdings := Holdings(t, env)
			t.Observe("holders of the devices of "+heldScope(env), holdingRows(holdings))
			t.Logf("no %s is free; waiting for one to be released (within %s of the pod's wait)", freeUnits(env, 1), ScheduleTimeout)
			pod, err = conformance.WaitForPod(ctx, env.Client, env.Namespace, name, conformance.PodRunning)
			if err != nil && t.Context().Err() == nil {
				holdings = Holdings(t, env)
				if busy := busyReason(holdings); busy != "" {
					t.Observe("holders of the devices of "+heldScope(env)+" at the end of the wait", holdingRows(holdings))
					Describe(t, env, name)
					t.Unverifiedf("not verified: %s, so pod %s, which %s, got none within %s; the cluster has the devices, but not free for kaic",
						busy, name, Asking(env), ScheduleTimeout)
				}
			}
		}
	}
	if err != nil {
		Describe(t, env, name)
		t.Fatalf("pod %s did not run: %v; the scheduler says: %s", name, err, SchedulerMessage(pod))
	}
	t.Observe("pod "+name, Summary(pod))
	if took, timeline := StartTimeline(pod); took >= slowStart {
		t.Logf("pod %s took %s from creation to Running: %s", name, took.Round(100*time.Millisecond), timeline)
		Describe(t, env, name)
	}
	return pod
}

// StartTimeline is how long pod took from its creation to the last of
// its conditions that turned True (Ready, for a running pod), and when,
// counted from creation, each condition did: where a slow start lost its
// time (waiting for the scheduler, for the devices to be prepared, for
// the containers).
func StartTimeline(pod *corev1.Pod) (time.Duration, string) {
	created := pod.CreationTimestamp.Time
	type mark struct {
		what string
		at   time.Duration
	}
	var marks []mark
	for _, c := range pod.Status.Conditions {
		if c.Status == corev1.ConditionTrue && !c.LastTransitionTime.IsZero() && !created.IsZero() {
			marks = append(marks, mark{string(c.Type), c.LastTransitionTime.Sub(created)})
		}
	}
	if len(marks) == 0 {
		return 0, "no condition is True"
	}
	slices.SortStableFunc(marks, func(a, b mark) int { return cmp.Compare(a.at, b.at) })
	parts := make([]string, len(marks))
	for i, m := range marks {
		parts[i] = fmt.Sprintf("%s after %s", m.what, m.at.Round(time.Second))
	}
	return marks[len(marks)-1].at, strings.Join(parts, ", ")
}

func unschedulable(p *corev1.Pod) bool {
	c := conformance.PodCondition(p, corev1.PodScheduled)
	return p.Spec.NodeName == "" && c != nil && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable
}

// SchedulerMessage is what the scheduler last said of pod p: its
// PodScheduled message, the node it chose, or "(nothing)".
func SchedulerMessage(p *corev1.Pod) string {
	if p == nil {
		return "(pod not seen)"
	}
	if c := conformance.PodCondition(p, corev1.PodScheduled); c != nil && c.Message != "" {
		return c.Message
	}
	if p.Spec.NodeName != "" {
		return "scheduled to " + p.Spec.NodeName
	}
	return "(nothing)"
}

// Describe records the pod as last seen and its events, for a failure.
func Describe(t *conformance.T, env *conformance.Env, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 10*time.Second)
	defer cancel()
	if pod, err := env.Client.CoreV1().Pods(env.Namespace).Get(ctx, name, metav1.GetOptions{}); err == nil {
		t.Observe("pod "+name+" as last seen", Summary(pod))
	}
	events, err := env.Client.CoreV1().Events(env.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.AndSelectors(
			fields.OneTermEqualSelector("involvedObject.kind", "Pod"),
			fields.OneTermEqualSelector("involvedObject.name", name),
		).String(),
	})
	if err != nil || len(events.Items) == 0 {
		return
	}
	lines := make([]string, 0, len(events.Items))
	for _, e := range events.Items {
		lines = append(lines, fmt.Sprintf("%s %s (x%d): %s", e.Type, e.Reason, max(e.Count, 1), strings.TrimSpace(e.Message)))
	}
	t.Observe("events of pod "+name, strings.Join(lines, "\n"))
}

// Summary is what the transcript shows of a pod.
func Summary(pod *corev1.Pod) map[string]any {
	conds := []string{}
	for _, c := range pod.Status.Conditions {
		s := fmt.Sprintf("%s=%s", c.Type, c.Status)
		if c.Reason != "" {
			s += " (" + c.Reason + ")"
		}
		conds = append(conds, s)
	}
	return map[string]any{"phase": string(pod.Status.Phase), "node": pod.Spec.NodeName, "conditions": conds}
}

// Device identifies an allocated or published device.
type Device struct {
	Driver, Pool, Name string
}

func (d Device) String() string {
	if d.Name == "" {
		// A device plugin's unit, which the API does not name.
		return d.Driver + " on " + d.Pool
	}
	return d.Driver + "/" + d.Pool + "/" + d.Name
}

// Claim returns the allocated ResourceClaim behind the pod claim podClaim
// of pod: the one generated from its template or the one it references.
// It fails the test when the claim is missing or not allocated.
func Claim(t *conformance.T, env *conformance.Env, pod *corev1.Pod, podClaim string) *resourcev1.ResourceClaim {
	var name string
	for _, s := range pod.Status.ResourceClaimStatuses {
		if s.Name == podClaim && s.ResourceClaimName != nil {
			name = *s.ResourceClaimName
		}
	}
	for _, c := range pod.Spec.ResourceClaims {
		if c.Name == podClaim && c.ResourceClaimName != nil {
			name = *c.ResourceClaimName
		}
	}
	if name == "" {
		t.Fatalf("pod %s has no ResourceClaim for its claim %q: %+v", pod.Name, podClaim, pod.Status.ResourceClaimStatuses)
	}
	claim, err := env.DRA().ResourceClaims(env.Namespace).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting ResourceClaim %s of pod %s: %v", name, pod.Name, err)
	}
	if claim.Status.Allocation == nil {
		t.Fatalf("ResourceClaim %s of running pod %s is not allocated", name, pod.Name)
	}
	return claim
}

// Allocated returns the devices allocated to claim.
func Allocated(claim *resourcev1.ResourceClaim) []Device {
	if claim.Status.Allocation == nil {
		return nil
	}
	var out []Device
	for _, r := range claim.Status.Allocation.Devices.Results {
		out = append(out, Device{Driver: r.Driver, Pool: r.Pool, Name: r.Device})
	}
	return out
}

// OneDevice checks that claim holds exactly one device of the model's
// driver, published for node, records the allocation and returns the
// device.
func OneDevice(t *conformance.T, env *conformance.Env, claim *resourcev1.ResourceClaim, node string) Device {
	devs := Allocated(claim)
	t.Observe("allocation of ResourceClaim "+claim.Name, map[string]any{"devices": deviceStrings(devs), "node": node, "reservedFor": Consumers(claim)})
	if len(devs) != 1 {
		t.Fatalf("ResourceClaim %s is allocated %d devices (%s), want exactly 1", claim.Name, len(devs), strings.Join(deviceStrings(devs), ", "))
	}
	d := devs[0]
	if d.Driver != env.Accelerator.DRADriver {
		t.Errorf("ResourceClaim %s got a device of driver %s, want %s", claim.Name, d.Driver, env.Accelerator.DRADriver)
	}
	published, err := env.DRA().ResourceSlices().List(t.Context(), metav1.ListOptions{
		FieldSelector: fields.AndSelectors(
			fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorNodeName, node),
			fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorDriver, d.Driver),
		).String(),
	})
	if err != nil {
		t.Fatalf("listing the ResourceSlices of node %s: %v", node, err)
	}
	if !slices.ContainsFunc(published.Items, func(s resourcev1.ResourceSlice) bool {
		return s.Spec.Pool.Name == d.Pool && slices.ContainsFunc(s.Spec.Devices, func(dev resourcev1.Device) bool { return dev.Name == d.Name })
	}) {
		t.Errorf("device %s is not among the devices published for node %s, where the pod runs", d, node)
	}
	return d
}

func deviceStrings(devs []Device) []string {
	out := make([]string, len(devs))
	for i, d := range devs {
		out[i] = d.String()
	}
	return out
}

// Consumers lists who a claim is reserved for, as resource/name.
func Consumers(claim *resourcev1.ResourceClaim) []string {
	out := []string{}
	for _, r := range claim.Status.ReservedFor {
		out = append(out, r.Resource+"/"+r.Name)
	}
	return out
}

// ReservedFor reports whether claim is reserved for the pod with uid.
func ReservedFor(claim *resourcev1.ResourceClaim, uid types.UID) bool {
	return slices.ContainsFunc(claim.Status.ReservedFor, func(r resourcev1.ResourceClaimConsumerReference) bool {
		return r.Resource == "pods" && r.UID == uid
	})
}

// SkipWithoutContainers skips the test when the pod's node runs no
// containers (kwok), whose probe output therefore cannot exist.
func SkipWithoutContainers(t *conformance.T, env *conformance.Env, pod *corev1.Pod) {
	node, err := env.Client.CoreV1().Nodes().Get(t.Context(), pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting node %s of pod %s: %v", pod.Spec.NodeName, pod.Name, err)
	}
	if why, none := conformance.NodeRunsNoContainers(node); none {
		t.Skipf("pod %s runs on %s: %s, so what its containers see cannot be observed there", pod.Name, node.Name, why)
	}
}

// Report is what the probe in one container printed.
type Report struct {
	Count   int
	Devices []string
	// DriverVersions are the driver versions the container could read;
	// empty when the driver exposes none to containers.
	DriverVersions []string
}

// Read waits for the probe's RESULT lines in container of pod name and
// returns them; it fails the test when they do not come.
func Read(t *conformance.T, env *conformance.Env, name, container string) Report {
	ctx, cancel := context.WithTimeout(t.Context(), ProbeTimeout)
	defer cancel()
	var logs string
	var lastErr error
	for {
		raw, err := env.Client.CoreV1().Pods(env.Namespace).GetLogs(name, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
		lastErr = err
		if err == nil {
			logs = string(raw)
			res := probe.ParseResults(logs)
			if c, ok := res["ACCELERATOR_COUNT"]; ok {
				t.Observe(fmt.Sprintf("probe output of %s/%s", name, container), strings.TrimSpace(logs))
				n, err := strconv.Atoi(c)
				if err != nil {
					t.Fatalf("the probe in %s/%s printed a malformed count %q", name, container, c)
				}
				var devs []string
				if d := res["DEVICES"]; d != "" {
					devs = strings.Split(d, ",")
				}
				var versions []string
				if v := res["DRIVER_VERSIONS"]; v != "" {
					versions = strings.Split(v, ",")
				}
				return Report{Count: n, Devices: devs, DriverVersions: versions}
			}
		}
		select {
		case <-ctx.Done():
			t.Observe(fmt.Sprintf("probe output of %s/%s", name, container), logs)
			t.Fatalf("the probe in %s/%s printed no RESULT line within %s (last error: %v)", name, container, ProbeTimeout, lastErr)
		case <-time.After(2 * time.Second):
		}
	}
}

// Names reports whether the probe's device identifiers are the DRA device
// names, so that what a container sees can be compared with the
// allocation: true for models that announce devices only through
// environment variables (whose values are the device names), false for
// device files, whose paths are named by the node, not by the driver, and
// in device-plugin mode, where the API names no allocated device.
func Names(env *conformance.Env) bool {
	return !DevicePlugin(env) && env.Accelerator.DeviceEnvPrefix != "" && env.Accelerator.DeviceGlob == ""
}

// ExpectOne checks that a container sees exactly the allocated device
// (by name where the model allows the comparison).
func ExpectOne(t *conformance.T, env *conformance.Env, who string, r Report, allocated Device) {
	if problem := oneProblem(who, r, allocated, Names(env)); problem != "" {
		t.Errorf("%s", problem)
	}
}

// oneProblem says what is wrong with a report that should show exactly
// the allocated device, or returns "".
func oneProblem(who string, r Report, allocated Device, byName bool) string {
	if r.Count != 1 || len(r.Devices) != 1 {
		return fmt.Sprintf("%s sees %d devices (%s), want exactly 1", who, r.Count, strings.Join(r.Devices, ","))
	}
	if byName && r.Devices[0] != allocated.Name {
		return fmt.Sprintf("%s sees device %q, want the device allocated to it, %q", who, r.Devices[0], allocated.Name)
	}
	return ""
}

// ExpectNone checks that a container sees no device.
func ExpectNone(t *conformance.T, env *conformance.Env, who string, r Report) {
	holdsNone := "references no claim"
	if DevicePlugin(env) {
		holdsNone = "requests no " + env.Accelerator.ResourceName
	}
	if problem := noneProblem(who, r, holdsNone); problem != "" {
		t.Errorf("%s", problem)
	}
}

func noneProblem(who string, r Report, holdsNone string) string {
	if r.Count != 0 || len(r.Devices) != 0 {
		return fmt.Sprintf("%s sees %d devices (%s) although it %s", who, r.Count, strings.Join(r.Devices, ","), holdsNone)
	}
	return ""
}

// Inventory lists the devices the model's driver publishes in
// ResourceSlices for Ready nodes, per node; in device-plugin mode the
// units of the extended resource Ready nodes advertise.
func Inventory(t *conformance.T, env *conformance.Env) map[string][]Device {
	if DevicePlugin(env) {
		return inventoryDevicePlugin(t, env)
	}
	driver := env.Accelerator.DRADriver
	list, err := env.DRA().ResourceSlices().List(t.Context(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorDriver, driver).String(),
	})
	if err != nil {
		t.Fatalf("listing ResourceSlices: %v", err)
	}
	ready := ReadyNodes(t, env)
	out := map[string][]Device{}
	for _, s := range list.Items {
		if s.Spec.NodeName == nil || !ready[*s.Spec.NodeName] {
			continue
		}
		for _, d := range s.Spec.Devices {
			out[*s.Spec.NodeName] = append(out[*s.Spec.NodeName], Device{Driver: driver, Pool: s.Spec.Pool.Name, Name: d.Name})
		}
	}
	return out
}

// FreeDevices lists, per Ready node, the devices of the model's driver
// that no ResourceClaim in the cluster holds; in device-plugin mode the
// units no pod on the node requests.
func FreeDevices(t *conformance.T, env *conformance.Env) map[string][]Device {
	if DevicePlugin(env) {
		return freeDevicePlugin(t, env)
	}
	inv := Inventory(t, env)
	held := heldDevices(t, env)
	free := map[string][]Device{}
	for node, devs := range inv {
		for _, d := range devs {
			if !held[d] {
				free[node] = append(free[node], d)
			}
		}
	}
	return free
}

// freeForPod lists, per Ready node, the free devices a pod of the model
// could get, with what they are and why a pod may stay unschedulable
// although they are free. In DRA mode those are the free devices the
// DeviceClass admits; only when it admits none of the driver's devices at
// all (or cannot be evaluated) are they the driver's free devices, which
// the class then keeps from the pod. Devices of the driver that another
// class serves (time-sliced ones, say) do not count while the class's own
// are all held: the pod then waits for one of those.
func freeForPod(t *conformance.T, env *conformance.Env) (map[string][]Device, string, string) {
	if DevicePlugin(env) {
		return freeDevicePlugin(t, env), freeWhat(env), noFit
	}
	free, admitted, why := classFree(t, env)
	switch {
	case len(free) > 0:
		return free, freeUnits(env, countAll(free)), noFit
	case why != "":
		return FreeDevices(t, env), freeWhat(env), why + ", so kaic cannot tell whether the class selects them, or " + noFit
	case len(admitted) > 0:
		return nil, "", ""
	}
	return FreeDevices(t, env), freeWhat(env), "DeviceClass " + env.Accelerator.DeviceClass + " selects none of them"
}

// ReadyNodes tells, for every node, whether it is Ready.
func ReadyNodes(t *conformance.T, env *conformance.Env) map[string]bool {
	nodes, err := env.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing nodes: %v", err)
	}
	ready := map[string]bool{}
	for _, n := range nodes.Items {
		ready[n.Name] = NodeReady(&n)
	}
	return ready
}

// heldDevices are the devices allocated to a ResourceClaim of the
// cluster.
func heldDevices(t *conformance.T, env *conformance.Env) map[Device]bool {
	claims, err := env.DRA().ResourceClaims(metav1.NamespaceAll).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing ResourceClaims: %v", err)
	}
	held := map[Device]bool{}
	for i := range claims.Items {
		for _, d := range Allocated(&claims.Items[i]) {
			held[d] = true
		}
	}
	return held
}

// Preflight verifies what every accelerator check needs before it runs a
// pod: the model names a DRA driver and DeviceClass, the DeviceClass
// exists and the driver publishes devices on Ready nodes (in device-plugin
// mode: Ready nodes advertise the extended resource). It returns the
// devices per node and stops the test otherwise.
func Preflight(t *conformance.T, env *conformance.Env) map[string][]Device {
	if DevicePlugin(env) {
		return preflightDevicePlugin(t, env)
	}
	acc := env.Accelerator
	if acc.DeviceClass == "" || acc.DRADriver == "" {
		t.Fatalf("the profile's accelerator model %q names no DeviceClass or DRA driver (spec.accelerator.deviceClass, draDriver)", acc.Model)
	}
	if acc.DeviceEnvPrefix == "" && acc.DeviceGlob == "" {
		t.Fatalf("the profile's accelerator model %q says neither how a container sees a device (spec.accelerator.deviceEnvPrefix, deviceGlob)", acc.Model)
	}
	t.Step("Check that DeviceClass %s exists and driver %s publishes devices on Ready nodes", acc.DeviceClass, acc.DRADriver)
	if _, err := env.DRA().DeviceClasses().Get(t.Context(), acc.DeviceClass, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		t.Fatalf("DeviceClass %s of the accelerator model does not exist: the DRA driver's installation should create it", acc.DeviceClass)
	} else if err != nil {
		t.Fatalf("getting DeviceClass %s: %v", acc.DeviceClass, err)
	}
	inv := Inventory(t, env)
	rows := []string{}
	for _, n := range slices.Sorted(maps.Keys(inv)) {
		rows = append(rows, fmt.Sprintf("%s: %d devices", n, len(inv[n])))
	}
	t.Observe("devices of "+acc.DRADriver+" on Ready nodes", rows)
	if len(inv) == 0 {
		t.Fatalf("driver %s publishes no devices in ResourceSlices for any Ready node", acc.DRADriver)
	}
	observeOthers(t, env)
	return inv
}

// observeOthers records, on a shared cluster, which devices workloads kaic
// did not create hold before the check starts: its pods may have to wait
// for them.
func observeOthers(t *conformance.T, env *conformance.Env) {
	holdings := Holdings(t, env)
	for _, h := range holdings {
		if h.Others > 0 {
			t.Observe("devices of "+heldScope(env)+" held before the check", holdingRows(holdings))
			return
		}
	}
}

// Release deletes the pods and waits until they are gone and the claims
// they used are deleted or deallocated, so that their devices are free.
func Release(ctx context.Context, env *conformance.Env, names ...string) error {
	ctx, cancel := context.WithTimeout(ctx, ReleaseTimeout)
	defer cancel()
	pods := env.Client.CoreV1().Pods(env.Namespace)
	claimSet := map[string]bool{}
	for _, name := range names {
		pod, err := pods.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("getting pod %s: %w", name, err)
		}
		for _, s := range pod.Status.ResourceClaimStatuses {
			if s.ResourceClaimName != nil {
				claimSet[*s.ResourceClaimName] = true
			}
		}
		for _, c := range pod.Spec.ResourceClaims {
			if c.ResourceClaimName != nil {
				claimSet[*c.ResourceClaimName] = true
			}
		}
		if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting pod %s: %w", name, err)
		}
	}
	// Watches, not polls: a release waits without asking again.
	var err error
	for _, name := range names {
		if err == nil {
			err = waitUntil(ctx, conformance.ListWatch(pods.List, pods.Watch, conformance.NameSelector(name), ""), &corev1.Pod{},
				func(runtime.Object) bool { return false })
		}
	}
	claims := env.DRA().ResourceClaims(env.Namespace)
	for _, name := range slices.Sorted(maps.Keys(claimSet)) {
		if err == nil {
			err = waitUntil(ctx, conformance.ListWatch(claims.List, claims.Watch, conformance.NameSelector(name), ""), &resourcev1.ResourceClaim{},
				func(o runtime.Object) bool {
					c, ok := o.(*resourcev1.ResourceClaim)
					return ok && c.Status.Allocation == nil
				})
		}
	}
	if err != nil {
		return fmt.Errorf("pods %s and their claims %s were not released within %s: %w",
			strings.Join(names, ", "), strings.Join(slices.Sorted(maps.Keys(claimSet)), ", "), ReleaseTimeout, err)
	}
	return nil
}

// waitUntil watches the one object lw lists until it is gone or released
// says it is released.
func waitUntil(ctx context.Context, lw cache.ListerWatcher, obj runtime.Object, released func(runtime.Object) bool) error {
	gone := func(store cache.Store) (bool, error) {
		for _, o := range store.List() {
			if !released(o.(runtime.Object)) {
				return false, nil
			}
		}
		return true, nil
	}
	_, err := conformance.UntilWithSync(ctx, lw, obj, gone, func(ev watch.Event) (bool, error) {
		return ev.Type == watch.Deleted || released(ev.Object), nil
	})
	return err
}

// ReleaseNow releases the pods at the end of a test, within the cleanup's
// limits even when the test's context has ended, and records a failure.
func ReleaseNow(t *conformance.T, env *conformance.Env, names ...string) {
	if err := Release(context.WithoutCancel(t.Context()), env, names...); err != nil {
		t.Errorf("%v", err)
	}
}

// NodeReady reports whether the node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func countAll(m map[string][]Device) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}

// Needs is the need of the checks built on this package: the accelerator
// model's DeviceClass (in device-plugin mode, nodes advertising its
// extended resource), looked at once for all of them before any runs.
func Needs(env *conformance.Env) []conformance.Need {
	if DevicePlugin(env) {
		return []conformance.Need{conformance.ExtendedResourceNeed(env)}
	}
	return []conformance.Need{conformance.DeviceClassNeed(env)}
}
