package kind_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/ownership"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/provision/kind"
)

var update = flag.Bool("update", false, "rewrite the golden kind configurations")

// profileFor writes a kind profile for a Kubernetes version with the given
// extra kind settings.
func profileFor(version, kindSettings string) string {
	return fmt.Sprintf(`apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: golden
spec:
  kubernetesVersion: %s
  cluster:
    backend: kind
    kind:
      workers: 2
      workerLabels: {kaic.dev/accelerator: example}
%s`, version, kindSettings)
}

// gatesFor are DRA gates valid (and not locked) at each minor, taken from
// what the minor's release defines.
var gatesFor = map[string]string{
	"v1.33.4": "      featureGates: {DynamicResourceAllocation: true, DRAAdminAccess: true}\n      runtimeConfig: {resource.k8s.io/v1beta1: \"true\", resource.k8s.io/v1beta2: \"true\"}\n",
	"v1.34.3": "      featureGates: {DRAConsumableCapacity: true}\n",
	"v1.35.4": "      featureGates: {DRAPartitionableDevices: true}\n",
	"v1.36.3": "      featureGates: {DRAResourcePoolStatus: true}\n",
	"v1.37.0": "      featureGates: {DRAListTypeAttributes: true}\n      kubeletConfig: {failCgroupV1: false}\n",
}

func TestGoldenConfigPerMinor(t *testing.T) {
	for version, settings := range gatesFor {
		t.Run(version, func(t *testing.T) {
			r, err := kaic.NewLoader().LoadBytes("golden.yaml", []byte(profileFor(version, settings)))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := kind.Config(r.Profile.Spec.Cluster.Kind, "")
			if err != nil {
				t.Fatal(err)
			}
			got, err := kind.ConfigYAML(cfg)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "kind-"+version+".yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("kind config differs from %s (go test -update rewrites it):\n%s", golden, got)
			}
		})
	}
}

func TestGatesOfAnotherMinorRejected(t *testing.T) {
	cases := []struct{ version, gate, want string }{
		// DRADerivedAttributes first appears in 1.37.
		{"v1.36.3", "DRADerivedAttributes: true", "spec.cluster.kind.featureGates.DRADerivedAttributes: is not a feature gate of Kubernetes 1.36"},
		// DynamicResourceAllocation is GA and locked on from 1.35.
		{"v1.35.4", "DynamicResourceAllocation: false", "spec.cluster.kind.featureGates.DynamicResourceAllocation: is locked to true in Kubernetes 1.35"},
		{"v1.37.0", "NoSuchGate: true", "is not a feature gate of Kubernetes 1.37"},
	}
	for _, c := range cases {
		_, err := kaic.NewLoader().LoadBytes("gates.yaml", []byte(profileFor(c.version, "      featureGates: {"+c.gate+"}\n")))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s: err = %v, want %q", c.version, c.gate, err, c.want)
		}
	}
}

func TestGPUsGoToTheFirstWorker(t *testing.T) {
	r, err := kaic.NewLoader().LoadBytes("gpus.yaml", []byte(profileFor("v1.37.0", "      gpus: \"0,1\"\n")))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := kind.Config(r.Profile.Spec.Cluster.Kind, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Nodes) != 3 {
		t.Fatalf("%d nodes", len(cfg.Nodes))
	}
	var mounts []string
	for _, m := range cfg.Nodes[1].ExtraMounts {
		mounts = append(mounts, m.HostPath+"->"+m.ContainerPath)
	}
	want := "/dev/null->/var/run/nvidia-container-devices/0 /dev/null->/var/run/nvidia-container-devices/1"
	if strings.Join(mounts, " ") != want {
		t.Errorf("first worker mounts %v, want %s", mounts, want)
	}
	if len(cfg.Nodes[0].ExtraMounts) != 0 || len(cfg.Nodes[2].ExtraMounts) != 0 {
		t.Errorf("GPUs mounted outside the first worker: %+v", cfg.Nodes)
	}

	r, err = kaic.NewLoader().LoadBytes("nogpuworker.yaml", []byte(strings.Replace(profileFor("v1.37.0", "      gpus: all\n"), "workers: 2", "workers: 0", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kind.Config(r.Profile.Spec.Cluster.Kind, ""); err == nil || !strings.Contains(err.Error(), "no worker") {
		t.Errorf("gpus without workers: %v", err)
	}
}

func TestEveryNodeCarriesTheRunID(t *testing.T) {
	r, err := kaic.NewLoader().LoadBytes("runid.yaml", []byte(profileFor("v1.37.0", "      workerLabels: {pool: gpu}\n")))
	if err != nil {
		t.Fatal(err)
	}
	const runID = "20261203-0a0b0c0d"
	cfg, err := kind.Config(r.Profile.Spec.Cluster.Kind, runID)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range cfg.Nodes {
		if n.Labels[ownership.RunIDLabel] != runID {
			t.Errorf("node %d (%s) labels %v lack %s=%s", i, n.Role, n.Labels, ownership.RunIDLabel, runID)
		}
		if n.Role == "worker" && n.Labels["pool"] != "gpu" {
			t.Errorf("worker %d lost its profile labels: %v", i, n.Labels)
		}
	}
	if r.Profile.Spec.Cluster.Kind.WorkerLabels[ownership.RunIDLabel] != "" {
		t.Errorf("the profile's worker labels were changed: %v", r.Profile.Spec.Cluster.Kind.WorkerLabels)
	}
}

// A cgroup v1 host: the kubelets are told to accept it, unless the
// profile's kubelet configuration already says what to do.
func TestAcceptCgroupV1(t *testing.T) {
	k := &profile.KindCluster{Name: "c", NodeImage: "kindest/node:v1.37.0"}
	cfg, err := kind.Config(k, "run")
	if err != nil {
		t.Fatal(err)
	}
	before := len(cfg.KubeadmConfigPatches)
	told, err := kind.AcceptCgroupV1(cfg, k)
	if err != nil || !told {
		t.Fatalf("told=%v err=%v", told, err)
	}
	if len(cfg.KubeadmConfigPatches) != before+1 || !strings.Contains(cfg.KubeadmConfigPatches[before], "failCgroupV1: false") {
		t.Errorf("patches %q", cfg.KubeadmConfigPatches)
	}
	k.KubeletConfig = map[string]any{"failCgroupV1": true}
	cfg, err = kind.Config(k, "run")
	if err != nil {
		t.Fatal(err)
	}
	before = len(cfg.KubeadmConfigPatches)
	if told, err := kind.AcceptCgroupV1(cfg, k); err != nil || told || len(cfg.KubeadmConfigPatches) != before {
		t.Errorf("profile sets failCgroupV1 itself: told=%v err=%v patches %q", told, err, cfg.KubeadmConfigPatches)
	}
}
