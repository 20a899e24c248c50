package capi

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clusterctlv1 "sigs.k8s.io/cluster-api/cmd/clusterctl/api/v1alpha3"
	clusterctl "sigs.k8s.io/cluster-api/cmd/clusterctl/client"

	"github.com/kaic-dev/kaic/pkg/progress"
)

// providersGVR is clusterctl's inventory of installed providers.
var providersGVR = schema.GroupVersionResource{Group: clusterctlv1.GroupVersion.Group, Version: clusterctlv1.GroupVersion.Version, Resource: "providers"}

// installedProvider is one entry of clusterctl's inventory.
type installedProvider struct {
	name, version string
	providerType  clusterctlv1.ProviderType
}

// installedProviders reads clusterctl's inventory; a cluster without the
// inventory has no providers.
func (m *management) installedProviders(ctx context.Context) ([]installedProvider, error) {
	list, err := m.dynamic.Resource(providersGVR).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading clusterctl's provider inventory: %w", err)
	}
	var out []installedProvider
	for _, item := range list.Items {
		name, _ := item.Object["providerName"].(string)
		typ, _ := item.Object["type"].(string)
		version, _ := item.Object["version"].(string)
		out = append(out, installedProvider{name: name, version: version, providerType: clusterctlv1.ProviderType(typ)})
	}
	return out, nil
}

// initProviders installs the profile's pinned providers (and cert-manager)
// with clusterctl's Init. Providers already installed are left alone, so a
// resumed run and a shared management cluster work; a different installed
// version is reported, not changed. It returns the providers it installed.
func (p *Provisioner) initProviders(ctx context.Context, cc clusterctl.Client, m *management, r progress.Steps) ([]string, error) {
	installed, err := m.installedProviders(ctx)
	if err != nil {
		return nil, err
	}
	opts := clusterctl.InitOptions{
		Kubeconfig:          clusterctl.Kubeconfig{Path: m.kubeconfig, Context: m.context},
		WaitProviders:       !p.SkipProviderWait,
		WaitProviderTimeout: durationOr(p.ProviderTimeout, 10*time.Minute),
	}
	var toInstall []string
	for _, ref := range providerRefs(p.Profile.Spec.Cluster.CAPI) {
		typ := providerTypes[ref.kind]
		if prev, ok := findProvider(installed, ref.name, typ); ok {
			if ref.version != "" && prev.version != ref.version {
				r.Notef("warning: %s is installed at %s, not %s as the profile pins; kaic does not upgrade providers", clusterctlv1.ManifestLabel(ref.name, typ), prev.version, ref.version)
			} else {
				r.Notef("%s %s is already installed", clusterctlv1.ManifestLabel(ref.name, typ), prev.version)
			}
			continue
		}
		toInstall = append(toInstall, ref.String())
		switch ref.kind {
		case "core":
			opts.CoreProvider = ref.String()
		case "bootstrap":
			opts.BootstrapProviders = append(opts.BootstrapProviders, ref.String())
		case "controlPlane":
			opts.ControlPlaneProviders = append(opts.ControlPlaneProviders, ref.String())
		case "infrastructure":
			opts.InfrastructureProviders = append(opts.InfrastructureProviders, ref.String())
		}
	}
	if len(toInstall) == 0 {
		return nil, nil
	}
	step := r.StartStep("installing Cluster API providers " + strings.Join(toInstall, ", "))
	_, err = cc.Init(ctx, opts)
	step.Done(err)
	if err != nil {
		return nil, fmt.Errorf("clusterctl init: %w", err)
	}
	// The providers brought new CRDs: forget the cached discovery.
	m.mapper.Reset()
	return toInstall, nil
}

func findProvider(list []installedProvider, name string, typ clusterctlv1.ProviderType) (installedProvider, bool) {
	for _, p := range list {
		if p.name == name && p.providerType == typ {
			return p, true
		}
	}
	return installedProvider{}, false
}
