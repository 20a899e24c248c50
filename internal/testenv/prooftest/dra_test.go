package prooftest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/kaic-dev/kaic/internal/testenv"
)

func TestSchedulerAllocatesClaimFromPublishedSlice(t *testing.T) {
	env := testenv.Shared(t)
	client := env.Clientset()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	ns := createNamespace(ctx, t, env, "dra-allocate-")
	class, err := env.CreateDeviceClass(ctx, ns+"-gpu")
	if err != nil {
		t.Fatal(err)
	}
	template := &resourcev1.ResourceClaimTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "one-gpu", Namespace: ns},
		Spec: resourcev1.ResourceClaimTemplateSpec{Spec: resourcev1.ResourceClaimSpec{
			Devices: resourcev1.DeviceClaim{Requests: []resourcev1.DeviceRequest{{
				Name:    "gpu",
				Exactly: &resourcev1.ExactDeviceRequest{DeviceClassName: class.Name},
			}}},
		}},
	}
	if _, err := client.ResourceV1().ResourceClaimTemplates(ns).Create(ctx, template, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := gpuPod(ns, "uses-template", corev1.PodResourceClaim{Name: "gpu", ResourceClaimTemplateName: &template.Name})
	if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	running, err := testenv.WaitForPod(ctx, client, ns, pod.Name, testenv.PodRunning)
	if err != nil {
		if running != nil {
			t.Logf("last seen status: %+v", running.Status)
		}
		t.Fatal(err)
	}
	node := running.Spec.NodeName
	t.Logf("pod bound to %s and Running", node)

	if len(running.Status.ResourceClaimStatuses) != 1 || running.Status.ResourceClaimStatuses[0].ResourceClaimName == nil {
		t.Fatalf("pod has no generated claim: %+v", running.Status.ResourceClaimStatuses)
	}
	claimName := *running.Status.ResourceClaimStatuses[0].ResourceClaimName
	claim, err := client.ResourceV1().ResourceClaims(ns).Get(ctx, claimName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if claim.Status.Allocation == nil || len(claim.Status.Allocation.Devices.Results) != 1 {
		t.Fatalf("claim %s not allocated one device: %+v", claimName, claim.Status.Allocation)
	}
	result := claim.Status.Allocation.Devices.Results[0]
	t.Logf("claim %s allocated %s/%s/%s", claimName, result.Driver, result.Pool, result.Device)
	if result.Driver != env.DRADriver || result.Pool != node || result.Request != "gpu" {
		t.Errorf("allocation %+v: want driver %s, pool %s (the pod's node), request gpu", result, env.DRADriver, node)
	}

	// The device must come from the ResourceSlice published for that node.
	slices, err := client.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{
		FieldSelector: fields.AndSelectors(
			fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorNodeName, node),
			fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorDriver, env.DRADriver),
		).String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sliceHasDevice(slices.Items, result.Device) {
		t.Errorf("device %s is not in the ResourceSlices of node %s", result.Device, node)
	}
	if !reservedFor(claim, running.UID) {
		t.Errorf("claim %s is not reserved for pod %s: %+v", claimName, running.Name, claim.Status.ReservedFor)
	}
}

func TestClaimForMoreDevicesThanExistStaysUnallocated(t *testing.T) {
	env := testenv.Shared(t)
	client := env.Clientset()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	ns := createNamespace(ctx, t, env, "dra-too-many-")
	class, err := env.CreateDeviceClass(ctx, ns+"-gpu")
	if err != nil {
		t.Fatal(err)
	}
	var devices int64
	for _, n := range env.Nodes {
		devices += int64(n.GPUs)
	}
	claim := &resourcev1.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "too-many-gpus", Namespace: ns},
		Spec: resourcev1.ResourceClaimSpec{Devices: resourcev1.DeviceClaim{Requests: []resourcev1.DeviceRequest{{
			Name: "gpus",
			Exactly: &resourcev1.ExactDeviceRequest{
				DeviceClassName: class.Name,
				AllocationMode:  resourcev1.DeviceAllocationModeExactCount,
				Count:           devices + 1,
			},
		}}}},
	}
	if _, err := client.ResourceV1().ResourceClaims(ns).Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := gpuPod(ns, "wants-too-many", corev1.PodResourceClaim{Name: "gpus", ResourceClaimName: &claim.Name})
	if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	pending, err := testenv.WaitForPod(ctx, client, ns, pod.Name, testenv.PodUnschedulable)
	if err != nil {
		t.Fatal(err)
	}
	scheduled := testenv.PodCondition(pending, corev1.PodScheduled)
	t.Logf("PodScheduled=%s reason %s: %s", scheduled.Status, scheduled.Reason, scheduled.Message)
	// The scheduler's DRA plugin names the claims as the cause on every node.
	if !strings.Contains(scheduled.Message, "cannot allocate all claims") {
		t.Errorf("unschedulable message does not name the claim as the cause: %q", scheduled.Message)
	}

	got, err := client.ResourceV1().ResourceClaims(ns).Get(ctx, claim.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Allocation != nil || len(got.Status.ReservedFor) > 0 {
		t.Errorf("claim for %d devices (only %d exist) was allocated: %+v", devices+1, devices, got.Status)
	}
}

// gpuPod is a pod whose only container uses claim. kwok runs no
// containers, so the image is never pulled.
func gpuPod(namespace, name string, claim corev1.PodResourceClaim) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:      "main",
				Image:     "registry.invalid/gpu-test:never-pulled",
				Resources: corev1.ResourceRequirements{Claims: []corev1.ResourceClaim{{Name: claim.Name}}},
			}},
			ResourceClaims:                []corev1.PodResourceClaim{claim},
			TerminationGracePeriodSeconds: ptr.To[int64](0),
		},
	}
}

func createNamespace(ctx context.Context, t *testing.T, env *testenv.Env, prefix string) string {
	t.Helper()
	ns, err := env.CreateNamespace(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func sliceHasDevice(items []resourcev1.ResourceSlice, device string) bool {
	for _, s := range items {
		if slices.ContainsFunc(s.Spec.Devices, func(d resourcev1.Device) bool { return d.Name == device }) {
			return true
		}
	}
	return false
}

func reservedFor(claim *resourcev1.ResourceClaim, pod types.UID) bool {
	return slices.ContainsFunc(claim.Status.ReservedFor, func(r resourcev1.ResourceClaimConsumerReference) bool {
		return r.Resource == "pods" && r.UID == pod
	})
}
