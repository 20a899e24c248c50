package testenv

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// DefaultDRADriver is the driver name of the fake accelerators published for
// kwok nodes.
const DefaultDRADriver = "gpu.example.com"

// GPUResourceName is the extended resource [WithGPUNodes] advertises next to
// the DRA devices, for tests of device-plugin style requests.
const GPUResourceName corev1.ResourceName = "nvidia.com/gpu"

// Node describes a simulated node that kwok keeps Ready.
type Node struct {
	// Name is the node name; it is also the DRA pool name of its devices.
	Name string
	// Labels are added to the defaults kubernetes.io/hostname=<name> and
	// type=kwok.
	Labels map[string]string
	// Allocatable overrides or extends the defaults (32 CPUs, 256Gi memory,
	// 110 pods); extended resources such as nvidia.com/gpu go here too.
	// Capacity is set to the same values.
	Allocatable corev1.ResourceList
	// GPUs is the number of fake DRA devices (gpu-0 … gpu-<GPUs-1>) in the
	// ResourceSlice published for this node; zero publishes none.
	GPUs int
}

// config is what the options set.
type config struct {
	binDir       string
	controlLoops bool
	noScheduler  bool
	nodes        []Node
	draDriver    string
	featureGates map[string]bool
	// resourceVersions are the resource.k8s.io versions served; nil
	// serves every one the API server has.
	resourceVersions []string
	apiServerArgs    []string
	kcmArgs          []string
	startTimeout     time.Duration
	stopGrace        time.Duration
	logger           *slog.Logger
}

func defaultConfig() config {
	return config{
		draDriver:    DefaultDRADriver,
		startTimeout: 2 * time.Minute,
		stopGrace:    5 * time.Second,
		logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// Option configures [Start].
type Option func(*config)

// WithBinDir takes the binaries from dir instead of [BinDir].
func WithBinDir(dir string) Option {
	return func(c *config) { c.binDir = dir }
}

// WithControlLoops also runs kube-controller-manager (all controllers) and
// kube-scheduler, so workloads get pods, pods get nodes and ResourceClaims
// get allocated.
func WithControlLoops() Option {
	return func(c *config) { c.controlLoops = true }
}

// WithoutScheduler leaves kube-scheduler out of [WithControlLoops], for
// tests that bind pods themselves: the 1.37 scheduler reads DRA objects
// through resource.k8s.io/v1 only and never reports ready without it
// (see [WithResourceAPIVersions]).
func WithoutScheduler() Option {
	return func(c *config) { c.noScheduler = true }
}

// WithNodes runs kwok and registers the given simulated nodes; [Start]
// returns once they are Ready and their ResourceSlices are published.
// Pods need [WithControlLoops] to be scheduled onto them.
func WithNodes(nodes ...Node) Option {
	return func(c *config) { c.nodes = append(c.nodes, nodes...) }
}

// WithGPUNodes adds count simulated nodes named kwok-gpu-0 … kwok-gpu-<count-1>,
// each advertising gpus devices twice over: as the extended resource
// nvidia.com/gpu and as fake DRA devices in a ResourceSlice.
func WithGPUNodes(count, gpus int) Option {
	nodes := make([]Node, count)
	for i := range nodes {
		nodes[i] = Node{
			Name:        fmt.Sprintf("kwok-gpu-%d", i),
			Labels:      map[string]string{"kaic.dev/accelerator": "fake-gpu"},
			Allocatable: corev1.ResourceList{GPUResourceName: *resource.NewQuantity(int64(gpus), resource.DecimalSI)},
			GPUs:        gpus,
		}
	}
	return WithNodes(nodes...)
}

// WithDRADriver names the driver of the fake accelerators (default
// [DefaultDRADriver]).
func WithDRADriver(name string) Option {
	return func(c *config) { c.draDriver = name }
}

// WithFeatureGates passes --feature-gates to every Kubernetes component.
func WithFeatureGates(gates map[string]bool) Option {
	return func(c *config) {
		if c.featureGates == nil {
			c.featureGates = map[string]bool{}
		}
		maps.Copy(c.featureGates, gates)
	}
}

// WithResourceAPIVersions serves only the given versions of
// resource.k8s.io (of v1, v1beta2, v1beta1, v1alpha3; by default all of
// them), as a cluster of an older Kubernetes release or one configured
// with --runtime-config would. Without v1 the API server runs without the
// Node authorizer, which needs v1 (see [Start]'s command line in the
// environment's logs), and kube-controller-manager and kube-scheduler,
// which read DRA objects through v1 only, cannot keep claims allocated;
// tests that need allocations then have to make them themselves.
func WithResourceAPIVersions(versions ...string) Option {
	return func(c *config) { c.resourceVersions = append([]string{}, versions...) }
}

// WithAPIServerArgs appends flags to kube-apiserver's command line; a later
// flag overrides an earlier one.
func WithAPIServerArgs(args ...string) Option {
	return func(c *config) { c.apiServerArgs = append(c.apiServerArgs, args...) }
}

// WithControllerManagerArgs appends flags to kube-controller-manager's
// command line (with [WithControlLoops]), e.g. a shorter
// --horizontal-pod-autoscaler-sync-period; a later flag overrides an
// earlier one.
func WithControllerManagerArgs(args ...string) Option {
	return func(c *config) { c.kcmArgs = append(c.kcmArgs, args...) }
}

// WithStartTimeout bounds how long [Start] waits for every component to be
// ready (default two minutes, generous for a loaded two-core machine).
func WithStartTimeout(d time.Duration) Option {
	return func(c *config) { c.startTimeout = d }
}

// WithLogger receives progress and timing records; the default discards them.
func WithLogger(logger *slog.Logger) Option {
	return func(c *config) { c.logger = logger }
}
