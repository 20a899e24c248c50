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
	return string(data), warnings, nil
}

// Preflight is what kaic doctor checks on this machine for a kind section:
// with host GPUs (spec.cluster.kind.gpus), also what handing them to the
// nodes needs of the host.
func Preflight(k *profile.KindCluster) preflight.Options {
	return preflight.Options{Runtime: k.Provider, ClusterName: k.Name, GPUs: k.GPUs}
}
