package kaic

import (
	"fmt"
	"testing"

	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
)

// PRODUCT.yaml's notes name only what the run installed: not a release it
// found there and left alone, nor one that failed or never started.
func TestInstalledComponentsAreWhatTheRunInstalled(t *testing.T) {
	dir, err := OpenRunDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	err = dir.RecordReleases(
		stack.Record{Component: "kueue", Kind: "helm", Version: "0.20.0", Action: "installed"},
		stack.Record{Component: "kuberay-operator", Kind: "helm", Version: "1.6.0", Action: "failed"},
		stack.Record{Component: "envoy-gateway", Kind: "helm", Version: "v1.9.1", PreExisting: true, Action: "not-started"},
		stack.Record{Component: "gateway-api", Kind: "manifests", Version: "v1.5.0", Action: "applied"},
		stack.Record{Component: "cert-manager", Kind: "helm", Version: "v1.20.2", Action: "unchanged"},
	)
	if err != nil {
		t.Fatal(err)
	}
	r := &profile.Resolved{Components: []profile.Component{
		{Name: "kueue", Provides: []string{"gang-scheduling"}},
		{Name: "kuberay-operator", Provides: []string{"ai-operator"}},
		{Name: "envoy-gateway", Provides: []string{"gateway"}},
		{Name: "gateway-api", Provides: []string{"gateway-api-crds"}},
		{Name: "cert-manager"}, // provides nothing a requirement rests on
	}}
	got := fmt.Sprint(installedComponents(dir, r))
	if want := "[{kueue 0.20.0 [gang-scheduling]} {gateway-api v1.5.0 [gateway-api-crds]}]"; got != want {
		t.Errorf("installed components %s, want %s", got, want)
	}
}
