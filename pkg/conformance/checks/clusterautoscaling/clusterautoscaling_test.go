package clusterautoscaling

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// The tests' pool: two kwok nodes with one fake device each, labelled
// poolLabel; a third node with free devices outside the pool proves that
// the check's pods stay in the pool.
const (
	poolLabel = "kaic.dev/node-pool"
	poolName  = "gpu-autoscaled"
	class     = "gpu.example.com"
	// pluginResource is the extended resource the nodes also advertise,
	// as a device plugin would.
	pluginResource corev1.ResourceName = "example.com/fake-gpu"
)

func plugin(n int64) corev1.ResourceList {
	return corev1.ResourceList{pluginResource: *resource.NewQuantity(n, resource.DecimalSI)}
}

var poolSelector = poolLabel + "=" + poolName

func TestMain(m *testing.M) {
	pool := map[string]string{poolLabel: poolName}
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithNodes(
		testenv.Node{Name: "pool-0", Labels: pool, GPUs: 1, Allocatable: plugin(1)},
		testenv.Node{Name: "pool-1", Labels: pool, GPUs: 1, Allocatable: plugin(1)},
		testenv.Node{Name: "other-0", GPUs: 2, Allocatable: plugin(2)},
	))
}

// fast are time limits for a control plane where nodes join in a second.
func fast(o Options) Options {
	o.NodePoolSelector = poolSelector
	o.PendingTimeout = 30 * time.Second
	if o.ScaleUpTimeout == 0 {
		o.ScaleUpTimeout = 60 * time.Second
	}
	if o.ScaleDownTimeout == 0 {
		o.ScaleDownTimeout = 60 * time.Second
	}
	o.StabilityWindow = 2 * time.Second
	return o
}

func run(t *testing.T, env *testenv.Env, check conformance.Check) conformance.Result {
	t.Helper()
	checktest.EnsureDeviceClass(t, env, class, testenv.DefaultDRADriver)
	return runModel(t, env, check, checktest.ExampleModel(testenv.DefaultDRADriver, class))
}

func runModel(t *testing.T, env *testenv.Env, check conformance.Check, acc profile.Accelerator) conformance.Result {
	t.Helper()
	return checktest.RunWith(t, env, check, checktest.Options{Version: "1.37", Category: "schedulingOrchestration", Level: conformance.Must, Timeout: 4 * time.Minute, Accelerator: &acc})
}

// standInAutoscaler is a stand-in for a cluster autoscaler, written for
// these tests only: it is not how any real autoscaler works. When a pod is
// unschedulable and no extra node is empty, it adds a kwok node to the pool
// with one fake device; with scaleDown it removes an extra node once it has
// been empty for a moment and nothing waits for a node.
type standInAutoscaler struct {
	env       *testenv.Env
	scaleDown bool
	maxExtra  int

	mu         sync.Mutex
	extra      []string
	emptySince map[string]time.Time
	added      int
}

// startStandIn runs a stand-in autoscaler until the test ends and then
// removes the nodes it added.
func startStandIn(t *testing.T, env *testenv.Env, scaleDown bool) *standInAutoscaler {
	t.Helper()
	a := &standInAutoscaler{env: env, scaleDown: scaleDown, maxExtra: 2, emptySince: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := a.tick(ctx); err != nil && ctx.Err() == nil {
				t.Logf("stand-in autoscaler: %v", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, n := range a.extra {
			if err := a.remove(ctx, n); err != nil {
				t.Errorf("removing node %s: %v", n, err)
			}
		}
	})
	return a
}

func (a *standInAutoscaler) tick(ctx context.Context) error {
	cs := a.env.Clientset()
	pods, err := cs.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	waiting := false
	onNode := map[string]int{}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		onNode[p.Spec.NodeName]++
		if c := conformance.PodCondition(&p, corev1.PodScheduled); p.Spec.NodeName == "" && c != nil && c.Reason == corev1.PodReasonUnschedulable {
			waiting = true
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	anyEmpty := false
	var keep []string
	for _, n := range a.extra {
		if onNode[n] > 0 {
			delete(a.emptySince, n)
			keep = append(keep, n)
			continue
		}
		anyEmpty = true
		if _, ok := a.emptySince[n]; !ok {
			a.emptySince[n] = time.Now()
		}
		if a.scaleDown && !waiting && time.Since(a.emptySince[n]) > 2*time.Second {
			if err := a.remove(ctx, n); err != nil {
				return err
			}
			delete(a.emptySince, n)
			continue
		}
		keep = append(keep, n)
	}
	a.extra = keep
	if waiting && !anyEmpty && len(a.extra) < a.maxExtra {
		a.added++
		name := fmt.Sprintf("pool-extra-%d", a.added)
		if err := a.add(ctx, name); err != nil {
			return err
		}
		a.extra = append(a.extra, name)
	}
	return nil
}

// add creates a kwok node in the pool (kwok makes it Ready) and publishes
// its one fake device.
func (a *standInAutoscaler) add(ctx context.Context, name string) error {
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
		pluginResource:        resource.MustParse("1"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				corev1.LabelHostname: name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: runtime.GOARCH,
				"type": "kwok", poolLabel: poolName,
			},
			Annotations: map[string]string{conformance.KwokNodeAnnotation: "fake"},
		},
		Status: corev1.NodeStatus{Allocatable: resources, Capacity: resources.DeepCopy()},
	}
	cs := a.env.Clientset()
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("adding node %s: %w", name, err)
	}
	if _, err := cs.ResourceV1().ResourceSlices().Create(ctx, testenv.FakeGPUSlice(name, testenv.DefaultDRADriver, 1), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("publishing the device of node %s: %w", name, err)
	}
	return nil
}

func (a *standInAutoscaler) remove(ctx context.Context, name string) error {
	cs := a.env.Clientset()
	slice := testenv.FakeGPUSlice(name, testenv.DefaultDRADriver, 1).Name
	if err := cs.ResourceV1().ResourceSlices().Delete(ctx, slice, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting ResourceSlice %s: %w", slice, err)
	}
	if err := cs.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting node %s: %w", name, err)
	}
	return nil
}

func (a *standInAutoscaler) nodesAdded() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.added
}

func poolSize(t *testing.T, env *testenv.Env) int {
	t.Helper()
	nodes, err := env.Clientset().CoreV1().Nodes().List(t.Context(), metav1.ListOptions{LabelSelector: poolSelector})
	if err != nil {
		t.Fatal(err)
	}
	return len(nodes.Items)
}

func TestClusterAutoscalingPassesWithAnAutoscaler(t *testing.T) {
	env := testenv.Shared(t)
	scaler := startStandIn(t, env, true)
	res := run(t, env, New(fast(Options{})))
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	if res.TestName != "TestAcceleratorClusterAutoscaling" {
		t.Errorf("test name %q", res.TestName)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{
		"PoolIdle":             conformance.Passed,
		"BaselineFillsPool":    conformance.Passed,
		"TriggerUnschedulable": conformance.Passed,
		"ScaleUp":              conformance.Passed,
		"ScaleDown":            conformance.Passed,
	})
	checktest.ExpectTranscript(t, res,
		"Ready pool nodes at baseline: 2 (pool-0, pool-1)",
		"Run 2 baseline pods, one per accelerator of the pool",
		"PodDisruptionBudget "+res.Namespace+"/autoscaler-baseline",
		"why the scheduler cannot place pod autoscaler-trigger",
		"Ready pool nodes after scale-up: 3 (pool-0, pool-1, pool-extra-1); new: pool-extra-1",
		"pod autoscaler-trigger runs on the new node pool-extra-1",
		"Ready pool nodes after scale-down: 2 (pool-0, pool-1)",
		"key: "+poolLabel, // the pods are confined to the pool
	)
	if n := scaler.nodesAdded(); n != 1 {
		t.Errorf("the stand-in autoscaler added %d nodes, want 1", n)
	}
	if n := poolSize(t, env); n != 2 {
		t.Errorf("the pool has %d nodes after the check", n)
	}
	checktest.ExpectCleanedUp(t, env, res)
}

// A model with a device plugin's extended resource and no DeviceClass: the
// pods request the resource, and the scheduler must say it is short of it.
func TestClusterAutoscalingWithExtendedResource(t *testing.T) {
	env := testenv.Shared(t)
	scaler := startStandIn(t, env, true)
	acc := profile.Accelerator{Model: "custom", Allocation: profile.AllocationDevicePlugin, ResourceName: string(pluginResource), DeviceEnvPrefix: "GPU_DEVICE_"}
	res := runModel(t, env, New(fast(Options{})), acc)
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	checktest.ExpectTranscript(t, res,
		"pods hold an accelerator by requesting 1 example.com/fake-gpu (the model's extended resource, allocation device-plugin)",
		"example.com/fake-gpu: \"1\"",
		"Insufficient example.com/fake-gpu",
		"pod autoscaler-trigger runs on the new node pool-extra-",
		"Ready pool nodes after scale-down: 2 (pool-0, pool-1)",
	)
	if n := scaler.nodesAdded(); n != 1 {
		t.Errorf("the stand-in autoscaler added %d nodes, want 1", n)
	}
}

func TestClusterAutoscalingFailsWithoutAutoscaler(t *testing.T) {
	env := testenv.Shared(t)
	res := run(t, env, New(fast(Options{ScaleUpTimeout: 10 * time.Second})))
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "no new node joined the pool (kaic.dev/node-pool=gpu-autoscaled) within 10s: it has 2 Ready node(s) as at baseline (pool-0, pool-1)") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"TriggerUnschedulable": conformance.Passed,
		"ScaleUp":              conformance.Failed,
		"ScaleDown":            "",
	})
	checktest.ExpectCleanedUp(t, env, res)
}

// A check deadline shorter than the scale-up limit is named as the cause,
// not the autoscaler's time limit.
func TestClusterAutoscalingSaysWhenItsDeadlineEndsFirst(t *testing.T) {
	env := testenv.Shared(t)
	checktest.EnsureDeviceClass(t, env, class, testenv.DefaultDRADriver)
	acc := checktest.ExampleModel(testenv.DefaultDRADriver, class)
	res := checktest.RunWith(t, env, New(fast(Options{})), checktest.Options{Version: "1.37", Category: "schedulingOrchestration", Level: conformance.Must, Timeout: 25 * time.Second, Accelerator: &acc})
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "the check's deadline passed before pod autoscaler-trigger ran (its scale-up limit is 1m0s)") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectTranscript(t, res, "but its phases may take up to")
	checktest.ExpectCleanedUp(t, env, res)
}

func TestClusterAutoscalingFailsWhenPoolDoesNotShrink(t *testing.T) {
	env := testenv.Shared(t)
	startStandIn(t, env, false)
	res := run(t, env, New(fast(Options{ScaleDownTimeout: 8 * time.Second})))
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "the pool did not shrink back to 2 Ready node(s) within 8s and stay so for 2s: it has 3 Ready node(s) (pool-0, pool-1, pool-extra-1)") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"ScaleUp":   conformance.Passed,
		"ScaleDown": conformance.Failed,
	})
	checktest.ExpectCleanedUp(t, env, res)
}

// A pod of another namespace waiting for an accelerator would take the
// node the autoscaler adds: the check refuses to start.
func TestClusterAutoscalingFailsWhenPoolIsBusy(t *testing.T) {
	env := testenv.Shared(t)
	ns, err := env.CreateNamespace(t.Context(), "busy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Clientset().CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	claim := "missing-claim"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "waiting-for-gpu"},
		Spec: corev1.PodSpec{
			Containers:     []corev1.Container{{Name: "c", Image: "kaic-probe:latest", Resources: corev1.ResourceRequirements{Claims: []corev1.ResourceClaim{{Name: "gpu"}}}}},
			ResourceClaims: []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimName: &claim}},
		},
	}
	if _, err := env.Clientset().CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	o := fast(Options{})
	o.PendingTimeout = 5 * time.Second
	res := run(t, env, New(o))
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "the pool is not idle after 5s: pod "+ns+"/waiting-for-gpu is pending and asks for an accelerator") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{"BaselineFillsPool": ""})
}

func TestClusterAutoscalingSkipsWithoutDeclaredPool(t *testing.T) {
	env := testenv.Shared(t)
	for _, check := range []conformance.Check{Check(), ForProfile(nil), ForProfile(&profile.Profile{})} {
		res := run(t, env, check)
		if res.Status != conformance.Skipped || !strings.Contains(res.Reason, "no autoscaled accelerator node pool is declared") {
			t.Errorf("status %s, reason %q", res.Status, res.Reason)
		}
	}
}

func TestOptionsFor(t *testing.T) {
	withPool := func(g *profile.GPUPool) *profile.Profile {
		p := &profile.Profile{}
		p.Spec.Cluster.Backend = profile.BackendCAPI
		p.Spec.Cluster.CAPI = &profile.CAPICluster{GPUPool: g}
		return p
	}
	o := OptionsFor(withPool(&profile.GPUPool{
		Name: "gpu", Autoscaler: true,
		Labels: map[string]string{"kaic.dev/pool": "gpu", "nvidia.com/gpu.present": "true"},
		Taints: []profile.Taint{{Key: "nvidia.com/gpu", Value: "present", Effect: "NoSchedule"}},
	}))
	if o.NodePoolSelector != "kaic.dev/pool=gpu,nvidia.com/gpu.present=true" {
		t.Errorf("selector %q", o.NodePoolSelector)
	}
	if len(o.Tolerations) != 1 || o.Tolerations[0].Key != "nvidia.com/gpu" || o.Tolerations[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("tolerations %+v", o.Tolerations)
	}
	if !strings.Contains(o.PoolSource, `pool "gpu"`) {
		t.Errorf("source %q", o.PoolSource)
	}
	if o := OptionsFor(withPool(&profile.GPUPool{Name: "gpu", Labels: map[string]string{"a": "b"}})); o.NodePoolSelector != "" {
		t.Errorf("a pool without autoscaler gave selector %q", o.NodePoolSelector)
	}
	unlabelled := OptionsFor(withPool(&profile.GPUPool{Name: "gpu", Autoscaler: true}))
	if unlabelled.NodePoolSelector != "" || !strings.Contains(unlabelled.undeclared, "has no labels by which to find its nodes") {
		t.Errorf("unlabelled pool: %+v", unlabelled)
	}
}

func TestNodeRequirements(t *testing.T) {
	sel, err := labels.Parse("pool=gpu,zone in (a,b),!spot,gpu,tier!=low")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range nodeRequirements(sel) {
		got[r.Key] = fmt.Sprintf("%s%v", r.Operator, r.Values)
	}
	want := map[string]string{"pool": "In[gpu]", "zone": "In[a b]", "spot": "DoesNotExist[]", "gpu": "Exists[]", "tier": "NotIn[low]"}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s, want %s", k, got[k], w)
		}
	}
}

// kaic's runner schedules the check by itself and gives it time for
// every phase, far beyond the usual per-check timeout.
func TestForProfileRunsAloneWithTimeForItsPhases(t *testing.T) {
	c := ForProfile(nil)
	alone, ok := c.(conformance.Alone)
	if !ok || !alone.RunsAlone() {
		t.Fatalf("ForProfile's check does not run alone: %T", c)
	}
	need := 3*DefaultPendingTimeout + DefaultScaleUpTimeout + DefaultScaleDownTimeout + 2*DefaultStabilityWindow
	if got := c.(conformance.NeedsTime).MinTimeout(); got < need {
		t.Errorf("MinTimeout = %s, want at least the phases' %s", got, need)
	}
	if c.ID() != ID {
		t.Errorf("ID = %s", c.ID())
	}
}
