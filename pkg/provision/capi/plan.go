// Package capi provisions workload clusters with Cluster API through the
// clusterctl client library: a management cluster, pinned providers, the
// workload cluster from a template and an accelerator machine pool the
// cluster autoscaler can grow.
package capi

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/kaic-dev/kaic/pkg/profile"
)

// Plan is what the capi backend would do for a profile.
type Plan struct {
	// Management says which management cluster is used.
	Management string `json:"management"`
	// Providers are the providers clusterctl would install, as name:version.
	Providers []string `json:"providers"`
	// Template names the cluster template (flavor or ClusterClass).
	Template string `json:"template"`
	// Variables are the template variables, secrets masked.
	Variables map[string]string `json:"variables"`
	// Objects are the objects kaic adds to the template's (the GPU pool:
	// its MachineDeployment, machine template and KubeadmConfigTemplate,
	// the last two completed from the worker pool's at apply time), or the
	// topology Cluster with the pool for a ClusterClass.
	Objects []map[string]any `json:"objects,omitempty"`
	// Warnings are what a person should know before running the plan.
	Warnings []string `json:"-"`
}

// MissingVariablesError names the variables a run lacks: environment
// variables the profile refers to that are not set, or, when Template is
// set, variables the cluster template needs that the profile does not set.
type MissingVariablesError struct {
	Profile string
	Names   []string
	// Template names the cluster template that needs Names.
	Template string
}

func (e *MissingVariablesError) Error() string {
	if e.Template != "" {
		return fmt.Sprintf("the cluster template %s needs variables profile %s does not set (add them to spec.cluster.capi.variables): %s", e.Template, e.Profile, strings.Join(e.Names, ", "))
	}
	return fmt.Sprintf("profile %s needs these environment variables, which are not set: %s", e.Profile, strings.Join(e.Names, ", "))
}

// Annotations the cluster autoscaler's clusterapi provider reads.
const (
	annotationMinSize     = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"
	annotationMaxSize     = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"
	annotationCapacityFmt = "capacity.cluster-autoscaler.kubernetes.io/%s"
)

// defaultProviders are used for provider kinds a profile leaves unpinned.
var defaultProviders = map[string]string{
	"core":         "cluster-api:v1.14.2",
	"bootstrap":    "kubeadm:v1.14.2",
	"controlPlane": "kubeadm:v1.14.2",
}

// machineTemplates maps an infrastructure provider to its machine template
// kind, API group and the field holding the machine type.
var machineTemplates = map[string]struct{ kind, group, typeField string }{
	"docker": {"DockerMachineTemplate", "infrastructure.cluster.x-k8s.io", ""},
	"aws":    {"AWSMachineTemplate", "infrastructure.cluster.x-k8s.io", "instanceType"},
	"azure":  {"AzureMachineTemplate", "infrastructure.cluster.x-k8s.io", "vmSize"},
	"gcp":    {"GCPMachineTemplate", "infrastructure.cluster.x-k8s.io", "instanceType"},
}

// PlanFor resolves a capi profile's providers and variables (reading
// ${VAR} references with getenv) and builds the GPU pool objects. Missing
// variables are reported all at once, by name.
func PlanFor(p *profile.Profile, getenv func(string) string) (*Plan, error) {
	c := p.Spec.Cluster.CAPI
	if p.Spec.Cluster.Backend != profile.BackendCAPI || c == nil {
		return nil, fmt.Errorf("profile %s does not use the capi backend", p.Metadata.Name)
	}
	pl := &Plan{Variables: map[string]string{}}
	if c.Management.Kubeconfig != "" {
		pl.Management = "existing cluster from " + c.Management.Kubeconfig
		if c.Management.Context != "" {
			pl.Management += " (context " + c.Management.Context + ")"
		}
	} else {
		pl.Management = fmt.Sprintf("kind cluster %s-mgmt created by kaic and deleted with the workload cluster", c.ClusterName)
		if c.Infrastructure == "docker" {
			pl.Management += "; the Docker socket is mounted for the docker provider"
		}
	}
	for _, ref := range providerRefs(c) {
		if ref.version == "" {
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("%s provider %s is not pinned to a version: clusterctl installs its latest release", ref.kind, ref.name))
		}
		pl.Providers = append(pl.Providers, ref.kind+" "+ref.String())
	}
	switch {
	case c.ClusterClass != "":
		pl.Template = "ClusterClass " + c.ClusterClass
	case c.Flavor != "":
		pl.Template = fmt.Sprintf("%s provider template, flavor %s", c.Infrastructure, c.Flavor)
	default:
		pl.Template = fmt.Sprintf("%s provider default template", c.Infrastructure)
	}
	vars, err := ResolveVariables(p, getenv)
	if err != nil {
		return nil, err
	}
	for name, value := range vars {
		pl.Variables[name] = maskSecret(name, value)
	}
	if g := c.GPUPool; g != nil {
		if err := checkPoolLabels(g); err != nil {
			return nil, fmt.Errorf("profile %s: %w", p.Metadata.Name, err)
		}
		if c.ClusterClass != "" {
			// With a ClusterClass the pool is one more machine deployment
			// of the Cluster's topology, not objects of its own: its
			// bootstrap template is the class's, which kaic leaves alone.
			pl.Warnings = append(pl.Warnings, topologyPoolWarnings(g, c.ClusterClass, gpuMachineClass(vars))...)
			pl.Objects = []map[string]any{{
				"apiVersion": "cluster.x-k8s.io/v1beta2",
				"kind":       "Cluster",
				"metadata":   map[string]any{"name": c.ClusterName, "namespace": c.Namespace},
				"spec": map[string]any{"topology": map[string]any{
					"classRef": map[string]any{"name": c.ClusterClass},
					"workers": map[string]any{"machineDeployments": []any{
						topologyPool(p, g, gpuMachineClass(vars)),
					}},
				}},
			}}
		} else {
			pl.Objects = gpuPoolObjects(p, g)
		}
	}
	return pl, nil
}

// defaultGPUMachineClass is the ClusterClass worker class of the GPU pool
// unless variable GPU_MACHINE_CLASS names another.
const defaultGPUMachineClass = "gpu"

func gpuMachineClass(vars map[string]string) string {
	if v := vars["GPU_MACHINE_CLASS"]; v != "" {
		return v
	}
	return defaultGPUMachineClass
}

// topologyPool is the GPU pool as a machine deployment of a ClusterClass
// topology: its class, replicas, and the Machine labels and autoscaler
// annotations the pool carries as standalone objects. Cluster API copies
// only labels of its synced domains (see capiSyncedLabel) from Machines to
// Nodes and no taints: the rest reaches Nodes only if the class's worker
// class sets them in its bootstrap template (see topologyPoolWarnings).
func topologyPool(p *profile.Profile, g *profile.GPUPool, class string) map[string]any {
	md := gpuPoolObjects(p, g)[0]
	annotations := md["metadata"].(map[string]any)["annotations"]
	labels := md["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"]
	return map[string]any{
		"class":    class,
		"name":     g.Name,
		"replicas": int64(*g.Replicas),
		"metadata": map[string]any{"labels": labels, "annotations": annotations},
	}
}

// ResolveVariables returns the template variables of a capi profile with
// ${VAR} references read through getenv, plus the variables every cluster
// template uses (CLUSTER_NAME, KUBERNETES_VERSION and the machine counts).
// Unlike a Plan's, secret values are not masked. Missing references are
// reported all at once, by name, as a *MissingVariablesError.
func ResolveVariables(p *profile.Profile, getenv func(string) string) (map[string]string, error) {
	c := p.Spec.Cluster.CAPI
	if p.Spec.Cluster.Backend != profile.BackendCAPI || c == nil {
		return nil, fmt.Errorf("profile %s does not use the capi backend", p.Metadata.Name)
	}
	vars := map[string]string{}
	var missing []string
	for name, value := range c.Variables {
		if ref, ok := profile.EnvReference(value); ok {
			v := getenv(ref)
			if v == "" {
				missing = append(missing, ref)
				continue
			}
			value = v
		}
		vars[name] = value
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, &MissingVariablesError{Profile: p.Metadata.Name, Names: missing}
	}
	vars["CLUSTER_NAME"] = c.ClusterName
	vars["KUBERNETES_VERSION"] = p.Spec.KubernetesVersion
	vars["CONTROL_PLANE_MACHINE_COUNT"] = strconv.Itoa(*c.ControlPlaneMachines)
	vars["WORKER_MACHINE_COUNT"] = strconv.Itoa(*c.WorkerMachines)
	return vars, nil
}

// providerRef is one provider clusterctl installs.
type providerRef struct {
	// kind is the profile's name for the provider type: core, bootstrap,
	// controlPlane or infrastructure.
	kind string
	name string
	// version is empty when the profile does not pin one.
	version string
}

// String is the provider as clusterctl takes it, name[:version].
func (r providerRef) String() string {
	if r.version == "" {
		return r.name
	}
	return r.name + ":" + r.version
}

// providerRefs resolves the four providers of a profile. A pin may be
// "name:version", a version alone (the default provider of that type) or a
// name alone (unpinned).
func providerRefs(c *profile.CAPICluster) []providerRef {
	defaultNames := map[string]string{"core": "cluster-api", "bootstrap": "kubeadm", "controlPlane": "kubeadm", "infrastructure": c.Infrastructure}
	pinned := map[string]string{"core": c.Providers.Core, "bootstrap": c.Providers.Bootstrap, "controlPlane": c.Providers.ControlPlane, "infrastructure": c.Providers.Infrastructure}
	var refs []providerRef
	for _, kind := range []string{"core", "bootstrap", "controlPlane", "infrastructure"} {
		v := pinned[kind]
		if v == "" {
			v = defaultProviders[kind]
		}
		ref := providerRef{kind: kind, name: defaultNames[kind]}
		switch name, version, found := strings.Cut(v, ":"); {
		case found:
			ref.name, ref.version = name, version
		case strings.HasPrefix(v, "v"):
			ref.version = v
		case v != "":
			ref.name = v
		}
		refs = append(refs, ref)
	}
	return refs
}

func maskSecret(name, value string) string {
	upper := strings.ToUpper(name)
	for _, s := range []string{"SECRET", "PASSWORD", "TOKEN", "CREDENTIALS", "KEY_DATA"} {
		if strings.Contains(upper, s) {
			return "(set, hidden)"
		}
	}
	return value
}

// gpuPoolObjects builds the accelerator MachineDeployment, its machine
// template and its KubeadmConfigTemplate, which registers the pool's Nodes
// with its labels and taints (Cluster API itself would not put them on the
// Nodes). The autoscaler annotations let the cluster autoscaler grow the
// pool, from zero too, knowing which GPUs and labels a new node brings.
// The pool's labels must have passed checkPoolLabels.
func gpuPoolObjects(p *profile.Profile, g *profile.GPUPool) []map[string]any {
	c := p.Spec.Cluster.CAPI
	name := c.ClusterName + "-" + g.Name
	mt := machineTemplates[c.Infrastructure]
	annotations := map[string]any{}
	if g.Autoscaler && g.MinSize != nil && g.MaxSize != nil {
		annotations[annotationMinSize] = strconv.Itoa(*g.MinSize)
		annotations[annotationMaxSize] = strconv.Itoa(*g.MaxSize)
		if g.GPUCount > 0 {
			annotations[fmt.Sprintf(annotationCapacityFmt, "gpu-count")] = strconv.Itoa(g.GPUCount)
		}
		if g.GPUType != "" {
			annotations[fmt.Sprintf(annotationCapacityFmt, "gpu-type")] = g.GPUType
		}
		if d := p.Spec.Accelerator.DRADriver; d != "" {
			annotations[fmt.Sprintf(annotationCapacityFmt, "dra-driver")] = d
		}
		if len(g.Labels) > 0 {
			annotations[fmt.Sprintf(annotationCapacityFmt, "labels")] = joinPairs(g.Labels)
		}
		if len(g.Taints) > 0 {
			annotations[fmt.Sprintf(annotationCapacityFmt, "taints")] = taintList(g.Taints)
		}
	}
	// All of the pool's labels go on its Machines; Cluster API copies
	// those of its synced domains to the Nodes, the kubelet sets the rest.
	labels := map[string]any{}
	for k, v := range g.Labels {
		labels[k] = v
	}
	md := map[string]any{
		"apiVersion": "cluster.x-k8s.io/v1beta2",
		"kind":       "MachineDeployment",
		"metadata": map[string]any{
			"name":        name,
			"namespace":   c.Namespace,
			"annotations": annotations,
			"labels":      map[string]any{"cluster.x-k8s.io/cluster-name": c.ClusterName},
		},
		"spec": map[string]any{
			"clusterName": c.ClusterName,
			"replicas":    *g.Replicas,
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels},
				"spec": map[string]any{
					"clusterName": c.ClusterName,
					"version":     p.Spec.KubernetesVersion,
					"bootstrap": map[string]any{"configRef": map[string]any{
						"apiGroup": "bootstrap.cluster.x-k8s.io", "kind": "KubeadmConfigTemplate", "name": name,
					}},
					"infrastructureRef": map[string]any{"apiGroup": mt.group, "kind": mt.kind, "name": name},
				},
			},
		},
	}
	templateSpec := map[string]any{}
	if mt.typeField != "" && g.MachineType != "" {
		templateSpec[mt.typeField] = g.MachineType
	}
	tmpl := map[string]any{
		"apiVersion": mt.group + "/v1beta2",
		"kind":       mt.kind,
		"metadata":   map[string]any{"name": name, "namespace": c.Namespace},
		"spec":       map[string]any{"template": map[string]any{"spec": templateSpec}},
	}
	// Only labels the kubelet may set go to --node-labels: it refuses to
	// start with others. setNodeRegistration merges the same into a copy
	// of the worker pool's template at apply time.
	registration := map[string]any{}
	if l := kubeletLabels(g); len(l) > 0 {
		registration["kubeletExtraArgs"] = []any{map[string]any{"name": "node-labels", "value": mergeNodeLabels("", l)}}
	}
	if len(g.Taints) > 0 {
		registration["taints"] = withTaints(nil, g.Taints)
	}
	bootstrapSpec := map[string]any{}
	if len(registration) > 0 {
		bootstrapSpec["joinConfiguration"] = map[string]any{"nodeRegistration": registration}
	}
	bootstrap := map[string]any{
		"apiVersion": "bootstrap.cluster.x-k8s.io/v1beta2",
		"kind":       "KubeadmConfigTemplate",
		"metadata":   map[string]any{"name": name, "namespace": c.Namespace},
		"spec":       map[string]any{"template": map[string]any{"spec": bootstrapSpec}},
	}
	return []map[string]any{md, tmpl, bootstrap}
}

func joinPairs(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}
