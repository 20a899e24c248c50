package testenv

import (
	"slices"
	"testing"
)

func TestFeatureGateArgs(t *testing.T) {
	cfg := defaultConfig()
	if args := cfg.featureGateArgs(); args != nil {
		t.Errorf("no gates gave %v, want no flag", args)
	}
	WithFeatureGates(map[string]bool{"Zeta": true, "Alpha": false})(&cfg)
	WithFeatureGates(map[string]bool{"Zeta": false})(&cfg)
	want := []string{"--feature-gates=Alpha=false,Zeta=false"}
	if got := cfg.featureGateArgs(); !slices.Equal(got, want) {
		t.Errorf("featureGateArgs() = %v, want %v (sorted, later options win)", got, want)
	}
}

func TestGPUNodes(t *testing.T) {
	cfg := defaultConfig()
	WithGPUNodes(2, 4)(&cfg)
	if len(cfg.nodes) != 2 || cfg.nodes[1].Name != "kwok-gpu-1" || cfg.nodes[1].GPUs != 4 {
		t.Fatalf("nodes = %+v", cfg.nodes)
	}
	gpus := cfg.nodes[0].Allocatable[GPUResourceName]
	if gpus.Value() != 4 {
		t.Errorf("allocatable %s = %s, want 4", GPUResourceName, gpus.String())
	}
	node := kwokNode(cfg.nodes[0])
	if node.Annotations[kwokNodeAnnotation] != "fake" || node.Labels["kubernetes.io/hostname"] != "kwok-gpu-0" {
		t.Errorf("node metadata %+v lacks the kwok annotation or hostname label", node.ObjectMeta)
	}
	if cpu := node.Status.Allocatable["cpu"]; cpu.String() != "32" {
		t.Errorf("default cpu = %s, want 32", cpu.String())
	}
	if !slices.Equal(cfg.requiredFiles(), []string{binEtcd, binAPIServer, binKwok, kwokStagesFile}) {
		t.Errorf("requiredFiles() = %v", cfg.requiredFiles())
	}
}

func TestResourceAPIVersions(t *testing.T) {
	cfg := defaultConfig()
	if !cfg.servesResourceVersion("v1") || !cfg.servesResourceVersion("v1alpha3") || cfg.authorizationModes() != "Node,RBAC" {
		t.Errorf("the default does not serve every version with the Node authorizer")
	}
	WithResourceAPIVersions("v1beta2", "v1beta1")(&cfg)
	if cfg.servesResourceVersion("v1") || !cfg.servesResourceVersion("v1beta2") || cfg.servesResourceVersion("v1alpha3") {
		t.Errorf("served versions %v", cfg.resourceVersions)
	}
	if cfg.authorizationModes() != "RBAC" {
		t.Errorf("without v1 the authorizers are %q, want RBAC alone", cfg.authorizationModes())
	}
	WithControlLoops()(&cfg)
	WithoutScheduler()(&cfg)
	if files := cfg.requiredFiles(); slices.Contains(files, binScheduler) || !slices.Contains(files, binControllerManager) {
		t.Errorf("requiredFiles() = %v, want the controller manager without the scheduler", files)
	}
}
