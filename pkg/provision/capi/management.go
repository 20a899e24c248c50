package capi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/provision"
)

// dockerSocket is mounted into the kind management cluster so that the
// docker infrastructure provider can run machines as containers.
const dockerSocket = "/var/run/docker.sock"

// management is a connection to the management cluster.
type management struct {
	kubeconfig string
	context    string
	dynamic    dynamic.Interface
	mapper     *restmapper.DeferredDiscoveryRESTMapper
}

// connectManagement builds clients for the management cluster that a
// kubeconfig file and context name reach.
func connectManagement(kubeconfig, contextName string) (*management, error) {
	if kubeconfig == "" {
		return nil, fmt.Errorf("no management cluster kubeconfig recorded")
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: contextName},
	).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return newManagement(kubeconfig, contextName, cfg)
}

func newManagement(kubeconfig, contextName string, cfg *rest.Config) (*management, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "kaic"
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &management{
		kubeconfig: kubeconfig,
		context:    contextName,
		dynamic:    dyn,
		mapper:     restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc)),
	}, nil
}

// managementCluster connects to the profile's management cluster, creating
// a kind cluster when the profile names none.
func (p *Provisioner) managementCluster(ctx context.Context, dir string, rec provision.Record, r progress.Steps) (*management, error) {
	m := p.Profile.Spec.Cluster.CAPI.Management
	if m.Kubeconfig != "" {
		rec[KeyManagementKubeconfig] = m.Kubeconfig
		rec[KeyManagementContext] = m.Context
		rec[KeyManagementCreated] = "false"
		return connectManagement(m.Kubeconfig, m.Context)
	}
	kp, mgmtRec, err := p.kindManagement(rec)
	if err != nil {
		return nil, err
	}
	mgmtDir := filepath.Join(dir, ManagementDirName)
	kubeconfig := filepath.Join(mgmtDir, managementKubeconfigName)
	rec[KeyManagementCluster] = mgmtRec[provision.KeyClusterName]
	rec[KeyManagementKubeconfig] = kubeconfig
	rec[KeyManagementContext] = "kind-" + mgmtRec[provision.KeyClusterName]
	if _, err := os.Stat(kubeconfig); err == nil {
		// This run directory created it before (a resumed run).
		rec[KeyManagementCreated] = "true"
		r.Notef("reusing management cluster %s created by this run", rec[KeyManagementCluster])
		return connectManagement(kubeconfig, rec[KeyManagementContext])
	}
	if err := os.MkdirAll(mgmtDir, 0o755); err != nil {
		return nil, err
	}
	got, err := kp.Create(ctx, provision.Paths{Dir: mgmtDir, Kubeconfig: kubeconfig}, r)
	if got[provision.KeyCreated] == "true" {
		rec[KeyManagementCreated] = "true"
	}
	if err != nil {
		return nil, fmt.Errorf("management cluster: %w", err)
	}
	return connectManagement(got[provision.KeyKubeconfig], got[provision.KeyContext])
}

// ManagementCluster is the kind section of the management cluster kaic
// creates for a capi profile: one control plane node of the profile's
// Kubernetes version named <cluster>-mgmt, with the Docker socket mounted
// when the infrastructure provider is docker.
func ManagementCluster(p *profile.Profile) *profile.KindCluster {
	c := p.Spec.Cluster.CAPI
	image, _ := profile.KindNodeImage(p.Spec.KubernetesVersion)
	workers := 0
	k := &profile.KindCluster{
		Name:      c.ClusterName + "-mgmt",
		NodeImage: image,
		Workers:   &workers,
		Provider:  "auto",
		GPUs:      "none",
	}
	if c.Infrastructure == "docker" {
		k.ExtraMounts = []profile.Mount{{HostPath: dockerSocket, ContainerPath: dockerSocket}}
	}
	return k
}

// kindManagement returns the provisioner of the management cluster and the
// record it understands, matching the capi record.
func (p *Provisioner) kindManagement(rec provision.Record) (provision.Provisioner, provision.Record, error) {
	if p.NewManagement == nil {
		return nil, nil, errors.New("capi provisioner: no management cluster provisioner (NewManagement) to create the management cluster with")
	}
	k := ManagementCluster(p.Profile)
	mgmtRec := provision.Record{
		provision.KeyBackend:     "kind",
		provision.KeyClusterName: k.Name,
		provision.KeyKubeconfig:  rec[KeyManagementKubeconfig],
		provision.KeyCreated:     rec[KeyManagementCreated],
		provision.KeyRunID:       rec[provision.KeyRunID],
	}
	if name := rec[KeyManagementCluster]; name != "" {
		mgmtRec[provision.KeyClusterName] = name
		k.Name = name
	}
	return p.NewManagement(k), mgmtRec, nil
}

func (p *Provisioner) deleteKindManagement(ctx context.Context, rec provision.Record, r progress.Steps) error {
	kp, mgmtRec, err := p.kindManagement(rec)
	if err != nil {
		return err
	}
	return kp.Delete(ctx, mgmtRec, r)
}
