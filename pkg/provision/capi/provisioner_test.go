package capi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/provision"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// notes is a progress.Steps that keeps what it is told.
type notes struct {
	mu    sync.Mutex
	lines []string
}

func (n *notes) StartStep(name string) *progress.Step {
	n.add("step: " + name)
	return progress.StartStep(progress.ReporterFunc(func(e progress.Event) {
		if e.Kind == progress.StepFinished && e.Err != nil {
			n.add(fmt.Sprintf("step failed: %s: %v", name, e.Err))
		}
	}), "", name)
}

func (n *notes) Notef(format string, args ...any) { n.add(fmt.Sprintf(format, args...)) }

func (n *notes) add(line string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lines = append(n.lines, line)
}

// find returns the first line containing every part.
func (n *notes) find(parts ...string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.lines {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return l, true
		}
	}
	return "", false
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const repoVersion = "v1.14.2"

const metadataYAML = `apiVersion: clusterctl.cluster.x-k8s.io/v1alpha3
kind: Metadata
releaseSeries:
- major: 1
  minor: 14
  contract: v1beta2
`

// crd is a CustomResourceDefinition accepting any content, with a status
// subresource, served at version.
func crd(group, version, kind, plural string) string {
	return fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: %[4]s.%[1]s
  labels:
    cluster.x-k8s.io/v1beta2: v1beta2
spec:
  group: %[1]s
  names:
    kind: %[3]s
    listKind: %[3]sList
    plural: %[4]s
    singular: %[5]s
  scope: Namespaced
  versions:
  - name: %[2]s
    served: true
    storage: true
    subresources:
      status: {}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`, group, version, kind, plural, strings.ToLower(kind))
}

func namespaceDoc(name string) string {
	return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + name + "\n"
}

// clusterTemplate is a development flavor with two variables the profile
// must set (WORKER_IMAGE, DOCKER_NETWORK) and one with a default. Its
// worker bootstrap template registers Nodes with settings and a label of
// its own, which the GPU pool's copy must keep.
const clusterTemplate = `apiVersion: cluster.x-k8s.io/v1beta2
kind: Cluster
metadata:
  name: ${CLUSTER_NAME}
  namespace: ${NAMESPACE}
spec:
  clusterNetwork:
    pods:
      cidrBlocks: ["${POD_CIDR:=192.168.0.0/16}"]
  controlPlaneRef:
    apiGroup: controlplane.cluster.x-k8s.io
    kind: KubeadmControlPlane
    name: ${CLUSTER_NAME}-control-plane
  infrastructureRef:
    apiGroup: infrastructure.cluster.x-k8s.io
    kind: DockerCluster
    name: ${CLUSTER_NAME}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: DockerCluster
metadata:
  name: ${CLUSTER_NAME}
  namespace: ${NAMESPACE}
spec:
  network: ${DOCKER_NETWORK}
---
apiVersion: controlplane.cluster.x-k8s.io/v1beta2
kind: KubeadmControlPlane
metadata:
  name: ${CLUSTER_NAME}-control-plane
  namespace: ${NAMESPACE}
spec:
  replicas: ${CONTROL_PLANE_MACHINE_COUNT}
  version: ${KUBERNETES_VERSION}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta2
kind: DockerMachineTemplate
metadata:
  name: ${CLUSTER_NAME}-md-0
  namespace: ${NAMESPACE}
spec:
  template:
    spec:
      customImage: ${WORKER_IMAGE}
      extraMounts:
      - containerPath: /var/run/docker.sock
        hostPath: /var/run/docker.sock
---
apiVersion: bootstrap.cluster.x-k8s.io/v1beta2
kind: KubeadmConfigTemplate
metadata:
  name: ${CLUSTER_NAME}-md-0
  namespace: ${NAMESPACE}
spec:
  template:
    spec:
      joinConfiguration:
        nodeRegistration:
          criSocket: unix:///var/run/containerd/containerd.sock
          imagePullPolicy: IfNotPresent
          kubeletExtraArgs:
          - name: eviction-hard
            value: nodefs.available<0%,nodefs.inodesFree<0%,imagefs.available<0%
          - name: node-labels
            value: kaic.dev/pool=workers
---
apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineDeployment
metadata:
  name: ${CLUSTER_NAME}-md-0
  namespace: ${NAMESPACE}
spec:
  clusterName: ${CLUSTER_NAME}
  replicas: ${WORKER_MACHINE_COUNT}
  template:
    spec:
      clusterName: ${CLUSTER_NAME}
      version: ${KUBERNETES_VERSION}
      bootstrap:
        configRef:
          apiGroup: bootstrap.cluster.x-k8s.io
          kind: KubeadmConfigTemplate
          name: ${CLUSTER_NAME}-md-0
      infrastructureRef:
        apiGroup: infrastructure.cluster.x-k8s.io
        kind: DockerMachineTemplate
        name: ${CLUSTER_NAME}-md-0
`

// writeRepository writes local provider repositories in clusterctl's
// layout: just enough components (namespaces and CRDs) for Init and the
// template's objects, and a cert-manager made of its CRDs.
func writeRepository(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	write := func(rel, content string) {
		path := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	docs := func(d ...string) string { return strings.Join(d, "---\n") }
	const core, bootstrap, cp, infra = "cluster.x-k8s.io", "bootstrap.cluster.x-k8s.io", "controlplane.cluster.x-k8s.io", "infrastructure.cluster.x-k8s.io"
	providers := map[string]string{
		"cluster-api/" + repoVersion + "/core-components.yaml": docs(namespaceDoc("capi-system"),
			crd(core, "v1beta2", "Cluster", "clusters"), crd(core, "v1beta2", "ClusterClass", "clusterclasses"),
			crd(core, "v1beta2", "MachineDeployment", "machinedeployments"), crd(core, "v1beta2", "Machine", "machines")),
		"bootstrap-kubeadm/" + repoVersion + "/bootstrap-components.yaml": docs(namespaceDoc("capi-kubeadm-bootstrap-system"),
			crd(bootstrap, "v1beta2", "KubeadmConfigTemplate", "kubeadmconfigtemplates")),
		"control-plane-kubeadm/" + repoVersion + "/control-plane-components.yaml": docs(namespaceDoc("capi-kubeadm-control-plane-system"),
			crd(cp, "v1beta2", "KubeadmControlPlane", "kubeadmcontrolplanes")),
		"infrastructure-docker/" + repoVersion + "/infrastructure-components.yaml": docs(namespaceDoc("capd-system"),
			crd(infra, "v1beta2", "DockerCluster", "dockerclusters"), crd(infra, "v1beta2", "DockerMachineTemplate", "dockermachinetemplates")),
	}
	for rel, content := range providers {
		write(rel, content)
		write(filepath.Join(filepath.Dir(rel), "metadata.yaml"), metadataYAML)
	}
	write("infrastructure-docker/"+repoVersion+"/cluster-template-development.yaml", clusterTemplate)
	write("cert-manager/v1.21.1/cert-manager.yaml", docs(namespaceDoc("cert-manager"),
		crd("cert-manager.io", "v1", "Issuer", "issuers"), crd("cert-manager.io", "v1", "Certificate", "certificates")))
	return root
}

// testProfile is capi-docker against the test control plane, with the
// local repositories and the given variables.
// testRunID is the run id the tests' provisioners label their objects with.
const testRunID = "20261203-0000abcd"

func testProfile(t *testing.T, kubeconfig, repo, namespace, name string, variables map[string]string) *profile.Profile {
	t.Helper()
	var vars strings.Builder
	for k, v := range variables {
		fmt.Fprintf(&vars, "        %s: %q\n", k, v)
	}
	if vars.Len() == 0 {
		vars.WriteString("        UNUSED: \"x\"\n")
	}
	doc := fmt.Sprintf(`apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: capi-test
extends: capi-docker
spec:
  cluster:
    backend: capi
    capi:
      management:
        kubeconfig: %s
      clusterName: %s
      namespace: %s
      variables:
%s      providers:
        repositories:
          cluster-api: %s
          kubeadm: %s
          docker: file://%s
          cert-manager: %s
`, kubeconfig, name, namespace, vars.String(), repo, repo, repo, repo)
	r, err := (&profile.Loader{}).LoadBytes("test", []byte(doc))
	if err != nil {
		t.Fatalf("test profile: %v", err)
	}
	return r.Profile
}

var (
	dockerMachineTemplatesGVR = schema.GroupVersionResource{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta2", Resource: "dockermachinetemplates"}
	kubeadmConfigTemplatesGVR = schema.GroupVersionResource{Group: "bootstrap.cluster.x-k8s.io", Version: "v1beta2", Resource: "kubeadmconfigtemplates"}
	secretsGVR                = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
)

func setConditions(t *testing.T, ctx context.Context, dyn dynamic.Interface, ns, name string, conds ...map[string]any) {
	t.Helper()
	c, err := dyn.Resource(clustersGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	list := make([]any, len(conds))
	for i, cond := range conds {
		cond["lastTransitionTime"] = time.Now().UTC().Format(time.RFC3339)
		list[i] = cond
	}
	if err := unstructured.SetNestedSlice(c.Object, list, "status", "conditions"); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(clustersGVR).Namespace(ns).UpdateStatus(ctx, c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestProvisionerAgainstControlPlane(t *testing.T) {
	env := testenv.Shared(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	dyn := env.Dynamic()
	repo := writeRepository(t)
	ns := "capi-" + rand.String(5)
	name := "work-" + rand.String(5)
	fullVars := map[string]string{"WORKER_IMAGE": "${KAIC_TEST_WORKER_IMAGE}", "DOCKER_NETWORK": "kind"}
	getenv := func(k string) string {
		if k == "KAIC_TEST_WORKER_IMAGE" {
			return "example.com/node:v1.36.3"
		}
		return ""
	}

	t.Run("an unset environment reference is named before anything is touched", func(t *testing.T) {
		p := &Provisioner{RunID: testRunID, Profile: testProfile(t, env.KubeconfigPath, repo, ns, name, fullVars), Getenv: func(string) string { return "" }}
		rec, err := p.Create(ctx, pathsIn(t.TempDir()), &notes{})
		var missing *MissingVariablesError
		if !errors.As(err, &missing) || !slices.Equal(missing.Names, []string{"KAIC_TEST_WORKER_IMAGE"}) || missing.Template != "" {
			t.Fatalf("err = %v", err)
		}
		if rec[KeyManagementKubeconfig] != "" || rec[provision.KeyCreated] != "false" {
			t.Errorf("record = %v", rec)
		}
	})

	t.Run("a GPU pool label that cannot reach its Nodes is named before anything is touched", func(t *testing.T) {
		p := &Provisioner{RunID: testRunID, Profile: testProfile(t, env.KubeconfigPath, repo, ns, name, fullVars), Getenv: getenv}
		p.Profile.Spec.Cluster.CAPI.GPUPool.Labels["gpu.kubernetes.io/present"] = "true"
		rec, err := p.Create(ctx, pathsIn(t.TempDir()), &notes{})
		if err == nil || !strings.Contains(err.Error(), `spec.cluster.capi.gpuPool.labels["gpu.kubernetes.io/present"]`) {
			t.Fatalf("err = %v", err)
		}
		if rec[KeyManagementKubeconfig] != "" || rec[KeyProvidersInstalled] != "" || rec[provision.KeyCreated] != "false" {
			t.Errorf("record = %v", rec)
		}
	})

	t.Run("init installs the providers from local repositories; template variables the profile lacks are named", func(t *testing.T) {
		p := &Provisioner{RunID: testRunID, Profile: testProfile(t, env.KubeconfigPath, repo, ns, name, nil), Getenv: getenv, ProviderTimeout: time.Minute}
		r := &notes{}
		rec, err := p.Create(ctx, pathsIn(t.TempDir()), r)
		var missing *MissingVariablesError
		if !errors.As(err, &missing) {
			t.Fatalf("err = %v, want missing variables; notes: %v", err, r.lines)
		}
		if !slices.Equal(missing.Names, []string{"DOCKER_NETWORK", "WORKER_IMAGE"}) || !strings.Contains(missing.Template, "docker") {
			t.Errorf("missing = %+v", missing)
		}
		for _, n := range missing.Names {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("%s not in %q", n, err)
			}
		}
		if rec[provision.KeyCreated] != "false" {
			t.Errorf("nothing was applied, but the record says created: %v", rec)
		}
		if rec[KeyProvidersInstalled] != "cluster-api:v1.14.2,kubeadm:v1.14.2,kubeadm:v1.14.2,docker:v1.14.2" {
			t.Errorf("providers installed = %q", rec[KeyProvidersInstalled])
		}
		list, err := dyn.Resource(providersGVR).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, item := range list.Items {
			typ, _ := item.Object["type"].(string)
			version, _ := item.Object["version"].(string)
			got[item.GetNamespace()+"/"+item.GetName()+" "+typ] = version
		}
		want := map[string]string{
			"capi-system/cluster-api CoreProvider":                                         repoVersion,
			"capi-kubeadm-bootstrap-system/bootstrap-kubeadm BootstrapProvider":            repoVersion,
			"capi-kubeadm-control-plane-system/control-plane-kubeadm ControlPlaneProvider": repoVersion,
			"capd-system/infrastructure-docker InfrastructureProvider":                     repoVersion,
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("provider %s = %q, want %s (inventory: %v)", k, got[k], v, got)
			}
		}
		crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
		for _, n := range []string{"clusters.cluster.x-k8s.io", "kubeadmcontrolplanes.controlplane.cluster.x-k8s.io", "dockermachinetemplates.infrastructure.cluster.x-k8s.io", "certificates.cert-manager.io"} {
			c, err := dyn.Resource(crds).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				t.Errorf("CRD %s: %v", n, err)
				continue
			}
			if _, ok := c.GetLabels()["clusterctl.cluster.x-k8s.io"]; !ok {
				t.Errorf("CRD %s lacks clusterctl's label: %v", n, c.GetLabels())
			}
		}
		if _, ok := r.find("clusterctl:", "cert-manager"); !ok {
			t.Errorf("no clusterctl progress about cert-manager: %v", r.lines)
		}
	})

	var rec provision.Record
	t.Run("create applies the template and the GPU pool, reports progress, waits and writes the kubeconfig", func(t *testing.T) {
		// The image reaches the Docker engine CAPD runs machines on: here
		// a stand-in engine socket (the real engine's answer is tested in
		// TestEngineLoadIntoDocker).
		engine := standInEngine(t)
		withEngine := func(k string) string {
			if k == "DOCKER_HOST" {
				return "unix://" + engine.socket
			}
			return getenv(k)
		}
		probe := provision.Image{Ref: "kaic.dev/probe:test", WriteArchive: func(w io.Writer) error { _, err := io.WriteString(w, "archive"); return err }}
		p := &Provisioner{RunID: testRunID, Profile: testProfile(t, env.KubeconfigPath, repo, ns, name, fullVars), Getenv: withEngine, ClusterTimeout: 2 * time.Minute,
			Images: []provision.Image{probe}}
		// A label only Cluster API can put on Nodes, and a taint.
		gpuPool := p.Profile.Spec.Cluster.CAPI.GPUPool
		gpuPool.Labels["node-role.kubernetes.io/accelerator"] = ""
		gpuPool.Taints = []profile.Taint{{Key: "kaic.dev/accelerator", Value: "example", Effect: "NoSchedule"}}
		r := &notes{}
		dir := t.TempDir()
		type result struct {
			rec provision.Record
			err error
		}
		done := make(chan result, 1)
		go func() {
			rec, err := p.Create(ctx, pathsIn(dir), r)
			done <- result{rec, err}
		}()
		waitFor(t, "the last object applied, the GPU pool's bootstrap template", func() bool {
			_, err := dyn.Resource(kubeadmConfigTemplatesGVR).Namespace(ns).Get(ctx, name+"-accel", metav1.GetOptions{})
			return err == nil
		})
		if line, ok := r.find("already installed"); !ok {
			t.Errorf("a second Init should skip installed providers: %v", r.lines)
		} else {
			t.Log(line)
		}
		cluster, _ := dyn.Resource(clustersGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if cidr, _, _ := unstructured.NestedStringSlice(cluster.Object, "spec", "clusterNetwork", "pods", "cidrBlocks"); !slices.Equal(cidr, []string{"192.168.0.0/16"}) {
			t.Errorf("defaulted variable: cidrBlocks = %v", cidr)
		}
		kaicApplied := false
		for _, mf := range cluster.GetManagedFields() {
			kaicApplied = kaicApplied || (mf.Manager == FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply)
		}
		if !kaicApplied {
			t.Errorf("the Cluster was not server-side applied by %s: %v", FieldManager, cluster.GetManagedFields())
		}
		worker, err := dyn.Resource(dockerMachineTemplatesGVR).Namespace(ns).Get(ctx, name+"-md-0", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if img, _, _ := unstructured.NestedString(worker.Object, "spec", "template", "spec", "customImage"); img != "example.com/node:v1.36.3" {
			t.Errorf("environment-referenced variable: customImage = %q", img)
		}
		pool, err := dyn.Resource(machineDeploymentsGVR).Namespace(ns).Get(ctx, name+"-accel", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("GPU pool MachineDeployment: %v", err)
		}
		wantAnn := map[string]string{
			"cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size": "1",
			"cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size": "2",
			"capacity.cluster-autoscaler.kubernetes.io/gpu-count":         "8",
			"capacity.cluster-autoscaler.kubernetes.io/gpu-type":          "example",
			"capacity.cluster-autoscaler.kubernetes.io/labels":            "kaic.dev/accelerator=example,node-role.kubernetes.io/accelerator=",
			"capacity.cluster-autoscaler.kubernetes.io/taints":            "kaic.dev/accelerator=example:NoSchedule",
		}
		for k, v := range wantAnn {
			if got := pool.GetAnnotations()[k]; got != v {
				t.Errorf("GPU pool annotation %s = %q, want %q", k, got, v)
			}
		}
		if ref, _, _ := unstructured.NestedStringMap(pool.Object, "spec", "template", "spec", "bootstrap", "configRef"); ref["name"] != name+"-accel" || ref["kind"] != "KubeadmConfigTemplate" || ref["apiGroup"] != "bootstrap.cluster.x-k8s.io" {
			t.Errorf("GPU pool bootstrap ref = %v, want its own KubeadmConfigTemplate %s-accel", ref, name)
		}
		machineLabels, _, _ := unstructured.NestedStringMap(pool.Object, "spec", "template", "metadata", "labels")
		if v, ok := machineLabels["node-role.kubernetes.io/accelerator"]; !ok || v != "" || machineLabels["kaic.dev/accelerator"] != "example" {
			t.Errorf("GPU pool Machine labels = %v", machineLabels)
		}
		// Cluster API copies neither kaic.dev labels nor taints to Nodes:
		// the kubelet registers them, configured by the pool's copy of
		// the worker's bootstrap template.
		poolBoot, err := dyn.Resource(kubeadmConfigTemplatesGVR).Namespace(ns).Get(ctx, name+"-accel", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("GPU pool KubeadmConfigTemplate: %v", err)
		}
		reg, _, _ := unstructured.NestedMap(poolBoot.Object, nodeRegistrationPath...)
		if reg["criSocket"] != "unix:///var/run/containerd/containerd.sock" {
			t.Errorf("GPU pool bootstrap template did not start from the worker's: %v", reg)
		}
		wantArgs := "[map[name:eviction-hard value:nodefs.available<0%,nodefs.inodesFree<0%,imagefs.available<0%] map[name:node-labels value:kaic.dev/pool=workers,kaic.dev/accelerator=example]]"
		if got := fmt.Sprint(reg["kubeletExtraArgs"]); got != wantArgs {
			t.Errorf("GPU pool kubeletExtraArgs = %s, want %s", got, wantArgs)
		}
		if got := fmt.Sprint(reg["taints"]); got != "[map[effect:NoSchedule key:kaic.dev/accelerator value:example]]" {
			t.Errorf("GPU pool taints = %s", got)
		}
		workerBoot, err := dyn.Resource(kubeadmConfigTemplatesGVR).Namespace(ns).Get(ctx, name+"-md-0", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		workerReg, _, _ := unstructured.NestedMap(workerBoot.Object, nodeRegistrationPath...)
		if _, tainted := workerReg["taints"]; tainted || strings.Contains(fmt.Sprint(workerReg["kubeletExtraArgs"]), "accelerator") {
			t.Errorf("the worker's bootstrap template got the GPU pool's labels or taints: %v", workerReg)
		}
		poolTmpl, err := dyn.Resource(dockerMachineTemplatesGVR).Namespace(ns).Get(ctx, name+"-accel", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("GPU pool machine template: %v", err)
		}
		if img, _, _ := unstructured.NestedString(poolTmpl.Object, "spec", "template", "spec", "customImage"); img != "example.com/node:v1.36.3" {
			t.Errorf("GPU pool machine template did not start from the worker's: %v", poolTmpl.Object["spec"])
		}
		// Every machine, the ones the autoscaler adds included, preloads
		// the probe image from the engine it was loaded into.
		for _, tmpl := range []*unstructured.Unstructured{worker, poolTmpl} {
			if got, _, _ := unstructured.NestedStringSlice(tmpl.Object, "spec", "template", "spec", "preLoadImages"); !slices.Equal(got, []string{probe.Ref}) {
				t.Errorf("DockerMachineTemplate %s preloads %v, want [%s]", tmpl.GetName(), got, probe.Ref)
			}
		}
		if got := engine.loaded(); !slices.Equal(got, []string{"archive"}) {
			t.Errorf("the engine received %q, want the probe image's archive once", got)
		}

		// Play Cluster API's controllers: the control plane is not there
		// yet, then it is and the kubeconfig Secret appears.
		setConditions(t, ctx, dyn, ns, name,
			map[string]any{"type": "Available", "status": "False", "reason": "NotAvailable", "message": "* ControlPlaneAvailable: waiting"},
			map[string]any{"type": "InfrastructureReady", "status": "True", "reason": "Ready"},
			map[string]any{"type": "ControlPlaneAvailable", "status": "False", "reason": "WaitingForControlPlane", "message": "control plane machine is being created"})
		waitFor(t, "a progress note naming what waits", func() bool {
			_, ok := r.find("cluster "+name, "ready: InfrastructureReady", "ControlPlaneAvailable (WaitingForControlPlane: control plane machine is being created)")
			return ok
		})
		select {
		case res := <-done:
			t.Fatalf("Create returned before the cluster was available: %v", res.err)
		default:
		}
		secret := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Secret",
			"metadata":   map[string]any{"name": name + "-kubeconfig", "namespace": ns, "labels": map[string]any{clusterNameLabel: name}},
			"type":       "cluster.x-k8s.io/secret",
			"stringData": map[string]any{"value": string(env.Kubeconfig)},
		}}
		if _, err := dyn.Resource(secretsGVR).Namespace(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		setConditions(t, ctx, dyn, ns, name,
			map[string]any{"type": "Available", "status": "True", "reason": "Available"},
			map[string]any{"type": "InfrastructureReady", "status": "True", "reason": "Ready"},
			map[string]any{"type": "ControlPlaneAvailable", "status": "True", "reason": "Available"})
		var res result
		select {
		case res = <-done:
		case <-time.After(time.Minute):
			t.Fatalf("Create did not return after the cluster became available; notes: %v", r.lines)
		}
		if res.err != nil {
			t.Fatalf("Create: %v; notes: %v", res.err, r.lines)
		}
		rec = res.rec
		if rec[provision.KeyCreated] != "true" || rec[KeyNamespaceCreated] != "true" || rec[KeyManagementCreated] != "false" {
			t.Errorf("record = %v", rec)
		}
		st, err := os.Stat(rec[provision.KeyKubeconfig])
		if err != nil || st.Mode().Perm() != 0o600 || filepath.Dir(rec[provision.KeyKubeconfig]) != dir {
			t.Errorf("kubeconfig %s: %v %v", rec[provision.KeyKubeconfig], st, err)
		}
		if data, _ := os.ReadFile(rec[provision.KeyKubeconfig]); string(data) != string(env.Kubeconfig) || rec[provision.KeyContext] != "kaic-testenv" {
			t.Errorf("kubeconfig content or context %q differ from the Secret's", rec[provision.KeyContext])
		}
		if !rec.Loaded(probe.Ref) {
			t.Errorf("record %v does not list the preloaded probe image", rec)
		}
		if data, err := os.ReadFile(rec[KeyManifest]); err != nil || !strings.Contains(string(data), name+"-accel") {
			t.Errorf("manifest %s: %v", rec[KeyManifest], err)
		}
	})

	t.Run("teardown deletes the Cluster, waits until it is gone, then the management cluster", func(t *testing.T) {
		if rec == nil {
			t.Skip("create failed")
		}
		clusters := dyn.Resource(clustersGVR).Namespace(ns)
		// Cluster API's finalizer, which only its controller would remove.
		fin := []byte(`{"metadata":{"finalizers":["cluster.cluster.x-k8s.io"]}}`)
		if _, err := clusters.Patch(ctx, name, types.MergePatchType, fin, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		w, err := clusters.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()

		var order []string
		var mu sync.Mutex
		p := &Provisioner{RunID: testRunID, Profile: testProfile(t, env.KubeconfigPath, repo, ns, name, fullVars), DeleteTimeout: 2 * time.Minute}
		p.deleteManagement = func(ctx context.Context, rec provision.Record, r progress.Steps) error {
			_, err := clusters.Get(ctx, name, metav1.GetOptions{})
			mu.Lock()
			defer mu.Unlock()
			order = append(order, fmt.Sprintf("management deleted (cluster not found: %v)", apierrors.IsNotFound(err)))
			return nil
		}
		rec[KeyManagementCreated] = "true" // as if kaic had created it
		r := &notes{}
		done := make(chan error, 1)
		go func() { done <- p.Delete(ctx, rec, r) }()

		next := func() watch.Event {
			t.Helper()
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					t.Fatal("watch closed")
				}
				return ev
			case <-time.After(time.Minute):
				t.Fatal("no watch event")
			}
			return watch.Event{}
		}
		for {
			ev := next()
			if u, ok := ev.Object.(*unstructured.Unstructured); ok && ev.Type == watch.Modified && u.GetDeletionTimestamp() != nil {
				break
			}
		}
		// Deletion started; the finalizer holds the object, and so must
		// kaic: no return, no management cluster deletion.
		time.Sleep(500 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("Delete returned while the Cluster still existed: %v", err)
		default:
		}
		mu.Lock()
		if len(order) != 0 {
			t.Fatalf("management cluster deleted before the Cluster was gone: %v", order)
		}
		order = append(order, "cluster still there, Delete waiting")
		mu.Unlock()

		if _, err := clusters.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		for next().Type != watch.Deleted {
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Delete: %v", err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("Delete did not return after the Cluster was gone; notes: %v", r.lines)
		}
		mu.Lock()
		defer mu.Unlock()
		want := []string{"cluster still there, Delete waiting", "management deleted (cluster not found: true)"}
		if !slices.Equal(order, want) {
			t.Errorf("order = %q, want %q", order, want)
		}
	})

	t.Run("a Cluster this run did not create stops the run and survives teardown", func(t *testing.T) {
		clusters := dyn.Resource(clustersGVR).Namespace(ns)
		userName := "user-" + rand.String(5)
		user := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": clustersGVR.GroupVersion().String(), "kind": "Cluster",
			"metadata": map[string]any{"name": userName, "namespace": ns, "labels": map[string]any{"owner": "someone"}},
		}}
		before, err := clusters.Create(ctx, user, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p := &Provisioner{RunID: testRunID, Profile: testProfile(t, env.KubeconfigPath, repo, ns, userName, fullVars), Getenv: getenv, ProviderTimeout: time.Minute}
		rec, err := p.Create(ctx, pathsIn(t.TempDir()), &notes{})
		var exists *ClusterExistsError
		if !errors.As(err, &exists) || exists.Name != userName || !strings.Contains(err.Error(), "not labelled as managed by any tool") {
			t.Fatalf("Create over a user's Cluster: err = %v", err)
		}
		if rec[provision.KeyCreated] != "false" {
			t.Errorf("the run records the user's Cluster as created: %v", rec)
		}
		// kaic down of a record that claims it (a record edited, or a
		// run id that does not match) must not delete it either.
		rec[provision.KeyCreated] = "true"
		if err := p.Delete(ctx, rec, &notes{}); err == nil || !errors.As(err, &exists) {
			t.Errorf("Delete of a user's Cluster: err = %v", err)
		}
		after, err := clusters.Get(ctx, userName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the user's Cluster is gone: %v", err)
		}
		if after.GetResourceVersion() != before.GetResourceVersion() || after.GetDeletionTimestamp() != nil {
			t.Errorf("the user's Cluster was changed: resourceVersion %s -> %s, deletion %v", before.GetResourceVersion(), after.GetResourceVersion(), after.GetDeletionTimestamp())
		}
	})

	t.Run("teardown of a run that applied nothing touches nothing", func(t *testing.T) {
		called := false
		p := &Provisioner{RunID: testRunID, Profile: testProfile(t, env.KubeconfigPath, repo, ns, name, fullVars)}
		p.deleteManagement = func(context.Context, provision.Record, progress.Steps) error { called = true; return nil }
		err := p.Delete(ctx, provision.Record{provision.KeyCreated: "false", KeyManagementCreated: "false"}, &notes{})
		if err != nil || called {
			t.Errorf("err = %v, management deleted = %v", err, called)
		}
	})
}

func TestRepositoryURL(t *testing.T) {
	repo := writeRepository(t)
	label := "infrastructure-docker"
	tests := []struct {
		name, location, version, want, wantErr string
	}{
		{"parent directory", repo, repoVersion, "file://" + filepath.Join(repo, label, repoVersion, "infrastructure-components.yaml"), ""},
		{"file URL", "file://" + repo, repoVersion, "file://" + filepath.Join(repo, label, repoVersion, "infrastructure-components.yaml"), ""},
		{"label directory", filepath.Join(repo, label), repoVersion, "file://" + filepath.Join(repo, label, repoVersion, "infrastructure-components.yaml"), ""},
		{"unpinned", repo, "", "file://" + filepath.Join(repo, label, "latest", "infrastructure-components.yaml"), ""},
		{"https", "https://example.com/r/infrastructure-components.yaml", repoVersion, "https://example.com/r/infrastructure-components.yaml", ""},
		{"missing version", repo, "v9.9.9", "", "no infrastructure-components.yaml for infrastructure-docker v9.9.9"},
		{"no provider", t.TempDir(), repoVersion, "", "has no infrastructure-docker directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := repositoryURL(tt.location, label, tt.version, "infrastructure-components.yaml")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestConfigReader(t *testing.T) {
	repo := writeRepository(t)
	p := testProfile(t, "/dev/null", repo, "default", "c", map[string]string{"FOO": "bar"})
	vars, err := ResolveVariables(p, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	r, err := newConfigReader(p.Spec.Cluster.CAPI, vars, "/nonexistent/overrides", func(k string) string { return map[string]string{"GITHUB_TOKEN": "t0k"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	if v, err := r.Get("FOO"); v != "bar" || err != nil {
		t.Errorf("FOO = %q, %v", v, err)
	}
	if v, _ := r.Get("KUBERNETES_VERSION"); v != "v1.36.3" {
		t.Errorf("KUBERNETES_VERSION = %q", v)
	}
	if _, err := r.Get("HOME"); err == nil {
		t.Error("the environment leaks into clusterctl's configuration")
	}
	if v, _ := r.Get(configKeyGitHubToken); v != "t0k" {
		t.Errorf("github-token = %q", v)
	}
	var providers []providerEntry
	if err := r.UnmarshalKey(configKeyProviders, &providers); err != nil {
		t.Fatal(err)
	}
	if len(providers) != 4 || providers[1].Name != "kubeadm" || providers[1].Type != "BootstrapProvider" || providers[2].Type != "ControlPlaneProvider" ||
		providers[2].URL != "file://"+filepath.Join(repo, "control-plane-kubeadm", repoVersion, "control-plane-components.yaml") {
		t.Errorf("providers = %+v", providers)
	}
	var cm certManagerEntry
	if err := r.UnmarshalKey(configKeyCertManager, &cm); err != nil || cm.Version != "v1.21.1" || cm.URL != "file://"+filepath.Join(repo, "cert-manager", "v1.21.1", "cert-manager.yaml") {
		t.Errorf("cert-manager = %+v, %v", cm, err)
	}
	untouched := "keep"
	if err := r.UnmarshalKey("absent", &untouched); err != nil || untouched != "keep" {
		t.Errorf("absent key: %q, %v", untouched, err)
	}

	p.Spec.Cluster.CAPI.Providers.Repositories["kubeadmm"] = repo
	if _, err := newConfigReader(p.Spec.Cluster.CAPI, vars, "", func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "kubeadmm match no provider") {
		t.Errorf("a misspelt repository key: err = %v", err)
	}
}

func TestManagementCluster(t *testing.T) {
	p := testProfile(t, "/dev/null", writeRepository(t), "default", "work", nil)
	k := ManagementCluster(p)
	if k.Name != "work-mgmt" || k.Workers == nil || *k.Workers != 0 || k.NodeImage == "" {
		t.Fatalf("management cluster: %+v", k)
	}
	if len(k.ExtraMounts) != 1 || k.ExtraMounts[0].HostPath != dockerSocket || k.ExtraMounts[0].ContainerPath != dockerSocket {
		t.Errorf("the docker provider needs the Docker socket: %+v", k.ExtraMounts)
	}
	p.Spec.Cluster.CAPI.Infrastructure = "aws"
	if k := ManagementCluster(p); len(k.ExtraMounts) != 0 {
		t.Errorf("no Docker socket for aws: %+v", k.ExtraMounts)
	}
}

// pathsIn are the paths of a run directory dir.
func pathsIn(dir string) provision.Paths {
	return provision.Paths{Dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig")}
}
