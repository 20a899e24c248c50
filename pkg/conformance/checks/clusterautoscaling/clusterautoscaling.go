// Package clusterautoscaling verifies the cluster_autoscaling requirement
// on a node pool of accelerator nodes managed by an autoscaler: with every
// accelerator of the pool held by baseline pods, one more pod asking for an
// accelerator is unschedulable, the pool grows by a new node on which that
// pod runs, and once the pod is deleted the pool shrinks back to its
// baseline size. The requirement applies only where such a pool exists;
// without one declared the check skips saying so.
package clusterautoscaling

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// ID is the requirement this package verifies.
const ID = "cluster_autoscaling"

// Default time limits, those of the official suite.
const (
	DefaultPendingTimeout   = 2 * time.Minute
	DefaultScaleUpTimeout   = 20 * time.Minute
	DefaultScaleDownTimeout = 30 * time.Minute
	DefaultStabilityWindow  = 30 * time.Second
)

// Names of the objects the check creates, after the official suite's.
const (
	baselinePrefix = "autoscaler-baseline-"
	triggerPod     = "autoscaler-trigger"
	budget         = "autoscaler-baseline"
	template       = "autoscaler-accelerator"
	podClaim       = "accelerator"
	// RunLabel marks the check's pods; its value is baseline or trigger.
	RunLabel = "kaic.dev/autoscaler-run"
)

// pollInterval is how often the pool's nodes are counted: the waits end
// on a size held for a time, which no single watch event says.
const pollInterval = time.Second

// Options say which node pool to scale and how long each phase may take.
type Options struct {
	// NodePoolSelector is a label selector of the pool's nodes; "" means
	// no autoscaled accelerator pool is declared and the check skips.
	NodePoolSelector string
	// PoolSource says where the pool was declared, for the transcript.
	PoolSource string
	// Tolerations let the check's pods onto the pool's tainted nodes.
	Tolerations []corev1.Toleration
	// PendingTimeout bounds the waits for the pool to be idle, the
	// baseline pods to run and the extra pod to be marked unschedulable
	// (default DefaultPendingTimeout).
	PendingTimeout time.Duration
	// ScaleUpTimeout bounds the wait for the extra pod to run on a new node
	// (default DefaultScaleUpTimeout).
	ScaleUpTimeout time.Duration
	// ScaleDownTimeout bounds the wait for the pool to shrink back
	// (default DefaultScaleDownTimeout).
	ScaleDownTimeout time.Duration
	// StabilityWindow is how long the pool must keep its size before the
	// baseline and after scaling down (default DefaultStabilityWindow).
	StabilityWindow time.Duration

	// undeclared says why no selector could be derived from a declared
	// pool.
	undeclared string
}

// Check returns the cluster_autoscaling check without a declared pool: it
// skips. Use ForProfile or New to name the pool.
func Check() conformance.Check { return New(Options{}) }

// ForProfile returns the check for the profile's autoscaled accelerator
// pool: the nodes spec.checks.clusterAutoscaling.nodePoolSelector selects,
// else those of spec.cluster.capi.gpuPool with autoscaler: true, found by
// the pool's node labels and tolerating its taints (see OptionsFor).
func ForProfile(p *profile.Profile) conformance.Check { return Scheduled(OptionsFor(p)) }

// gpuPoolOptions derives the check's options from the profile's Cluster
// API gpuPool: empty (the check skips) unless it is autoscaled.
func gpuPoolOptions(p *profile.Profile) Options {
	if p == nil || p.Spec.Cluster.CAPI == nil || p.Spec.Cluster.CAPI.GPUPool == nil || !p.Spec.Cluster.CAPI.GPUPool.Autoscaler {
		return Options{}
	}
	g := p.Spec.Cluster.CAPI.GPUPool
	o := Options{PoolSource: fmt.Sprintf("the profile's autoscaled accelerator pool %q (spec.cluster.capi.gpuPool)", g.Name)}
	if len(g.Labels) == 0 {
		o.undeclared = o.PoolSource + " has no labels by which to find its nodes (spec.cluster.capi.gpuPool.labels)"
		return o
	}
	o.NodePoolSelector = labels.SelectorFromSet(g.Labels).String()
	for _, taint := range g.Taints {
		o.Tolerations = append(o.Tolerations, corev1.Toleration{Key: taint.Key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffect(taint.Effect)})
	}
	return o
}

// New returns the cluster_autoscaling check for the pool o names.
func New(o Options) conformance.Check {
	return conformance.NewCheck(ID, o.withDefaults().run)
}

// Scheduled returns the check of New(o) as kaic's runner must schedule
// it: the pool is the check's alone (other checks' pods would take its
// devices or the new node), and its phases take longer than the usual
// per-check timeout, so it runs after the others, with time for them all.
func Scheduled(o Options) conformance.Check {
	return conformance.RunAlone(New(o), o.withDefaults().need()+setupAllowance)
}

// withDefaults fills the time limits o leaves unset.
func (o Options) withDefaults() Options {
	if o.PendingTimeout <= 0 {
		o.PendingTimeout = DefaultPendingTimeout
	}
	if o.ScaleUpTimeout <= 0 {
		o.ScaleUpTimeout = DefaultScaleUpTimeout
	}
	if o.ScaleDownTimeout <= 0 {
		o.ScaleDownTimeout = DefaultScaleDownTimeout
	}
	if o.StabilityWindow <= 0 {
		o.StabilityWindow = DefaultStabilityWindow
	}
	return o
}

// setupAllowance is the time the check gets beyond its phases' limits
// for filling the pool and cleaning up.
const setupAllowance = 5 * time.Minute

// need is the longest the check's phases may take together.
func (o Options) need() time.Duration {
	return 3*o.PendingTimeout + o.ScaleUpTimeout + o.ScaleDownTimeout + 2*o.StabilityWindow
}

// scaling is one run of the check: the pool, how its pods hold an
// accelerator and what the baseline was.
type scaling struct {
	Options
	env      *conformance.Env
	selector labels.Selector
	// extended is the extended resource pods request; "" means a DRA claim
	// of the model's DeviceClass.
	extended corev1.ResourceName
	// baseline are the Ready pool nodes when the check started, by name.
	baseline map[string]types.UID
	// baselinePods are the names of the pods filling the pool.
	baselinePods []string
}

func (o Options) run(t *conformance.T, env *conformance.Env) {
	if o.NodePoolSelector == "" {
		if o.undeclared != "" {
			t.Skipf("%s, so cluster autoscaling cannot be verified", o.undeclared)
		}
		t.Skipf("no autoscaled accelerator node pool is declared (a Cluster API gpuPool with autoscaler: true, or a node pool selector in the check's options), so the requirement does not apply")
	}
	selector, err := labels.Parse(o.NodePoolSelector)
	if err != nil {
		t.Fatalf("the node pool selector %q is malformed: %v", o.NodePoolSelector, err)
	}
	s := &scaling{Options: o, env: env, selector: selector}
	if o.PoolSource != "" {
		t.Logf("node pool: %s, nodes selected by %s", o.PoolSource, selector)
	} else {
		t.Logf("node pool: the nodes selected by %s", selector)
	}
	need := o.need()
	if deadline, ok := t.Context().Deadline(); ok && time.Until(deadline) < need {
		t.Logf("the check's deadline is in %s, but its phases may take up to %s (scale-up %s, scale-down %s): a slow autoscaler may be cut short by the deadline rather than fail its own time limit",
			time.Until(deadline).Round(time.Second), need, o.ScaleUpTimeout, o.ScaleDownTimeout)
	}
	s.chooseMode(t)
	nodes := s.readyPool(t)
	s.baseline = map[string]types.UID{}
	for _, n := range nodes {
		s.baseline[n.Name] = n.UID
	}
	t.Observe("Ready pool nodes at the start", poolRows(nodes))

	steps := []struct {
		name string
		fn   func(t *conformance.T)
	}{
		{"PoolIdle", s.idle},
		{"BaselineFillsPool", s.fill},
		{"TriggerUnschedulable", s.trigger},
		{"ScaleUp", s.scaleUp},
		{"ScaleDown", s.scaleDown},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.fn) {
			t.Logf("%s failed, so the later phases were not run", st.name)
			return
		}
	}
}

// poolNode is what the check tracks of a pool node.
type poolNode struct {
	Name  string
	UID   types.UID
	Ready bool
	// Accelerators is how many accelerators it offers: devices of the
	// model's driver, or allocatable extended resources.
	Accelerators int64
}

// pool lists the nodes matching the selector.
func (s *scaling) pool(ctx context.Context) ([]poolNode, error) {
	list, err := s.env.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: s.selector.String()})
	if err != nil {
		return nil, fmt.Errorf("listing the nodes of the pool %s: %w", s.selector, err)
	}
	var devices map[string]int64
	if s.extended == "" && s.env.Accelerator.DRADriver != "" {
		if devices, err = s.devicesPerNode(ctx); err != nil {
			return nil, err
		}
	}
	out := make([]poolNode, 0, len(list.Items))
	for i := range list.Items {
		n := &list.Items[i]
		pn := poolNode{Name: n.Name, UID: n.UID, Ready: devicepod.NodeReady(n) && !n.Spec.Unschedulable}
		if s.extended != "" {
			q := n.Status.Allocatable[s.extended]
			pn.Accelerators = q.Value()
		} else {
			pn.Accelerators = devices[n.Name]
		}
		out = append(out, pn)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// devicesPerNode counts the devices the model's driver publishes per node.
func (s *scaling) devicesPerNode(ctx context.Context) (map[string]int64, error) {
	slices, err := s.env.DRA().ResourceSlices().List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorDriver, s.env.Accelerator.DRADriver).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("listing ResourceSlices: %w", err)
	}
	out := map[string]int64{}
	for _, sl := range slices.Items {
		if sl.Spec.NodeName != nil {
			out[*sl.Spec.NodeName] += int64(len(sl.Spec.Devices))
		}
	}
	return out, nil
}

func ready(nodes []poolNode) []poolNode {
	var out []poolNode
	for _, n := range nodes {
		if n.Ready {
			out = append(out, n)
		}
	}
	return out
}

// readyPool lists the Ready pool nodes; it also works for the failure
// report after the check's deadline.
func (s *scaling) readyPool(t *conformance.T) []poolNode {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
	defer cancel()
	nodes, err := s.pool(ctx)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return ready(nodes)
}

func poolRows(nodes []poolNode) []string {
	rows := []string{}
	for _, n := range nodes {
		rows = append(rows, fmt.Sprintf("%s (uid %s): %d accelerator(s)", n.Name, n.UID, n.Accelerators))
	}
	return rows
}

func names(nodes []poolNode) string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// chooseMode picks how a pod holds one accelerator, as the profile's
// allocation says: by requesting the model's extended resource
// (device-plugin), else through a DRA claim of the model's DeviceClass.
func (s *scaling) chooseMode(t *conformance.T) {
	acc := s.env.Accelerator
	if acc.DevicePlugin() {
		if acc.ResourceName == "" {
			t.Fatalf("the profile's accelerator model %q allocates through a device plugin but names no extended resource (spec.accelerator.resourceName)", acc.Model)
		}
		s.extended = corev1.ResourceName(acc.ResourceName)
		t.Logf("pods hold an accelerator by requesting 1 %s (the model's extended resource, allocation %s)", s.extended, acc.Allocation)
		return
	}
	if acc.DeviceClass == "" || acc.DRADriver == "" {
		t.Fatalf("the profile's accelerator model %q names no DeviceClass and DRA driver (spec.accelerator.deviceClass, draDriver), so no pod can ask for an accelerator through DRA", acc.Model)
	}
	if _, err := s.env.DRA().DeviceClasses().Get(t.Context(), acc.DeviceClass, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		t.Fatalf("DeviceClass %s of the accelerator model does not exist: the DRA driver's installation should create it", acc.DeviceClass)
	} else if err != nil {
		t.Fatalf("getting DeviceClass %s: %v", acc.DeviceClass, err)
	}
	t.Logf("pods hold an accelerator through a ResourceClaim for one device of DeviceClass %s (driver %s)", acc.DeviceClass, acc.DRADriver)
}

// idle waits until no other pod waits for an accelerator and no
// accelerator of the pool is in use, so that the baseline pods fill the
// pool and only the trigger pod can make it grow.
func (s *scaling) idle(t *conformance.T) {
	t.Step("Wait until the pool is idle: no pending pods asking for accelerators, no accelerator of the pool in use")
	var problems []string
	err := conformance.PollUntilContextTimeout(t.Context(), pollInterval, s.PendingTimeout, true, func(ctx context.Context) (bool, error) {
		p, err := s.busy(ctx)
		if err != nil {
			return false, err
		}
		problems = p
		return len(p) == 0, nil
	})
	if err != nil {
		if len(problems) > 0 {
			t.Observe("what keeps the pool busy", problems)
			t.Fatalf("the pool is not idle after %s: %s", s.PendingTimeout, strings.Join(problems, "; "))
		}
		t.Fatalf("waiting for the pool to be idle: %v", err)
	}
	t.Logf("the pool is idle")
}

// busy lists other namespaces' pending pods that ask for accelerators and
// what holds the pool's accelerators.
func (s *scaling) busy(ctx context.Context) ([]string, error) {
	var out []string
	pods, err := s.env.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	nodes, err := s.pool(ctx)
	if err != nil {
		return nil, err
	}
	inPool := map[string]bool{}
	for _, n := range nodes {
		inPool[n.Name] = true
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Namespace == s.env.Namespace || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || !s.asksForAccelerator(p) {
			continue
		}
		switch {
		case p.Spec.NodeName == "":
			out = append(out, fmt.Sprintf("pod %s/%s is pending and asks for an accelerator", p.Namespace, p.Name))
		case s.extended != "" && inPool[p.Spec.NodeName]:
			out = append(out, fmt.Sprintf("pod %s/%s holds %s on pool node %s", p.Namespace, p.Name, s.extended, p.Spec.NodeName))
		}
	}
	if s.extended == "" {
		held, err := s.foreignDevices(ctx, inPool)
		if err != nil {
			return nil, err
		}
		out = append(out, held...)
	}
	return out, nil
}

func (s *scaling) asksForAccelerator(p *corev1.Pod) bool {
	if s.extended == "" {
		return len(p.Spec.ResourceClaims) > 0
	}
	for _, c := range slices.Concat(p.Spec.InitContainers, p.Spec.Containers) {
		if _, ok := c.Resources.Requests[s.extended]; ok {
			return true
		}
		if _, ok := c.Resources.Limits[s.extended]; ok {
			return true
		}
	}
	return false
}

// foreignDevices lists the ResourceClaims of other namespaces that hold
// devices of the pool's nodes.
func (s *scaling) foreignDevices(ctx context.Context, inPool map[string]bool) ([]string, error) {
	driver := s.env.Accelerator.DRADriver
	list, err := s.env.DRA().ResourceSlices().List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorDriver, driver).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("listing ResourceSlices: %w", err)
	}
	nodeOf := map[devicepod.Device]string{}
	for _, sl := range list.Items {
		if sl.Spec.NodeName == nil || !inPool[*sl.Spec.NodeName] {
			continue
		}
		for _, d := range sl.Spec.Devices {
			nodeOf[devicepod.Device{Driver: driver, Pool: sl.Spec.Pool.Name, Name: d.Name}] = *sl.Spec.NodeName
		}
	}
	claims, err := s.env.DRA().ResourceClaims(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing ResourceClaims: %w", err)
	}
	var out []string
	for i := range claims.Items {
		c := &claims.Items[i]
		if c.Namespace == s.env.Namespace {
			continue
		}
		for _, d := range devicepod.Allocated(c) {
			if node, ok := nodeOf[d]; ok {
				out = append(out, fmt.Sprintf("ResourceClaim %s/%s holds device %s on pool node %s", c.Namespace, c.Name, d, node))
			}
		}
	}
	return out, nil
}

// fill runs one pod per accelerator of the pool, so that the pool is full,
// and waits until the pool's size holds for the stability window.
func (s *scaling) fill(t *conformance.T) {
	nodes := s.readyPool(t)
	var total int64
	for _, n := range nodes {
		total += n.Accelerators
	}
	t.Observe("Ready pool nodes", fmt.Sprintf("%d (%s), %d accelerator(s)", len(nodes), names(nodes), total))
	switch {
	case len(nodes) == 0:
		t.Logf("the pool has no Ready node: it scales from zero, so no baseline pod is needed")
	case total == 0:
		t.Fatalf("the %d Ready node(s) of the pool (%s) offer no accelerator: %s", len(nodes), names(nodes), s.noAccelerators())
	default:
		t.Step("Run %d baseline pods, one per accelerator of the pool, protected by PodDisruptionBudget %s", total, budget)
		if s.extended == "" {
			t.Apply(devicepod.OneDeviceTemplate(template, s.env.Accelerator.DeviceClass))
		}
		t.Apply(&policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: budget},
			Spec: policyv1.PodDisruptionBudgetSpec{
				MinAvailable: new(intstr.FromInt32(int32(total))),
				Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{RunLabel: "baseline"}},
			},
		})
		for i := range total {
			name := fmt.Sprintf("%s%d", baselinePrefix, i)
			s.baselinePods = append(s.baselinePods, name)
			s.start(t, name, "baseline")
		}
		placed := map[string]int{}
		ctx, cancel := context.WithTimeout(t.Context(), s.PendingTimeout)
		defer cancel()
		for _, name := range s.baselinePods {
			pod, err := conformance.WaitForPod(ctx, s.env.Client, s.env.Namespace, name, conformance.PodRunning)
			if err != nil {
				devicepod.Describe(t, s.env, name)
				t.Fatalf("baseline pod %s did not run within %s: %v; the scheduler says: %s", name, s.PendingTimeout, err, devicepod.SchedulerMessage(pod))
			}
			if _, ok := s.baseline[pod.Spec.NodeName]; !ok {
				t.Logf("baseline pod %s runs on node %s, which joined the pool after the check started", name, pod.Spec.NodeName)
			}
			placed[pod.Spec.NodeName]++
		}
		t.Observe("baseline pods per node", placed)
	}
	t.Step("Wait until the pool keeps its size for %s", s.StabilityWindow)
	nodes = s.waitStable(t, s.PendingTimeout, nil,
		fmt.Sprintf("the pool did not keep the same Ready nodes for %s within %s", s.StabilityWindow, s.PendingTimeout+s.StabilityWindow))
	s.baseline = map[string]types.UID{}
	for _, n := range nodes {
		s.baseline[n.Name] = n.UID
	}
	t.Observe("Ready pool nodes at baseline", fmt.Sprintf("%d (%s)", len(nodes), names(nodes)))
}

func (s *scaling) noAccelerators() string {
	if s.extended != "" {
		return fmt.Sprintf("none advertises allocatable %s", s.extended)
	}
	return fmt.Sprintf("driver %s publishes no device for them in ResourceSlices", s.env.Accelerator.DRADriver)
}

// start creates a probe pod that holds one accelerator and may only run on
// the pool's nodes.
func (s *scaling) start(t *conformance.T, name, role string) {
	spec := devicepod.Spec{Name: name}
	if s.extended == "" {
		spec.Claims = []corev1.PodResourceClaim{devicepod.FromTemplate(podClaim, template)}
	}
	pod := devicepod.Pod(s.env, spec)
	pod.Labels[RunLabel] = role
	// Autoscalers must not move these pods to consolidate the pool.
	pod.Annotations = map[string]string{
		"cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
		"karpenter.sh/do-not-disrupt":                    "true",
	}
	if s.extended != "" {
		one := resource.MustParse("1")
		for i := range pod.Spec.Containers {
			pod.Spec.Containers[i].Resources.Limits = corev1.ResourceList{s.extended: one}
		}
	}
	pod.Spec.Tolerations = append(pod.Spec.Tolerations, s.Tolerations...)
	pod.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: nodeRequirements(s.selector)}},
		},
	}}
	t.Apply(pod)
	t.Cleanup(func(ctx context.Context) {
		if err := devicepod.Release(ctx, s.env, name); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
}

// trigger runs one more pod than the pool has accelerators; the scheduler
// must find no node for it.
func (s *scaling) trigger(t *conformance.T) {
	t.Step("Run pod %s, which asks for one more accelerator than the pool has free", triggerPod)
	s.start(t, triggerPod, "trigger")
	ctx, cancel := context.WithTimeout(t.Context(), s.PendingTimeout)
	defer cancel()
	pod, err := conformance.WaitForPod(ctx, s.env.Client, s.env.Namespace, triggerPod, conformance.PodUnschedulable)
	if err != nil {
		devicepod.Describe(t, s.env, triggerPod)
		if pod != nil && pod.Spec.NodeName != "" {
			t.Fatalf("pod %s was bound to node %s although every accelerator of the pool's %d node(s) was held: the pool was not full, or the node joined before the pod was seen unschedulable",
				triggerPod, pod.Spec.NodeName, len(s.baseline))
		}
		t.Fatalf("pod %s was not marked unschedulable within %s: %v; the scheduler says: %s", triggerPod, s.PendingTimeout, err, devicepod.SchedulerMessage(pod))
	}
	msg := devicepod.SchedulerMessage(pod)
	t.Observe("why the scheduler cannot place pod "+triggerPod, msg)
	if s.extended != "" && !strings.Contains(msg, string(s.extended)) {
		t.Errorf("the scheduler's message for pod %s does not mention %s: %s", triggerPod, s.extended, msg)
	}
}

// scaleUp waits for the trigger pod to run on a node that joined the pool.
func (s *scaling) scaleUp(t *conformance.T) {
	t.Step("Wait up to %s for a new pool node on which pod %s runs", s.ScaleUpTimeout, triggerPod)
	ctx, cancel := context.WithTimeout(t.Context(), s.ScaleUpTimeout)
	defer cancel()
	pod, err := conformance.WaitForPod(ctx, s.env.Client, s.env.Namespace, triggerPod, conformance.PodRunning)
	nodes := s.readyPool(t)
	added := s.added(nodes)
	t.Observe("Ready pool nodes after scale-up", fmt.Sprintf("%d (%s); new: %s", len(nodes), names(nodes), names(added)))
	if err != nil {
		devicepod.Describe(t, s.env, triggerPod)
		if t.Context().Err() != nil {
			t.Fatalf("the check's deadline passed before pod %s ran (its scale-up limit is %s): the pool has %d Ready node(s) (%s; new: %s); the scheduler says: %s",
				triggerPod, s.ScaleUpTimeout, len(nodes), names(nodes), names(added), devicepod.SchedulerMessage(pod))
		}
		if len(added) == 0 {
			t.Fatalf("no new node joined the pool (%s) within %s: it has %d Ready node(s) as at baseline (%s), and pod %s is still not running: %s",
				s.selector, s.ScaleUpTimeout, len(nodes), names(nodes), triggerPod, devicepod.SchedulerMessage(pod))
		}
		t.Fatalf("the pool grew to %d Ready node(s) (new: %s) but pod %s did not run on one within %s: %v; the scheduler says: %s",
			len(nodes), names(added), triggerPod, s.ScaleUpTimeout, err, devicepod.SchedulerMessage(pod))
	}
	where := pod.Spec.NodeName
	switch i := slices.IndexFunc(nodes, func(n poolNode) bool { return n.Name == where }); {
	case i < 0:
		t.Fatalf("pod %s runs on node %s, which is not a Ready node of the pool (%s)", triggerPod, where, s.selector)
	case s.baseline[where] == nodes[i].UID:
		t.Fatalf("pod %s runs on node %s, which was in the pool at baseline: an accelerator was free, so nothing shows that the pool grew", triggerPod, where)
	}
	if s.extended == "" {
		claim := devicepod.Claim(t, s.env, pod, podClaim)
		devicepod.OneDevice(t, s.env, claim, where)
	}
	t.Logf("the pool grew from %d to %d Ready node(s); pod %s runs on the new node %s", len(s.baseline), len(nodes), triggerPod, where)
}

// added are the nodes not in the pool at baseline (by UID, so that a
// node replaced under the same name counts as new).
func (s *scaling) added(nodes []poolNode) []poolNode {
	var out []poolNode
	for _, n := range nodes {
		if uid, ok := s.baseline[n.Name]; !ok || uid != n.UID {
			out = append(out, n)
		}
	}
	return out
}

// scaleDown deletes the trigger pod and waits until the pool is back to
// its baseline size and stays there.
func (s *scaling) scaleDown(t *conformance.T) {
	t.Step("Delete pod %s and wait up to %s for the pool to shrink back to %d Ready node(s)", triggerPod, s.ScaleDownTimeout, len(s.baseline))
	devicepod.ReleaseNow(t, s.env, triggerPod)
	want := len(s.baseline)
	nodes := s.waitStable(t, s.ScaleDownTimeout, func(n []poolNode) bool { return len(n) == want },
		fmt.Sprintf("the pool did not shrink back to %d Ready node(s) within %s and stay so for %s", want, s.ScaleDownTimeout, s.StabilityWindow))
	t.Observe("Ready pool nodes after scale-down", fmt.Sprintf("%d (%s)", len(nodes), names(nodes)))
	t.Logf("the pool is back to %d Ready node(s)", len(nodes))
}

// waitStable waits until the set of Ready pool nodes satisfies ok (if
// set) within limit and then stays the same for the stability window, and
// returns it.
func (s *scaling) waitStable(t *conformance.T, limit time.Duration, ok func([]poolNode) bool, what string) []poolNode {
	var (
		last       []poolNode
		since      time.Time
		sizes      []int // every size seen, for the failure
		lastErr    error
		nodeSetKey = func(nodes []poolNode) string {
			keys := make([]string, len(nodes))
			for i, n := range nodes {
				keys[i] = string(n.UID)
			}
			return strings.Join(keys, ",")
		}
	)
	err := conformance.PollUntilContextTimeout(t.Context(), pollInterval, limit+s.StabilityWindow, true, func(ctx context.Context) (bool, error) {
		all, err := s.pool(ctx)
		if err != nil {
			lastErr = err
			return false, nil
		}
		lastErr = nil
		nodes := ready(all)
		if last == nil || nodeSetKey(nodes) != nodeSetKey(last) {
			if len(sizes) == 0 || sizes[len(sizes)-1] != len(nodes) {
				sizes = append(sizes, len(nodes))
			}
			last, since = nodes, time.Now()
			if last == nil {
				last = []poolNode{}
			}
		}
		if ok != nil && !ok(nodes) {
			since = time.Now()
			return false, nil
		}
		return time.Since(since) >= s.StabilityWindow, nil
	})
	if err != nil {
		t.Observe("Ready pool node counts seen", sizes)
		// A listing error matters only when no listing ever succeeded; a
		// late one (the client's rate limiter refusing to wait past the
		// deadline) says nothing about the pool.
		if lastErr != nil && last == nil {
			t.Fatalf("%s: %v", what, lastErr)
		}
		if t.Context().Err() != nil {
			t.Fatalf("the check's deadline passed first: %s: it has %d Ready node(s) (%s)", what, len(last), names(last))
		}
		t.Fatalf("%s: it has %d Ready node(s) (%s)", what, len(last), names(last))
	}
	return last
}

// nodeRequirements turns a label selector into node affinity terms.
func nodeRequirements(sel labels.Selector) []corev1.NodeSelectorRequirement {
	reqs, _ := sel.Requirements()
	out := make([]corev1.NodeSelectorRequirement, 0, len(reqs))
	for _, r := range reqs {
		var op corev1.NodeSelectorOperator
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			op = corev1.NodeSelectorOpIn
		case selection.NotEquals, selection.NotIn:
			op = corev1.NodeSelectorOpNotIn
		case selection.Exists:
			op = corev1.NodeSelectorOpExists
		case selection.DoesNotExist:
			op = corev1.NodeSelectorOpDoesNotExist
		case selection.GreaterThan:
			op = corev1.NodeSelectorOpGt
		case selection.LessThan:
			op = corev1.NodeSelectorOpLt
		default:
			continue
		}
		values := r.Values().List()
		if op == corev1.NodeSelectorOpExists || op == corev1.NodeSelectorOpDoesNotExist {
			values = nil
		}
		out = append(out, corev1.NodeSelectorRequirement{Key: r.Key(), Operator: op, Values: values})
	}
	return out
}
