package fakegpu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	podresourcesapi "k8s.io/kubelet/pkg/apis/podresources/v1"
)

// Device-plugin mode: instead of publishing a ResourceSlice, the driver
// registers a kubelet device plugin (API v1beta1) that advertises the
// node's devices as the extended resource ResourceName. ListAndWatch
// lists the same devices, named as in DRA mode (gpu-<index>); Allocate
// gives a container what a claim's CDI spec gives it in DRA mode: the
// variables of each device and a read-write mount of its load directory.
// Which devices are held, for the metrics, is what the kubelet's pod
// resources API says containers hold: a device plugin is never told when
// a container stops. With a sharing strategy the shared devices are a
// second resource served on a second socket (sharing.go), and the plugin
// labels its node with what it shares.

// Defaults of device-plugin mode.
const (
	// DefaultPodResourcesSocket is the kubelet's pod resources API.
	DefaultPodResourcesSocket = "/var/lib/kubelet/pod-resources/kubelet.sock"
	// devicePluginSocket names the plugin's socket in the device plugin
	// directory; the pod's UID is added when known, so that an updated
	// driver pod never removes its predecessor's socket.
	devicePluginSocket = "kaic-fake-gpu"
)

// socketCheckInterval is how often the plugin checks that its socket is
// still there: the kubelet removes every plugin socket when it restarts,
// and a plugin must then register again. A variable so tests can shorten
// it.
var socketCheckInterval = 5 * time.Second

// devicePlugin is the v1beta1.DevicePluginServer of one resource of a
// node's devices.
type devicePlugin struct {
	pluginapi.UnimplementedDevicePluginServer
	resource string
	devices  []Device
	// units maps the IDs the plugin lists to their devices.
	units    map[string]Device
	stateDir string
	// held says which devices containers hold now, to keep the load of a
	// shared device's other holders when one more is allocated.
	held   func() (map[string]bool, error)
	logger *slog.Logger
	// stop ends the ListAndWatch streams.
	stop chan struct{}
}

var _ pluginapi.DevicePluginServer = (*devicePlugin)(nil)

func newDevicePlugin(resource string, devices []Device, stateDir string, held func() (map[string]bool, error), logger *slog.Logger, stop chan struct{}) *devicePlugin {
	p := &devicePlugin{resource: resource, devices: devices, units: map[string]Device{}, stateDir: stateDir, held: held, logger: logger, stop: stop}
	for _, d := range devices {
		for _, id := range d.UnitIDs() {
			p.units[id] = d
		}
	}
	return p
}

// unitIDs lists the IDs of the plugin's units, sorted.
func (p *devicePlugin) unitIDs() []string {
	out := make([]string, 0, len(p.units))
	for id := range p.units {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func (p *devicePlugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the devices, all healthy, and keeps the stream open:
// simulated devices never change.
func (p *devicePlugin) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	resp := &pluginapi.ListAndWatchResponse{}
	for _, id := range p.unitIDs() {
		resp.Devices = append(resp.Devices, &pluginapi.Device{ID: id, Health: pluginapi.Healthy})
	}
	if err := stream.Send(resp); err != nil {
		return err
	}
	select {
	case <-stream.Context().Done():
	case <-p.stop:
	}
	return nil
}

// Allocate gives each container its devices' variables and load
// directories: those of the physical device behind each unit, once even
// when the container got two units of one shared device. The kubelet
// hands an exclusive device to one container at a time, so its directory
// is emptied and a new holder starts without the load of the last; that
// of a shared device is emptied only when no other container holds it.
func (p *devicePlugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		cr := &pluginapi.ContainerAllocateResponse{Envs: map[string]string{}}
		var devices []Device
		for _, id := range c.DevicesIds {
			d, ok := p.units[id]
			if !ok {
				return nil, status.Errorf(codes.InvalidArgument, "this node has no device %s of %s", id, p.resource)
			}
			if !slices.ContainsFunc(devices, func(x Device) bool { return x.Name == d.Name }) {
				devices = append(devices, d)
			}
		}
		for _, d := range devices {
			dir := filepath.Join(p.stateDir, d.Name)
			if err := p.prepareLoadDir(d, dir); err != nil {
				return nil, status.Errorf(codes.Internal, "load directory of %s: %v", d.Name, err)
			}
			for _, kv := range d.Env() {
				k, v, _ := strings.Cut(kv, "=")
				cr.Envs[k] = v
			}
			cr.Mounts = append(cr.Mounts, &pluginapi.Mount{HostPath: dir, ContainerPath: dir})
		}
		p.logger.Info("allocated devices", "devices", c.DevicesIds)
		resp.ContainerResponses = append(resp.ContainerResponses, cr)
	}
	return resp, nil
}

// prepareLoadDir empties the load directory of an exclusive device, and
// of a shared one no container holds yet; a shared device whose holders
// cannot be read keeps its directory as it is.
func (p *devicePlugin) prepareLoadDir(d Device, dir string) error {
	if !d.Shared() {
		return resetLoadDir(dir)
	}
	held, err := p.held()
	if err != nil {
		p.logger.Warn("cannot tell whether shared device is held; keeping its load", "device", d.Name, "err", err)
	}
	if err == nil && !held[d.Name] {
		return resetLoadDir(dir)
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	return os.Chmod(dir, 0o777)
}

func (p *devicePlugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

// podResources knows which devices containers hold from the kubelet's pod
// resources API.
type podResources struct {
	socket, stateDir string
	// resources are the extended resources of the driver's devices.
	resources []string

	mu   sync.Mutex
	conn *grpc.ClientConn
}

func (r *podResources) client() (podresourcesapi.PodResourcesListerClient, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn == nil {
		conn, err := grpc.NewClient("unix://"+r.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		r.conn = conn
	}
	return podresourcesapi.NewPodResourcesListerClient(r.conn), nil
}

func (r *podResources) held() (map[string]bool, error) {
	client, err := r.client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := client.List(ctx, &podresourcesapi.ListPodResourcesRequest{})
	if err != nil {
		return nil, fmt.Errorf("the kubelet's pod resources API at %s: %w", r.socket, err)
	}
	out := map[string]bool{}
	for _, pod := range list.PodResources {
		for _, c := range pod.Containers {
			for _, d := range c.Devices {
				if !slices.Contains(r.resources, d.ResourceName) {
					continue
				}
				for _, id := range d.DeviceIds {
					out[physicalDevice(id)] = true
				}
			}
		}
	}
	return out, nil
}

func (r *podResources) loadDir(device string) string { return filepath.Join(r.stateDir, device) }

func (r *podResources) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn != nil {
		_ = r.conn.Close()
	}
}

// DevicePlugin is a driver started in device-plugin mode.
type DevicePlugin struct {
	// endpoints serve one resource each: the exclusive devices, and with
	// a sharing strategy the shared ones.
	endpoints []*endpoint
	resources *podResources
	metrics   *prometheus.Registry
	dir       string
	logger    *slog.Logger
	// node, labels and client label the node with what it shares.
	node   string
	labels map[string]string
	client kubernetes.Interface

	cancel  context.CancelFunc
	stopped sync.WaitGroup
	// done stays open: a lost registration is retried, not fatal.
	done chan struct{}
	once sync.Once
}

// endpoint is the socket and registration of one resource.
type endpoint struct {
	plugin     *devicePlugin
	socket     string // file name in the device plugin directory
	registered atomic.Bool

	mu     sync.Mutex
	server *grpc.Server
}

// StartDevicePlugin serves the device plugin of each resource on its
// socket in the device plugin directory, registers it with the kubelet
// there, and registers it again whenever the kubelet has removed the
// socket (it does when it restarts). With a sharing strategy and a client
// it keeps the node labelled with what it shares. Stop it with Stop.
func StartDevicePlugin(ctx context.Context, o Options) (*DevicePlugin, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	if o.ResourceName == "" {
		o.ResourceName = ResourceName
	}
	if o.DevicePluginDir == "" {
		o.DevicePluginDir = pluginapi.DevicePluginPath
	}
	if o.PodResourcesSocket == "" {
		o.PodResourcesSocket = DefaultPodResourcesSocket
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return nil, err
	}
	devices := o.Devices.Devices()
	var exclusive, shared []Device
	for _, d := range devices {
		if d.Shared() {
			shared = append(shared, d)
		} else {
			exclusive = append(exclusive, d)
		}
	}
	p := &DevicePlugin{
		resources: &podResources{socket: o.PodResourcesSocket, stateDir: o.StateDir},
		dir:       o.DevicePluginDir, logger: o.Logger, done: make(chan struct{}),
		node: o.Devices.Node, labels: o.Devices.Sharing.NodeLabels(o.ResourceName), client: o.Client,
	}
	stop := make(chan struct{})
	socket := devicePluginSocket
	if o.PodUID != "" {
		socket += "-" + string(o.PodUID)
	}
	add := func(resource string, devs []Device, socket string) {
		if len(devs) == 0 {
			return // every device is shared: the plain resource has none
		}
		p.resources.resources = append(p.resources.resources, resource)
		p.endpoints = append(p.endpoints, &endpoint{
			plugin: newDevicePlugin(resource, devs, o.StateDir, p.resources.held, o.Logger, stop),
			socket: socket + ".sock",
		})
	}
	add(o.ResourceName, exclusive, socket)
	add(SharedResourceName(o.ResourceName), shared, socket+"-shared")
	p.metrics = registry(o.Devices.Node, devices, p.resources, o.Logger)
	for _, e := range p.endpoints {
		if err := p.serveAndRegister(ctx, e); err != nil {
			for _, e := range p.endpoints {
				e.stopServer()
			}
			return nil, err
		}
	}
	if len(p.labels) > 0 && p.client == nil {
		p.logger.Warn("no Kubernetes client: the node is not labelled with the devices it shares")
	}
	p.label(ctx)
	ctx, p.cancel = context.WithCancel(ctx)
	p.stopped.Add(1)
	go p.watch(ctx, stop)
	return p, nil
}

// SocketPath is the socket of the plugin serving resource, "" when none
// does.
func (p *DevicePlugin) SocketPath(resource string) string {
	for _, e := range p.endpoints {
		if e.plugin.resource == resource {
			return filepath.Join(p.dir, e.socket)
		}
	}
	return ""
}

// serveAndRegister serves the endpoint's plugin on a fresh socket and
// registers it.
func (p *DevicePlugin) serveAndRegister(ctx context.Context, e *endpoint) error {
	e.registered.Store(false)
	// The previous server goes first: closing its listener unlinks the
	// socket path, which would take the new socket with it.
	e.stopServer()
	path := filepath.Join(p.dir, e.socket)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", path, err)
	}
	server := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(server, e.plugin)
	e.mu.Lock()
	e.server = server
	e.mu.Unlock()
	go func() {
		if err := server.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			p.logger.Error("device plugin server", "resource", e.plugin.resource, "err", err)
		}
	}()
	if err := p.register(ctx, e); err != nil {
		return err
	}
	e.registered.Store(true)
	p.logger.Info("registered with the kubelet", "resource", e.plugin.resource, "socket", path)
	return nil
}

// register tells the kubelet the endpoint's socket and resource.
func (p *DevicePlugin) register(ctx context.Context, e *endpoint) error {
	kubelet := filepath.Join(p.dir, filepath.Base(pluginapi.KubeletSocket))
	conn, err := grpc.NewClient("unix://"+kubelet, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     e.socket,
		ResourceName: e.plugin.resource,
		Options:      &pluginapi.DevicePluginOptions{},
	})
	if err != nil {
		return fmt.Errorf("registering %s with the kubelet at %s: %w", e.plugin.resource, kubelet, err)
	}
	return nil
}

// watch registers a plugin again once the kubelet has removed its
// socket, retrying until it succeeds or ctx ends, and puts the node's
// labels back when something removed them (a replaced driver pod removes
// them as it stops).
func (p *DevicePlugin) watch(ctx context.Context, stop chan struct{}) {
	defer p.stopped.Done()
	defer close(stop)
	tick := time.NewTicker(socketCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, e := range p.endpoints {
			if _, err := os.Stat(filepath.Join(p.dir, e.socket)); err == nil && e.registered.Load() {
				continue
			}
			p.logger.Info("the plugin socket is gone (the kubelet restarted?): registering again", "resource", e.plugin.resource)
			if err := p.serveAndRegister(ctx, e); err != nil && ctx.Err() == nil {
				p.logger.Warn("registering again failed; retrying", "resource", e.plugin.resource, "err", err)
			}
		}
		p.label(ctx)
	}
}

// label puts the sharing labels on the node unless they are there.
func (p *DevicePlugin) label(ctx context.Context) {
	if len(p.labels) == 0 || p.client == nil {
		return
	}
	node, err := p.client.CoreV1().Nodes().Get(ctx, p.node, metav1.GetOptions{})
	if err != nil {
		p.logger.Warn("reading the node to label it", "node", p.node, "err", err)
		return
	}
	missing := map[string]any{}
	for k, v := range p.labels {
		if node.Labels[k] != v {
			missing[k] = v
		}
	}
	if len(missing) == 0 {
		return
	}
	if err := p.patchLabels(ctx, missing); err != nil {
		p.logger.Warn("labelling the node with the devices it shares", "node", p.node, "err", err)
		return
	}
	p.logger.Info("labelled the node with the devices it shares", "node", p.node, "labels", p.labels)
}

// unlabel removes the sharing labels from the node.
func (p *DevicePlugin) unlabel() {
	if len(p.labels) == 0 || p.client == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gone := map[string]any{}
	for k := range p.labels {
		gone[k] = nil
	}
	if err := p.patchLabels(ctx, gone); err != nil {
		p.logger.Warn("removing the sharing labels from the node", "node", p.node, "err", err)
	}
}

// patchLabels merges labels into the node's; a nil value removes one.
func (p *DevicePlugin) patchLabels(ctx context.Context, labels map[string]any) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	if err != nil {
		return err
	}
	_, err = p.client.CoreV1().Nodes().Patch(ctx, p.node, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

func (e *endpoint) stopServer() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.server != nil {
		e.server.Stop()
		e.server = nil
	}
}

// Stop ends the streams, the servers and the socket watch, removes the
// plugin's sockets and the node's sharing labels.
func (p *DevicePlugin) Stop() {
	p.once.Do(func() {
		if p.cancel != nil {
			p.cancel()
		}
		p.stopped.Wait()
		for _, e := range p.endpoints {
			e.stopServer()
			_ = os.Remove(filepath.Join(p.dir, e.socket))
		}
		p.unlabel()
		p.resources.close()
	})
}

// Registered says whether the kubelet accepted the registration of every
// resource.
func (p *DevicePlugin) Registered() bool {
	for _, e := range p.endpoints {
		if !e.registered.Load() {
			return false
		}
	}
	return true
}

// Done is closed after an unrecoverable error; the device plugin has
// none (a lost registration is retried), so it stays open.
func (p *DevicePlugin) Done() <-chan struct{} { return p.done }

// Err is the unrecoverable error, once Done is closed: never.
func (p *DevicePlugin) Err() error { return nil }

// Handler serves /metrics, /healthz and /readyz (the kubelet accepted the
// registrations).
func (p *DevicePlugin) Handler() http.Handler { return handler(p.metrics, p.Registered) }

// Resources lists the extended resources the plugin advertises.
func (p *DevicePlugin) Resources() []string {
	out := make([]string, len(p.endpoints))
	for i, e := range p.endpoints {
		out[i] = e.plugin.resource
	}
	return out
}

// Units lists the IDs of the units the plugin advertises as resource,
// sorted.
func (p *DevicePlugin) Units(resource string) []string {
	for _, e := range p.endpoints {
		if e.plugin.resource == resource {
			return e.plugin.unitIDs()
		}
	}
	return nil
}

var _ running = (*DevicePlugin)(nil)
