package capi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	clusterctl "sigs.k8s.io/cluster-api/cmd/clusterctl/client"
	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
)

// Cluster API resources kaic reads.
var (
	clustersGVR           = schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "clusters"}
	clusterClassesGVR     = schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "clusterclasses"}
	machineDeploymentsGVR = schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "machinedeployments"}
	machinesGVR           = schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "machines"}
	controlPlanesGVR      = schema.GroupVersionResource{Group: "controlplane.cluster.x-k8s.io", Version: "v1beta2", Resource: "kubeadmcontrolplanes"}
	namespacesGVR         = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

// clusterNameLabel is set by Cluster API on the objects of a cluster.
const clusterNameLabel = "cluster.x-k8s.io/cluster-name"

// topologyTemplate is the Cluster kaic builds for a profile that names a
// ClusterClass. The worker and GPU pool classes are variables with the
// usual class names as defaults, so a class with other names only needs
// variables in the profile.
const topologyTemplate = `apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: ${CLUSTER_NAME}
  namespace: ${NAMESPACE}
spec:
  topology:
    classRef:
      name: %s
    version: ${KUBERNETES_VERSION}
    controlPlane:
      replicas: ${CONTROL_PLANE_MACHINE_COUNT}
    workers:
      machineDeployments:
      - class: ${WORKER_MACHINE_CLASS:=default-worker}
        name: md-0
        replicas: ${WORKER_MACHINE_COUNT}
`

// workloadObjects renders the workload cluster: the flavor template of the
// infrastructure provider (or a topology Cluster for a ClusterClass) with
// the profile's variables, plus the GPU pool. Variables the template needs
// and the profile does not set are reported together, by name.
func (p *Provisioner) workloadObjects(ctx context.Context, cc clusterctl.Client, reader *configReader, m *management, r progress.Steps) ([]unstructured.Unstructured, error) {
	c := p.Profile.Spec.Cluster.CAPI
	if c.ClusterClass != "" {
		return p.topologyObjects(ctx, cc, reader, m, r)
	}
	var infra string
	for _, ref := range providerRefs(c) {
		if ref.kind == "infrastructure" {
			infra = ref.String()
		}
	}
	opts := clusterctl.GetClusterTemplateOptions{
		Kubeconfig:               clusterctl.Kubeconfig{Path: m.kubeconfig, Context: m.context},
		ProviderRepositorySource: &clusterctl.ProviderRepositorySourceOptions{InfrastructureProvider: infra, Flavor: c.Flavor},
		ClusterName:              c.ClusterName,
		TargetNamespace:          c.Namespace,
		KubernetesVersion:        p.Profile.Spec.KubernetesVersion,
		ControlPlaneMachineCount: ptr.To(int64(*c.ControlPlaneMachines)),
		WorkerMachineCount:       ptr.To(int64(*c.WorkerMachines)),
		ListVariablesOnly:        true,
	}
	listed, err := cc.GetClusterTemplate(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("reading the cluster template of %s: %w", templateName(infra, c.Flavor), err)
	}
	if missing := missingVariables(reader, listed.VariableMap()); len(missing) > 0 {
		return nil, &MissingVariablesError{Profile: p.Profile.Metadata.Name, Names: missing, Template: templateName(infra, c.Flavor)}
	}
	opts.ListVariablesOnly = false
	tmpl, err := cc.GetClusterTemplate(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("generating the cluster from %s: %w", templateName(infra, c.Flavor), err)
	}
	objs := tmpl.Objs()
	r.Notef("cluster template %s rendered: %d objects", templateName(infra, c.Flavor), len(objs))
	if c.GPUPool != nil {
		pool, err := poolObjects(p.Profile, c.GPUPool, objs)
		if err != nil {
			return nil, err
		}
		objs = append(objs, pool...)
	}
	return objs, nil
}

func templateName(infra, flavor string) string {
	if flavor == "" {
		return infra + " (default flavor)"
	}
	return infra + " flavor " + flavor
}

// topologyObjects renders a Cluster of the profile's ClusterClass, which
// must exist in the cluster's namespace. The GPU pool becomes one more
// topology machine deployment of class ${GPU_MACHINE_CLASS:=gpu}, carrying
// the pool's labels and autoscaler annotations. Its bootstrap template is
// the class's: the pool's taints, and its labels outside the domains
// Cluster API copies from Machines to Nodes, reach Nodes only if that
// worker class sets them, which r is told.
func (p *Provisioner) topologyObjects(ctx context.Context, cc clusterctl.Client, reader *configReader, m *management, r progress.Steps) ([]unstructured.Unstructured, error) {
	c := p.Profile.Spec.Cluster.CAPI
	if _, err := m.dynamic.Resource(clusterClassesGVR).Namespace(c.Namespace).Get(ctx, c.ClusterClass, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return nil, fmt.Errorf("ClusterClass %s/%s does not exist on the management cluster: create it (or use a flavor template)", c.Namespace, c.ClusterClass)
		}
		return nil, err
	}
	reader.Set("NAMESPACE", c.Namespace)
	source := fmt.Sprintf(topologyTemplate, c.ClusterClass)
	printer, err := cc.ProcessYAML(ctx, clusterctl.ProcessYAMLOptions{
		ReaderSource:        &clusterctl.ReaderSourceOptions{Reader: strings.NewReader(source)},
		SkipTemplateProcess: true,
	})
	if err != nil {
		return nil, err
	}
	needed := map[string]*string{}
	for _, v := range printer.Variables() {
		needed[v] = nil
	}
	// The classes have defaults in the template.
	delete(needed, "WORKER_MACHINE_CLASS")
	if missing := missingVariables(reader, needed); len(missing) > 0 {
		return nil, &MissingVariablesError{Profile: p.Profile.Metadata.Name, Names: missing, Template: "ClusterClass " + c.ClusterClass}
	}
	printer, err = cc.ProcessYAML(ctx, clusterctl.ProcessYAMLOptions{ReaderSource: &clusterctl.ReaderSourceOptions{Reader: strings.NewReader(source)}})
	if err != nil {
		return nil, fmt.Errorf("rendering the Cluster of ClusterClass %s: %w", c.ClusterClass, err)
	}
	data, err := printer.Yaml()
	if err != nil {
		return nil, err
	}
	cluster := unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &cluster.Object); err != nil {
		return nil, err
	}
	if g := c.GPUPool; g != nil {
		class := defaultGPUMachineClass
		if v, err := reader.Get("GPU_MACHINE_CLASS"); err == nil {
			class = v
		}
		for _, w := range topologyPoolWarnings(g, c.ClusterClass, class) {
			r.Notef("%s", w)
		}
		topologyMD := topologyPool(p.Profile, g, class)
		mds, _, _ := unstructured.NestedSlice(cluster.Object, "spec", "topology", "workers", "machineDeployments")
		if err := unstructured.SetNestedSlice(cluster.Object, append(mds, topologyMD), "spec", "topology", "workers", "machineDeployments"); err != nil {
			return nil, err
		}
	}
	return []unstructured.Unstructured{cluster}, nil
}

// poolObjects builds the GPU pool and completes it from the template's
// worker pool: the pool's machine template starts from a copy of the
// worker's (image, SSH key, subnets, …) with the pool's machine type, and
// its KubeadmConfigTemplate from a copy of the worker's with the pool's
// node labels and taints, each in the API version the template uses.
// Without a worker pool to copy the pool's own objects stand alone; a
// worker bootstrapped by another provider than kubeadm is reused as it is
// unless the pool has labels or taints its kubelet must register.
func poolObjects(p *profile.Profile, g *profile.GPUPool, template []unstructured.Unstructured) ([]unstructured.Unstructured, error) {
	pool := gpuPoolObjects(p, g)
	md := unstructured.Unstructured{Object: pool[0]}
	machineTemplate := unstructured.Unstructured{Object: pool[1]}
	bootstrap := &unstructured.Unstructured{Object: pool[2]}
	var worker *unstructured.Unstructured
	for i := range template {
		if template[i].GetKind() == "MachineDeployment" {
			worker = &template[i]
			break
		}
	}
	if worker == nil {
		return []unstructured.Unstructured{md, machineTemplate, *bootstrap}, nil
	}
	if ref, ok := objectRef(worker.Object, "spec", "template", "spec", "bootstrap", "configRef"); ok {
		if ref["kind"] == bootstrap.GetKind() && ref["apiGroup"] == bootstrap.GroupVersionKind().Group {
			o := findObject(template, ref)
			if o == nil {
				return nil, fmt.Errorf("worker MachineDeployment %s refers to KubeadmConfigTemplate %s, which the cluster template does not contain: kaic copies it for the GPU pool", worker.GetName(), ref["name"])
			}
			spec, _, err := unstructured.NestedMap(o.Object, "spec")
			if err != nil {
				return nil, fmt.Errorf("reading KubeadmConfigTemplate %s: %w", o.GetName(), err)
			}
			bootstrap.SetAPIVersion(o.GetAPIVersion())
			bootstrap.Object["spec"] = spec
			if err := setNodeRegistration(bootstrap.Object, kubeletLabels(g), g.Taints); err != nil {
				return nil, fmt.Errorf("adding the GPU pool's labels and taints to a copy of KubeadmConfigTemplate %s: %w", o.GetName(), err)
			}
		} else {
			if len(kubeletLabels(g)) > 0 || len(g.Taints) > 0 {
				return nil, fmt.Errorf("worker MachineDeployment %s is bootstrapped by %s %s, not a KubeadmConfigTemplate: kaic cannot have the GPU pool's Nodes registered with its labels and taints (%s, spec.cluster.capi.gpuPool.taints)", worker.GetName(), ref["kind"], ref["name"], poolLabelsPath)
			}
			if err := unstructured.SetNestedMap(md.Object, ref, "spec", "template", "spec", "bootstrap", "configRef"); err != nil {
				return nil, err
			}
			bootstrap = nil
		}
	}
	if ref, ok := objectRef(worker.Object, "spec", "template", "spec", "infrastructureRef"); ok && ref["kind"] == machineTemplate.GetKind() {
		if o := findObject(template, ref); o != nil {
			if spec, found, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec"); found {
				own, _, _ := unstructured.NestedMap(machineTemplate.Object, "spec", "template", "spec")
				for k, v := range own {
					spec[k] = v
				}
				if err := unstructured.SetNestedMap(machineTemplate.Object, spec, "spec", "template", "spec"); err != nil {
					return nil, err
				}
				machineTemplate.SetAPIVersion(o.GetAPIVersion())
			}
		}
	}
	objs := []unstructured.Unstructured{md, machineTemplate}
	if bootstrap != nil {
		objs = append(objs, *bootstrap)
	}
	return objs, nil
}

// findObject returns the template object a reference (objectRef's form)
// names, or nil.
func findObject(template []unstructured.Unstructured, ref map[string]any) *unstructured.Unstructured {
	for i, o := range template {
		if o.GetKind() == ref["kind"] && o.GetName() == ref["name"] && o.GroupVersionKind().Group == ref["apiGroup"] {
			return &template[i]
		}
	}
	return nil
}

// objectRef reads a reference in either contract: v1beta2's apiGroup or
// v1beta1's apiVersion, returned in the v1beta2 form.
func objectRef(obj map[string]any, fields ...string) (map[string]any, bool) {
	ref, found, err := unstructured.NestedMap(obj, fields...)
	if !found || err != nil {
		return nil, false
	}
	kind, _ := ref["kind"].(string)
	name, _ := ref["name"].(string)
	group, _ := ref["apiGroup"].(string)
	if group == "" {
		if apiVersion, ok := ref["apiVersion"].(string); ok {
			group, _, _ = strings.Cut(apiVersion, "/")
		}
	}
	if kind == "" || name == "" || group == "" {
		return nil, false
	}
	return map[string]any{"apiGroup": group, "kind": kind, "name": name}, true
}

// writeManifest keeps the applied objects in the run directory (0600:
// templates may carry credentials).
func writeManifest(path string, objs []unstructured.Unstructured) error {
	var buf bytes.Buffer
	for _, o := range objs {
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		buf.WriteString("---\n")
		buf.Write(data)
	}
	return os.WriteFile(path, buf.Bytes(), 0o600)
}

// ensureNamespace creates the namespace if it is missing and says whether
// it did.
func (m *management) ensureNamespace(ctx context.Context, name string) (bool, error) {
	_, err := m.dynamic.Resource(namespacesGVR).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return false, nil
	}
	if !apierrors.IsNotFound(err) {
		return false, err
	}
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}}
	_, err = m.dynamic.Resource(namespacesGVR).Create(ctx, ns, metav1.CreateOptions{FieldManager: FieldManager})
	if apierrors.IsAlreadyExists(err) {
		return false, nil
	}
	return err == nil, err
}

func (m *management) deleteNamespace(ctx context.Context, name string) error {
	err := m.dynamic.Resource(namespacesGVR).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// apply server-side applies the objects in order. Right after Init the
// providers' webhooks may not answer yet; such errors are retried for a
// while.
func (m *management) apply(ctx context.Context, objs []unstructured.Unstructured) error {
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		mapping, err := m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) {
			m.mapper.Reset()
			mapping, err = m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		}
		if err != nil {
			return fmt.Errorf("the management cluster does not serve %s (is its provider installed?): %w", gvk, err)
		}
		data, err := json.Marshal(o.Object)
		if err != nil {
			return err
		}
		resource := m.dynamic.Resource(mapping.Resource)
		var transient error
		err = wait.PollUntilContextTimeout(ctx, 2*time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			var err error
			if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
				_, err = resource.Namespace(o.GetNamespace()).Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)})
			} else {
				_, err = resource.Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)})
			}
			if err == nil {
				return true, nil
			}
			if apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) {
				transient = err
				return false, nil
			}
			return false, err
		})
		if err != nil && transient != nil && ctx.Err() == nil {
			err = transient
		}
		if err != nil {
			return fmt.Errorf("applying %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}
