package accelmetrics

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// What is real in the DCGM tests and what stands in, besides what the
// other tests say: the NVIDIA model is kaic's built-in one, as the
// kind-nvidia profile resolves it. The NVIDIA DRA driver's ResourceSlice
// is written here in the shape the driver publishes (whole GPUs and MIG
// devices with uuid, parentUUID and profile attributes), a DCGM exporter
// serves testdata/dcgm-mig.prom, and ResourceClaims are allocated by
// writing their status, as the scheduler would.

const (
	nvidiaDriver = "gpu.nvidia.com"
	dcgmService  = "dcgm-exporter"
	claimsNS     = "accelmetrics-workloads"
)

// The MIG devices of GPU 1 in the slice: one 3g.20gb placement and three
// 1g.5gb ones, of which DCGM sees two instances (the driver publishes
// every placement; a third 1g.5gb instance does not exist).
var migUUIDs = map[string]string{
	"gpu-1-mig-9-4-4":  "MIG-3b1e6a90-5c27-5d41-8f0e-2a7c9d4b6e13",
	"gpu-1-mig-19-0-1": "MIG-7d2f8c15-9e43-5a6b-b1c8-4f0a2e9d7c31",
	"gpu-1-mig-19-1-1": "MIG-a4c6e1b8-2d95-5f73-9e0a-6b3d8f1c4a27",
	"gpu-1-mig-19-2-1": "MIG-e8b3d5a2-7f16-5c94-a2d7-0c5e9b3f8d46",
}

// nvidiaModel is the built-in NVIDIA accelerator model.
func nvidiaModel(t *testing.T) profile.Accelerator {
	t.Helper()
	r, err := (&profile.Loader{}).Load("kind-nvidia")
	if err != nil {
		t.Fatal(err)
	}
	return r.Profile.Spec.Accelerator
}

// dcgmSlice is what the NVIDIA DRA driver publishes for the GPUs of
// testdata/dcgm-mig.prom on dcgmNode: GPU 0 whole, GPU 1 as MIG devices
// named gpu-<minor>-mig-<profile id>-<placement start>-<size>.
func dcgmSlice() *resourcev1.ResourceSlice {
	str := func(s string) resourcev1.DeviceAttribute { return resourcev1.DeviceAttribute{StringValue: ptr.To(s)} }
	memory := func(q string) map[resourcev1.QualifiedName]resourcev1.DeviceCapacity {
		return map[resourcev1.QualifiedName]resourcev1.DeviceCapacity{"memory": {Value: resource.MustParse(q)}}
	}
	devices := []resourcev1.Device{{
		Name: "gpu-0",
		Attributes: map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{
			"type": str("gpu"), "uuid": str(wholeUUID), "productName": str("NVIDIA A100-SXM4-40GB"),
		},
		Capacity: memory("40Gi"),
	}}
	for name, uuid := range migUUIDs {
		profile, size := "1g.5gb", "4864Mi"
		if name == "gpu-1-mig-9-4-4" {
			profile, size = "3g.20gb", "19968Mi"
		}
		devices = append(devices, resourcev1.Device{
			Name: name,
			Attributes: map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{
				"type": str("mig"), "uuid": str(uuid), "parentUUID": str(migParent), "profile": str(profile), "productName": str("NVIDIA A100-SXM4-40GB"),
			},
			Capacity: memory(size),
		})
	}
	return &resourcev1.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: dcgmNode + "-" + nvidiaDriver},
		Spec: resourcev1.ResourceSliceSpec{
			Driver:   nvidiaDriver,
			NodeName: ptr.To(dcgmNode),
			Pool:     resourcev1.ResourcePool{Name: dcgmNode, Generation: 1, ResourceSliceCount: 1},
			Devices:  devices,
		},
	}
}

// allocate writes a ResourceClaim that holds devices of dcgmNode, as the
// scheduler would allocate it, and deletes it when the test ends.
func allocate(t *testing.T, f *fixture, name string, devices ...string) {
	t.Helper()
	cs := f.env.Clientset()
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: claimsNS}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	claim := &resourcev1.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: claimsNS},
		Spec: resourcev1.ResourceClaimSpec{Devices: resourcev1.DeviceClaim{Requests: []resourcev1.DeviceRequest{{
			Name: "gpus",
			Exactly: &resourcev1.ExactDeviceRequest{
				DeviceClassName: nvidiaDriver, AllocationMode: resourcev1.DeviceAllocationModeExactCount, Count: int64(len(devices)),
			},
		}}}},
	}
	created, err := cs.ResourceV1().ResourceClaims(claimsNS).Create(t.Context(), claim, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cs.ResourceV1().ResourceClaims(claimsNS).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting ResourceClaim %s: %v", name, err)
		}
	})
	results := make([]resourcev1.DeviceRequestAllocationResult, len(devices))
	for i, d := range devices {
		results[i] = resourcev1.DeviceRequestAllocationResult{Request: "gpus", Driver: nvidiaDriver, Pool: dcgmNode, Device: d}
	}
	created.Status.Allocation = &resourcev1.AllocationResult{Devices: resourcev1.DeviceAllocationResult{Results: results}}
	if _, err := cs.ResourceV1().ResourceClaims(claimsNS).UpdateStatus(t.Context(), created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// startDCGM publishes the NVIDIA driver's slice and a DCGM exporter on
// dcgmNode serving testdata/dcgm-mig.prom.
func startDCGM(t *testing.T) *fixture {
	t.Helper()
	f := setup(t)
	checktest.EnsureDeviceClass(t, f.env, nvidiaDriver, nvidiaDriver)
	checktest.PublishSlice(t, f.env, dcgmSlice())
	body, err := os.ReadFile(dcgmFixture)
	if err != nil {
		t.Fatal(err)
	}
	f.exporter(t, dcgmService, dcgmService+"-0", dcgmNode, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(body)
	}))
	return f
}

func runDCGM(t *testing.T) conformance.Result {
	t.Helper()
	return runCheck(t, New(Options{Endpoint: exporterNS + "/" + dcgmService + ":9400", ExporterTimeout: time.Minute}), nvidiaModel(t))
}

// TestDCGMWithMIG: a whole GPU and MIG devices, two of them allocated,
// each get series of their own: the GPU by its UUID, a MIG device by its
// parent's UUID and its GPU instance, with the graphics engine's activity
// for utilization as DCGM serves no GPU_UTIL for MIG instances. Memory
// capacity is used plus free. A placement with no instance that no claim
// holds needs no series.
func TestDCGMWithMIG(t *testing.T) {
	f := startDCGM(t)
	allocate(t, f, "trainer", "gpu-1-mig-9-4-4", "gpu-1-mig-19-1-1")
	res := runDCGM(t)
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"MetricsEndpointReachable":        conformance.Passed,
		"PerAcceleratorUtilizationMetric": conformance.Passed,
		"PerAcceleratorMemoryMetric":      conformance.Passed,
		"OptionalMetrics":                 conformance.Passed,
		"UtilizationFollowsWorkload":      conformance.Skipped,
	})
	if res.Status != conformance.Passed {
		t.Errorf("check status %s, want passed: %v", res.Status, res.Reason)
	}
	node := dcgmNode + "/"
	checktest.ExpectTranscript(t, res,
		// Matching.
		node+"gpu-1-mig-9-4-4 (uuid "+migUUIDs["gpu-1-mig-9-4-4"]+", profile 3g.20gb, allocated=true) -> UUID="+migParent+" GPU_I_ID=2",
		node+"gpu-1-mig-19-1-1 (uuid "+migUUIDs["gpu-1-mig-19-1-1"]+", profile 1g.5gb, allocated=true) -> UUID="+migParent+" GPU_I_ID=9",
		node+"gpu-1-mig-19-0-1 (uuid "+migUUIDs["gpu-1-mig-19-0-1"]+", profile 1g.5gb, allocated=false) -> UUID="+migParent+" GPU_I_ID=10",
		node+"gpu-1-mig-19-2-1 (uuid "+migUUIDs["gpu-1-mig-19-2-1"]+", profile 1g.5gb, allocated=false) -> no instance",
		"3 partitions of profile 1g.5gb on "+migParent+" and 2 GPU_I_ID instances of it",
		// Each device's own series.
		node+`gpu-0: DCGM_FI_DEV_GPU_UTIL{DCGM_FI_DRIVER_VERSION="570.86.15",Hostname="kwok-gpu-0",UUID="`+wholeUUID,
		node+`gpu-1-mig-9-4-4: DCGM_FI_PROF_GR_ENGINE_ACTIVE{DCGM_FI_DRIVER_VERSION="570.86.15",GPU_I_ID="2",GPU_I_PROFILE="3g.20gb"`,
		node+`gpu-1-mig-19-1-1: DCGM_FI_DEV_FB_USED{DCGM_FI_DRIVER_VERSION="570.86.15",GPU_I_ID="9",GPU_I_PROFILE="1g.5gb"`,
		"all 3 devices of gpu.nvidia.com that must exist have a DCGM_FI_DEV_GPU_UTIL series (or, for partitions, DCGM_FI_PROF_GR_ENGINE_ACTIVE) of their own",
		"1 partitions no ResourceClaim holds have no DCGM_FI_DEV_GPU_UTIL series (nor, for partitions, DCGM_FI_PROF_GR_ENGINE_ACTIVE): "+node+"gpu-1-mig-19-2-1",
		// Memory capacity: used + free, DCGM serving no total.
		node+"gpu-0: used 18231 of 40536 (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE), ResourceSlice capacity 40Gi",
		node+"gpu-1-mig-9-4-4: used 6397 of 19968 (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE), ResourceSlice capacity 19968Mi",
	)
}

// TestDCGMAllocatedMIGWithoutSeries: three 1g.5gb MIG devices are
// allocated but DCGM sees two such instances, so one allocated device has
// no series of its own, and the check fails naming it.
func TestDCGMAllocatedMIGWithoutSeries(t *testing.T) {
	f := startDCGM(t)
	allocate(t, f, "small-jobs", "gpu-1-mig-19-0-1", "gpu-1-mig-19-1-1", "gpu-1-mig-19-2-1")
	res := runDCGM(t)
	missing := dcgmNode + "/gpu-1-mig-19-2-1 (uuid " + migUUIDs["gpu-1-mig-19-2-1"] + ", parent " + migParent + ", profile 1g.5gb)"
	expectFailure(t, res, "PerAcceleratorUtilizationMetric",
		"1 of 4 devices published by gpu.nvidia.com on Ready nodes have no DCGM_FI_DEV_GPU_UTIL series (nor, for partitions, DCGM_FI_PROF_GR_ENGINE_ACTIVE): "+missing)
	expectFailure(t, res, "PerAcceleratorMemoryMetric", "1 of 4 devices published by gpu.nvidia.com on Ready nodes have no DCGM_FI_DEV_FB_USED series: "+missing)
}
