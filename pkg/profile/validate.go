package profile

import (
	"fmt"
	"maps"
	"net/mail"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

var (
	dns1123Label   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	conformanceRE  = regexp.MustCompile(`^1\.\d+$`)
	sha256RE       = regexp.MustCompile(`^[0-9a-f]{64}$`)
	digestRE       = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	envRefRE       = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)
	placeholderRE  = regexp.MustCompile(`^\[.*\]$`)
	k8sConformance = regexp.MustCompile(`^https://github\.com/cncf/k8s-conformance/tree/(master|main)/v\d+\.\d+/[^/]+/?$`)
	gpuListRE      = regexp.MustCompile(`^\d+(,\d+)*$`)
	moduleSumRE    = regexp.MustCompile(`^h1:[A-Za-z0-9+/]{43}=$`)
)

// RequirementLookup returns the requirement ids and levels ("MUST" or
// "SHOULD") of a conformance version, or an error for an unknown version.
type RequirementLookup func(version string) (map[string]string, error)

// conditionalMust is the one MUST the CNCF validator accepts as N/A.
const conditionalMust = "cluster_autoscaling"

// validate checks a merged, defaulted profile and its resolved components.
// It collects every problem instead of stopping at the first.
func validate(errs *fieldErrors, p *Profile, cat *ComponentCatalog, reqs RequirementLookup) (resolved []Component, warnings []string) {
	if p.APIVersion != APIVersion {
		errs.invalid("apiVersion", p.APIVersion, "must be %s", APIVersion)
	}
	if p.Kind != Kind {
		errs.invalid("kind", p.Kind, "must be %s", Kind)
	}
	if p.Metadata.Name == "" {
		errs.add("metadata.name", "is required")
	} else if !dns1123Label.MatchString(p.Metadata.Name) || len(p.Metadata.Name) > 63 {
		errs.invalid("metadata.name", p.Metadata.Name, "must be a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)")
	}
	s := &p.Spec
	minor := -1
	if s.KubernetesVersion == "" {
		errs.add("spec.kubernetesVersion", "is required (e.g. v1.37.0)")
	} else if m, err := KubernetesMinor(s.KubernetesVersion); err != nil {
		errs.invalid("spec.kubernetesVersion", s.KubernetesVersion, "%v", err)
	} else if m < MinKubernetesMinor || m > MaxKubernetesMinor {
		errs.invalid("spec.kubernetesVersion", s.KubernetesVersion, "must be a version from v1.%d to v1.%d", MinKubernetesMinor, MaxKubernetesMinor)
	} else {
		minor = m
	}
	var levels map[string]string
	switch {
	case s.ConformanceVersion == "":
	case !conformanceRE.MatchString(s.ConformanceVersion):
		errs.invalid("spec.conformanceVersion", s.ConformanceVersion, "must be a conformance version such as \"1.37\" (quote it in YAML)")
	default:
		if reqs != nil {
			l, err := reqs(s.ConformanceVersion)
			if err != nil {
				errs.invalid("spec.conformanceVersion", s.ConformanceVersion, "%v", err)
			} else {
				levels = l
			}
		}
		if minor >= 0 && s.ConformanceVersion != fmt.Sprintf("1.%d", minor) {
			errs.invalid("spec.conformanceVersion", s.ConformanceVersion, "must match the minor of spec.kubernetesVersion %s (1.%d): a submission certifies that release", s.KubernetesVersion, minor)
		}
	}
	validateCluster(errs, s, minor)
	resolved = validateStack(errs, s.Stack, cat)
	validateAccelerator(errs, s.Accelerator)
	warnings = append(warnings, validateChecks(errs, s.Checks, levels)...)
	if d := s.Output.ProductDir; d != "" && (strings.ContainsAny(d, `/\`) || d == "." || d == "..") {
		errs.invalid("spec.output.productDir", d, "must be a single directory name")
	}
	validateProduct(errs, s.Product)
	return resolved, warnings
}

func validateCluster(errs *fieldErrors, s *Spec, minor int) {
	c := s.Cluster
	const base = "spec.cluster"
	sections := map[Backend]bool{BackendKind: c.Kind != nil, BackendCAPI: c.CAPI != nil, BackendExisting: c.Existing != nil}
	switch c.Backend {
	case "":
		errs.add(base+".backend", "is required: one of kind, capi, existing")
		return
	case BackendKind, BackendCAPI, BackendExisting:
	default:
		errs.invalid(base+".backend", string(c.Backend), "must be one of kind, capi, existing")
		return
	}
	for b, set := range sections {
		if set && b != c.Backend {
			errs.add(base+"."+string(b), "must not be set when spec.cluster.backend is %s", c.Backend)
		}
	}
	switch c.Backend {
	case BackendKind:
		validateKind(errs, base+".kind", c.Kind, minor)
	case BackendCAPI:
		validateCAPI(errs, base+".capi", c.CAPI)
	}
}

func validateKind(errs *fieldErrors, base string, k *KindCluster, minor int) {
	if !dns1123Label.MatchString(k.Name) {
		errs.invalid(base+".name", k.Name, "must be a lowercase DNS label")
	}
	if k.Workers != nil && (*k.Workers < 0 || *k.Workers > 16) {
		errs.invalid(base+".workers", *k.Workers, "must be >= 0 and <= 16")
	}
	if !slices.Contains([]string{"auto", "docker", "podman", "nerdctl"}, k.Provider) {
		errs.invalid(base+".provider", k.Provider, "must be one of auto, docker, podman, nerdctl")
	}
	if k.GPUs != "all" && k.GPUs != "none" && !gpuListRE.MatchString(k.GPUs) {
		errs.invalid(base+".gpus", k.GPUs, "must be all, none or a comma-separated list of GPU indexes")
	}
	if minor >= 0 {
		for _, name := range slices.Sorted(maps.Keys(k.FeatureGates)) {
			path := base + ".featureGates." + name
			g, ok := lookupFeatureGate(minor, name)
			switch {
			case !ok:
				msg := fmt.Sprintf("is not a feature gate of Kubernetes 1.%d (an unknown gate stops the control plane from starting)", minor)
				if s := closestGate(minor, name); s != "" {
					msg += fmt.Sprintf("; did you mean %s?", s)
				}
				errs.add(path, "%s", msg)
			case g.Locked && k.FeatureGates[name] != g.Default:
				errs.invalid(path, k.FeatureGates[name], "is locked to %t in Kubernetes 1.%d (%s)", g.Default, minor, g.Stage)
			}
		}
	}
	for _, key := range slices.Sorted(maps.Keys(k.RuntimeConfig)) {
		if v := k.RuntimeConfig[key]; v != "true" && v != "false" {
			errs.invalid(base+".runtimeConfig."+key, v, "must be \"true\" or \"false\"")
		}
	}
	for i, m := range k.ExtraMounts {
		p := fmt.Sprintf("%s.extraMounts[%d]", base, i)
		if m.HostPath == "" {
			errs.add(p+".hostPath", "is required")
		}
		if !strings.HasPrefix(m.ContainerPath, "/") {
			errs.invalid(p+".containerPath", m.ContainerPath, "must be an absolute path")
		}
	}
	for i, a := range k.ImageArchives {
		if strings.TrimSpace(a) == "" {
			errs.add(fmt.Sprintf("%s.imageArchives[%d]", base, i), "must not be empty")
		}
	}
}

func validateCAPI(errs *fieldErrors, base string, c *CAPICluster) {
	if !slices.Contains([]string{"docker", "aws", "azure", "gcp"}, c.Infrastructure) {
		errs.invalid(base+".infrastructure", c.Infrastructure, "must be one of docker, aws, azure, gcp")
	}
	if c.Flavor != "" && c.ClusterClass != "" {
		errs.add(base+".clusterClass", "must not be set together with flavor")
	}
	if !dns1123Label.MatchString(c.ClusterName) {
		errs.invalid(base+".clusterName", c.ClusterName, "must be a lowercase DNS label")
	}
	if c.ControlPlaneMachines != nil && (*c.ControlPlaneMachines < 1 || *c.ControlPlaneMachines%2 == 0) {
		errs.invalid(base+".controlPlaneMachines", *c.ControlPlaneMachines, "must be an odd number >= 1")
	}
	if c.WorkerMachines != nil && *c.WorkerMachines < 0 {
		errs.invalid(base+".workerMachines", *c.WorkerMachines, "must be >= 0")
	}
	for _, k := range slices.Sorted(maps.Keys(c.Variables)) {
		v := c.Variables[k]
		if strings.Contains(v, "${") && !envRefRE.MatchString(v) {
			errs.invalid(base+".variables."+k, v, "an environment reference must be the whole value, like ${AWS_REGION}")
		}
	}
	if g := c.GPUPool; g != nil {
		p := base + ".gpuPool"
		if !dns1123Label.MatchString(g.Name) {
			errs.invalid(p+".name", g.Name, "must be a lowercase DNS label")
		}
		if g.GPUCount < 0 {
			errs.invalid(p+".gpuCount", g.GPUCount, "must be >= 0")
		}
		if g.Replicas != nil && *g.Replicas < 0 {
			errs.invalid(p+".replicas", *g.Replicas, "must be >= 0")
		}
		if g.Autoscaler {
			if g.MinSize == nil || g.MaxSize == nil {
				errs.add(p, "minSize and maxSize are required when autoscaler is true")
			} else {
				if *g.MinSize < 0 || *g.MaxSize < *g.MinSize {
					errs.invalid(p+".maxSize", *g.MaxSize, "must be >= minSize (%d) >= 0", *g.MinSize)
				}
				if g.Replicas != nil && (*g.Replicas < *g.MinSize || *g.Replicas > *g.MaxSize) {
					errs.invalid(p+".replicas", *g.Replicas, "must lie between minSize %d and maxSize %d", *g.MinSize, *g.MaxSize)
				}
			}
		}
		for i, t := range g.Taints {
			tp := fmt.Sprintf("%s.taints[%d]", p, i)
			if t.Key == "" {
				errs.add(tp+".key", "is required")
			}
			if !slices.Contains([]string{"NoSchedule", "PreferNoSchedule", "NoExecute"}, t.Effect) {
				errs.invalid(tp+".effect", t.Effect, "must be NoSchedule, PreferNoSchedule or NoExecute")
			}
		}
	}
}

// validateStack checks the profile's component entries, resolves them
// against the catalog and checks the dependency graph.
func validateStack(errs *fieldErrors, st Stack, cat *ComponentCatalog) []Component {
	var resolved []Component
	seen := map[string]int{}
	for i, entry := range st.Components {
		p := fmt.Sprintf("spec.stack.components[%d]", i)
		if entry.Name == "" {
			errs.add(p+".name", "is required")
			continue
		}
		if !dns1123Label.MatchString(entry.Name) {
			errs.invalid(p+".name", entry.Name, "must be a lowercase DNS label")
			continue
		}
		if j, dup := seen[entry.Name]; dup {
			errs.invalid(p+".name", entry.Name, "duplicates spec.stack.components[%d]", j)
			continue
		}
		seen[entry.Name] = i
		if entry.Disabled {
			continue
		}
		c, ok := cat.resolveComponent(entry)
		if !ok {
			msg := "is not a built-in stack component; define it inline with helm or manifests"
			if s := closest(entry.Name, cat.Names()); s != "" {
				msg = fmt.Sprintf("is not a built-in stack component (did you mean %q?); define it inline with helm or manifests", s)
			}
			errs.invalid(p+".name", entry.Name, "%s", msg)
			continue
		}
		if c.Source == "profile" {
			validateComponentDefinition(errs, p, c)
		} else {
			validateSupports(errs, p+".supports", entry.Supports)
			if entry.Version != "" && c.Helm == nil && c.Manifests != nil {
				errs.invalid(p+".version", entry.Version, "cannot override the version of manifest component %s: its manifests are pinned by checksum", c.Name)
			}
		}
		resolved = append(resolved, c)
	}
	enabled := map[string]bool{}
	for _, c := range resolved {
		enabled[c.Name] = true
	}
	for _, c := range resolved {
		i := seen[c.Name]
		for j, d := range c.DependsOn {
			if enabled[d] {
				continue
			}
			dp := fmt.Sprintf("spec.stack.components[%d].dependsOn[%d]", i, j)
			if c.Source == "builtin" && len(st.Components[i].DependsOn) == 0 {
				dp = fmt.Sprintf("spec.stack.components[%d]", i)
				if k, ok := seen[d]; ok && st.Components[k].Disabled {
					errs.add(fmt.Sprintf("spec.stack.components[%d]", k), "%s is disabled, but built-in component %s depends on it (disable %s too, or override its dependsOn)", d, c.Name, c.Name)
					continue
				}
				errs.add(dp, "built-in component %s depends on %s, which the stack does not include (add it, or override dependsOn)", c.Name, d)
				continue
			}
			errs.invalid(dp, d, "names no component of the stack")
		}
	}
	if cycle := findCycle(resolved); cycle != nil {
		errs.add("spec.stack.components", "dependency cycle: %s", strings.Join(cycle, " → "))
	}
	return resolved
}

// validateComponentDefinition checks a full (built-in or inline) component.
func validateComponentDefinition(errs *fieldErrors, p string, c Component) {
	validateSupports(errs, p+".supports", c.Supports)
	if (c.Helm == nil) == (c.Manifests == nil) {
		errs.add(p, "exactly one of helm or manifests must be set")
	}
	if h := c.Helm; h != nil {
		hp := p + ".helm"
		switch {
		case h.Chart == "":
			errs.add(hp+".chart", "is required: oci://registry/path, a chart name with repo, or a local path")
		case strings.HasPrefix(h.Chart, EmbeddedChartScheme):
			if h.Repo != "" {
				errs.add(hp+".repo", "must be empty for a chart embedded in kaic")
			}
		case strings.HasPrefix(h.Chart, "oci://"):
			if h.Repo != "" {
				errs.add(hp+".repo", "must be empty for an oci:// chart")
			}
		case h.Repo != "":
			if u, err := url.Parse(h.Repo); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				errs.invalid(hp+".repo", h.Repo, "must be an http(s) URL of a chart repository")
			}
		case !isLocalChart(h):
			errs.invalid(hp+".chart", h.Chart, "must be oci://…, a local path (./dir, /dir, x.tgz), or a chart name together with repo")
		}
		if h.Version == "" && c.Version == "" && !isLocalChart(h) && !strings.HasPrefix(h.Chart, EmbeddedChartScheme) && h.Chart != "" {
			errs.add(hp+".version", "is required for a remote chart: kaic installs pinned versions only")
		}
		if h.Digest != "" && !digestRE.MatchString(h.Digest) {
			errs.invalid(hp+".digest", h.Digest, "must be sha256: followed by 64 lowercase hex digits")
		}
		if h.ReleaseName != "" && !dns1123Label.MatchString(h.ReleaseName) {
			errs.invalid(hp+".releaseName", h.ReleaseName, "must be a lowercase DNS label")
		}
	}
	if m := c.Manifests; m != nil {
		if len(m.URLs) == 0 && len(m.Files) == 0 && len(m.Modules) == 0 {
			errs.add(p+".manifests", "must list urls, files or modules")
		}
		for i, mod := range m.Modules {
			mp := fmt.Sprintf("%s.manifests.modules[%d]", p, i)
			if mod.Path == "" || strings.ContainsAny(mod.Path, " @") {
				errs.invalid(mp+".path", mod.Path, "must be a Go module path such as sigs.k8s.io/gateway-api")
			}
			if !strings.HasPrefix(mod.Version, "v") {
				errs.invalid(mp+".version", mod.Version, "must be a module version such as v1.7.0")
			}
			if !moduleSumRE.MatchString(mod.Sum) {
				errs.invalid(mp+".sum", mod.Sum, "must be the module's go.sum hash (h1:…): every download is pinned")
			}
			if mod.Dir == "" || strings.HasPrefix(mod.Dir, "/") || strings.Contains(mod.Dir, "..") {
				errs.invalid(mp+".dir", mod.Dir, "must be a relative directory inside the module")
			}
		}
		for i, u := range m.URLs {
			up := fmt.Sprintf("%s.manifests.urls[%d]", p, i)
			if pu, err := url.Parse(u.URL); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
				errs.invalid(up+".url", u.URL, "must be an http(s) URL")
			}
			if !sha256RE.MatchString(u.SHA256) {
				errs.invalid(up+".sha256", u.SHA256, "must be 64 lowercase hex digits: every download is pinned")
			}
		}
	}
	if c.Namespace != "" && !dns1123Label.MatchString(c.Namespace) {
		errs.invalid(p+".namespace", c.Namespace, "must be a lowercase DNS label")
	}
	if r := c.Readiness; r != nil {
		for i, crd := range r.CRDs {
			if strings.Count(crd, ".") < 2 {
				errs.invalid(fmt.Sprintf("%s.readiness.crds[%d]", p, i), crd, "must be a CRD name such as clusterqueues.kueue.x-k8s.io")
			}
		}
		for i, pr := range r.Pods {
			pp := fmt.Sprintf("%s.readiness.pods[%d]", p, i)
			if pr.Namespace != "" && !dns1123Label.MatchString(pr.Namespace) {
				errs.invalid(pp+".namespace", pr.Namespace, "must be a lowercase DNS label")
			}
			if strings.TrimSpace(pr.Selector) == "" {
				errs.add(pp+".selector", "is required: a label selector such as app.kubernetes.io/name=prometheus; an empty one would match any pod")
			} else if _, err := labels.Parse(pr.Selector); err != nil {
				errs.invalid(pp+".selector", pr.Selector, "must be a label selector: %v", err)
			}
			if pr.MinReady < 0 {
				errs.invalid(pp+".minReady", pr.MinReady, "must not be negative")
			}
		}
	}
}

func validateAccelerator(errs *fieldErrors, a Accelerator) {
	const p = "spec.accelerator"
	if _, ok := acceleratorModels[a.Model]; !ok && a.Model != "custom" {
		errs.invalid(p+".model", a.Model, "must be one of %s or custom", strings.Join(AcceleratorModels(), ", "))
	}
	switch a.Allocation {
	case AllocationDRA:
		// A built-in model names both; a custom one must.
		if a.DRADriver == "" {
			errs.add(p+".draDriver", "is required with allocation %s: it is the DRA driver whose ResourceSlices publish the devices (or set allocation: %s and resourceName)", AllocationDRA, AllocationDevicePlugin)
		}
		if a.DeviceClass == "" {
			errs.add(p+".deviceClass", "is required with allocation %s: it is the DeviceClass the checks' claims request", AllocationDRA)
		}
	case AllocationDevicePlugin:
		if a.ResourceName == "" {
			errs.add(p+".resourceName", "is required with allocation %s: it is the extended resource the device plugin advertises and pods request, such as nvidia.com/gpu", AllocationDevicePlugin)
		}
	default:
		errs.invalid(p+".allocation", a.Allocation, "must be one of %s", strings.Join(Allocations(), ", "))
	}
	if a.ResourceName != "" {
		if problem := extendedResourceProblem(a.ResourceName); problem != "" {
			errs.invalid(p+".resourceName", a.ResourceName, "must be an extended resource name such as nvidia.com/gpu: %s", problem)
		}
	}
	if a.DRADriver != "" {
		objectName(errs, p+".draDriver", a.DRADriver, "DRA driver")
	}
	if a.DeviceClass != "" {
		objectName(errs, p+".deviceClass", a.DeviceClass, "DeviceClass")
	}
	if a.DeviceEnvPrefix == "" && a.DeviceGlob == "" {
		errs.add(p, "deviceEnvPrefix or deviceGlob is required: it is how a container proves it holds a device")
	}
	if a.DeviceGlob != "" {
		if _, err := filepath.Match(a.DeviceGlob, "/dev/x"); err != nil || !strings.HasPrefix(a.DeviceGlob, "/") {
			errs.invalid(p+".deviceGlob", a.DeviceGlob, "must be an absolute path glob such as /dev/nvidia[0-9]*")
		}
	}
	if m := a.Metrics; m != nil {
		if m.Endpoint != "" {
			if msg := checkServiceRef(m.Endpoint); msg != "" {
				errs.invalid(p+".metrics.endpoint", m.Endpoint, "must be namespace/service:port of the metrics exporter (e.g. gpu-operator/nvidia-dcgm-exporter:9400): %s", msg)
			}
		}
		for i, sel := range m.ServiceSelectors {
			path := fmt.Sprintf("%s.metrics.serviceSelectors[%d]", p, i)
			parsed, err := labels.Parse(sel)
			switch {
			case err != nil:
				errs.invalid(path, sel, "must be a label selector such as app=nvidia-dcgm-exporter: %v", err)
			case parsed.Empty():
				errs.invalid(path, sel, "selects every Service: name the exporter Service's labels, e.g. app=nvidia-dcgm-exporter")
			}
		}
	}
}

// extendedResourceProblem says why name is not an extended resource name
// the API server accepts in a container's resources, or returns "": a
// domain-prefixed name outside kubernetes.io, not starting with
// "requests.", that is a qualified name with that prefix added (the rules
// of Kubernetes' IsExtendedResourceName).
func extendedResourceProblem(name string) string {
	domain, _, prefixed := strings.Cut(name, "/")
	switch {
	case !prefixed:
		return "it needs a domain prefix (names without one are Kubernetes' own resources)"
	case domain == "kubernetes.io" || strings.HasSuffix(domain, ".kubernetes.io"):
		return "the kubernetes.io domain is reserved for Kubernetes' own resources"
	case strings.HasPrefix(name, "requests."):
		return "the requests. prefix is reserved for quotas"
	}
	if problems := validation.IsQualifiedName("requests." + name); len(problems) > 0 {
		return strings.Join(problems, "; ")
	}
	return ""
}

func validateChecks(errs *fieldErrors, c Checks, levels map[string]string) (warnings []string) {
	const p = "spec.checks"
	known := func(path, id string) bool {
		if levels == nil {
			return true
		}
		if _, ok := levels[id]; !ok {
			ids := slices.Sorted(maps.Keys(levels))
			msg := "is not a requirement of this conformance version (" + strings.Join(ids, ", ") + ")"
			if s := closest(id, ids); s != "" {
				msg = fmt.Sprintf("is not a requirement of this conformance version (did you mean %q?)", s)
			}
			errs.invalid(path, id, "%s", msg)
			return false
		}
		return true
	}
	included := map[string]bool{}
	for i, id := range c.Include {
		known(fmt.Sprintf("%s.include[%d]", p, i), id)
		included[id] = true
	}
	for i, id := range c.Exclude {
		path := fmt.Sprintf("%s.exclude[%d]", p, i)
		if known(path, id) && included[id] {
			errs.invalid(path, id, "is also in include")
		}
	}
	seen := map[string]bool{}
	for i, o := range c.OptOuts {
		op := fmt.Sprintf("%s.optOuts[%d]", p, i)
		if o.ID == "" {
			errs.add(op+".id", "is required")
		} else if known(op+".id", o.ID) {
			if seen[o.ID] {
				errs.invalid(op+".id", o.ID, "is opted out twice")
			}
			seen[o.ID] = true
			if levels[o.ID] == "MUST" && o.ID != conditionalMust {
				warnings = append(warnings, fmt.Sprintf("%s: %s is a MUST; the CNCF validator accepts N/A only for %s, so this submission would be rejected", op, o.ID, conditionalMust))
			}
		}
		if o.Status != StatusNA {
			errs.invalid(op+".status", o.Status, "must be %q", StatusNA)
		}
		if strings.TrimSpace(o.Notes) == "" {
			errs.add(op+".notes", "is required: say why the requirement does not apply (PRODUCT.yaml needs notes for N/A)")
		}
	}
	if c.Parallel < 0 {
		errs.invalid(p+".parallel", c.Parallel, "must be >= 0 (0 runs every check at once)")
	}
	if op := c.RobustController.Operator; op != "" && !slices.Contains(RobustControllerOperators(), op) {
		errs.invalid(p+".robustController.operator", op, "must be one of %s", strings.Join(RobustControllerOperators(), ", "))
	}
	if ns := c.RobustController.Namespace; ns != "" && (len(ns) > 63 || !dns1123Label.MatchString(ns)) {
		errs.invalid(p+".robustController.namespace", ns, "must be the name of a namespace (a lowercase DNS label)")
	}
	validateServiceMetrics(errs, p+".serviceMetrics", c.ServiceMetrics)
	validateInference(errs, p+".inference", c.Inference)
	if rc := c.Sandboxing.RuntimeClass; rc != "" {
		objectName(errs, p+".sandboxing.runtimeClass", rc, "RuntimeClass")
	}
	validateClusterAutoscaling(errs, p+".clusterAutoscaling", c.ClusterAutoscaling)
	if d := c.AcceleratorMetrics.ExporterTimeout.Duration; c.Timeout.Duration > 0 && d >= c.Timeout.Duration {
		errs.invalid(p+".acceleratorMetrics.exporterTimeout", c.AcceleratorMetrics.ExporterTimeout.String(),
			"must be shorter than spec.checks.timeout (%s), which bounds the whole accelerator_metrics check", c.Timeout.Duration)
	}
	return warnings
}

func validateServiceMetrics(errs *fieldErrors, p string, sm ServiceMetrics) {
	if sm.Prometheus != "" {
		if msg := checkServiceRef(sm.Prometheus); msg != "" {
			errs.invalid(p+".prometheus", sm.Prometheus, "must be namespace/service:port of the Prometheus query API (e.g. monitoring/prometheus-operated:web): %s", msg)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(sm.ScrapeLabels)) {
		path := joinKey(p+".scrapeLabels", k)
		if problems := validation.IsQualifiedName(k); len(problems) > 0 {
			errs.add(path, "is not a valid label key ([prefix/]name, e.g. release or app.kubernetes.io/part-of): %s", problems[0])
		}
		if v := sm.ScrapeLabels[k]; len(validation.IsValidLabelValue(v)) > 0 {
			errs.invalid(path, v, "is not a valid label value (at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)")
		}
	}
	positive(errs, p+".requests", sm.Requests)
}

func validateInference(errs *fieldErrors, p string, in Inference) {
	if in.GatewayClass != "" {
		objectName(errs, p+".gatewayClass", in.GatewayClass, "GatewayClass")
	}
	if in.IngressGatewayClass != "" {
		objectName(errs, p+".ingressGatewayClass", in.IngressGatewayClass, "GatewayClass")
	}
	if img := in.EndpointPickerImage; img != "" {
		if _, err := reference.ParseNormalizedNamed(img); err != nil {
			errs.invalid(p+".endpointPickerImage", img, "must be an image reference such as registry.k8s.io/gateway-api-inference-extension/epp:v1.5.0: %v", err)
		}
	}
	positive(errs, p+".requests", in.Requests)
	if t := in.Tolerance; t != nil && *t <= 0 {
		errs.invalid(p+".tolerance", *t, "must be > 0 (standard deviations; 3 accepts 80±12 of 100 requests)")
	}
}

func validateClusterAutoscaling(errs *fieldErrors, p string, ca ClusterAutoscaling) {
	if sel := ca.NodePoolSelector; sel != "" {
		parsed, err := labels.Parse(sel)
		switch {
		case err != nil:
			errs.invalid(p+".nodePoolSelector", sel, "must be a label selector such as pool=gpu or \"pool in (gpu),!spot\": %v", err)
		case parsed.Empty():
			errs.invalid(p+".nodePoolSelector", sel, "selects every node: name the autoscaled pool's labels, e.g. pool=gpu")
		}
	}
}

// checkServiceRef returns what is wrong with a namespace/service:port
// reference, or "" when nothing is.
func checkServiceRef(ref string) string {
	ns, rest, ok := strings.Cut(ref, "/")
	if !ok {
		return "no / between namespace and service"
	}
	name, port, ok := strings.Cut(rest, ":")
	if !ok {
		return "no :port after the service"
	}
	if !dns1123Label.MatchString(ns) || len(ns) > 63 {
		return fmt.Sprintf("namespace %q is not a lowercase DNS label", ns)
	}
	if len(validation.IsDNS1035Label(name)) > 0 {
		return fmt.Sprintf("service %q is not a valid Service name", name)
	}
	if n, err := strconv.Atoi(port); err == nil {
		if n < 1 || n > 65535 {
			return fmt.Sprintf("port %d is not between 1 and 65535", n)
		}
	} else if len(validation.IsValidPortName(port)) > 0 {
		return fmt.Sprintf("port %q is neither a number nor a valid port name", port)
	}
	return ""
}

// objectName reports a value that cannot name a cluster-scoped object.
func objectName(errs *fieldErrors, path, name, kind string) {
	if problems := validation.IsDNS1123Subdomain(name); len(problems) > 0 {
		errs.invalid(path, name, "must be the name of a %s (a lowercase DNS subdomain)", kind)
	}
}

// positive reports a count set to zero or less.
func positive(errs *fieldErrors, path string, n *int) {
	if n != nil && *n <= 0 {
		errs.invalid(path, *n, "must be > 0")
	}
}

func validateProduct(errs *fieldErrors, pr Product) {
	const p = "spec.product"
	urls := []struct{ field, value string }{
		{"websiteUrl", pr.WebsiteURL}, {"repoUrl", pr.RepoURL}, {"documentationUrl", pr.DocumentationURL},
		{"productLogoUrl", pr.ProductLogoURL}, {"k8sConformanceUrl", pr.K8sConformanceURL},
	}
	for _, u := range urls {
		if u.value == "" || placeholderRE.MatchString(u.value) {
			continue
		}
		if pu, err := url.Parse(u.value); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			errs.invalid(p+"."+u.field, u.value, "must be an http(s) URL")
		}
	}
	if v := pr.K8sConformanceURL; v != "" && !placeholderRE.MatchString(v) && !k8sConformance.MatchString(v) {
		errs.invalid(p+".k8sConformanceUrl", v, "must look like https://github.com/cncf/k8s-conformance/tree/main/v1.37/<product>")
	}
	if v := pr.ContactEmailAddress; v != "" && !placeholderRE.MatchString(v) {
		if a, err := mail.ParseAddress(v); err != nil || a.Address != v {
			errs.invalid(p+".contactEmailAddress", v, "must be a plain email address")
		}
	}
}

// Placeholders lists the PRODUCT.yaml metadata fields still empty or
// holding a [placeholder]: the CNCF validator rejects both.
func (pr Product) Placeholders() []string {
	fields := []struct{ name, value string }{
		{"platformName", pr.PlatformName}, {"platformVersion", pr.PlatformVersion}, {"vendorName", pr.VendorName},
		{"websiteUrl", pr.WebsiteURL}, {"documentationUrl", pr.DocumentationURL}, {"productLogoUrl", pr.ProductLogoURL},
		{"description", pr.Description}, {"contactEmailAddress", pr.ContactEmailAddress}, {"k8sConformanceUrl", pr.K8sConformanceURL},
	}
	var out []string
	for _, f := range fields {
		if strings.TrimSpace(f.value) == "" || placeholderRE.MatchString(f.value) {
			out = append(out, f.name)
		}
	}
	return out
}

// closest returns the candidate nearest to name if it is likely a typo.
func closest(name string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(name), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// EnvReference returns the variable name of a ${VAR} value.
func EnvReference(value string) (string, bool) {
	m := envRefRE.FindStringSubmatch(value)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// validateSupports checks a stated support range: a range of minors, the
// upstream source and the date it was read.
func validateSupports(errs *fieldErrors, p string, s *Supports) {
	if s == nil {
		return
	}
	if _, err := parseRange(s.Kubernetes); err != nil {
		errs.invalid(p+".kubernetes", s.Kubernetes, "%v", err)
	}
	if strings.TrimSpace(s.Source) == "" {
		errs.add(p+".source", "is required: say where upstream states the range")
	}
	if _, err := time.Parse(time.DateOnly, s.Checked); err != nil {
		errs.invalid(p+".checked", s.Checked, "must be the date the range was read, YYYY-MM-DD")
	}
}
