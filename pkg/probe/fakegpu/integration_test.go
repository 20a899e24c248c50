package fakegpu_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/probe/fakegpu"
)

// node is a kwok node without devices of its own: the driver under test
// publishes them.
const node = "kwok-fakegpu-0"

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithNodes(testenv.Node{Name: node}))
}

// startDriver runs the driver for node against the test control plane,
// without the kubelet registration service (there is no kubelet); the DRA
// gRPC service listens in a temporary directory.
func startDriver(t *testing.T, cs kubernetes.Interface, count int, dirs driverDirs) *fakegpu.Plugin {
	t.Helper()
	return startDriverFor(t, cs, fakegpu.Spec{Node: node, Count: count}, dirs)
}

// startDriverFor runs the driver for the devices of spec.
func startDriverFor(t *testing.T, cs kubernetes.Interface, spec fakegpu.Spec, dirs driverDirs) *fakegpu.Plugin {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	p, err := fakegpu.Start(t.Context(), fakegpu.Options{
		Devices:   spec,
		Client:    cs,
		CDIDir:    dirs.cdi,
		StateDir:  dirs.state,
		PluginDir: dirs.plugin,
		Logger:    logger,
		Plugin:    []kubeletplugin.Option{kubeletplugin.RegistrationService(false)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type driverDirs struct{ cdi, state, plugin string }

func newDirs(t *testing.T) driverDirs {
	// The socket path must stay short (108 bytes), so not under t.TempDir.
	plugin, err := os.MkdirTemp("", "fakegpu-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(plugin) })
	return driverDirs{cdi: t.TempDir(), state: t.TempDir(), plugin: plugin}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitForSlice waits until the node's slice of the driver has n devices.
func waitForSlice(ctx context.Context, t *testing.T, cs kubernetes.Interface, n int) resourceapi.ResourceSlice {
	t.Helper()
	return waitForSliceOf(ctx, t, cs, node, n)
}

// waitForSliceOf waits until the slice of the driver for node has n devices.
func waitForSliceOf(ctx context.Context, t *testing.T, cs kubernetes.Interface, node string, n int) resourceapi.ResourceSlice {
	t.Helper()
	var got resourceapi.ResourceSlice
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := cs.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{FieldSelector: "spec.driver=" + fakegpu.DriverName + ",spec.nodeName=" + node})
		if err != nil {
			return false, err
		}
		if len(list.Items) == 1 && len(list.Items[0].Spec.Devices) == n {
			got = list.Items[0]
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no ResourceSlice of %s with %d devices on %s: %v", fakegpu.DriverName, n, node, err)
	}
	return got
}

// TestPublishAllocatePrepare runs the driver against a real API server and
// scheduler: it publishes the node's slice, the scheduler allocates a
// device of it to a pod's claim, and the kubelet's gRPC calls (made here,
// as the kubelet would) prepare and unprepare the claim, with the metrics
// following the holder's load in between.
func TestPublishAllocatePrepare(t *testing.T) {
	env := testenv.Shared(t)
	cs := env.Clientset()
	ctx := t.Context()
	dirs := newDirs(t)
	p := startDriver(t, cs, 4, dirs)
	defer p.Stop()

	slice := waitForSlice(ctx, t, cs, 4)
	t.Run("published slice", func(t *testing.T) {
		if slice.Spec.Pool.Name != node || *slice.Spec.NodeName != node {
			t.Errorf("pool %s node %v", slice.Spec.Pool.Name, slice.Spec.NodeName)
		}
		if len(slice.OwnerReferences) != 1 || slice.OwnerReferences[0].Kind != "Node" || slice.OwnerReferences[0].Name != node {
			t.Errorf("owner %+v, want the node", slice.OwnerReferences)
		}
		want := fakegpu.Spec{Node: node, Count: 4}.Devices()
		for i, d := range slice.Spec.Devices {
			a := d.Attributes
			if d.Name != want[i].Name || *a["index"].IntValue != int64(i) || *a["uuid"].StringValue != want[i].UUID ||
				*a["model"].StringValue != fakegpu.DefaultModel || *a["driverVersion"].VersionValue != fakegpu.DefaultDriverVersion {
				t.Errorf("device %d: %s %+v", i, d.Name, a)
			}
			if m := d.Capacity["memory"].Value; m.Cmp(resource.MustParse("80Gi")) != 0 {
				t.Errorf("device %s memory %s", d.Name, m.String())
			}
		}
	})

	// A pod with a claim from a template, allocated by the real scheduler.
	if _, err := cs.ResourceV1().DeviceClasses().Create(ctx, testenv.DeviceClassFor(fakegpu.DriverName, fakegpu.DriverName), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ns, err := env.CreateNamespace(ctx, "fakegpu-")
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &resourceapi.ResourceClaimTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "one-gpu", Namespace: ns},
		Spec: resourceapi.ResourceClaimTemplateSpec{Spec: resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{
			Requests: []resourceapi.DeviceRequest{{Name: "gpu", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: fakegpu.DriverName}}},
		}}},
	}
	if _, err := cs.ResourceV1().ResourceClaimTemplates(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "holder", Namespace: ns},
		Spec: corev1.PodSpec{
			Containers:     []corev1.Container{{Name: "probe", Image: "kaic.dev/probe:test", Resources: corev1.ResourceRequirements{Claims: []corev1.ResourceClaim{{Name: "gpu"}}}}},
			ResourceClaims: []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimTemplateName: &tmpl.Name}},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err = testenv.WaitForPod(ctx, cs, ns, pod.Name, func(p *corev1.Pod) (bool, error) {
		return p.Spec.NodeName != "" && len(p.Status.ResourceClaimStatuses) == 1 && p.Status.ResourceClaimStatuses[0].ResourceClaimName != nil, nil
	})
	if err != nil {
		t.Fatalf("pod not scheduled with its claim: %v", err)
	}
	claim, err := cs.ResourceV1().ResourceClaims(ns).Get(ctx, *pod.Status.ResourceClaimStatuses[0].ResourceClaimName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if claim.Status.Allocation == nil || len(claim.Status.Allocation.Devices.Results) != 1 {
		t.Fatalf("claim not allocated one device: %+v", claim.Status)
	}
	alloc := claim.Status.Allocation.Devices.Results[0]
	if alloc.Driver != fakegpu.DriverName || alloc.Pool != node {
		t.Fatalf("allocated %s/%s/%s, want a device of the driver's pool", alloc.Driver, alloc.Pool, alloc.Device)
	}
	t.Logf("scheduler allocated %s to claim %s", alloc.Device, claim.Name)

	// The kubelet's side: the DRA gRPC service on the plugin socket.
	conn, err := grpc.NewClient("unix://"+filepath.Join(dirs.plugin, "dra.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kubelet := drapb.NewDRAPluginClient(conn)
	ref := &drapb.Claim{Namespace: ns, Name: claim.Name, Uid: string(claim.UID)}
	metrics := func() string {
		t.Helper()
		rec := httptest.NewRecorder()
		p.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rec.Result().Body)
		return string(body)
	}
	series := func(name, device string, value string) string {
		return fmt.Sprintf(`%s{device="%s",model="%s",node="%s",uuid="%s"} %s`, name, device, fakegpu.DefaultModel, node, deviceUUID(alloc.Device), value)
	}

	prep, err := kubelet.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{ref}})
	if err != nil {
		t.Fatalf("NodePrepareResources: %v", err)
	}
	res := prep.Claims[string(claim.UID)]
	if res == nil || res.Error != "" || len(res.Devices) != 1 {
		t.Fatalf("NodePrepareResources answered %+v", prep.Claims)
	}
	d := res.Devices[0]
	wantID := fakegpu.CDIKind + "=" + string(claim.UID) + "-" + alloc.Device
	if d.DeviceName != alloc.Device || d.PoolName != node || len(d.CdiDeviceIds) != 1 || d.CdiDeviceIds[0] != wantID || len(d.RequestNames) != 1 || d.RequestNames[0] != "gpu" {
		t.Errorf("prepared device %+v, want %s with CDI ID %s", d, alloc.Device, wantID)
	}
	cache, err := cdiapi.NewCache(cdiapi.WithSpecDirs(dirs.cdi), cdiapi.WithAutoRefresh(false))
	if err != nil {
		t.Fatal(err)
	}
	dev := cache.GetDevice(wantID)
	if dev == nil {
		t.Fatalf("CDI device %s not in the spec directory (errors: %v)", wantID, cache.GetErrors())
	}
	index := strings.TrimPrefix(alloc.Device, "gpu-")
	if env := dev.ContainerEdits.Env; len(env) != 2 || env[0] != "GPU_DEVICE_"+index+"="+alloc.Device || env[1] != "GPU_DEVICE_"+index+"_DRIVER_VERSION="+fakegpu.DefaultDriverVersion {
		t.Errorf("CDI env %v", env)
	}
	if m := metrics(); !strings.Contains(m, series(fakegpu.MetricAllocated, alloc.Device, "1")) || !strings.Contains(m, series(fakegpu.MetricUtilization, alloc.Device, "0")) {
		t.Errorf("held idle device not reported:\n%s", grep(m, alloc.Device))
	}

	// The holder's container writes load into its mounted load directory.
	if _, err := fakegpu.WriteLoad(filepath.Join(dirs.state, alloc.Device), "holder-1", fakegpu.Load{UtilizationPercent: 80, MemoryBytes: 40 << 30}); err != nil {
		t.Fatal(err)
	}
	m := metrics()
	for _, want := range []string{
		series(fakegpu.MetricUtilization, alloc.Device, "80"),
		series(fakegpu.MetricMemoryUsed, alloc.Device, "4.294967296e+10"),
		series(fakegpu.MetricMemoryTotal, alloc.Device, "8.589934592e+10"),
	} {
		if !strings.Contains(m, want) {
			t.Errorf("missing %s in\n%s", want, grep(m, alloc.Device))
		}
	}

	// Preparing again is idempotent.
	if again, err := kubelet.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{ref}}); err != nil || again.Claims[string(claim.UID)].Error != "" {
		t.Errorf("second NodePrepareResources: %v %+v", err, again)
	}
	if !strings.Contains(metrics(), series(fakegpu.MetricUtilization, alloc.Device, "80")) {
		t.Error("preparing again reset the load")
	}

	// A claim that is not allocated is refused by the helper before the driver.
	if _, err := kubelet.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: ns, Name: "missing", Uid: "x"}}}); err == nil {
		t.Error("NodePrepareResources accepted a claim that does not exist")
	}

	unprep, err := kubelet.NodeUnprepareResources(ctx, &drapb.NodeUnprepareResourcesRequest{Claims: []*drapb.Claim{ref}})
	if err != nil || unprep.Claims[string(claim.UID)].Error != "" {
		t.Fatalf("NodeUnprepareResources: %v %+v", err, unprep)
	}
	if files, _ := filepath.Glob(filepath.Join(dirs.cdi, "*.json")); len(files) != 0 {
		t.Errorf("CDI specs left after unprepare: %v", files)
	}
	m = metrics()
	if !strings.Contains(m, series(fakegpu.MetricAllocated, alloc.Device, "0")) || !strings.Contains(m, series(fakegpu.MetricUtilization, alloc.Device, "0")) {
		t.Errorf("device still held or loaded after unprepare:\n%s", grep(m, alloc.Device))
	}

	// A restarted driver with fewer devices takes the slice over.
	p.Stop()
	p2 := startDriver(t, cs, 2, dirs)
	defer p2.Stop()
	waitForSlice(ctx, t, cs, 2)
}

func deviceUUID(name string) string {
	for _, d := range (fakegpu.Spec{Node: node, Count: 8}).Devices() {
		if d.Name == name {
			return d.UUID
		}
	}
	return ""
}

func grep(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
