package fakegpu

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	podresourcesapi "k8s.io/kubelet/pkg/apis/podresources/v1"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/probe"
)

// The real kubelet cannot run in a unit test: these tests talk to the
// device plugin over its unix socket with a real gRPC client, and stand
// in for the kubelet's two servers the plugin talks to. The stand-in
// registration server records what the plugin registers, and, as the
// kubelet does, dials the plugin's endpoint back and reads its devices;
// the stand-in pod resources server says which devices containers hold.
// The whole path with a real kubelet is the offline e2e suite's
// (TestOfflineDevicePlugin).

// standInKubelet is the kubelet's registration service on kubelet.sock.
type standInKubelet struct {
	pluginapi.UnimplementedRegistrationServer
	dir string

	mu       sync.Mutex
	requests []*pluginapi.RegisterRequest
	devices  [][]string // the device IDs the plugin listed after each registration
	errs     []error
}

func (k *standInKubelet) Register(ctx context.Context, req *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	if req.Version != pluginapi.Version {
		return nil, status.Errorf(codes.InvalidArgument, "version %q", req.Version)
	}
	// As the kubelet does: dial the endpoint named and list the devices.
	ids, err := listDevices(ctx, filepath.Join(k.dir, req.Endpoint))
	k.mu.Lock()
	defer k.mu.Unlock()
	k.requests = append(k.requests, req)
	k.devices = append(k.devices, ids)
	k.errs = append(k.errs, err)
	return &pluginapi.Empty{}, nil
}

func (k *standInKubelet) registrations() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.requests)
}

// listDevices reads the first ListAndWatch answer of the plugin at socket.
func listDevices(ctx context.Context, socket string) ([]string, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	stream, err := pluginapi.NewDevicePluginClient(conn).ListAndWatch(ctx, &pluginapi.Empty{})
	if err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, d := range resp.Devices {
		if d.Health != pluginapi.Healthy {
			return nil, status.Errorf(codes.Internal, "device %s is %s", d.ID, d.Health)
		}
		ids = append(ids, d.ID)
	}
	sort.Strings(ids)
	return ids, nil
}

// standInPodResources is the kubelet's pod resources API: the devices it
// lists are the ones containers hold.
type standInPodResources struct {
	podresourcesapi.UnimplementedPodResourcesListerServer
	mu   sync.Mutex
	held map[string][]string // resource name -> device IDs
}

func (r *standInPodResources) set(resource string, ids ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held = map[string][]string{resource: ids}
}

func (r *standInPodResources) List(context.Context, *podresourcesapi.ListPodResourcesRequest) (*podresourcesapi.ListPodResourcesResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := &podresourcesapi.ContainerResources{Name: "probe"}
	for res, ids := range r.held {
		c.Devices = append(c.Devices, &podresourcesapi.ContainerDevices{ResourceName: res, DeviceIds: ids})
	}
	return &podresourcesapi.ListPodResourcesResponse{PodResources: []*podresourcesapi.PodResources{
		{Name: "holder", Namespace: "ns", Containers: []*podresourcesapi.ContainerResources{c}},
		{Name: "other", Namespace: "ns", Containers: []*podresourcesapi.ContainerResources{{Name: "c", Devices: []*podresourcesapi.ContainerDevices{
			{ResourceName: "other.example.com/gpu", DeviceIds: []string{"gpu-0"}}, // another resource's device of that name
		}}}},
	}}, nil
}

// serve serves srv's services on a unix socket until the test ends.
func serve(t *testing.T, socket string, register func(*grpc.Server)) {
	t.Helper()
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	register(s)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
}

// socketDir is a short temporary directory: unix socket paths are limited
// to about 100 bytes, which t.TempDir's long names can exceed.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kaic-dp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func TestDevicePlugin(t *testing.T) {
	old := socketCheckInterval
	socketCheckInterval = 100 * time.Millisecond
	t.Cleanup(func() { socketCheckInterval = old })

	pluginDir, stateDir := socketDir(t), t.TempDir()
	kubelet := &standInKubelet{dir: pluginDir}
	serve(t, filepath.Join(pluginDir, "kubelet.sock"), func(s *grpc.Server) { pluginapi.RegisterRegistrationServer(s, kubelet) })
	resources := &standInPodResources{}
	podResourcesSocket := filepath.Join(socketDir(t), "kubelet.sock")
	serve(t, podResourcesSocket, func(s *grpc.Server) { podresourcesapi.RegisterPodResourcesListerServer(s, resources) })

	spec := Spec{Node: "node-a", Count: 2}
	p, err := StartDevicePlugin(t.Context(), Options{
		Mode: ModeDevicePlugin, Devices: spec, StateDir: stateDir, DevicePluginDir: pluginDir,
		PodResourcesSocket: podResourcesSocket, PodUID: "uid-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)

	t.Run("registers its resource and lists the devices of DRA mode", func(t *testing.T) {
		if !p.Registered() || kubelet.registrations() != 1 {
			t.Fatalf("registered %t, %d registrations", p.Registered(), kubelet.registrations())
		}
		req := kubelet.requests[0]
		if req.ResourceName != ResourceName || req.Endpoint != "kaic-fake-gpu-uid-1.sock" || req.Options == nil || req.Options.PreStartRequired {
			t.Errorf("registration %+v", req)
		}
		if kubelet.errs[0] != nil {
			t.Fatalf("the kubelet could not list the devices: %v", kubelet.errs[0])
		}
		var want []string
		for _, d := range spec.Devices() {
			want = append(want, d.Name)
		}
		if !slices.Equal(kubelet.devices[0], want) || !slices.Equal(p.Units(ResourceName), want) {
			t.Errorf("devices listed %v, plugin %v, want %v (the names of DRA mode)", kubelet.devices[0], p.Units(ResourceName), want)
		}
		if r := p.Resources(); !slices.Equal(r, []string{ResourceName}) {
			t.Errorf("resources %v, want only %s: nothing is shared", r, ResourceName)
		}
	})

	conn, err := grpc.NewClient("unix://"+p.SocketPath(ResourceName), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := pluginapi.NewDevicePluginClient(conn)

	t.Run("allocate gives a container what the CDI spec gives it in DRA mode", func(t *testing.T) {
		dev := spec.Devices()[1]
		dir := filepath.Join(stateDir, dev.Name)
		// A load left by the device's last holder is cleared.
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := WriteLoad(dir, "killed-holder", Load{UtilizationPercent: 90}); err != nil {
			t.Fatal(err)
		}
		resp, err := client.Allocate(t.Context(), &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{dev.Name}}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.ContainerResponses) != 1 {
			t.Fatalf("responses %+v", resp.ContainerResponses)
		}
		cr := resp.ContainerResponses[0]
		cdi, err := cdiSpecs{stateDir: stateDir}.Spec("claim", []Device{dev})
		if err != nil {
			t.Fatal(err)
		}
		edits := cdi.Devices[0].ContainerEdits
		var env []string
		for k, v := range cr.Envs {
			env = append(env, k+"="+v)
		}
		sort.Strings(env)
		if !slices.Equal(env, edits.Env) {
			t.Errorf("env %v, want the CDI spec's %v", env, edits.Env)
		}
		if len(cr.Mounts) != 1 || cr.Mounts[0].HostPath != edits.Mounts[0].HostPath || cr.Mounts[0].ContainerPath != edits.Mounts[0].ContainerPath || cr.Mounts[0].ReadOnly {
			t.Errorf("mounts %+v, want a read-write mount of %s", cr.Mounts, edits.Mounts[0].HostPath)
		}
		if l := ReadLoad(dir, time.Now()); l.UtilizationPercent != 0 {
			t.Errorf("the last holder's load survived the allocation: %+v", l)
		}
		// The probe in such a container sees exactly that device.
		r, err := probe.FindDevices(env, EnvPrefix, "")
		if err != nil || !slices.Equal(r.Devices, []string{dev.Name}) || !slices.Equal(r.DriverVersions, []string{DefaultDriverVersion}) {
			t.Errorf("the probe sees %+v (%v), want %s", r, err, dev.Name)
		}
	})

	t.Run("allocate refuses a device the node does not have", func(t *testing.T) {
		_, err := client.Allocate(t.Context(), &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: []string{"gpu-7"}}}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "no device gpu-7") {
			t.Errorf("err = %v", err)
		}
	})

	t.Run("metrics follow the devices containers hold", func(t *testing.T) {
		srv := httptest.NewServer(p.Handler())
		t.Cleanup(srv.Close)
		gpu1 := filepath.Join(stateDir, "gpu-1")
		if _, err := WriteLoad(gpu1, "holder", Load{UtilizationPercent: 70, MemoryBytes: 4 << 30}); err != nil {
			t.Fatal(err)
		}
		// Nobody holds gpu-1 yet: its load files count for nothing.
		resources.set(ResourceName)
		expectMetrics(t, srv.URL, map[string]float64{
			`kaic_fake_gpu_allocated{device="gpu-1"`: 0, `kaic_fake_gpu_utilization_percent{device="gpu-1"`: 0,
		})
		resources.set(ResourceName, "gpu-1")
		expectMetrics(t, srv.URL, map[string]float64{
			`kaic_fake_gpu_allocated{device="gpu-1"`: 1, `kaic_fake_gpu_utilization_percent{device="gpu-1"`: 70,
			`kaic_fake_gpu_memory_used_bytes{device="gpu-1"`: 4 << 30,
			// gpu-0 is held only under another resource's name.
			`kaic_fake_gpu_allocated{device="gpu-0"`: 0,
		})
		if n := testutil.CollectAndCount(p.metrics, MetricUtilization); n != 2 {
			t.Errorf("%d utilization series, want one per device", n)
		}
		res, err := http.Get(srv.URL + "/readyz")
		if err != nil || res.StatusCode != http.StatusOK {
			t.Errorf("/readyz: %v %v", res, err)
		}
	})

	t.Run("registers again when the kubelet removed its socket", func(t *testing.T) {
		// A restarting kubelet removes every plugin socket.
		if err := os.Remove(p.SocketPath(ResourceName)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for kubelet.registrations() < 2 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if n := kubelet.registrations(); n != 2 {
			t.Fatalf("%d registrations after the socket was removed, want 2", n)
		}
		if kubelet.errs[1] != nil || len(kubelet.devices[1]) != 2 {
			t.Errorf("after registering again the kubelet listed %v (%v)", kubelet.devices[1], kubelet.errs[1])
		}
	})

	t.Run("stop removes its socket", func(t *testing.T) {
		p.Stop()
		if _, err := os.Stat(p.SocketPath(ResourceName)); !os.IsNotExist(err) {
			t.Errorf("socket after Stop: %v", err)
		}
	})
}

// A plugin the kubelet does not answer for does not start.
func TestDevicePluginWithoutKubelet(t *testing.T) {
	_, err := StartDevicePlugin(t.Context(), Options{Devices: Spec{Node: "node-a", Count: 1}, StateDir: t.TempDir(), DevicePluginDir: socketDir(t)})
	if err == nil || !strings.Contains(err.Error(), "registering example.com/gpu with the kubelet") {
		t.Fatalf("err = %v", err)
	}
}

// expectMetrics scrapes url until every series prefix has the value, or
// fails with the last scrape.
func expectMetrics(t *testing.T, url string, want map[string]float64) {
	t.Helper()
	var body string
	for range 50 {
		res, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(res.Body)
		res.Body.Close()
		body = string(data)
		if metricsMatch(body, want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("metrics do not show %v:\n%s", want, body)
}

func metricsMatch(body string, want map[string]float64) bool {
	for prefix, v := range want {
		found := false
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, prefix) {
				fields := strings.Fields(l)
				got, err := strconv.ParseFloat(fields[len(fields)-1], 64)
				found = err == nil && got == v
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// With time-slicing the shared devices are a second resource, each device
// as many units as it takes holders; every unit of one device gives a
// container that device, and a holder's load survives the next holder's
// allocation.
func TestDevicePluginSharing(t *testing.T) {
	pluginDir, stateDir := socketDir(t), t.TempDir()
	kubelet := &standInKubelet{dir: pluginDir}
	serve(t, filepath.Join(pluginDir, "kubelet.sock"), func(s *grpc.Server) { pluginapi.RegisterRegistrationServer(s, kubelet) })
	resources := &standInPodResources{}
	podResourcesSocket := filepath.Join(socketDir(t), "kubelet.sock")
	serve(t, podResourcesSocket, func(s *grpc.Server) { podresourcesapi.RegisterPodResourcesListerServer(s, resources) })

	spec := Spec{Node: "node-a", Count: 3, Sharing: Sharing{Strategy: StrategyTimeSlicing, Replicas: 2, Devices: 1}}
	p, err := StartDevicePlugin(t.Context(), Options{Devices: spec, StateDir: stateDir, DevicePluginDir: pluginDir, PodResourcesSocket: podResourcesSocket})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	shared := SharedResourceName(ResourceName)

	if kubelet.registrations() != 2 {
		t.Fatalf("%d registrations, want one per resource", kubelet.registrations())
	}
	listed := map[string][]string{}
	for i, req := range kubelet.requests {
		if kubelet.errs[i] != nil {
			t.Fatalf("the kubelet could not list the devices of %s: %v", req.ResourceName, kubelet.errs[i])
		}
		listed[req.ResourceName] = kubelet.devices[i]
	}
	if got, want := listed[ResourceName], []string{"gpu-0", "gpu-1"}; !slices.Equal(got, want) {
		t.Errorf("%s lists %v, want the exclusive devices %v", ResourceName, got, want)
	}
	if got, want := listed[shared], []string{"gpu-2::0", "gpu-2::1"}; !slices.Equal(got, want) {
		t.Errorf("%s lists %v, want a unit per replica of gpu-2: %v", shared, got, want)
	}

	conn, err := grpc.NewClient("unix://"+p.SocketPath(shared), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := pluginapi.NewDevicePluginClient(conn)
	allocate := func(ids ...string) *pluginapi.ContainerAllocateResponse {
		t.Helper()
		resp, err := client.Allocate(t.Context(), &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: ids}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.ContainerResponses[0]
	}
	gpu2 := filepath.Join(stateDir, "gpu-2")

	// The first holder: nobody holds gpu-2, a stale load is cleared.
	if err := os.MkdirAll(gpu2, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteLoad(gpu2, "killed-holder", Load{UtilizationPercent: 90}); err != nil {
		t.Fatal(err)
	}
	first := allocate("gpu-2::0")
	if first.Envs["GPU_DEVICE_2"] != "gpu-2" || len(first.Mounts) != 1 || first.Mounts[0].HostPath != gpu2 {
		t.Errorf("a unit of gpu-2 gives %v %+v, want the physical device gpu-2", first.Envs, first.Mounts)
	}
	if l := ReadLoad(gpu2, time.Now()); l.UtilizationPercent != 0 {
		t.Errorf("the first holder inherits a load: %+v", l)
	}

	// The second holder while the first holds replica 0 and puts load on it.
	resources.set(shared, "gpu-2::0")
	if _, err := WriteLoad(gpu2, "first-holder", Load{UtilizationPercent: 30}); err != nil {
		t.Fatal(err)
	}
	second := allocate("gpu-2::1")
	if second.Envs["GPU_DEVICE_2"] != "gpu-2" || len(second.Mounts) != 1 || second.Mounts[0].HostPath != gpu2 {
		t.Errorf("the other unit of gpu-2 gives %v %+v, want the same device", second.Envs, second.Mounts)
	}
	if l := ReadLoad(gpu2, time.Now()); l.UtilizationPercent != 30 {
		t.Errorf("the second holder's allocation cleared the first holder's load: %+v", l)
	}

	// Both units in one container: the device once.
	both := allocate("gpu-2::0", "gpu-2::1")
	if len(both.Mounts) != 1 || len(both.Envs) != 2 {
		t.Errorf("two units of one device give %v %+v, want that device once", both.Envs, both.Mounts)
	}

	// The metrics name the physical device a unit belongs to.
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	resources.set(shared, "gpu-2::1")
	expectMetrics(t, srv.URL, map[string]float64{
		`kaic_fake_gpu_allocated{device="gpu-2"`: 1, `kaic_fake_gpu_utilization_percent{device="gpu-2"`: 30,
		`kaic_fake_gpu_allocated{device="gpu-0"`: 0,
	})
	if n := testutil.CollectAndCount(p.metrics, MetricUtilization); n != 3 {
		t.Errorf("%d utilization series, want one per physical device", n)
	}
}

func TestSharingValidate(t *testing.T) {
	for _, tc := range []struct {
		s    Sharing
		want string
	}{
		{Sharing{}, ""},
		{Sharing{Strategy: StrategyNone, Replicas: 0}, ""},
		{Sharing{Strategy: StrategyTimeSlicing, Replicas: 4, Devices: 2}, ""},
		{Sharing{Strategy: "mps", Replicas: 4, Devices: 2}, `sharing strategy "mps": must be none or time-slicing`},
		{Sharing{Strategy: StrategyTimeSlicing, Replicas: 1, Devices: 2}, "sharing replicas 1: a shared device takes at least 2 holders"},
		{Sharing{Strategy: StrategyTimeSlicing, Replicas: 4, Devices: 9}, "sharing devices 9: between 1 and the 8 devices of the node"},
		{Sharing{Strategy: StrategyTimeSlicing, Replicas: 4}, "sharing devices 0: between 1 and the 8 devices"},
	} {
		err := tc.s.Validate(8)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: err %v, want %q", tc.s, err, tc.want)
		}
	}
	if _, err := StartDevicePlugin(t.Context(), Options{Devices: Spec{Node: "n", Count: 1, Sharing: Sharing{Strategy: StrategyTimeSlicing, Replicas: 2, Devices: 2}}}); err == nil {
		t.Error("the device plugin started sharing more devices than the node has")
	}
}

// With a strategy and a client the plugin labels its node with what it
// shares, puts back a label something removed, and removes its labels,
// and only those, when it stops. The node is the test control plane's.
func TestDevicePluginLabelsItsNode(t *testing.T) {
	env := testenv.Shared(t)
	cs := env.Clientset()
	const node = "kwok-fakegpu-0"
	old := socketCheckInterval
	socketCheckInterval = 100 * time.Millisecond
	t.Cleanup(func() { socketCheckInterval = old })
	pluginDir := socketDir(t)
	serve(t, filepath.Join(pluginDir, "kubelet.sock"), func(s *grpc.Server) {
		pluginapi.RegisterRegistrationServer(s, &standInKubelet{dir: pluginDir})
	})
	sharing := Sharing{Strategy: StrategyTimeSlicing, Replicas: 4, Devices: 2}
	p, err := StartDevicePlugin(t.Context(), Options{
		Devices: Spec{Node: node, Count: 8, Sharing: sharing}, Client: cs,
		StateDir: t.TempDir(), DevicePluginDir: pluginDir, PodResourcesSocket: filepath.Join(socketDir(t), "none.sock"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	want := map[string]string{
		"example.com/gpu.shared.replicas": "4", "example.com/gpu.shared.count": "2", "example.com/gpu.shared.sharing-strategy": "time-slicing",
	}
	labels := func() map[string]string {
		t.Helper()
		n, err := cs.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n.Labels
	}
	waitLabels := func(present bool) map[string]string {
		t.Helper()
		var l map[string]string
		for range 100 {
			l = labels()
			ok := true
			for k, v := range want {
				if got, has := l[k]; has != present || (present && got != v) {
					ok = false
				}
			}
			if ok {
				return l
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("node labels %v, want %v present: %t", l, want, present)
		return nil
	}
	before := waitLabels(true)
	patch := []byte(`{"metadata":{"labels":{"example.com/gpu.shared.count":null}}}`)
	if _, err := cs.CoreV1().Nodes().Patch(t.Context(), node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitLabels(true)
	p.Stop()
	after := waitLabels(false)
	for k, v := range before {
		if _, ours := want[k]; !ours && after[k] != v {
			t.Errorf("label %s=%s changed to %q", k, v, after[k])
		}
	}
}
