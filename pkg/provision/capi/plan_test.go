package capi_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/provision/capi"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestGPUPoolAnnotations(t *testing.T) {
	r, err := kaic.NewLoader().Load("capi-aws-gpu")
	if err != nil {
		t.Fatal(err)
	}
	pl, err := capi.PlanFor(r.Profile, env(map[string]string{"AWS_REGION": "eu-west-1", "AWS_SSH_KEY_NAME": "k", "AWS_B64ENCODED_CREDENTIALS": "c2VjcmV0"}))
	if err != nil {
		t.Fatal(err)
	}
	if pl.Variables["AWS_REGION"] != "eu-west-1" || pl.Variables["AWS_B64ENCODED_CREDENTIALS"] != "(set, hidden)" {
		t.Errorf("variables: %v", pl.Variables)
	}
	if pl.Variables["KUBERNETES_VERSION"] != "v1.36.3" || pl.Variables["CLUSTER_NAME"] != "kaic-aws-gpu" {
		t.Errorf("implicit variables: %v", pl.Variables)
	}
	md := pl.Objects[0]
	if md["kind"] != "MachineDeployment" || md["apiVersion"] != "cluster.x-k8s.io/v1beta2" {
		t.Fatalf("first object: %v %v", md["apiVersion"], md["kind"])
	}
	ann := md["metadata"].(map[string]any)["annotations"].(map[string]any)
	want := map[string]string{
		"cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size": "1",
		"cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size": "2",
		"capacity.cluster-autoscaler.kubernetes.io/gpu-count":         "1",
		"capacity.cluster-autoscaler.kubernetes.io/gpu-type":          "nvidia-a10g",
		"capacity.cluster-autoscaler.kubernetes.io/dra-driver":        "gpu.nvidia.com",
		"capacity.cluster-autoscaler.kubernetes.io/labels":            "nvidia.com/gpu.present=true",
		"capacity.cluster-autoscaler.kubernetes.io/taints":            "nvidia.com/gpu=present:NoSchedule",
	}
	for k, v := range want {
		if ann[k] != v {
			t.Errorf("annotation %s = %v, want %s", k, ann[k], v)
		}
	}
	tmpl := pl.Objects[1]
	spec := tmpl["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	if tmpl["kind"] != "AWSMachineTemplate" || spec["instanceType"] != "g5.xlarge" {
		t.Errorf("machine template: %v %v", tmpl["kind"], spec)
	}
	// Cluster API puts neither nvidia.com labels nor taints on Nodes: the
	// pool's own bootstrap template has the kubelet register them.
	if len(pl.Objects) != 3 {
		t.Fatalf("objects = %d, want the MachineDeployment, machine template and KubeadmConfigTemplate", len(pl.Objects))
	}
	boot := pl.Objects[2]
	if boot["kind"] != "KubeadmConfigTemplate" || boot["apiVersion"] != "bootstrap.cluster.x-k8s.io/v1beta2" || boot["metadata"].(map[string]any)["name"] != "kaic-aws-gpu-gpu" {
		t.Errorf("bootstrap template: %v %v %v", boot["apiVersion"], boot["kind"], boot["metadata"])
	}
	ref := md["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["bootstrap"].(map[string]any)["configRef"].(map[string]any)
	if ref["kind"] != "KubeadmConfigTemplate" || ref["name"] != "kaic-aws-gpu-gpu" {
		t.Errorf("the pool's bootstrap configRef = %v, want its own KubeadmConfigTemplate", ref)
	}
	args, taints := nodeRegistration(t, boot)
	if !slices.Equal(args, []string{"node-labels=nvidia.com/gpu.present=true"}) {
		t.Errorf("kubeletExtraArgs = %q", args)
	}
	if !slices.Equal(taints, []string{"nvidia.com/gpu=present:NoSchedule"}) {
		t.Errorf("taints = %q", taints)
	}
	if !strings.Contains(strings.Join(pl.Providers, " "), "infrastructure aws") {
		t.Errorf("providers: %v", pl.Providers)
	}
	if len(pl.Warnings) != 1 || !strings.Contains(pl.Warnings[0], "infrastructure provider aws is not pinned") {
		t.Errorf("warnings: %v", pl.Warnings)
	}
}

// nodeRegistration reads a v1beta2 KubeadmConfigTemplate's worker
// registration as name=value kubelet arguments and key=value:effect taints.
func nodeRegistration(t *testing.T, obj map[string]any) (args, taints []string) {
	t.Helper()
	reg, _, err := unstructured.NestedMap(obj, "spec", "template", "spec", "joinConfiguration", "nodeRegistration")
	if err != nil {
		t.Fatalf("nodeRegistration: %v", err)
	}
	list, _ := reg["kubeletExtraArgs"].([]any)
	if reg["kubeletExtraArgs"] != nil && list == nil {
		t.Fatalf("kubeletExtraArgs is not a v1beta2 list: %#v", reg["kubeletExtraArgs"])
	}
	for _, a := range list {
		m := a.(map[string]any)
		args = append(args, fmt.Sprintf("%v=%v", m["name"], m["value"]))
	}
	ts, _ := reg["taints"].([]any)
	for _, a := range ts {
		m := a.(map[string]any)
		taints = append(taints, fmt.Sprintf("%v=%v:%v", m["key"], m["value"], m["effect"]))
	}
	return args, taints
}

// gpuPoolProfile is a capi docker profile whose gpuPool has the given
// labels and taints (YAML lines at gpuPool's indentation), with a flavor
// or, if class is set, that ClusterClass.
func gpuPoolProfile(t *testing.T, class, pool string) *profile.Profile {
	t.Helper()
	template := "      flavor: development\n"
	if class != "" {
		template = "      clusterClass: " + class + "\n"
	}
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
      clusterName: kaic-pool
` + template + `      gpuPool:
        name: accel
        replicas: 1
        minSize: 1
        maxSize: 2
` + pool
	r, err := (&profile.Loader{}).LoadBytes("pool", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return r.Profile
}

func TestGPUPoolLabelDomains(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		// nodeLabels is the pool template's --node-labels value.
		nodeLabels string
		// wantErr lists what the error names, empty if the plan succeeds.
		wantErr []string
	}{
		{
			name:       "labels of other domains go to the kubelet",
			labels:     map[string]string{"nvidia.com/gpu.present": "true", "kaic.dev/accelerator": "example", "plain": "x"},
			nodeLabels: "kaic.dev/accelerator=example,nvidia.com/gpu.present=true,plain=x",
		},
		{
			name:       "kubelet labels of kubernetes.io go to the kubelet",
			labels:     map[string]string{"node.kubernetes.io/instance-class": "gpu", "topology.kubernetes.io/zone": "z1", "kubelet.kubernetes.io/x": "y"},
			nodeLabels: "kubelet.kubernetes.io/x=y,node.kubernetes.io/instance-class=gpu,topology.kubernetes.io/zone=z1",
		},
		{
			name:       "labels Cluster API syncs stay on the Machines only",
			labels:     map[string]string{"node-role.kubernetes.io/gpu": "", "node-restriction.kubernetes.io/accel": "yes", "team.node-restriction.kubernetes.io/a": "b", "kaic.dev/accelerator": "example"},
			nodeLabels: "kaic.dev/accelerator=example",
		},
		{
			name:    "a kubernetes.io label neither the kubelet nor Cluster API sets is refused",
			labels:  map[string]string{"example.kubernetes.io/gpu": "true", "kaic.dev/accelerator": "example"},
			wantErr: []string{`spec.cluster.capi.gpuPool.labels["example.kubernetes.io/gpu"]`, "NodeRestriction", "node-role.kubernetes.io"},
		},
		{
			name:    "k8s.io and subdomains of node-role are refused too",
			labels:  map[string]string{"k8s.io/gpu": "true", "sub.node-role.kubernetes.io/gpu": ""},
			wantErr: []string{`gpuPool.labels["k8s.io/gpu"]`, `gpuPool.labels["sub.node-role.kubernetes.io/gpu"]`},
		},
		{
			name:    "a malformed label is refused",
			labels:  map[string]string{"kaic.dev/accel": "a,b"},
			wantErr: []string{`gpuPool.labels["kaic.dev/accel"]`, "not a valid label value"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pool strings.Builder
			pool.WriteString("        labels:\n")
			for k, v := range tt.labels {
				fmt.Fprintf(&pool, "          %s: %q\n", k, v)
			}
			p := gpuPoolProfile(t, "", pool.String())
			pl, err := capi.PlanFor(p, env(nil))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("plan succeeded with objects %v", pl.Objects)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error does not name %s: %v", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			args, _ := nodeRegistration(t, pl.Objects[2])
			if !slices.Equal(args, []string{"node-labels=" + tt.nodeLabels}) {
				t.Errorf("kubeletExtraArgs = %q, want node-labels=%s", args, tt.nodeLabels)
			}
			machineLabels, _, _ := unstructured.NestedStringMap(pl.Objects[0], "spec", "template", "metadata", "labels")
			if !maps.Equal(machineLabels, tt.labels) {
				t.Errorf("MachineDeployment template labels = %v, want all of the pool's %v", machineLabels, tt.labels)
			}
		})
	}
}

func TestGPUPoolWithoutLabelsOrTaints(t *testing.T) {
	pl, err := capi.PlanFor(gpuPoolProfile(t, "", ""), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	spec, _, _ := unstructured.NestedMap(pl.Objects[2], "spec", "template", "spec")
	if len(spec) != 0 {
		t.Errorf("a pool without labels or taints has nothing to register: %v", spec)
	}
}

func TestMissingVariablesNamed(t *testing.T) {
	for _, name := range []string{"capi-aws-gpu", "capi-azure-gpu", "capi-gcp-gpu"} {
		r, err := kaic.NewLoader().Load(name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = capi.PlanFor(r.Profile, env(nil))
		var missing *capi.MissingVariablesError
		if !errors.As(err, &missing) || len(missing.Names) < 3 {
			t.Fatalf("%s: err = %v", name, err)
		}
		for _, n := range missing.Names {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("%s: %s not in %q", name, n, err)
			}
		}
	}
	r, err := kaic.NewLoader().Load("capi-docker")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := capi.PlanFor(r.Profile, env(nil)); err != nil {
		t.Errorf("capi-docker needs no environment: %v", err)
	}
}

func TestClusterClassPlanPutsPoolInTopology(t *testing.T) {
	doc := `apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: cc
spec:
  kubernetesVersion: v1.36.3
  conformanceVersion: "1.36"
  cluster:
    backend: capi
    capi:
      infrastructure: docker
      providers:
        infrastructure: docker:v1.14.2
      clusterName: kaic-cc
      clusterClass: quick-start
      variables:
        GPU_MACHINE_CLASS: accelerated
      gpuPool:
        name: accel
        replicas: 1
        minSize: 1
        maxSize: 3
        gpuCount: 2
        labels:
          kaic.dev/accelerator: example
        autoscaler: true
`
	r, err := (&profile.Loader{}).LoadBytes("cc", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := capi.PlanFor(r.Profile, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if pl.Template != "ClusterClass quick-start" {
		t.Errorf("template = %q", pl.Template)
	}
	if len(pl.Objects) != 1 || pl.Objects[0]["kind"] != "Cluster" {
		t.Fatalf("a ClusterClass plan adds the pool to the Cluster's topology, got objects %v", pl.Objects)
	}
	topo := pl.Objects[0]["spec"].(map[string]any)["topology"].(map[string]any)
	if ref := topo["classRef"].(map[string]any)["name"]; ref != "quick-start" {
		t.Errorf("classRef = %v", ref)
	}
	mds := topo["workers"].(map[string]any)["machineDeployments"].([]any)
	md := mds[0].(map[string]any)
	if md["class"] != "accelerated" || md["name"] != "accel" || md["replicas"] != int64(1) {
		t.Errorf("topology machine deployment: %v", md)
	}
	meta := md["metadata"].(map[string]any)
	ann := meta["annotations"].(map[string]any)
	if ann["cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"] != "3" || ann["capacity.cluster-autoscaler.kubernetes.io/gpu-count"] != "2" {
		t.Errorf("autoscaler annotations: %v", ann)
	}
	if meta["labels"].(map[string]any)["kaic.dev/accelerator"] != "example" {
		t.Errorf("labels: %v", meta["labels"])
	}
	// The class's bootstrap template decides whether kaic.dev/accelerator
	// reaches the Nodes; the plan says so.
	if len(pl.Warnings) != 1 || !strings.Contains(pl.Warnings[0], "GPU pool labels kaic.dev/accelerator reach its Nodes only if worker class accelerated of ClusterClass quick-start sets them") {
		t.Errorf("warnings = %q", pl.Warnings)
	}
}

func TestClusterClassPlanWarnings(t *testing.T) {
	tests := []struct {
		name, pool string
		want       []string
	}{
		{"labels Cluster API syncs need no warning", "        labels:\n          node-role.kubernetes.io/gpu: \"\"\n", nil},
		{"other labels and taints are left to the class", `        labels:
          node-role.kubernetes.io/gpu: ""
          nvidia.com/gpu.present: "true"
          kaic.dev/accelerator: example
        taints:
        - key: nvidia.com/gpu
          value: present
          effect: NoSchedule
`, []string{
			"GPU pool labels kaic.dev/accelerator, nvidia.com/gpu.present reach its Nodes only if worker class gpu of ClusterClass quick-start sets them (kubeletExtraArgs node-labels",
			"GPU pool taints nvidia.com/gpu=present:NoSchedule reach its Nodes only if worker class gpu of ClusterClass quick-start sets them (joinConfiguration.nodeRegistration.taints",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl, err := capi.PlanFor(gpuPoolProfile(t, "quick-start", tt.pool), env(nil))
			if err != nil {
				t.Fatal(err)
			}
			if len(pl.Warnings) != len(tt.want) {
				t.Fatalf("warnings = %q, want %d", pl.Warnings, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(pl.Warnings[i], w) {
					t.Errorf("warning %d = %q, want %q", i, pl.Warnings[i], w)
				}
			}
		})
	}
	_, err := capi.PlanFor(gpuPoolProfile(t, "quick-start", "        labels:\n          kubernetes.io/gpu: \"true\"\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), `spec.cluster.capi.gpuPool.labels["kubernetes.io/gpu"]`) {
		t.Errorf("a label no path puts on Nodes is refused for a ClusterClass too: err = %v", err)
	}
}
