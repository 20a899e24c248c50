package capi_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/pkg/plan"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/provision/capi"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestGPUPoolAnnotations(t *testing.T) {
	r, err := plan.NewLoader().Load("capi-aws-gpu")
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
	if !strings.Contains(strings.Join(pl.Providers, " "), "infrastructure aws") {
		t.Errorf("providers: %v", pl.Providers)
	}
	if len(pl.Warnings) != 1 || !strings.Contains(pl.Warnings[0], "infrastructure provider aws is not pinned") {
		t.Errorf("warnings: %v", pl.Warnings)
	}
}

func TestMissingVariablesNamed(t *testing.T) {
	for _, name := range []string{"capi-aws-gpu", "capi-azure-gpu", "capi-gcp-gpu"} {
		r, err := plan.NewLoader().Load(name)
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
	r, err := plan.NewLoader().Load("capi-docker")
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
}
