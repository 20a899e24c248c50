package kaic

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// kubeconfigFor writes a kubeconfig whose one context reaches server.
func kubeconfigFor(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	doc := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "` + server + `"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}]
current-context: ctx
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunClusterIsOneRule(t *testing.T) {
	loader := NewLoader()
	load := func(name string) *profile.Profile {
		r, err := loader.Load(name)
		if err != nil {
			t.Fatal(err)
		}
		return r.Profile
	}
	kindProfile, existingProfile := load("kind-dra"), load("existing")
	runKubeconfig := kubeconfigFor(t, "https://10.0.0.1:6443")
	other := kubeconfigFor(t, "https://10.0.0.2:6443")
	provisioned := &pipeline.State{Phases: []pipeline.PhaseState{{
		Name: pipeline.PhaseProvision, Status: pipeline.StatusSucceeded,
		Outputs: pipeline.Outputs{"kubeconfig": runKubeconfig, "context": "ctx"},
	}}}
	installedOnly := &pipeline.State{Phases: []pipeline.PhaseState{{
		Name: pipeline.PhaseInstall, Status: pipeline.StatusFailed,
		Outputs: pipeline.Outputs{"kubeconfig": runKubeconfig, "context": "ctx"},
	}}}
	tornDown := &pipeline.State{Phases: []pipeline.PhaseState{{Name: pipeline.PhaseProvision, Status: pipeline.StatusTornDown}}}

	cases := []struct {
		name    string
		p       *profile.Profile
		state   *pipeline.State
		flags   Target
		want    Target
		wantErr string
	}{
		{"kind: the provisioned cluster", kindProfile, provisioned, Target{}, Target{runKubeconfig, "ctx"}, ""},
		{"kind: --kubeconfig refused", kindProfile, provisioned, Target{Kubeconfig: other}, Target{}, "creates its own cluster (backend kind)"},
		{"kind: nothing provisioned", kindProfile, &pipeline.State{}, Target{}, Target{}, "records no cluster provisioned by this run"},
		{"kind: torn down", kindProfile, tornDown, Target{}, Target{}, "records no cluster provisioned by this run"},
		{"existing: the adopted cluster", existingProfile, provisioned, Target{}, Target{runKubeconfig, "ctx"}, ""},
		{"existing: the same cluster named again", existingProfile, provisioned, Target{Kubeconfig: runKubeconfig}, Target{runKubeconfig, "ctx"}, ""},
		{"existing: another cluster refused", existingProfile, provisioned, Target{Kubeconfig: other}, Target{}, "was made against the cluster at 10.0.0.1:6443"},
		{"existing: what install recorded", existingProfile, installedOnly, Target{}, Target{runKubeconfig, "ctx"}, ""},
		{"existing: nothing recorded, the flags", existingProfile, &pipeline.State{}, Target{Kubeconfig: other, Context: "ctx"}, Target{other, "ctx"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := runCluster(c.state, "run", c.p, c.flags)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("cluster = %+v, want %+v", got, c.want)
			}
		})
	}
	var refused *TargetRefusedError
	if _, err := runCluster(provisioned, "run", kindProfile, Target{Context: "x"}); !errors.As(err, &refused) {
		t.Errorf("a --context for kind: err = %v, want a *TargetRefusedError", err)
	}
}
