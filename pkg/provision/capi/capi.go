package capi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	clusterctl "sigs.k8s.io/cluster-api/cmd/clusterctl/client"
	clusterctlconfig "sigs.k8s.io/cluster-api/cmd/clusterctl/client/config"
	clusterctllog "sigs.k8s.io/cluster-api/cmd/clusterctl/log"

	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/provision"
)

// Record keys of the capi backend besides provision's common ones.
const (
	// KeyNamespace is the namespace of the Cluster object.
	KeyNamespace = "namespace"
	// KeyNamespaceCreated is "true" when kaic created that namespace.
	KeyNamespaceCreated = "namespaceCreated"
	// KeyManagementKubeconfig and KeyManagementContext reach the
	// management cluster.
	KeyManagementKubeconfig = "managementKubeconfig"
	KeyManagementContext    = "managementContext"
	// KeyManagementCluster names the kind management cluster kaic created.
	KeyManagementCluster = "managementCluster"
	// KeyManagementCreated is "true" when kaic created the management
	// cluster, and so deletes it on teardown.
	KeyManagementCreated = "managementCreated"
	// KeyProvidersInstalled lists the providers this run installed
	// (name:version, comma-separated); teardown leaves them in place on a
	// management cluster kaic did not create.
	KeyProvidersInstalled = "providersInstalled"
	// KeyManifest is the file holding the objects applied for the
	// workload cluster.
	KeyManifest = "manifest"
)

// File names in the run directory.
const (
	// managementKubeconfigName is the management cluster's kubeconfig in
	// ManagementDirName.
	managementKubeconfigName = "kubeconfig"
	// ManifestFileName holds the applied workload cluster objects.
	ManifestFileName = "capi-cluster.yaml"
	// ManagementDirName holds the kind management cluster's kubeconfig and
	// logs.
	ManagementDirName = "management"
)

// FieldManager owns the fields kaic applies with server-side apply.
const FieldManager = "kaic"

// Name is the backend's name in profiles (spec.cluster.backend).
const Name = profile.BackendCAPI

// NewManagementFunc returns the provisioner of the kind management cluster
// kaic creates when a profile names none (the backend table hands kind's).
type NewManagementFunc func(cluster *profile.KindCluster) provision.Provisioner

// Provisioner creates a workload cluster with Cluster API, driving the
// clusterctl client library in-process.
type Provisioner struct {
	Profile *profile.Profile
	// RunID labels every object the run applies on the management cluster;
	// Delete removes only a Cluster that carries it.
	RunID string
	// NewManagement makes the management cluster's provisioner when the
	// profile names no management cluster.
	NewManagement NewManagementFunc
	// Getenv reads the ${VAR} references of the profile's variables
	// (default os.Getenv).
	Getenv func(string) string
	// Retain keeps the nodes of a kind management cluster whose creation
	// failed.
	Retain bool
	// ProviderTimeout bounds the wait for the providers' controllers
	// (default 10m).
	ProviderTimeout time.Duration
	// ClusterTimeout bounds the wait for the workload cluster to become
	// available (default 45m).
	ClusterTimeout time.Duration
	// DeleteTimeout bounds the wait for the Cluster object to be gone on
	// teardown (default 30m).
	DeleteTimeout time.Duration
	// SkipProviderWait does not wait for the providers' controllers to be
	// available after Init.
	SkipProviderWait bool
	// Images are loaded into the workload cluster's machines on the Docker
	// provider (LoadsImages): into the engine, and named in every machine
	// template's preLoadImages.
	Images []provision.Image
	// Logger receives debug records, clusterctl's log among them (default
	// slog.Default()).
	Logger *slog.Logger

	// deleteManagement replaces deleting the kind management cluster
	// (tests).
	deleteManagement func(ctx context.Context, rec provision.Record, r progress.Steps) error
}

var _ provision.Provisioner = (*Provisioner)(nil)

func (p *Provisioner) getenv(name string) string {
	if p.Getenv != nil {
		return p.Getenv(name)
	}
	return os.Getenv(name)
}

func (p *Provisioner) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// clusterctlLogMu serializes setting clusterctl's logger, a package global.
var clusterctlLogMu sync.Mutex

// newClusterctl returns a clusterctl client reading only the injected
// configuration.
func (p *Provisioner) newClusterctl(ctx context.Context, dir string, vars map[string]string, r progress.Steps) (clusterctl.Client, *configReader, error) {
	c := p.Profile.Spec.Cluster.CAPI
	reader, err := newConfigReader(c, vars, filepath.Join(dir, "capi-overrides"), p.getenv)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := clusterctlconfig.New(ctx, "", clusterctlconfig.InjectReader(reader))
	if err != nil {
		return nil, nil, err
	}
	clusterctlLogMu.Lock()
	clusterctllog.SetLogger(logr.New(&clusterctlLog{logger: p.logger(), r: r}))
	clusterctlLogMu.Unlock()
	client, err := clusterctl.New(ctx, "", clusterctl.InjectConfig(cfg))
	if err != nil {
		return nil, nil, err
	}
	return client, reader, nil
}

// Create provisions the workload cluster: the management cluster, the
// providers, the cluster's objects and the GPU pool, then waits for it and
// writes its kubeconfig into dir. The record grows as things are created,
// so a failure at any point is torn down by kaic down.
func (p *Provisioner) Create(ctx context.Context, paths provision.Paths, r progress.Steps) (provision.Record, error) {
	dir := paths.Dir
	c := p.Profile.Spec.Cluster.CAPI
	rec := provision.Record{
		provision.KeyBackend:     string(Name),
		provision.KeyClusterName: c.ClusterName,
		provision.KeyCreated:     "false",
		provision.KeyRunID:       p.RunID,
		KeyNamespace:             c.Namespace,
	}
	if p.RunID == "" {
		return rec, errors.New("capi provisioner: no run id: its objects could not be told apart from another run's")
	}
	vars, err := ResolveVariables(p.Profile, p.getenv)
	if err != nil {
		return rec, err
	}
	if c.GPUPool != nil {
		if err := checkPoolLabels(c.GPUPool); err != nil {
			return rec, fmt.Errorf("profile %s: %w", p.Profile.Metadata.Name, err)
		}
	}
	mgmt, err := p.managementCluster(ctx, dir, rec, r)
	if err != nil {
		return rec, err
	}
	cc, reader, err := p.newClusterctl(ctx, dir, vars, r)
	if err != nil {
		return rec, err
	}
	installed, err := p.initProviders(ctx, cc, mgmt, r)
	if len(installed) > 0 {
		rec[KeyProvidersInstalled] = strings.Join(installed, ",")
	}
	if err != nil {
		return rec, err
	}
	objs, err := p.workloadObjects(ctx, cc, reader, mgmt, r)
	if err != nil {
		return rec, err
	}
	if len(p.Images) > 0 && LoadsImages(c) {
		if err := loadIntoEngine(ctx, p.getenv, p.Images, r); err != nil {
			return rec, err
		}
		refs := make([]string, 0, len(p.Images))
		for _, img := range p.Images {
			refs = append(refs, img.Ref)
		}
		changed, err := setPreloadImages(objs, refs)
		if err != nil {
			return rec, err
		}
		if len(changed) == 0 {
			return rec, fmt.Errorf("the cluster template has no Docker machine template to preload %s into", strings.Join(refs, ", "))
		}
		r.Notef("every machine preloads %s (%s)", strings.Join(refs, ", "), strings.Join(changed, ", "))
		for _, ref := range refs {
			rec.AddLoaded(ref)
		}
	}
	label(objs, p.RunID)
	manifest := filepath.Join(dir, ManifestFileName)
	if err := writeManifest(manifest, objs); err != nil {
		return rec, err
	}
	rec[KeyManifest] = manifest
	if err := mgmt.checkClusterOwner(ctx, c.Namespace, c.ClusterName, p.RunID); err != nil {
		return rec, err
	}
	created, err := mgmt.ensureNamespace(ctx, c.Namespace)
	if created {
		rec[KeyNamespaceCreated] = "true"
	}
	if err != nil {
		return rec, err
	}
	// From here on a Cluster object may exist: teardown must delete it.
	rec[provision.KeyCreated] = "true"
	step := r.StartStep(fmt.Sprintf("applying %d objects of cluster %s/%s (server-side apply, field manager %s)", len(objs), c.Namespace, c.ClusterName, FieldManager))
	err = mgmt.apply(ctx, objs)
	step.Done(err)
	if err != nil {
		return rec, err
	}
	step = r.StartStep(fmt.Sprintf("waiting for cluster %s to become available", c.ClusterName))
	err = mgmt.waitAvailable(ctx, c.Namespace, c.ClusterName, durationOr(p.ClusterTimeout, 45*time.Minute), r)
	step.Done(err)
	if err != nil {
		return rec, err
	}
	kubeconfig, contextName, err := p.writeKubeconfig(ctx, cc, mgmt, paths.Kubeconfig)
	if err != nil {
		return rec, err
	}
	rec[provision.KeyKubeconfig] = kubeconfig
	rec[provision.KeyContext] = contextName
	r.Notef("kubeconfig of %s written to %s", c.ClusterName, kubeconfig)
	return rec, nil
}

// Delete deletes the Cluster object and waits until Cluster API has
// removed it and its machines, then deletes the management cluster if
// kaic created it. The management cluster is kept when the Cluster is not
// gone: deleting it would orphan the machines it still manages.
func (p *Provisioner) Delete(ctx context.Context, rec provision.Record, r progress.Steps) error {
	if rec[provision.KeyCreated] == "true" {
		mgmt, err := connectManagement(rec[KeyManagementKubeconfig], rec[KeyManagementContext])
		if err != nil {
			return fmt.Errorf("reaching the management cluster to delete %s: %w", rec[provision.KeyClusterName], err)
		}
		ns, name := rec[KeyNamespace], rec[provision.KeyClusterName]
		if err := mgmt.checkClusterOwner(ctx, ns, name, rec[provision.KeyRunID]); err != nil {
			return fmt.Errorf("cluster %s/%s is left as it is: %w", ns, name, err)
		}
		step := r.StartStep(fmt.Sprintf("deleting cluster %s/%s and waiting until Cluster API has removed it", ns, name))
		err = mgmt.deleteCluster(ctx, ns, name, durationOr(p.DeleteTimeout, 30*time.Minute), r)
		step.Done(err)
		if err != nil {
			if rec[KeyManagementCreated] == "true" {
				return fmt.Errorf("%w; management cluster %s kept, since deleting it would orphan the machines of %s", err, rec[KeyManagementCluster], name)
			}
			return err
		}
		if rec[KeyNamespaceCreated] == "true" && rec[KeyManagementCreated] != "true" {
			if err := mgmt.deleteNamespace(ctx, ns); err != nil {
				return err
			}
		}
	} else {
		r.Notef("the run created no Cluster object: nothing to delete on the management cluster")
	}
	if rec[KeyManagementCreated] != "true" {
		return nil
	}
	deleteManagement := p.deleteManagement
	if deleteManagement == nil {
		deleteManagement = p.deleteKindManagement
	}
	return deleteManagement(ctx, rec, r)
}

// CollectLogs writes the Cluster API objects of the cluster, with their
// status, into dir, and the kind management cluster's logs if kaic
// created it.
func (p *Provisioner) CollectLogs(ctx context.Context, rec provision.Record, dir string) error {
	var errs []error
	mgmt, err := connectManagement(rec[KeyManagementKubeconfig], rec[KeyManagementContext])
	if err == nil {
		err = mgmt.dumpObjects(ctx, rec[KeyNamespace], rec[provision.KeyClusterName], filepath.Join(dir, "capi-objects.yaml"))
	}
	errs = append(errs, err)
	if rec[KeyManagementCreated] == "true" {
		kp, mgmtRec, err := p.kindManagement(rec)
		if err == nil {
			err = kp.CollectLogs(ctx, mgmtRec, filepath.Join(dir, ManagementDirName))
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
