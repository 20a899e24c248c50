package kaic

import (
	"context"
	"fmt"

	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/provision"
	"github.com/kaic-dev/kaic/pkg/provision/capi"
	"github.com/kaic-dev/kaic/pkg/provision/existing"
	"github.com/kaic-dev/kaic/pkg/provision/kind"
	"github.com/kaic-dev/kaic/pkg/provision/preflight"
)

// backend is one row of the backend table: how kaic provisions, plans and
// checks the host for one spec.cluster.backend. A new backend is its
// package under pkg/provision, one row here and one profile section.
type backend struct {
	name profile.Backend
	// createsCluster says kaic creates (and so owns) the cluster, rather
	// than adopting one the user names with --kubeconfig.
	createsCluster bool
	// provisioner builds the backend's provisioner.
	provisioner func(p *profile.Profile, o provisionerOptions) provision.Provisioner
	// plan fills the plan's cluster part and returns its warnings.
	plan func(p *profile.Profile, getenv func(string) string, c *Cluster) ([]string, error)
	// preflight says what kaic doctor checks on this machine, or why
	// nothing needs checking.
	preflight func(p *profile.Profile) (opts preflight.Options, skip string)
	// loadsImages says kaic loads images (its probe image) into the nodes
	// of the profile's cluster itself; nil: never.
	loadsImages func(p *profile.Profile) bool
	// loadImages loads images into the nodes of the cluster rec records
	// and records them in rec.
	loadImages func(ctx context.Context, p *profile.Profile, rec provision.Record, images []provision.Image, r progress.Steps) error
}

// provisionerOptions are the run's settings a provisioner may need.
type provisionerOptions struct {
	runID            string
	getenv           func(string) string
	target           Target
	retain           bool
	exportKubeconfig bool
	// images are loaded into the nodes of a cluster the backend creates.
	images []provision.Image
}

// backends is the backend table.
var backends = []backend{
	{
		name:           kind.Name,
		createsCluster: true,
		provisioner: func(p *profile.Profile, o provisionerOptions) provision.Provisioner {
			return newKind(p.Spec.Cluster.Kind, o)
		},
		plan: func(p *profile.Profile, _ func(string) string, c *Cluster) ([]string, error) {
			cfg, warnings, err := kind.Plan(p.Spec.Cluster.Kind, p.Spec.KubernetesVersion)
			c.KindConfig = cfg
			return warnings, err
		},
		preflight: func(p *profile.Profile) (preflight.Options, string) {
			return kind.Preflight(p.Spec.Cluster.Kind), ""
		},
		loadsImages: func(*profile.Profile) bool { return true },
		loadImages: func(ctx context.Context, p *profile.Profile, rec provision.Record, images []provision.Image, r progress.Steps) error {
			return (&kind.Provisioner{Cluster: p.Spec.Cluster.Kind}).LoadImages(ctx, rec, images, r)
		},
	},
	{
		name:           capi.Name,
		createsCluster: true,
		provisioner: func(p *profile.Profile, o provisionerOptions) provision.Provisioner {
			return &capi.Provisioner{
				Profile: p, RunID: o.runID, Getenv: o.getenv, Retain: o.retain, Images: o.images,
				// The management cluster kaic creates is a kind cluster of
				// the same run.
				NewManagement: func(k *profile.KindCluster) provision.Provisioner {
					return newKind(k, provisionerOptions{runID: o.runID, retain: o.retain})
				},
			}
		},
		plan: func(p *profile.Profile, getenv func(string) string, c *Cluster) ([]string, error) {
			cp, err := capi.PlanFor(p, getenv)
			if err != nil {
				return nil, err
			}
			c.CAPI = cp
			return cp.Warnings, nil
		},
		preflight: func(p *profile.Profile) (preflight.Options, string) {
			return capi.Preflight(p.Spec.Cluster.CAPI)
		},
		loadsImages: func(p *profile.Profile) bool { return capi.LoadsImages(p.Spec.Cluster.CAPI) },
		loadImages: func(ctx context.Context, p *profile.Profile, rec provision.Record, images []provision.Image, r progress.Steps) error {
			return (&capi.Provisioner{Profile: p}).LoadImages(ctx, rec, images, r)
		},
	},
	{
		name: existing.Name,
		provisioner: func(p *profile.Profile, o provisionerOptions) provision.Provisioner {
			return &existing.Provisioner{Kubeconfig: o.target.Kubeconfig, Context: o.target.Context, KubernetesVersion: p.Spec.KubernetesVersion}
		},
		plan: func(p *profile.Profile, _ func(string) string, c *Cluster) ([]string, error) {
			c.Existing = p.Spec.Cluster.Existing
			return nil, nil
		},
		preflight: func(*profile.Profile) (preflight.Options, string) {
			return preflight.Options{}, "This profile adopts an existing cluster: nothing to check on this machine (kaic provision checks the cluster)."
		},
	},
}

func newKind(k *profile.KindCluster, o provisionerOptions) *kind.Provisioner {
	return &kind.Provisioner{Cluster: k, RunID: o.runID, Retain: o.retain, ExportKubeconfig: o.exportKubeconfig, Images: o.images}
}

// backendOf returns the table row of a profile's backend.
func backendOf(p *profile.Profile) (*backend, error) {
	for i := range backends {
		if backends[i].name == p.Spec.Cluster.Backend {
			return &backends[i], nil
		}
	}
	return nil, fmt.Errorf("unknown cluster backend %q", p.Spec.Cluster.Backend)
}
