package fakegpu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
// a container stops.

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

// devicePlugin is the v1beta1.DevicePluginServer of a node's devices.
type devicePlugin struct {
	pluginapi.UnimplementedDevicePluginServer
	devices  []Device
	byName   map[string]Device
	stateDir string
	logger   *slog.Logger
	// stop ends the ListAndWatch streams.
	stop chan struct{}
}

var _ pluginapi.DevicePluginServer = (*devicePlugin)(nil)

func (p *devicePlugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the devices, all healthy, and keeps the stream open:
// simulated devices never change.
func (p *devicePlugin) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	resp := &pluginapi.ListAndWatchResponse{}
	for _, d := range p.devices {
		resp.Devices = append(resp.Devices, &pluginapi.Device{ID: d.Name, Health: pluginapi.Healthy})
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
// directories, emptied: the kubelet hands a device to one container at a
// time, so a new holder starts without the load of the last.
func (p *devicePlugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		cr := &pluginapi.ContainerAllocateResponse{Envs: map[string]string{}}
		for _, id := range c.DevicesIds {
			d, ok := p.byName[id]
			if !ok {
				return nil, status.Errorf(codes.InvalidArgument, "this node has no device %s", id)
			}
			dir := filepath.Join(p.stateDir, d.Name)
			if err := resetLoadDir(dir); err != nil {
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

func (p *devicePlugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

// podResources knows which devices containers hold from the kubelet's pod
// resources API.
type podResources struct {
	socket, resource, stateDir string

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
				if d.ResourceName != r.resource {
					continue
				}
				for _, id := range d.DeviceIds {
					out[id] = true
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
	plugin     *devicePlugin
	resources  *podResources
	metrics    *prometheus.Registry
	dir        string
	socket     string // file name in dir
	resource   string
	logger     *slog.Logger
	registered atomic.Bool

	mu     sync.Mutex
	server *grpc.Server

	cancel  context.CancelFunc
	stopped sync.WaitGroup
	// done stays open: a lost registration is retried, not fatal.
	done chan struct{}
	once sync.Once
}

// StartDevicePlugin serves the device plugin on its socket in the device
// plugin directory, registers it with the kubelet there, and registers it
// again whenever the kubelet has removed the socket (it does when it
// restarts). Stop it with Stop.
func StartDevicePlugin(ctx context.Context, o Options) (*DevicePlugin, error) {
	if o.Devices.Node == "" {
		return nil, errors.New("the node name is required (NODE_NAME from the downward API)")
	}
	if o.Devices.Count < 1 {
		return nil, fmt.Errorf("at least one device per node is needed, got %d", o.Devices.Count)
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
	plugin := &devicePlugin{devices: devices, byName: map[string]Device{}, stateDir: o.StateDir, logger: o.Logger, stop: make(chan struct{})}
	for _, d := range devices {
		plugin.byName[d.Name] = d
	}
	socket := devicePluginSocket
	if o.PodUID != "" {
		socket += "-" + string(o.PodUID)
	}
	p := &DevicePlugin{
		plugin:    plugin,
		resources: &podResources{socket: o.PodResourcesSocket, resource: o.ResourceName, stateDir: o.StateDir},
		dir:       o.DevicePluginDir, socket: socket + ".sock", resource: o.ResourceName,
		logger: o.Logger, done: make(chan struct{}),
	}
	p.metrics = registry(o.Devices.Node, devices, p.resources, o.Logger)
	if err := p.serveAndRegister(ctx); err != nil {
		p.stopServer()
		return nil, err
	}
	ctx, p.cancel = context.WithCancel(ctx)
	p.stopped.Add(1)
	go p.watchSocket(ctx)
	return p, nil
}

// SocketPath is the plugin's socket.
func (p *DevicePlugin) SocketPath() string { return filepath.Join(p.dir, p.socket) }

// serveAndRegister serves the plugin on a fresh socket and registers it.
func (p *DevicePlugin) serveAndRegister(ctx context.Context) error {
	p.registered.Store(false)
	// The previous server goes first: closing its listener unlinks the
	// socket path, which would take the new socket with it.
	p.stopServer()
	path := p.SocketPath()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", path, err)
	}
	server := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(server, p.plugin)
	p.mu.Lock()
	p.server = server
	p.mu.Unlock()
	go func() {
		if err := server.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			p.logger.Error("device plugin server", "err", err)
		}
	}()
	if err := p.register(ctx); err != nil {
		return err
	}
	p.registered.Store(true)
	p.logger.Info("registered with the kubelet", "resource", p.resource, "socket", path)
	return nil
}

// register tells the kubelet the plugin's socket and resource.
func (p *DevicePlugin) register(ctx context.Context) error {
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
		Endpoint:     p.socket,
		ResourceName: p.resource,
		Options:      &pluginapi.DevicePluginOptions{},
	})
	if err != nil {
		return fmt.Errorf("registering %s with the kubelet at %s: %w", p.resource, kubelet, err)
	}
	return nil
}

// watchSocket registers the plugin again once the kubelet has removed its
// socket, retrying until it succeeds or ctx ends.
func (p *DevicePlugin) watchSocket(ctx context.Context) {
	defer p.stopped.Done()
	tick := time.NewTicker(socketCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if _, err := os.Stat(p.SocketPath()); err == nil && p.registered.Load() {
			continue
		}
		p.logger.Info("the plugin socket is gone (the kubelet restarted?): registering again")
		if err := p.serveAndRegister(ctx); err != nil && ctx.Err() == nil {
			p.logger.Warn("registering again failed; retrying", "err", err)
		}
	}
}

func (p *DevicePlugin) stopServer() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.server != nil {
		p.server.Stop()
		p.server = nil
	}
}

// Stop ends the streams, the server and the socket watch, and removes
// the plugin's socket.
func (p *DevicePlugin) Stop() {
	p.once.Do(func() {
		close(p.plugin.stop)
		if p.cancel != nil {
			p.cancel()
		}
		p.stopped.Wait()
		p.stopServer()
		_ = os.Remove(p.SocketPath())
		p.resources.close()
	})
}

// Registered says whether the kubelet accepted the plugin's registration.
func (p *DevicePlugin) Registered() bool { return p.registered.Load() }

// Done is closed after an unrecoverable error; the device plugin has
// none (a lost registration is retried), so it stays open.
func (p *DevicePlugin) Done() <-chan struct{} { return p.done }

// Err is the unrecoverable error, once Done is closed: never.
func (p *DevicePlugin) Err() error { return nil }

// Handler serves /metrics, /healthz and /readyz (the kubelet accepted the
// registration).
func (p *DevicePlugin) Handler() http.Handler { return handler(p.metrics, p.Registered) }

// Devices lists the devices the plugin advertises, by ID.
func (p *DevicePlugin) Devices() []string {
	out := make([]string, 0, len(p.plugin.devices))
	for _, d := range p.plugin.devices {
		out = append(out, d.Name)
	}
	sort.Strings(out)
	return out
}

var _ running = (*DevicePlugin)(nil)
