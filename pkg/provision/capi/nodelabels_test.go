package capi

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/pkg/profile"
)

// poolTestProfile is a capi profile with a GPU pool that has a label for
// the kubelet, one Cluster API syncs and a taint.
func poolTestProfile(t *testing.T) *profile.Profile {
	t.Helper()
	doc := `apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: pool
spec:
  kubernetesVersion: v1.36.3
  conformanceVersion: "1.36"
  cluster:
    backend: capi
    capi:
      infrastructure: docker
      providers:
        infrastructure: docker:v1.14.2
      clusterName: c
      flavor: development
      gpuPool:
        name: accel
        labels:
          kaic.dev/accelerator: example
          node-role.kubernetes.io/gpu: ""
        taints:
        - key: kaic.dev/accelerator
          value: example
          effect: NoSchedule
`
	r, err := (&profile.Loader{}).LoadBytes("pool", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return r.Profile
}

func decodeObjects(t *testing.T, docs string) []unstructured.Unstructured {
	t.Helper()
	var objs []unstructured.Unstructured
	for _, d := range strings.Split(docs, "\n---\n") {
		o := unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(d), &o.Object); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	return objs
}

const workerMD = `apiVersion: cluster.x-k8s.io/v1beta2
kind: MachineDeployment
metadata:
  name: c-md-0
spec:
  template:
    spec:
      bootstrap:
        configRef:
          apiGroup: bootstrap.cluster.x-k8s.io
          kind: %s
          name: c-md-0
      infrastructureRef:
        apiGroup: infrastructure.cluster.x-k8s.io
        kind: DockerMachineTemplate
        name: c-md-0`

// TestPoolBootstrapTemplateFromWorker covers both contracts' shape of
// kubeletExtraArgs: the pool's copy of the worker's KubeadmConfigTemplate
// keeps the worker's settings, merges node-labels and replaces a taint of
// the same key and effect.
func TestPoolBootstrapTemplateFromWorker(t *testing.T) {
	tests := []struct {
		name, template       string
		wantArgs, wantTaints string
	}{
		{
			name: "v1beta2 list",
			template: `apiVersion: bootstrap.cluster.x-k8s.io/v1beta2
kind: KubeadmConfigTemplate
metadata:
  name: c-md-0
spec:
  template:
    spec:
      preKubeadmCommands: ["echo hi"]
      joinConfiguration:
        nodeRegistration:
          criSocket: unix:///run/containerd/containerd.sock
          kubeletExtraArgs:
          - name: eviction-hard
            value: nodefs.available<0%
          - name: node-labels
            value: kaic.dev/accelerator=none,tier=workers
          taints:
          - key: kaic.dev/accelerator
            value: none
            effect: NoSchedule
          - key: other
            effect: NoExecute`,
			wantArgs:   "[map[name:eviction-hard value:nodefs.available<0%] map[name:node-labels value:kaic.dev/accelerator=example,tier=workers]]",
			wantTaints: "[map[effect:NoSchedule key:kaic.dev/accelerator value:example] map[effect:NoExecute key:other]]",
		},
		{
			name: "v1beta1 map",
			template: `apiVersion: bootstrap.cluster.x-k8s.io/v1beta1
kind: KubeadmConfigTemplate
metadata:
  name: c-md-0
spec:
  template:
    spec:
      preKubeadmCommands: ["echo hi"]
      joinConfiguration:
        nodeRegistration:
          criSocket: unix:///run/containerd/containerd.sock
          kubeletExtraArgs:
            eviction-hard: nodefs.available<0%
          taints:
          - key: kaic.dev/accelerator
            value: none
            effect: NoSchedule
          - key: other
            effect: NoExecute`,
			wantArgs:   "map[eviction-hard:nodefs.available<0% node-labels:kaic.dev/accelerator=example]",
			wantTaints: "[map[effect:NoSchedule key:kaic.dev/accelerator value:example] map[effect:NoExecute key:other]]",
		},
		{
			name: "v1beta1 without a joinConfiguration",
			template: `apiVersion: bootstrap.cluster.x-k8s.io/v1beta1
kind: KubeadmConfigTemplate
metadata:
  name: c-md-0
spec:
  template:
    spec:
      preKubeadmCommands: ["echo hi"]`,
			wantArgs:   "map[node-labels:kaic.dev/accelerator=example]",
			wantTaints: "[map[effect:NoSchedule key:kaic.dev/accelerator value:example]]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := poolTestProfile(t)
			template := decodeObjects(t, strings.Replace(workerMD, "%s", "KubeadmConfigTemplate", 1)+"\n---\n"+tt.template)
			objs, err := poolObjects(p, p.Spec.Cluster.CAPI.GPUPool, template)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) != 3 {
				t.Fatalf("objects = %d", len(objs))
			}
			md, boot := objs[0], objs[2]
			if ref, _, _ := unstructured.NestedString(md.Object, "spec", "template", "spec", "bootstrap", "configRef", "name"); ref != "c-accel" {
				t.Errorf("configRef = %q", ref)
			}
			if boot.GetName() != "c-accel" || boot.GetAPIVersion() != template[1].GetAPIVersion() {
				t.Errorf("pool template %s %s", boot.GetAPIVersion(), boot.GetName())
			}
			if cmds, _, _ := unstructured.NestedStringSlice(boot.Object, "spec", "template", "spec", "preKubeadmCommands"); len(cmds) != 1 {
				t.Errorf("the worker's settings were not copied: %v", boot.Object["spec"])
			}
			reg, _, _ := unstructured.NestedMap(boot.Object, nodeRegistrationPath...)
			if got := stringOf(reg["kubeletExtraArgs"]); got != tt.wantArgs {
				t.Errorf("kubeletExtraArgs = %s, want %s", got, tt.wantArgs)
			}
			if got := stringOf(reg["taints"]); got != tt.wantTaints {
				t.Errorf("taints = %s, want %s", got, tt.wantTaints)
			}
			// The worker's own template is left as it was.
			workerReg, _, _ := unstructured.NestedMap(template[1].Object, nodeRegistrationPath...)
			if strings.Contains(stringOf(workerReg), "example") {
				t.Errorf("the worker's template was changed: %v", workerReg)
			}
		})
	}
}

func TestPoolBootstrapTemplateErrors(t *testing.T) {
	p := poolTestProfile(t)
	g := p.Spec.Cluster.CAPI.GPUPool
	_, err := poolObjects(p, g, decodeObjects(t, strings.Replace(workerMD, "%s", "KubeadmConfigTemplate", 1)))
	if err == nil || !strings.Contains(err.Error(), "refers to KubeadmConfigTemplate c-md-0, which the cluster template does not contain") {
		t.Errorf("missing worker template: err = %v", err)
	}
	other := decodeObjects(t, strings.Replace(workerMD, "%s", "TalosConfigTemplate", 1))
	_, err = poolObjects(p, g, other)
	if err == nil || !strings.Contains(err.Error(), "bootstrapped by TalosConfigTemplate c-md-0") || !strings.Contains(err.Error(), poolLabelsPath) {
		t.Errorf("another bootstrap provider with labels: err = %v", err)
	}
	// Without labels or taints to register the worker's bootstrap is reused.
	g.Labels, g.Taints = nil, nil
	objs, err := poolObjects(p, g, other)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 {
		t.Errorf("no bootstrap template of kaic's expected, got %d objects", len(objs))
	}
	if kind, _, _ := unstructured.NestedString(objs[0].Object, "spec", "template", "spec", "bootstrap", "configRef", "kind"); kind != "TalosConfigTemplate" {
		t.Errorf("configRef kind = %q", kind)
	}
}

func TestMergeNodeLabels(t *testing.T) {
	tests := []struct {
		old  string
		add  map[string]string
		want string
	}{
		{"", map[string]string{"b": "2", "a": "1"}, "a=1,b=2"},
		{"x=0, a=9", map[string]string{"b": "2", "a": "1"}, "x=0,a=1,b=2"},
	}
	for _, tt := range tests {
		if got := mergeNodeLabels(tt.old, tt.add); got != tt.want {
			t.Errorf("mergeNodeLabels(%q, %v) = %q, want %q", tt.old, tt.add, got, tt.want)
		}
	}
}

// stringOf prints a value with map keys sorted.
func stringOf(v any) string { return fmt.Sprint(v) }
