package profile

import "time"

// APIVersion and Kind identify a kaic profile document.
const (
	APIVersion = "kaic.dev/v1alpha1"
	Kind       = "Profile"
	// ComponentKind identifies a built-in stack component document.
	ComponentKind = "StackComponent"
)

// Profile declares one reference environment: the cluster to provision, the
// stack to install on it, the accelerator model the checks exercise, which
// checks run, and the product metadata written into PRODUCT.yaml.
type Profile struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	// Extends names a built-in profile this one starts from. Maps merge key
	// by key, stack components merge by name and opt-outs by id; any other
	// list replaces the base's.
	Extends string `json:"extends,omitempty"`
	Spec    Spec   `json:"spec"`
}

// Metadata names and describes a profile.
type Metadata struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// Spec is everything a run needs.
type Spec struct {
	// KubernetesVersion is the cluster's version, e.g. v1.37.0.
	KubernetesVersion string `json:"kubernetesVersion"`
	// ConformanceVersion is the AI conformance checklist version, e.g.
	// "1.37". It defaults to the minor of KubernetesVersion.
	ConformanceVersion string      `json:"conformanceVersion,omitempty"`
	Cluster            Cluster     `json:"cluster"`
	Stack              Stack       `json:"stack,omitempty"`
	Accelerator        Accelerator `json:"accelerator,omitempty"`
	Checks             Checks      `json:"checks,omitempty"`
	Output             Output      `json:"output,omitempty"`
	Product            Product     `json:"product,omitempty"`
}

// Backend names a way of getting a cluster.
type Backend string

// The cluster backends.
const (
	BackendKind     Backend = "kind"
	BackendCAPI     Backend = "capi"
	BackendExisting Backend = "existing"
)

// Cluster selects a backend and carries its settings. Only the section of
// the selected backend may be set.
type Cluster struct {
	Backend  Backend          `json:"backend"`
	Kind     *KindCluster     `json:"kind,omitempty"`
	CAPI     *CAPICluster     `json:"capi,omitempty"`
	Existing *ExistingCluster `json:"existing,omitempty"`
}

// KindCluster is a kind cluster created through kind's Go library.
type KindCluster struct {
	// Name of the kind cluster; defaults to "kaic".
	Name string `json:"name,omitempty"`
	// NodeImage overrides the node image chosen for KubernetesVersion.
	NodeImage string `json:"nodeImage,omitempty"`
	// Workers is the number of worker nodes besides the control plane.
	Workers *int `json:"workers,omitempty"`
	// Provider is the node provider: auto (detect), docker, podman or nerdctl.
	Provider string `json:"provider,omitempty"`
	// FeatureGates are enabled on every component; each gate is checked
	// against the gates known for the Kubernetes minor.
	FeatureGates map[string]bool `json:"featureGates,omitempty"`
	// RuntimeConfig is passed to kube-apiserver's --runtime-config.
	RuntimeConfig map[string]string `json:"runtimeConfig,omitempty"`
	// DisableDefaultCNI leaves pod networking to a CNI the node image or the
	// stack provides.
	DisableDefaultCNI bool `json:"disableDefaultCNI,omitempty"`
	// WorkerLabels are set on every worker node.
	WorkerLabels map[string]string `json:"workerLabels,omitempty"`
	// ExtraMounts are mounted into every node.
	ExtraMounts []Mount `json:"extraMounts,omitempty"`
	// ImageArchives are image tarballs (docker save / OCI layout archives)
	// loaded into every node's containerd while the cluster comes up, for
	// air-gapped use. Where the node engine runs on this host, each is
	// mounted read-only into the nodes (under /kaic/image-archives) and
	// imported from there; otherwise it is streamed into each node.
	ImageArchives []string `json:"imageArchives,omitempty"`
	// GPUs passes host NVIDIA GPUs into worker nodes the way nvkind does:
	// "all", "none" (default) or a comma-separated list of indexes.
	GPUs string `json:"gpus,omitempty"`
	// KubeletConfig is merged into every node's KubeletConfiguration.
	KubeletConfig map[string]any `json:"kubeletConfig,omitempty"`
}

// Mount is a host path mounted into kind nodes.
type Mount struct {
	HostPath      string `json:"hostPath"`
	ContainerPath string `json:"containerPath"`
	ReadOnly      bool   `json:"readOnly,omitempty"`
}

// CAPICluster is a workload cluster created with Cluster API.
type CAPICluster struct {
	// Management is the management cluster. Without a kubeconfig kaic
	// creates a kind management cluster (with the Docker socket mounted for
	// the docker infrastructure provider) and deletes it on teardown.
	Management ManagementCluster `json:"management,omitempty"`
	// Infrastructure is the infrastructure provider: docker, aws, azure or gcp.
	Infrastructure string `json:"infrastructure"`
	// Providers pins provider versions; missing ones default per release.
	Providers CAPIProviders `json:"providers,omitempty"`
	// ClusterName of the workload cluster; defaults to "kaic".
	ClusterName string `json:"clusterName,omitempty"`
	// Namespace of the Cluster object; defaults to "default".
	Namespace string `json:"namespace,omitempty"`
	// Flavor of the cluster template ("" is the provider's default).
	Flavor string `json:"flavor,omitempty"`
	// ClusterClass names a ClusterClass to build the cluster from instead of
	// a flavor template.
	ClusterClass string `json:"clusterClass,omitempty"`
	// ControlPlaneMachines is the control plane replica count (default 1).
	ControlPlaneMachines *int `json:"controlPlaneMachines,omitempty"`
	// WorkerMachines is the plain worker count (default 1).
	WorkerMachines *int `json:"workerMachines,omitempty"`
	// Variables are the template variables. A value of the form ${ENV}
	// is read from the environment at plan time.
	Variables map[string]string `json:"variables,omitempty"`
	// GPUPool is the accelerator worker pool.
	GPUPool *GPUPool `json:"gpuPool,omitempty"`
}

// ManagementCluster points at an existing management cluster.
type ManagementCluster struct {
	Kubeconfig string `json:"kubeconfig,omitempty"`
	Context    string `json:"context,omitempty"`
}

// CAPIProviders pins the Cluster API providers, each "name:version" or a
// version alone for the default provider of that kind.
type CAPIProviders struct {
	Core           string `json:"core,omitempty"`
	Bootstrap      string `json:"bootstrap,omitempty"`
	ControlPlane   string `json:"controlPlane,omitempty"`
	Infrastructure string `json:"infrastructure,omitempty"`
	// Repositories maps a provider name to a local directory or URL that
	// replaces its release repository (air-gapped use).
	Repositories map[string]string `json:"repositories,omitempty"`
}

// GPUPool is a MachineDeployment of accelerator machines, optionally
// managed by the cluster autoscaler.
type GPUPool struct {
	Name        string            `json:"name,omitempty"`
	MachineType string            `json:"machineType,omitempty"`
	Replicas    *int              `json:"replicas,omitempty"`
	MinSize     *int              `json:"minSize,omitempty"`
	MaxSize     *int              `json:"maxSize,omitempty"`
	GPUCount    int               `json:"gpuCount,omitempty"`
	GPUType     string            `json:"gpuType,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Taints      []Taint           `json:"taints,omitempty"`
	// Autoscaler enables the cluster autoscaler's node group annotations.
	Autoscaler bool `json:"autoscaler,omitempty"`
}

// Taint is a node taint.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

// ExistingCluster adopts a running cluster without changing it.
type ExistingCluster struct {
	Kubeconfig string `json:"kubeconfig,omitempty"`
	Context    string `json:"context,omitempty"`
}

// Stack lists the components to install, in any order: dependencies decide
// the install order.
type Stack struct {
	Components []Component `json:"components,omitempty"`
}

// Component is one stack component: a reference to a built-in component
// (name only, with optional overrides) or an inline definition (Helm chart
// or manifests).
type Component struct {
	Name string `json:"name"`
	// Disabled drops a component inherited from an extended profile.
	Disabled bool `json:"disabled,omitempty"`
	// Description says what the component is for.
	Description string `json:"description,omitempty"`
	// Version overrides the pinned chart version (or manifest set version).
	Version string `json:"version,omitempty"`
	// Helm installs a chart.
	Helm *HelmChart `json:"helm,omitempty"`
	// Manifests applies plain manifests with server-side apply.
	Manifests *Manifests `json:"manifests,omitempty"`
	// Namespace the release is installed into.
	Namespace string `json:"namespace,omitempty"`
	// Values are merged over the component's default values.
	Values map[string]any `json:"values,omitempty"`
	// DependsOn names components that must be ready first. An empty list
	// (dependsOn: []) drops a built-in component's dependencies, so it is
	// kept when the resolved profile is written out (no omitempty).
	DependsOn []string `json:"dependsOn"`
	// Readiness says when the component counts as ready.
	Readiness *Readiness `json:"readiness,omitempty"`
	// Provides lists the capabilities the component brings (e.g.
	// gang-scheduling, gateway), used to tell which checks it serves.
	Provides []string `json:"provides,omitempty"`
	// Pinned is the date the version was last reviewed (built-ins).
	Pinned string `json:"pinned,omitempty"`
	// Supports states the Kubernetes minors the pinned version supports,
	// with upstream's source; kaic plan warns outside it.
	Supports *Supports `json:"supports,omitempty"`
	// Source says where an inline component came from: "builtin" or
	// "profile". Set by the loader.
	Source string `json:"-"`
}

// EmbeddedChartScheme prefixes charts that ship inside the kaic binary
// (kaic://<name>), versioned with kaic itself.
const EmbeddedChartScheme = "kaic://"

// HelmChart is a chart from an OCI registry (Chart = oci://…), a classic
// repository (Repo + Chart), a local directory or .tgz (Chart = path), or a
// chart embedded in kaic (Chart = kaic://<name>).
type HelmChart struct {
	Chart   string `json:"chart"`
	Repo    string `json:"repo,omitempty"`
	Version string `json:"version,omitempty"`
	// Digest pins the chart archive (sha256:…); a different chart is refused
	// before anything is applied.
	Digest string `json:"digest,omitempty"`
	// ReleaseName defaults to the component name.
	ReleaseName string `json:"releaseName,omitempty"`
}

// Manifests are plain Kubernetes manifests: downloads pinned by sha256,
// local files, or a directory of a Go module fetched through the Go module
// proxy and verified against its go.sum hash.
type Manifests struct {
	URLs    []PinnedURL      `json:"urls,omitempty"`
	Files   []string         `json:"files,omitempty"`
	Modules []ModuleManifest `json:"modules,omitempty"`
}

// ModuleManifest is a directory of YAML manifests inside a Go module.
type ModuleManifest struct {
	// Path is the module path, e.g. sigs.k8s.io/gateway-api.
	Path    string `json:"path"`
	Version string `json:"version"`
	// Sum is the module's go.sum hash (h1:…), checked before use.
	Sum string `json:"sum"`
	// Dir is the directory in the module whose *.yaml files are applied.
	Dir string `json:"dir"`
	// Exclude lists file names in Dir that are not applied.
	Exclude []string `json:"exclude,omitempty"`
}

// PinnedURL is a download pinned by its sha256.
type PinnedURL struct {
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
}

// Readiness lists what must be ready before a component counts as installed.
type Readiness struct {
	Timeout     Duration `json:"timeout,omitempty"`
	CRDs        []string `json:"crds,omitempty"`
	Deployments []string `json:"deployments,omitempty"`
	DaemonSets  []string `json:"daemonSets,omitempty"`
	APIServices []string `json:"apiServices,omitempty"`
	// Webhooks are webhook configuration names whose services must have
	// ready endpoints.
	Webhooks []string `json:"webhooks,omitempty"`
	// Pods are pods found by label that must be ready: those an operator
	// starts from the component's custom resources (the Prometheus of a
	// Prometheus custom resource, say), which no Deployment or DaemonSet
	// of the component names.
	Pods []PodReadiness `json:"pods,omitempty"`
}

// PodReadiness is a set of pods, chosen by label, of which at least
// MinReady must be ready.
type PodReadiness struct {
	// Namespace defaults to the component's.
	Namespace string `json:"namespace,omitempty"`
	// Selector is a label selector, such as
	// app.kubernetes.io/name=prometheus,app.kubernetes.io/managed-by=prometheus-operator.
	Selector string `json:"selector"`
	// MinReady is how many of the pods must be ready; 1 when unset.
	MinReady int `json:"minReady,omitempty"`
}

// Want is how many pods must be ready.
func (p PodReadiness) Want() int {
	if p.MinReady > 0 {
		return p.MinReady
	}
	return 1
}

// Accelerator describes how the checks find, request and observe
// accelerators. Model selects a built-in model whose fields the others
// override.
type Accelerator struct {
	// Model is a built-in model (example, nvidia) or "custom".
	Model string `json:"model,omitempty"`
	// Allocation is how pods get accelerators: dra (the default), through
	// ResourceClaims of DeviceClass that DRADriver's ResourceSlices serve,
	// or device-plugin, by requesting the extended resource ResourceName
	// that a kubelet device plugin advertises in the nodes' allocatable.
	Allocation string `json:"allocation,omitempty"`
	// DRADriver is the DRA driver name publishing ResourceSlices.
	DRADriver string `json:"draDriver,omitempty"`
	// DeviceClass is the DeviceClass claims request.
	DeviceClass string `json:"deviceClass,omitempty"`
	// ResourceName is the extended resource a device plugin advertises
	// (e.g. nvidia.com/gpu), which pods request in device-plugin mode.
	ResourceName string `json:"resourceName,omitempty"`
	// DeviceEnvPrefix: a container holds a device when it sees environment
	// variables with this prefix followed by a number (GPU_DEVICE_0).
	DeviceEnvPrefix string `json:"deviceEnvPrefix,omitempty"`
	// DeviceGlob: a container holds a device when this glob matches device
	// files.
	DeviceGlob string `json:"deviceGlob,omitempty"`
	// NodeTaintKey is tolerated by accelerator pods.
	NodeTaintKey string `json:"nodeTaintKey,omitempty"`
	// Simulated marks accelerators that are not real hardware; every
	// artifact of such a run says so.
	Simulated *bool `json:"simulated,omitempty"`
	// Metrics names the accelerator metrics the exporter serves.
	Metrics *AcceleratorMetrics `json:"metrics,omitempty"`
}

// The ways pods get accelerators (Accelerator.Allocation).
const (
	AllocationDRA          = "dra"
	AllocationDevicePlugin = "device-plugin"
)

// Allocations lists the allocation modes.
func Allocations() []string { return []string{AllocationDRA, AllocationDevicePlugin} }

// DevicePlugin reports whether pods get accelerators by requesting a
// device plugin's extended resource rather than through DRA claims.
func (a Accelerator) DevicePlugin() bool { return a.Allocation == AllocationDevicePlugin }

// AcceleratorMetrics names an exporter's per-device series.
type AcceleratorMetrics struct {
	// Endpoint is namespace/service:port of the exporter.
	Endpoint string `json:"endpoint,omitempty"`
	// ServiceSelectors are label selectors of the Services an
	// installation of the exporter creates, e.g.
	// app=nvidia-dcgm-exporter. When Endpoint's Service does not exist,
	// the check looks for a Service they select in every namespace and
	// says which one it used.
	ServiceSelectors []string `json:"serviceSelectors,omitempty"`
	DeviceLabel      string   `json:"deviceLabel,omitempty"`
	Utilization      string   `json:"utilization,omitempty"`
	// PartitionUtilization is the utilization series of a partition of a
	// device (an NVIDIA MIG instance), for exporters that serve
	// Utilization for whole devices only (DCGM serves no GPU_UTIL for
	// MIG instances, but DCGM_FI_PROF_GR_ENGINE_ACTIVE).
	PartitionUtilization string `json:"partitionUtilization,omitempty"`
	MemoryUsed           string `json:"memoryUsed,omitempty"`
	// MemoryTotal is a device's memory capacity; MemoryFree its free
	// memory, for exporters that serve used and free rather than a
	// capacity (DCGM's FB_USED and FB_FREE).
	MemoryTotal string `json:"memoryTotal,omitempty"`
	MemoryFree  string `json:"memoryFree,omitempty"`
	Temperature string `json:"temperature,omitempty"`
	Power       string `json:"power,omitempty"`
}

// Checks selects which requirements are verified.
type Checks struct {
	// Include lists requirement ids to run; empty means every requirement
	// of the conformance version.
	Include []string `json:"include,omitempty"`
	// Exclude lists requirement ids not to run (reported as skipped).
	Exclude []string `json:"exclude,omitempty"`
	// OptOuts are requirements declared not applicable, with the notes
	// PRODUCT.yaml carries. They are not run.
	OptOuts []OptOut `json:"optOuts,omitempty"`
	// Timeout bounds each check (default 10m).
	Timeout Duration `json:"timeout,omitempty"`
	// Parallel bounds how many checks run at once (0 = all).
	Parallel int `json:"parallel,omitempty"`
	// ProbeImage is the workload image; defaults to kaic's own probe image,
	// built and loaded into kind clusters.
	ProbeImage string `json:"probeImage,omitempty"`
	// RobustController configures the robust_controller check.
	RobustController RobustController `json:"robustController,omitempty"`
	// ServiceMetrics configures the ai_service_metrics check.
	ServiceMetrics ServiceMetrics `json:"serviceMetrics,omitzero"`
	// Inference configures the ai_inference and
	// advanced_inference_ingress checks.
	Inference Inference `json:"inference,omitzero"`
	// Sandboxing configures the workload_sandboxing check.
	Sandboxing Sandboxing `json:"sandboxing,omitzero"`
	// ClusterAutoscaling configures the cluster_autoscaling check.
	ClusterAutoscaling ClusterAutoscaling `json:"clusterAutoscaling,omitzero"`
	// AcceleratorMetrics configures the accelerator_metrics check.
	AcceleratorMetrics AcceleratorMetricsCheck `json:"acceleratorMetrics,omitzero"`
}

// AcceleratorMetricsCheck configures the accelerator_metrics check.
type AcceleratorMetricsCheck struct {
	// ExporterTimeout bounds the wait for the metrics exporter's Service
	// and a ready endpoint of it to appear (default 5m; shorter than
	// spec.checks.timeout). Right after the stack is installed the
	// exporter may not be deployed yet: the GPU operator counts as ready
	// once its CRD is, and deploys the DCGM exporter afterwards.
	ExporterTimeout Duration `json:"exporterTimeout,omitzero"`
}

// RobustController configures the robust_controller check.
type RobustController struct {
	// Operator is the AI operator the check exercises, one of
	// RobustControllerOperators. Empty selects the one the profile's stack
	// installs (component kuberay-operator or kubeflow-trainer), else the
	// one whose custom resources the cluster serves.
	Operator string `json:"operator,omitempty"`
	// Namespace is where the operator's pods run. Empty finds them: the
	// namespace of the Deployments and pods that carry the operator's
	// well-known labels (app.kubernetes.io/name=kuberay-operator,
	// app.kubernetes.io/name=kubeflow-trainer), else that of the Service
	// serving its validating webhook.
	Namespace string `json:"namespace,omitempty"`
}

// ServiceMetrics configures the ai_service_metrics check. Every field is
// optional: the check finds what is unset on the cluster.
type ServiceMetrics struct {
	// Prometheus is the query API of the monitoring system that scrapes
	// the check's workload, as namespace/service:port (the port by name or
	// number), reached through the API server's service proxy. Empty finds
	// the Service prometheus-operator labels operated-prometheus=true and
	// uses its port web.
	Prometheus string `json:"prometheus,omitempty"`
	// ScrapeLabels are put on the check's ServiceMonitor so that the
	// Prometheus's serviceMonitorSelector picks it up, e.g.
	// release: kube-prometheus-stack.
	ScrapeLabels map[string]string `json:"scrapeLabels,omitempty"`
	// Requests is how many inference requests the check sends (> 0;
	// default 10).
	Requests *int `json:"requests,omitempty"`
	// CollectionTimeout bounds the wait for Prometheus to report the
	// workload's series (default 5m).
	CollectionTimeout Duration `json:"collectionTimeout,omitzero"`
}

// Inference configures the ai_inference and advanced_inference_ingress
// checks. Every field is optional.
type Inference struct {
	// GatewayClass is the GatewayClass the checks' Gateways use; empty
	// picks the first Accepted one by name.
	GatewayClass string `json:"gatewayClass,omitempty"`
	// IngressGatewayClass is the GatewayClass of advanced_inference_ingress
	// alone, for a cluster whose InferencePool-capable implementation is
	// not the one ai_inference uses; empty means GatewayClass.
	IngressGatewayClass string `json:"ingressGatewayClass,omitempty"`
	// EndpointPickerImage is the image of the Gateway API Inference
	// Extension endpoint picker that advanced_inference_ingress runs for its
	// InferencePool (default registry.k8s.io/gateway-api-inference-extension/epp
	// at the release whose CRDs the built-in component installs).
	EndpointPickerImage string `json:"endpointPickerImage,omitempty"`
	// Requests is how many requests each traffic test sends (> 0; default
	// 100).
	Requests *int `json:"requests,omitempty"`
	// Tolerance is how far, in standard deviations of the binomial
	// distribution, a weighted split may be from its weights (> 0; default
	// 3, which accepts 80±12 of 100 requests).
	Tolerance *float64 `json:"tolerance,omitempty"`
	// ReadyTimeout bounds each wait for the gateway controller: the
	// Gateway to be Programmed, a route's status, the backends to be
	// available (default 3m).
	ReadyTimeout Duration `json:"readyTimeout,omitzero"`
	// TrafficTimeout bounds each request pod, from its creation to its
	// report (default 3m).
	TrafficTimeout Duration `json:"trafficTimeout,omitzero"`
}

// Sandboxing configures the workload_sandboxing check.
type Sandboxing struct {
	// RuntimeClass names the sandbox RuntimeClass; empty detects one whose
	// name or handler looks like a sandbox (gvisor, runsc, kata, ...).
	RuntimeClass string `json:"runtimeClass,omitempty"`
}

// ClusterAutoscaling configures the cluster_autoscaling check. Without a
// node pool (nodePoolSelector here, or spec.cluster.capi.gpuPool with
// autoscaler: true) the check skips.
type ClusterAutoscaling struct {
	// NodePoolSelector is a label selector of the autoscaled accelerator
	// pool's nodes, e.g. "node.kubernetes.io/instance-type=g5.xlarge" or
	// "pool in (gpu),!spot". It wins over the labels of a Cluster API
	// gpuPool.
	NodePoolSelector string `json:"nodePoolSelector,omitempty"`
	// PendingTimeout bounds the waits for the pool to be idle, the
	// baseline pods to run and the extra pod to be marked unschedulable
	// (default 2m).
	PendingTimeout Duration `json:"pendingTimeout,omitzero"`
	// ScaleUpTimeout bounds the wait for the extra pod to run on a new
	// node (default 20m).
	ScaleUpTimeout Duration `json:"scaleUpTimeout,omitzero"`
	// ScaleDownTimeout bounds the wait for the pool to shrink back
	// (default 30m).
	ScaleDownTimeout Duration `json:"scaleDownTimeout,omitzero"`
	// StabilityWindow is how long the pool must keep its size before the
	// baseline and after scaling down (default 30s).
	StabilityWindow Duration `json:"stabilityWindow,omitzero"`
}

// The AI operators the robust_controller check knows.
const (
	OperatorKubeRay         = "kuberay"
	OperatorKubeflowTrainer = "kubeflow-trainer"
)

// RobustControllerOperators lists the operators the robust_controller
// check knows, in the order it prefers them when several are installed.
func RobustControllerOperators() []string {
	return []string{OperatorKubeRay, OperatorKubeflowTrainer}
}

// OptOut declares a requirement not applicable.
type OptOut struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Notes  string `json:"notes"`
}

// StatusNA is the only status an opt-out may declare.
const StatusNA = "N/A"

// Output places the run directory.
type Output struct {
	// Dir is the run directory (default ./kaic-out/<profile name>).
	Dir string `json:"dir,omitempty"`
	// ProductDir is the directory name under v<X.Y>/ in the submission
	// tree (default: the profile name).
	ProductDir string `json:"productDir,omitempty"`
}

// Product is the metadata of PRODUCT.yaml.
type Product struct {
	PlatformName        string `json:"platformName,omitempty"`
	PlatformVersion     string `json:"platformVersion,omitempty"`
	VendorName          string `json:"vendorName,omitempty"`
	WebsiteURL          string `json:"websiteUrl,omitempty"`
	RepoURL             string `json:"repoUrl,omitempty"`
	DocumentationURL    string `json:"documentationUrl,omitempty"`
	ProductLogoURL      string `json:"productLogoUrl,omitempty"`
	Description         string `json:"description,omitempty"`
	ContactEmailAddress string `json:"contactEmailAddress,omitempty"`
	K8sConformanceURL   string `json:"k8sConformanceUrl,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("5m").
type Duration struct{ time.Duration }
