package kind

import (
	"fmt"

	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/provision/preflight"
)

// Plan renders the kind configuration a run would create from a profile's
// kind section, with warnings about it.
func Plan(k *profile.KindCluster, kubernetesVersion string) (config string, warnings []string, err error) {
	cfg, err := Config(k, "")
	if err != nil {
		return "", nil, err
	}
	data, err := ConfigYAML(cfg)
	if err != nil {
		return "", nil, err
	}
	if _, pinned := profile.KindNodeImage(kubernetesVersion); !pinned && k.NodeImage == "kindest/node:"+kubernetesVersion {
		warnings = append(warnings, fmt.Sprintf("node image %s is not pinned by digest: kaic knows no digest for %s", k.NodeImage, kubernetesVersion))
	}
	if w := draOffWarning(k, kubernetesVersion); w != "" {
		warnings = append(warnings, w)
	}
	return string(data), warnings, nil
}

// draOffWarning warns when the cluster would serve no resource.k8s.io at
// all: before 1.34, DRA is a beta that is off by default, behind the
// DynamicResourceAllocation gate and the group's beta versions in the API
// server's runtime config.
func draOffWarning(k *profile.KindCluster, kubernetesVersion string) string {
	minor, err := profile.KubernetesMinor(kubernetesVersion)
	if err != nil || minor >= 34 {
		return ""
	}
	beta := k.RuntimeConfig["resource.k8s.io/v1beta1"] == "true" || k.RuntimeConfig["resource.k8s.io/v1beta2"] == "true"
	if k.FeatureGates["DynamicResourceAllocation"] && beta {
		return ""
	}
	return fmt.Sprintf("Kubernetes %s serves no DRA API unless spec.cluster.kind.featureGates sets DynamicResourceAllocation: true and "+
		"spec.cluster.kind.runtimeConfig enables resource.k8s.io/v1beta2 (or v1beta1): without them the accelerator checks will fail", kubernetesVersion)
}

// Preflight is what kaic doctor checks on this machine for a kind section:
// with host GPUs (spec.cluster.kind.gpus), also what handing them to the
// nodes needs of the host.
func Preflight(k *profile.KindCluster) preflight.Options {
	return preflight.Options{Runtime: k.Provider, ClusterName: k.Name, GPUs: k.GPUs}
}
