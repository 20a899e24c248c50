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
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"
)

// The ways the driver offers its devices to the kubelet.
const (
	// ModeDRA publishes the devices in a ResourceSlice and prepares
	// claims (the default).
	ModeDRA = "dra"
	// ModeDevicePlugin registers a device plugin that advertises the
	// devices as the extended resource ResourceName.
	ModeDevicePlugin = "device-plugin"
)

// Options configure a running driver.
type Options struct {
	// Mode is ModeDRA ("" too) or ModeDevicePlugin.
	Mode string
	// Devices describes the node and its devices (Spec.Node is required).
	Devices Spec
	// Client talks to the API server: ResourceSlices of the node are
	// published with it and claims read; in device-plugin mode, the node
	// is labelled with the devices it shares (none: not labelled).
	Client kubernetes.Interface
	// CDIDir and StateDir default to DefaultCDIDir and DefaultStateDir.
	CDIDir   string
	StateDir string
	// PluginDir holds the DRA gRPC socket (default
	// /var/lib/kubelet/plugins/<driver>); RegistryDir the kubelet's plugin
	// registration sockets (default /var/lib/kubelet/plugins_registry).
	PluginDir   string
	RegistryDir string
	// PodUID, when set, enables the kubelet's rolling update of plugins
	// (old and new driver pod serve side by side during an update).
	PodUID types.UID
	// MetricsAddr is where Run serves /metrics, /healthz and /readyz.
	MetricsAddr string
	// Logger receives the driver's logs and those of the DRA helper.
	Logger *slog.Logger
	// Plugin are extra helper options (tests turn services off with them).
	Plugin []kubeletplugin.Option

	// Device-plugin mode.

	// ResourceName is the extended resource the devices are advertised
	// as (default ResourceName).
	ResourceName string
	// DevicePluginDir holds the kubelet's registration socket
	// kubelet.sock and the plugin's own (default
	// /var/lib/kubelet/device-plugins).
	DevicePluginDir string
	// PodResourcesSocket is the kubelet's pod resources API, which says
	// which devices containers hold (default DefaultPodResourcesSocket).
	PodResourcesSocket string
}

// Plugin is a started driver.
type Plugin struct {
	Driver *Driver
	helper *kubeletplugin.Helper
	// Done is closed when the driver hit an error it cannot recover from;
	// Err then says which.
	done    chan struct{}
	err     error
	metrics *prometheus.Registry
}

// validate checks what both modes need of o: the node, at least one
// device, and a sharing strategy those devices allow.
func (o Options) validate() error {
	if o.Devices.Node == "" {
		return errors.New("the node name is required (NODE_NAME from the downward API)")
	}
	if o.Devices.Count < 1 {
		return fmt.Errorf("at least one device per node is needed, got %d", o.Devices.Count)
	}
	return o.Devices.Sharing.Validate(o.Devices.Count)
}

// Start starts the kubelet plugin (registration and DRA gRPC services) and
// publishes the node's ResourceSlice. Stop it with Stop.
func Start(ctx context.Context, o Options) (*Plugin, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Client == nil {
		return nil, errors.New("a Kubernetes client is required")
	}
	if o.CDIDir == "" {
		o.CDIDir = DefaultCDIDir
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	for _, dir := range []string{o.CDIDir, o.StateDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	p := &Plugin{done: make(chan struct{})}
	var once sync.Once
	shutdown := func(err error) {
		once.Do(func() {
			p.err = err
			close(p.done)
		})
	}
	devices := o.Devices.Devices()
	p.Driver = NewDriver(o.Devices.Node, devices, o.CDIDir, o.StateDir, o.Logger, shutdown)

	opts := []kubeletplugin.Option{
		kubeletplugin.DriverName(DriverName),
		kubeletplugin.NodeName(o.Devices.Node),
		kubeletplugin.KubeClient(o.Client),
	}
	if o.PluginDir == "" {
		o.PluginDir = filepath.Join("/var/lib/kubelet/plugins", DriverName)
	}
	opts = append(opts, kubeletplugin.PluginDataDirectoryPath(o.PluginDir))
	if o.RegistryDir != "" {
		opts = append(opts, kubeletplugin.RegistrarDirectoryPath(o.RegistryDir))
	}
	if o.PodUID != "" {
		opts = append(opts, kubeletplugin.RollingUpdate(o.PodUID))
	}
	opts = append(opts, o.Plugin...)
	// The kubelet does not create a plugin's socket directory, and the
	// helper does not either.
	if err := os.MkdirAll(o.PluginDir, 0o750); err != nil {
		return nil, err
	}
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(o.Logger.Handler()))
	helper, err := kubeletplugin.Start(ctx, p.Driver, opts...)
	if err != nil {
		return nil, fmt.Errorf("starting the kubelet plugin: %w", err)
	}
	p.helper = helper
	if err := helper.PublishResources(ctx, Resources(o.Devices.Node, devices)); err != nil {
		helper.Stop()
		return nil, fmt.Errorf("publishing the node's devices: %w", err)
	}

	p.metrics = registry(o.Devices.Node, devices, p.Driver.specs, o.Logger)
	return p, nil
}

// Stop stops the gRPC services and the ResourceSlice publishing; the
// published slice stays (the next driver takes it over).
func (p *Plugin) Stop() { p.helper.Stop() }

// Done is closed after an unrecoverable error; see Err.
func (p *Plugin) Done() <-chan struct{} { return p.done }

// Err is the unrecoverable error, once Done is closed.
func (p *Plugin) Err() error { return p.err }

// Registered says whether the kubelet accepted the plugin.
func (p *Plugin) Registered() bool {
	st := p.helper.RegistrationStatus()
	return st != nil && st.PluginRegistered
}

// Handler serves /metrics (the devices' metrics), /healthz (the process
// runs) and /readyz (the kubelet registered the plugin).
func (p *Plugin) Handler() http.Handler { return handler(p.metrics, p.Registered) }

func handler(metrics *prometheus.Registry, registered func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !registered() {
			http.Error(w, "not registered with the kubelet yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// registry is the metrics registry of a node's devices.
func registry(node string, devices []Device, h holdings, logger *slog.Logger) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(node, devices, h, logger),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// running is a started driver, in either mode.
type running interface {
	Handler() http.Handler
	Done() <-chan struct{}
	Err() error
	Stop()
}

// Run starts the driver in o.Mode and serves its metrics until ctx ends
// (a normal end) or the driver fails.
func Run(ctx context.Context, o Options, ready func(metrics net.Addr)) error {
	var p running
	var err error
	switch o.Mode {
	case "", ModeDRA:
		p, err = Start(ctx, o)
	case ModeDevicePlugin:
		p, err = StartDevicePlugin(ctx, o)
	default:
		err = fmt.Errorf("unknown mode %q: %s or %s", o.Mode, ModeDRA, ModeDevicePlugin)
	}
	if err != nil {
		return err
	}
	defer p.Stop()
	addr := o.MetricsAddr
	if addr == "" {
		addr = ":9400"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	if ready != nil {
		ready(l.Addr())
	}
	defer func() {
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	select {
	case <-ctx.Done():
		return nil
	case <-p.Done():
		return p.Err()
	case err := <-errc:
		return fmt.Errorf("metrics server: %w", err)
	}
}
