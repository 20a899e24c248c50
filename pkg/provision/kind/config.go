// Package kind provisions clusters with kind's Go library: it turns a
// profile's kind section into a v1alpha4 cluster configuration and creates,
// adopts and deletes kind clusters.
package kind

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/pkg/ownership"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// nvidiaDeviceListDir is where the NVIDIA container toolkit, configured to
// accept device lists as volume mounts, looks for the GPUs a container gets.
// Mounting /dev/null at <dir>/<index> hands that GPU to the kind node.
const nvidiaDeviceListDir = "/var/run/nvidia-container-devices"

// Config builds the kind cluster configuration of a profile's kind section
// (defaulted and validated). runID, when set, labels every node with the
// run's id (ownership.RunIDLabel), which is how Delete later tells a
// cluster this run created from one that only has the same name.
func Config(k *profile.KindCluster, runID string) (*v1alpha4.Cluster, error) {
	if k == nil {
		return nil, fmt.Errorf("no kind section (spec.cluster.kind)")
	}
	cfg := &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:     k.Name,
	}
	if len(k.FeatureGates) > 0 {
		cfg.FeatureGates = maps.Clone(k.FeatureGates)
	}
	if len(k.RuntimeConfig) > 0 {
		cfg.RuntimeConfig = maps.Clone(k.RuntimeConfig)
	}
	cfg.Networking.DisableDefaultCNI = k.DisableDefaultCNI
	if len(k.KubeletConfig) > 0 {
		patch, err := kubeletPatch(k.KubeletConfig)
		if err != nil {
			return nil, err
		}
		cfg.KubeadmConfigPatches = append(cfg.KubeadmConfigPatches, patch)
	}
	mounts := make([]v1alpha4.Mount, 0, len(k.ExtraMounts))
	for _, m := range k.ExtraMounts {
		mounts = append(mounts, v1alpha4.Mount{HostPath: m.HostPath, ContainerPath: m.ContainerPath, Readonly: m.ReadOnly})
	}
	if runID != "" {
		// A mark the container engine shows from the moment a node
		// container exists, before Kubernetes runs in it.
		mounts = append(mounts, v1alpha4.Mount{HostPath: "/dev/null", ContainerPath: RunMarkPath(runID), Readonly: true})
	}
	cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{Role: v1alpha4.ControlPlaneRole, Image: k.NodeImage, ExtraMounts: mounts, Labels: runLabels(nil, runID)})
	gpuMounts, err := gpuMounts(k.GPUs)
	if err != nil {
		return nil, err
	}
	workers := 0
	if k.Workers != nil {
		workers = *k.Workers
	}
	if workers == 0 && len(gpuMounts) > 0 {
		return nil, fmt.Errorf("spec.cluster.kind.gpus is %q but the cluster has no worker to pass GPUs to", k.GPUs)
	}
	for i := 0; i < workers; i++ {
		n := v1alpha4.Node{Role: v1alpha4.WorkerRole, Image: k.NodeImage, ExtraMounts: slices.Clone(mounts), Labels: runLabels(k.WorkerLabels, runID)}
		// Every GPU goes to the first worker: splitting them would make a
		// two-pod isolation check depend on which node each pod lands on.
		if i == 0 {
			n.ExtraMounts = append(n.ExtraMounts, gpuMounts...)
		}
		cfg.Nodes = append(cfg.Nodes, n)
	}
	return cfg, nil
}

// runLabels returns labels with the run id added; nil when both are empty.
func runLabels(labels map[string]string, runID string) map[string]string {
	if len(labels) == 0 && runID == "" {
		return nil
	}
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	if runID != "" {
		out[ownership.RunIDLabel] = runID
	}
	return out
}

// gpuMounts are the nvkind-style device-list mounts for "all", "none" or a
// list of GPU indexes.
func gpuMounts(gpus string) ([]v1alpha4.Mount, error) {
	var ids []string
	switch gpus {
	case "", "none":
		return nil, nil
	case "all":
		ids = []string{"all"}
	default:
		for _, s := range strings.Split(gpus, ",") {
			if _, err := strconv.Atoi(s); err != nil {
				return nil, fmt.Errorf("spec.cluster.kind.gpus: %q is not a GPU index", s)
			}
			ids = append(ids, s)
		}
	}
	out := make([]v1alpha4.Mount, 0, len(ids))
	for _, id := range ids {
		out = append(out, v1alpha4.Mount{HostPath: "/dev/null", ContainerPath: nvidiaDeviceListDir + "/" + id})
	}
	return out, nil
}

// kubeletPatch renders a KubeletConfiguration patch kind merges into every
// node's kubeadm configuration.
func kubeletPatch(settings map[string]any) (string, error) {
	doc := map[string]any{"kind": "KubeletConfiguration", "apiVersion": "kubelet.config.k8s.io/v1beta1"}
	for k, v := range settings {
		if k == "kind" || k == "apiVersion" {
			continue
		}
		doc[k] = v
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("spec.cluster.kind.kubeletConfig: %w", err)
	}
	return string(out), nil
}

// ConfigYAML renders the configuration as kind reads it.
func ConfigYAML(cfg *v1alpha4.Cluster) ([]byte, error) {
	return yaml.Marshal(cfg)
}
