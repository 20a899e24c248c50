package kaic

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/provision"
)

// Target names an existing cluster on the command line: a kubeconfig file
// and a context in it. Only profiles that adopt a cluster (backend
// existing) take one.
type Target struct {
	Kubeconfig string
	Context    string
}

func (t Target) empty() bool { return t.Kubeconfig == "" && t.Context == "" }

// TargetRefusedError is returned when --kubeconfig or --context names a
// cluster for a profile that creates its own.
type TargetRefusedError struct {
	Profile string
	Backend profile.Backend
}

func (e *TargetRefusedError) Error() string {
	return fmt.Sprintf("--kubeconfig and --context name an existing cluster, but profile %s creates its own cluster (backend %s) "+
		"and every phase of its runs talks to that one only: drop them, or use a profile with backend existing "+
		"(e.g. kaic verify -p existing --kubeconfig FILE)", e.Profile, e.Backend)
}

// checkTarget refuses a command-line cluster for a backend that creates
// its cluster: it is checked before anything is written.
func checkTarget(p *profile.Profile, t Target) error {
	b, err := backendOf(p)
	if err != nil {
		return err
	}
	if b.createsCluster && !t.empty() {
		return &TargetRefusedError{Profile: p.Metadata.Name, Backend: b.name}
	}
	return nil
}

// adopted is the cluster an existing-backend run adopts: the command
// line's, else the profile's (spec.cluster.existing), else kubectl's
// default ($KUBECONFIG, ~/.kube/config; Kubeconfig then is "").
func adopted(p *profile.Profile, t Target) Target {
	out := t
	if e := p.Spec.Cluster.Existing; e != nil {
		if out.Kubeconfig == "" {
			out.Kubeconfig = e.Kubeconfig
		}
		if out.Context == "" {
			out.Context = e.Context
		}
	}
	return out
}

// runCluster is the one rule for the cluster a run talks to, used by every
// phase and by kaic down:
//   - a backend that creates its cluster (kind, capi): the one the provision
//     phase of this run directory recorded, and nothing else;
//   - backend existing: the cluster the run adopted when it first reached
//     one (recorded by the provision phase, else by the install phase), and
//     a --kubeconfig naming another is refused: the run directory belongs to
//     that cluster; before that, the command line's, the profile's or
//     kubectl's default.
//
// The kubeconfig path is "" for kubectl's default.
func runCluster(state *pipeline.State, dir string, p *profile.Profile, t Target) (Target, error) {
	b, err := backendOf(p)
	if err != nil {
		return Target{}, err
	}
	provisioned := recordedCluster(state, pipeline.PhaseProvision, true)
	if b.createsCluster {
		if err := checkTarget(p, t); err != nil {
			return Target{}, err
		}
		if provisioned == nil {
			return Target{}, fmt.Errorf("%w: %s records no cluster provisioned by this run (profile %s creates its own, backend %s): run kaic provision --out %s first",
				pipeline.ErrMissingOutput, dir, p.Metadata.Name, b.name, dir)
		}
		return *provisioned, nil
	}
	recorded := provisioned
	if recorded == nil {
		recorded = recordedCluster(state, pipeline.PhaseInstall, false)
	}
	want := adopted(p, t)
	if recorded == nil {
		if want.Kubeconfig != "" {
			abs, err := filepath.Abs(want.Kubeconfig)
			if err != nil {
				return Target{}, err
			}
			want.Kubeconfig = abs
		}
		return want, nil
	}
	if !t.empty() {
		server, err := serverOf(want)
		if err != nil {
			return Target{}, fmt.Errorf("--kubeconfig/--context: %w", err)
		}
		if recordedServer, err := serverOf(*recorded); err == nil && server != recordedServer {
			return Target{}, fmt.Errorf("%s was made against the cluster at %s, but --kubeconfig/--context name the one at %s: use another run directory (--out) for another cluster",
				dir, recordedServer, server)
		}
	}
	return *recorded, nil
}

// recordedCluster is the cluster a phase recorded using, nil when it
// recorded none (or, with succeeded, when it did not succeed).
func recordedCluster(state *pipeline.State, phase string, succeeded bool) *Target {
	if state == nil {
		return nil
	}
	rec := state.Phase(phase)
	if rec == nil || (succeeded && rec.Status != pipeline.StatusSucceeded) {
		return nil
	}
	if _, ok := rec.Outputs[provision.KeyKubeconfig]; !ok {
		return nil
	}
	return &Target{Kubeconfig: rec.Outputs[provision.KeyKubeconfig], Context: rec.Outputs[provision.KeyContext]}
}

// serverOf returns the host of the API server a kubeconfig and context
// reach, as the existing provisioner records it.
func serverOf(t Target) (string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = t.Kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: t.Context}).ClientConfig()
	if err != nil {
		return "", err
	}
	if u, err := url.Parse(cfg.Host); err == nil && u.Host != "" {
		return u.Host, nil
	}
	return cfg.Host, nil
}

// kubeconfigOf returns the content of a target's kubeconfig: the file, or
// kubectl's default merged into one when the path is "".
func kubeconfigOf(t Target) ([]byte, error) {
	if t.Kubeconfig != "" {
		data, err := os.ReadFile(t.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("reading the cluster's kubeconfig: %w", err)
		}
		return data, nil
	}
	raw, err := clientcmd.NewDefaultClientConfigLoadingRules().Load()
	if err != nil {
		return nil, fmt.Errorf("reading the default kubeconfig: %w", err)
	}
	return clientcmd.Write(*raw)
}
