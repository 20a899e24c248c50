package fakegpu_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	"k8s.io/utils/ptr"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/probe/fakegpu"
)

// TestSharedDevicesOnTheControlPlane runs the driver with time-slicing
// against a real API server and scheduler: the API server keeps what
// makes a device shared, the scheduler gives two claims of the shared
// DeviceClass shares of the one shared device and a third none (the
// device takes two), the exclusive DeviceClass never gives a shared
// device, and both shares are prepared as that one device.
func TestSharedDevicesOnTheControlPlane(t *testing.T) {
	env := testenv.Shared(t)
	cs := env.Clientset()
	ctx := t.Context()
	const sharedNode = "kwok-fakegpu-shared-0"
	if err := env.AddNodes(ctx, testenv.Node{Name: sharedNode}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = env.RemoveNodes(ctx, testenv.Node{Name: sharedNode})
		_ = cs.ResourceV1().ResourceSlices().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{FieldSelector: "spec.nodeName=" + sharedNode})
	})
	dirs := newDirs(t)
	spec := fakegpu.Spec{Node: sharedNode, Count: 2, Sharing: fakegpu.Sharing{Strategy: fakegpu.StrategyTimeSlicing, Replicas: 2, Devices: 1}}
	p := startDriverFor(t, cs, spec, dirs)
	defer p.Stop()

	slice := waitForSliceOf(ctx, t, cs, sharedNode, 2)
	if d := slice.Spec.Devices[1]; !ptr.Deref(d.AllowMultipleAllocations, false) || d.Capacity[fakegpu.CapacityShares].RequestPolicy == nil {
		t.Fatalf("the API server dropped what makes gpu-1 shared (DRAConsumableCapacity off?): %+v", d)
	}
	if d := slice.Spec.Devices[0]; d.AllowMultipleAllocations != nil {
		t.Errorf("exclusive device published as shared: %+v", d)
	}

	// The chart's two DeviceClasses, under names of this test.
	for name, selector := range map[string]string{
		"exclusive-" + sharedNode: fakegpu.ExclusiveSelector(fakegpu.DriverName),
		"shared-" + sharedNode:    fakegpu.SharedSelector(fakegpu.DriverName),
	} {
		class := &resourceapi.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: resourceapi.DeviceClassSpec{
			Selectors: []resourceapi.DeviceSelector{{CEL: &resourceapi.CELDeviceSelector{Expression: selector}}},
		}}
		if _, err := cs.ResourceV1().DeviceClasses().Create(ctx, class, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cs.ResourceV1().DeviceClasses().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	ns, err := env.CreateNamespace(ctx, "fakegpu-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })

	// The exclusive class gives the whole exclusive device, and never a
	// share of the shared one, even while it has shares free.
	excl := holder(t, cs, ns, "exclusive-1", "exclusive-"+sharedNode, sharedNode)
	if r := excl.Status.Allocation.Devices.Results[0]; r.Device != "gpu-0" || r.ShareID != nil {
		t.Errorf("the exclusive class gave %s (share %v), want the whole gpu-0", r.Device, r.ShareID)
	}
	createHolder(t, cs, ns, "exclusive-2", "exclusive-"+sharedNode, sharedNode)
	expectUnschedulable(t, cs, ns, "exclusive-2")

	share1 := holder(t, cs, ns, "share-1", "shared-"+sharedNode, sharedNode)
	share2 := holder(t, cs, ns, "share-2", "shared-"+sharedNode, sharedNode)
	for _, c := range []*resourceapi.ResourceClaim{share1, share2} {
		r := c.Status.Allocation.Devices.Results[0]
		if r.Device != "gpu-1" || r.ShareID == nil {
			t.Fatalf("claim %s: %s share %v, want a share of the shared gpu-1", c.Name, r.Device, r.ShareID)
		}
		if got := r.ConsumedCapacity[fakegpu.CapacityShares]; got.Cmp(resource.MustParse("1")) != 0 {
			t.Errorf("claim %s consumed %v, want one share", c.Name, r.ConsumedCapacity)
		}
	}
	if *share1.Status.Allocation.Devices.Results[0].ShareID == *share2.Status.Allocation.Devices.Results[0].ShareID {
		t.Error("two claims got the same share")
	}
	// The device takes two: a third claim of it waits.
	createHolder(t, cs, ns, "share-3", "shared-"+sharedNode, sharedNode)
	expectUnschedulable(t, cs, ns, "share-3")

	// The kubelet prepares both shares: each claim's containers get gpu-1.
	conn, err := grpc.NewClient("unix://"+filepath.Join(dirs.plugin, "dra.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kubelet := drapb.NewDRAPluginClient(conn)
	for _, c := range []*resourceapi.ResourceClaim{share1, share2} {
		prep, err := kubelet.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: ns, Name: c.Name, Uid: string(c.UID)}}})
		if err != nil {
			t.Fatal(err)
		}
		res := prep.Claims[string(c.UID)]
		if res == nil || res.Error != "" || len(res.Devices) != 1 || res.Devices[0].DeviceName != "gpu-1" {
			t.Fatalf("preparing %s: %+v", c.Name, res)
		}
		data, err := os.ReadFile(filepath.Join(dirs.cdi, fakegpu.CDIVendor+"-"+fakegpu.CDIClass+"_"+string(c.UID)+".json"))
		if err != nil || !strings.Contains(string(data), `"GPU_DEVICE_1=gpu-1"`) {
			t.Errorf("CDI spec of %s: %v\n%s", c.Name, err, data)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dirs.cdi, "*.json"))
	if len(files) != 2 {
		t.Errorf("CDI specs %v, want one per share", files)
	}
}

// createHolder creates a pod on node whose claim of one device of class
// comes from a template of the same name.
func createHolder(t *testing.T, cs kubernetes.Interface, ns, name, class, node string) {
	t.Helper()
	tmpl := &resourceapi.ResourceClaimTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: resourceapi.ResourceClaimTemplateSpec{Spec: resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{
			Requests: []resourceapi.DeviceRequest{{Name: "gpu", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: class}}},
		}}},
	}
	if _, err := cs.ResourceV1().ResourceClaimTemplates(ns).Create(t.Context(), tmpl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeSelector:   map[string]string{corev1.LabelHostname: node},
			Containers:     []corev1.Container{{Name: "probe", Image: "kaic.dev/probe:test", Resources: corev1.ResourceRequirements{Claims: []corev1.ResourceClaim{{Name: "gpu"}}}}},
			ResourceClaims: []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimTemplateName: &tmpl.Name}},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// holder creates a holder pod, waits until it is scheduled with its claim
// allocated and returns the claim.
func holder(t *testing.T, cs kubernetes.Interface, ns, name, class, node string) *resourceapi.ResourceClaim {
	t.Helper()
	createHolder(t, cs, ns, name, class, node)
	var claim *resourceapi.ResourceClaim
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pod, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || pod.Spec.NodeName == "" || len(pod.Status.ResourceClaimStatuses) != 1 || pod.Status.ResourceClaimStatuses[0].ResourceClaimName == nil {
			return false, nil
		}
		claim, err = cs.ResourceV1().ResourceClaims(ns).Get(ctx, *pod.Status.ResourceClaimStatuses[0].ResourceClaimName, metav1.GetOptions{})
		return err == nil && claim.Status.Allocation != nil && len(claim.Status.Allocation.Devices.Results) == 1, nil
	})
	if err != nil {
		t.Fatalf("pod %s not scheduled with an allocated claim of %s: %v", name, class, err)
	}
	if got := claim.Status.Allocation.Devices.Results[0]; !slices.Contains([]string{"gpu-0", "gpu-1"}, got.Device) || got.Pool != node {
		t.Fatalf("claim of %s allocated %s/%s", name, got.Pool, got.Device)
	}
	return claim
}

// expectUnschedulable waits for the scheduler to find pod name
// unschedulable, and fails t if it schedules it.
func expectUnschedulable(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		if pod, err = cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return false, err
		}
		if pod.Spec.NodeName != "" {
			return true, nil
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil || pod.Spec.NodeName != "" {
		t.Errorf("pod %s: scheduled to %q (%v), want it unschedulable", name, pod.Spec.NodeName, err)
	}
}
