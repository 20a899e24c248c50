package dra

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
	"github.com/kaic-dev/kaic/pkg/draapi"
)

// TestDRASupportWithoutV1UsesV1beta2StandInAllocator runs the dra_support
// check against a real API server that serves resource.k8s.io only as
// v1beta2 and v1beta1, as Kubernetes 1.33 does (with DRA switched on): the
// check must pass through v1beta2 alone, say so, and send no request to
// resource.k8s.io/v1.
//
// Stand-in: kube-scheduler and kube-controller-manager 1.37 read DRA
// objects through resource.k8s.io/v1 only (the scheduler never becomes
// ready without it, the controller manager's resourceclaim controller
// cannot list), so here standInAllocator plays their DRA part: it creates
// the claims of pods' ResourceClaimTemplates, allocates devices by writing
// claims' status through v1beta2, binds the pods, and marks pods whose
// claims fit no node unschedulable. Everything the check itself does
// (discovery, DeviceClass, ResourceSlices, templates, claims, reading the
// allocation) goes to the real API server; kwok runs the nodes.
func TestDRASupportWithoutV1UsesV1beta2StandInAllocator(t *testing.T) {
	env := testenv.New(t, testenv.WithResourceAPIVersions("v1beta2", "v1beta1"),
		testenv.WithControlLoops(), testenv.WithoutScheduler(), testenv.WithGPUNodes(2, 2))
	if _, err := env.CreateDeviceClass(t.Context(), "gpu.example.com"); err != nil {
		t.Fatal(err)
	}
	allocator := &standInAllocator{kube: env.Clientset(), dra: env.DRA(), driver: testenv.DefaultDRADriver}
	if v := allocator.dra.Version(); v != draapi.V1beta2 {
		t.Fatalf("the stand-in allocator would write through %q, want v1beta2", v)
	}
	t.Log("stand-in allocator in place of the scheduler's and controller manager's DRA parts (they need resource.k8s.io/v1)")
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); allocator.run(ctx) }()
	defer func() { stop(); <-done }()

	var mu sync.Mutex
	var paths []string
	acc := exampleModel("gpu.example.com")
	res := checktest.RunWith(t, env, Check(), checktest.Options{
		Version: "1.33", Category: "accelerators", Level: conformance.Should,
		Timeout: 3 * time.Minute, Accelerator: &acc,
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				paths = append(paths, r.Method+" "+r.URL.Path)
				mu.Unlock()
				return rt.RoundTrip(r)
			})
		},
	})
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{
		"APIServed":                            conformance.Passed,
		"DeviceClassExists":                    conformance.Passed,
		"ResourceSlicesOnReadyNodes":           conformance.Passed,
		"ClaimAllocatedAndPodRuns":             conformance.Passed,
		"ProbeSeesAllocatedDevice":             conformance.Skipped,
		"ClaimBeyondNodeCapacityUnschedulable": conformance.Passed,
	})
	// The transcript says which version was used, and the manifests are
	// recorded as sent.
	checktest.ExpectTranscript(t, res,
		"DRA API the checks use: resource.k8s.io/v1beta2 (v1 not served)",
		"versions of resource.k8s.io served: v1beta2, v1beta1",
		"resources served by resource.k8s.io/v1beta2: deviceclasses",
		"apiVersion: resource.k8s.io/v1beta2\nkind: ResourceClaimTemplate",
		"apiVersion: resource.k8s.io/v1beta2\nkind: ResourceClaim\n",
		"allocation of ResourceClaim",
	)

	mu.Lock()
	defer mu.Unlock()
	byKind := map[string]int{}
	for _, p := range paths {
		rest, ok := strings.CutPrefix(p[strings.Index(p, " ")+1:], "/apis/resource.k8s.io/")
		if !ok {
			continue
		}
		version, _, _ := strings.Cut(rest, "/")
		if version == "v1" {
			t.Errorf("request to resource.k8s.io/v1: %s", p)
		}
		byKind[strings.Fields(p)[0]+" "+version]++
	}
	t.Logf("requests of the check to resource.k8s.io by method and version: %v", byKind)
	// Gets and lists of DeviceClass, slices and claims, and the applies
	// (PATCH) of the template and the claim.
	if byKind["GET v1beta2"] < 4 || byKind["PATCH v1beta2"] != 2 {
		t.Errorf("requests to resource.k8s.io/v1beta2 %v, want at least 4 GETs and the 2 applies", byKind)
	}
	if allocator.allocated == 0 || allocator.refused == 0 {
		t.Errorf("the stand-in allocated %d and refused %d claims; the check should have led it to do both", allocator.allocated, allocator.refused)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// standInAllocator stands in, for this test only, for what
// kube-controller-manager's resourceclaim controller and kube-scheduler's
// DRA plugin do for a pod with claims, reading and writing DRA objects
// through dra (v1beta2): it creates a claim for each of the pod's
// templates, allocates devices of driver to all of the pod's claims on one
// node (ExactCount requests; the DeviceClass's selectors are not
// evaluated: every device of driver matches), reserves them for the pod
// and binds it there, or marks the pod unschedulable when no node has the
// devices free.
type standInAllocator struct {
	kube   kubernetes.Interface
	dra    *draapi.Client
	driver string

	allocated, refused int // claims allocated, pods marked unschedulable
}

func (a *standInAllocator) run(ctx context.Context) {
	for ctx.Err() == nil {
		pods, err := a.kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("spec.nodeName", "").String(),
		})
		if err == nil {
			for i := range pods.Items {
				if p := &pods.Items[i]; len(p.Spec.ResourceClaims) > 0 && p.DeletionTimestamp == nil {
					a.schedule(ctx, p)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// schedule handles one unbound pod; errors leave it for the next round.
func (a *standInAllocator) schedule(ctx context.Context, pod *corev1.Pod) {
	claims := a.dra.ResourceClaims(pod.Namespace)
	var podClaims []*resourcev1.ResourceClaim
	for _, pc := range pod.Spec.ResourceClaims {
		var name string
		switch {
		case pc.ResourceClaimName != nil:
			name = *pc.ResourceClaimName
		case pc.ResourceClaimTemplateName != nil:
			for _, s := range pod.Status.ResourceClaimStatuses {
				if s.Name == pc.Name && s.ResourceClaimName != nil {
					name = *s.ResourceClaimName
				}
			}
			if name == "" {
				if err := a.claimFromTemplate(ctx, pod, pc); err != nil {
					return
				}
				return // the pod changed; next round
			}
		}
		claim, err := claims.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return
		}
		podClaims = append(podClaims, claim)
	}
	free, err := a.freeDevices(ctx)
	if err != nil {
		return
	}
	for _, node := range sortedNodes(free) {
		results, ok := fit(podClaims, free[node], a.driver)
		if !ok {
			continue
		}
		for i, claim := range podClaims {
			if claim.Status.Allocation == nil {
				claim.Status.Allocation = &resourcev1.AllocationResult{
					Devices:      resourcev1.DeviceAllocationResult{Results: results[i]},
					NodeSelector: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}}}}},
				}
			}
			claim.Status.ReservedFor = []resourcev1.ResourceClaimConsumerReference{{Resource: "pods", Name: pod.Name, UID: pod.UID}}
			if _, err := claims.UpdateStatus(ctx, claim, metav1.UpdateOptions{}); err != nil {
				return
			}
			a.allocated++
		}
		_ = a.kube.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: node},
		}, metav1.CreateOptions{})
		return
	}
	if c := conformance.PodCondition(pod, corev1.PodScheduled); c != nil && c.Reason == corev1.PodReasonUnschedulable {
		return
	}
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{
		Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		LastTransitionTime: metav1.Now(),
		Message:            fmt.Sprintf("0/%d nodes are available: %d cannot allocate all claims (stand-in allocator of a test)", len(free), len(free)),
	})
	if _, err := a.kube.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err == nil {
		a.refused++
	}
}

// claimFromTemplate creates the pod's claim from its template, owned by
// the pod, and records it in the pod's status.
func (a *standInAllocator) claimFromTemplate(ctx context.Context, pod *corev1.Pod, pc corev1.PodResourceClaim) error {
	tmpl, err := a.dra.ResourceClaimTemplates(pod.Namespace).Get(ctx, *pc.ResourceClaimTemplateName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	claim := &resourcev1.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name + "-" + pc.Name, Namespace: pod.Namespace,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: tmpl.Spec.Spec,
	}
	if _, err := a.dra.ResourceClaims(pod.Namespace).Create(ctx, claim, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	pod.Status.ResourceClaimStatuses = append(pod.Status.ResourceClaimStatuses, corev1.PodResourceClaimStatus{Name: pc.Name, ResourceClaimName: &claim.Name})
	_, err = a.kube.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	return err
}

// freeDevices lists, per node, the devices of the driver no claim holds.
func (a *standInAllocator) freeDevices(ctx context.Context) (map[string][]string, error) {
	published, err := a.dra.ResourceSlices().List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorDriver, a.driver).String(),
	})
	if err != nil {
		return nil, err
	}
	all, err := a.dra.ResourceClaims(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	held := map[string]bool{}
	for _, c := range all.Items {
		if c.Status.Allocation != nil {
			for _, r := range c.Status.Allocation.Devices.Results {
				held[r.Pool+"/"+r.Device] = true
			}
		}
	}
	free := map[string][]string{}
	for _, s := range published.Items {
		if s.Spec.NodeName == nil {
			continue
		}
		if _, seen := free[*s.Spec.NodeName]; !seen {
			free[*s.Spec.NodeName] = nil // a node counts even when all is held
		}
		for _, d := range s.Spec.Devices {
			if !held[s.Spec.Pool.Name+"/"+d.Name] {
				free[*s.Spec.NodeName] = append(free[*s.Spec.NodeName], s.Spec.Pool.Name+"/"+d.Name)
			}
		}
	}
	return free, nil
}

// fit allocates the exact requests of the claims not yet allocated from
// the free devices of one node ("pool/device"), or reports that they do
// not fit.
func fit(claims []*resourcev1.ResourceClaim, free []string, driver string) ([][]resourcev1.DeviceRequestAllocationResult, bool) {
	results := make([][]resourcev1.DeviceRequestAllocationResult, len(claims))
	next := 0
	for i, c := range claims {
		if c.Status.Allocation != nil {
			continue
		}
		for _, r := range c.Spec.Devices.Requests {
			if r.Exactly == nil || r.Exactly.AllocationMode != resourcev1.DeviceAllocationModeExactCount {
				return nil, false
			}
			for range r.Exactly.Count {
				if next == len(free) {
					return nil, false
				}
				pool, device, _ := strings.Cut(free[next], "/")
				next++
				results[i] = append(results[i], resourcev1.DeviceRequestAllocationResult{Request: r.Name, Driver: driver, Pool: pool, Device: device})
			}
		}
	}
	return results, true
}

func sortedNodes(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
