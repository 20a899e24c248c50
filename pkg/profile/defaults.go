package profile

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// Defaults applied when a profile leaves a field empty.
const (
	DefaultClusterName  = "kaic"
	DefaultCheckTimeout = 10 * time.Minute
	DefaultOutputRoot   = "kaic-out"
	// DefaultExporterTimeout bounds the accelerator_metrics check's wait
	// for the metrics exporter (spec.checks.acceleratorMetrics).
	DefaultExporterTimeout = 5 * time.Minute
)

// MinKubernetesMinor and MaxKubernetesMinor bound the Kubernetes minors kaic
// knows how to provision and check (1.33 to 1.37).
const (
	MinKubernetesMinor = 33
	MaxKubernetesMinor = 37
)

// kindNodeImages pins the node images of kind v0.33.0 by digest. A version
// not listed here uses kindest/node:<version> by tag, and plan says so.
var kindNodeImages = map[string]string{
	"v1.37.0": "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5",
}

// KindNodeImage returns the node image for a Kubernetes version and whether
// it is pinned by digest.
func KindNodeImage(version string) (image string, pinned bool) {
	if img, ok := kindNodeImages[version]; ok {
		return img, true
	}
	return "kindest/node:" + version, false
}

var kubeVersionRE = regexp.MustCompile(`^v1\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?$`)

// KubernetesMinor returns the minor of a version such as v1.37.2.
func KubernetesMinor(version string) (int, error) {
	m := kubeVersionRE.FindStringSubmatch(version)
	if m == nil {
		return 0, fmt.Errorf("must be a Kubernetes version such as v1.37.0")
	}
	return strconv.Atoi(m[1])
}

// AcceleratorModel is a built-in accelerator model.
type AcceleratorModel struct {
	Name        string
	Accelerator Accelerator
}

func boolPtr(b bool) *bool { return &b }

// acceleratorModels are the built-in accelerator models.
var acceleratorModels = map[string]Accelerator{
	// example is the simulated GPU of dra-example-driver and of kaic's own
	// kaic-fake-gpu driver: devices are announced to containers through
	// GPU_DEVICE_* environment variables, injected with CDI (DRA) or by
	// kaic-fake-gpu's device plugin.
	"example": {
		Model:       "example",
		DRADriver:   "gpu.example.com",
		DeviceClass: "gpu.example.com",
		// kaic-fake-gpu's resource in device-plugin mode.
		ResourceName:    "example.com/gpu",
		DeviceEnvPrefix: "GPU_DEVICE_",
		Simulated:       boolPtr(true),
		Metrics: &AcceleratorMetrics{
			Endpoint: "kaic-fake-gpu/kaic-fake-gpu-metrics:9400",
			// The labels of the metrics Service of kaic-fake-gpu's chart.
			ServiceSelectors: []string{"app.kubernetes.io/name=kaic-fake-gpu,app.kubernetes.io/component=metrics"},
			DeviceLabel:      "device",
			Utilization:      "kaic_fake_gpu_utilization_percent",
			MemoryUsed:       "kaic_fake_gpu_memory_used_bytes",
			MemoryTotal:      "kaic_fake_gpu_memory_total_bytes",
			Temperature:      "kaic_fake_gpu_temperature_celsius",
			Power:            "kaic_fake_gpu_power_watts",
		},
	},
	// nvidia is a real NVIDIA GPU behind the NVIDIA DRA driver or device
	// plugin, observed through the DCGM exporter.
	"nvidia": {
		Model:        "nvidia",
		DRADriver:    "gpu.nvidia.com",
		DeviceClass:  "gpu.nvidia.com",
		ResourceName: "nvidia.com/gpu",
		DeviceGlob:   "/dev/nvidia[0-9]*",
		NodeTaintKey: "nvidia.com/gpu",
		Simulated:    boolPtr(false),
		Metrics: &AcceleratorMetrics{
			Endpoint: "gpu-operator/nvidia-dcgm-exporter:9400",
			// The GPU operator labels its exporter Service
			// app=nvidia-dcgm-exporter; dcgm-exporter's own chart
			// labels it app.kubernetes.io/name=dcgm-exporter.
			ServiceSelectors: []string{"app=nvidia-dcgm-exporter", "app.kubernetes.io/name=dcgm-exporter"},
			DeviceLabel:      "gpu",
			Utilization:      "DCGM_FI_DEV_GPU_UTIL",
			// DCGM serves no GPU_UTIL for MIG instances; the graphics
			// engine's activity (a ratio, 0 to 1) it serves for both.
			PartitionUtilization: "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
			MemoryUsed:           "DCGM_FI_DEV_FB_USED",
			// DCGM serves used and free frame buffer memory, no
			// capacity: FB_FREE is what is left, not the total.
			MemoryFree:  "DCGM_FI_DEV_FB_FREE",
			Temperature: "DCGM_FI_DEV_GPU_TEMP",
			Power:       "DCGM_FI_DEV_POWER_USAGE",
		},
	},
}

// AcceleratorModels lists the built-in model names.
func AcceleratorModels() []string { return []string{"example", "nvidia"} }

// applyDefaults fills empty fields. It runs after merging and before
// validation, so validation sees what a run would use.
func applyDefaults(p *Profile) {
	s := &p.Spec
	if s.ConformanceVersion == "" {
		if minor, err := KubernetesMinor(s.KubernetesVersion); err == nil {
			s.ConformanceVersion = fmt.Sprintf("1.%d", minor)
		}
	}
	switch s.Cluster.Backend {
	case BackendKind:
		if s.Cluster.Kind == nil {
			s.Cluster.Kind = &KindCluster{}
		}
		k := s.Cluster.Kind
		if k.Name == "" {
			k.Name = DefaultClusterName
		}
		if k.Workers == nil {
			one := 1
			k.Workers = &one
		}
		if k.Provider == "" {
			k.Provider = "auto"
		}
		if k.GPUs == "" {
			k.GPUs = "none"
		}
		if k.NodeImage == "" && s.KubernetesVersion != "" {
			k.NodeImage, _ = KindNodeImage(s.KubernetesVersion)
		}
	case BackendCAPI:
		if s.Cluster.CAPI == nil {
			s.Cluster.CAPI = &CAPICluster{}
		}
		c := s.Cluster.CAPI
		if c.ClusterName == "" {
			c.ClusterName = DefaultClusterName
		}
		if c.Namespace == "" {
			c.Namespace = "default"
		}
		if c.ControlPlaneMachines == nil {
			one := 1
			c.ControlPlaneMachines = &one
		}
		if c.WorkerMachines == nil {
			one := 1
			c.WorkerMachines = &one
		}
		if g := c.GPUPool; g != nil {
			if g.Name == "" {
				g.Name = "gpu"
			}
			if g.Replicas == nil {
				one := 1
				g.Replicas = &one
			}
		}
	case BackendExisting:
		if s.Cluster.Existing == nil {
			s.Cluster.Existing = &ExistingCluster{}
		}
	}
	applyAcceleratorDefaults(&s.Accelerator)
	if s.Checks.Timeout.Duration == 0 {
		s.Checks.Timeout.Duration = DefaultCheckTimeout
	}
	if s.Checks.AcceleratorMetrics.ExporterTimeout.Duration == 0 {
		s.Checks.AcceleratorMetrics.ExporterTimeout.Duration = DefaultExporterTimeout
	}
	if s.Output.Dir == "" && p.Metadata.Name != "" {
		s.Output.Dir = DefaultOutputRoot + "/" + p.Metadata.Name
	}
	if s.Output.ProductDir == "" {
		s.Output.ProductDir = p.Metadata.Name
	}
}

// applyAcceleratorDefaults fills the fields a built-in model defines and
// the profile left empty.
func applyAcceleratorDefaults(a *Accelerator) {
	if a.Model == "" {
		a.Model = "example"
	}
	if a.Allocation == "" {
		a.Allocation = AllocationDRA
	}
	m, ok := acceleratorModels[a.Model]
	if !ok {
		if a.Simulated == nil {
			a.Simulated = boolPtr(false)
		}
		return
	}
	fill := func(dst *string, src string) {
		if *dst == "" {
			*dst = src
		}
	}
	fill(&a.DRADriver, m.DRADriver)
	fill(&a.DeviceClass, m.DeviceClass)
	fill(&a.ResourceName, m.ResourceName)
	fill(&a.DeviceEnvPrefix, m.DeviceEnvPrefix)
	fill(&a.DeviceGlob, m.DeviceGlob)
	fill(&a.NodeTaintKey, m.NodeTaintKey)
	if a.Simulated == nil {
		a.Simulated = boolPtr(*m.Simulated)
	}
	if a.Metrics == nil {
		mm := *m.Metrics
		mm.ServiceSelectors = slices.Clone(m.Metrics.ServiceSelectors)
		a.Metrics = &mm
		return
	}
	fill(&a.Metrics.Endpoint, m.Metrics.Endpoint)
	if a.Metrics.ServiceSelectors == nil {
		a.Metrics.ServiceSelectors = slices.Clone(m.Metrics.ServiceSelectors)
	}
	fill(&a.Metrics.DeviceLabel, m.Metrics.DeviceLabel)
	fill(&a.Metrics.Utilization, m.Metrics.Utilization)
	fill(&a.Metrics.PartitionUtilization, m.Metrics.PartitionUtilization)
	fill(&a.Metrics.MemoryUsed, m.Metrics.MemoryUsed)
	fill(&a.Metrics.MemoryTotal, m.Metrics.MemoryTotal)
	fill(&a.Metrics.MemoryFree, m.Metrics.MemoryFree)
	fill(&a.Metrics.Temperature, m.Metrics.Temperature)
	fill(&a.Metrics.Power, m.Metrics.Power)
}

// IsSimulated reports whether the profile's accelerators are simulated.
func (p *Profile) IsSimulated() bool {
	return p.Spec.Accelerator.Simulated != nil && *p.Spec.Accelerator.Simulated
}
