package kaic_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/kaic"
)

// profile133 is a 1.33 profile of backend (kind or existing) with the
// cluster settings given.
func profile133(backend, clusterSettings string) string {
	return `apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: dra-133
spec:
  kubernetesVersion: v1.33.7
  conformanceVersion: "1.33"
  cluster:
    backend: ` + backend + `
    ` + backend + `:
` + clusterSettings + `
  accelerator:
    model: example
  checks:
    probeImage: registry.example.com/kaic/probe:test
`
}

// Kubernetes 1.33 serves DRA only as v1beta1 and v1beta2, and AI
// conformance 1.33 has dra_support as a SHOULD: a 1.33 profile plans with
// dra_support run, its requirements are those of the official 1.33
// checklist, and a kind cluster that would not switch DRA on is warned of.
func TestPlan133RunsDRASupport(t *testing.T) {
	official, err := conformance.Load(t.Context(), "1.33", conformance.Source{Dir: testenv.OfficialChecklists(t), Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, backend, settings string
		draWarning              bool
	}{
		{"kind with DRA on", "kind", `      workers: 1
      featureGates: {DynamicResourceAllocation: true}
      runtimeConfig: {resource.k8s.io/v1beta1: "true", resource.k8s.io/v1beta2: "true"}`, false},
		{"kind without DRA", "kind", `      workers: 1`, true},
		{"existing", "existing", `      context: some-133-cluster`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "profile.yaml")
			if err := os.WriteFile(file, []byte(profile133(tc.backend, tc.settings)), 0o600); err != nil {
				t.Fatal(err)
			}
			pl, err := kaic.New().Plan(file)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, c := range pl.Checks {
				ids = append(ids, c.ID)
				if c.ID == "dra_support" && (c.Action != kaic.ActionRun || c.Level != string(conformance.Should)) {
					t.Errorf("dra_support planned %+v, want run at SHOULD", c)
				}
			}
			for _, req := range official.Requirements {
				if !slices.Contains(ids, req.ID) {
					t.Errorf("the plan lacks %s of the official 1.33 checklist: %v", req.ID, ids)
				}
			}
			if len(ids) != len(official.Requirements) {
				t.Errorf("planned %v, the official 1.33 checklist has %d requirements", ids, len(official.Requirements))
			}
			warned := slices.ContainsFunc(pl.Warnings, func(w string) bool { return strings.Contains(w, "serves no DRA API") })
			if warned != tc.draWarning {
				t.Errorf("DRA warning %v, want %v: %q", warned, tc.draWarning, pl.Warnings)
			}
		})
	}
}
