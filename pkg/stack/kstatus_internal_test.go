package stack

import (
	"testing"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

func TestComputeStatusIgnoresOnlyUnreadableCustomResources(t *testing.T) {
	tests := []struct {
		name    string
		object  string
		want    status.Status
		wantErr bool
	}{
		{"custom, observedGeneration a string", "apiVersion: x.example.com/v1\nkind: Rollout\nmetadata: {name: a, generation: 2}\nstatus: {observedGeneration: \"2\"}\n", status.CurrentStatus, false},
		{"custom, conditions a map", "apiVersion: x.example.com/v1\nkind: Thing\nmetadata: {name: a}\nstatus: {conditions: {ready: true}}\n", status.CurrentStatus, false},
		{"custom, no status", "apiVersion: x.example.com/v1\nkind: Thing\nmetadata: {name: a}\n", status.CurrentStatus, false},
		{"custom, Ready False", "apiVersion: x.example.com/v1\nkind: Thing\nmetadata: {name: a}\nstatus: {conditions: [{type: Ready, status: \"False\"}]}\n", status.InProgressStatus, false},
		{"custom, generation not observed", "apiVersion: x.example.com/v1\nkind: Thing\nmetadata: {name: a, generation: 3}\nstatus: {observedGeneration: 2}\n", status.InProgressStatus, false},
		{"built-in, unreadable status", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a, generation: 1}\nstatus: {observedGeneration: one}\n", "", true},
		{"built-in group with a dot", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: a, generation: 1}\nstatus: {observedGeneration: one}\n", "", true},
	}
	for _, tt := range tests {
		data, err := yaml.YAMLToJSON([]byte(tt.object))
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			t.Fatal(err)
		}
		res, err := computeStatus(u)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: error %v, want error %v", tt.name, err, tt.wantErr)
			continue
		}
		if err == nil && res.Status != tt.want {
			t.Errorf("%s: status %s (%s), want %s", tt.name, res.Status, res.Message, tt.want)
		}
	}
}

func TestCustomResourceReaderSupportsOnlyCustomGroups(t *testing.T) {
	r := customResourceReader{}
	for gk, want := range map[schema.GroupKind]bool{
		{Group: "apps", Kind: "Deployment"}:                               false,
		{Group: "batch", Kind: "Job"}:                                     false,
		{Group: "", Kind: "Pod"}:                                          false,
		{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}: false,
		{Group: "gateway.networking.k8s.io", Kind: "Gateway"}:             true,
		{Group: "argoproj.io", Kind: "Rollout"}:                           true,
	} {
		if got := r.Supports(gk); got != want {
			t.Errorf("Supports(%v) = %v, want %v", gk, got, want)
		}
	}
}
