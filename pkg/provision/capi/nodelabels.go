package capi

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	kubeletapis "k8s.io/kubelet/pkg/apis"

	"github.com/kaic-dev/kaic/pkg/profile"
)

// How the GPU pool's labels and taints reach its Nodes.
//
// Cluster API copies a Machine's labels to its Node only for a few domains
// (sigs.k8s.io/cluster-api util/labels.GetManagedLabels, used by the
// Machine controller's node reconciliation): node-role.kubernetes.io
// exactly, node-restriction.kubernetes.io and node.cluster.x-k8s.io with
// their subdomains. It never copies taints from a MachineDeployment's
// template (Machine taints propagate only behind the alpha feature gate
// MachineTaintPropagation, off by default). So kaic has the kubelet
// register its Node with the pool's labels (--node-labels) and taints
// (kubeadm's nodeRegistration.taints) through a KubeadmConfigTemplate of
// the pool's own. The kubelet may not set labels in the kubernetes.io and
// k8s.io domains on its own Node beyond a few (NodeRestriction; it even
// refuses to start with them): those go on the Machines only, for Cluster
// API to copy when their domain is one it syncs, and are refused otherwise.

// capiSyncedLabel says whether Cluster API copies a Machine label with this
// key to the Machine's Node.
func capiSyncedLabel(key string) bool {
	domain, _, found := strings.Cut(key, "/")
	if !found {
		return false
	}
	if domain == "node-role.kubernetes.io" {
		return true
	}
	for _, d := range []string{"node-restriction.kubernetes.io", "node.cluster.x-k8s.io"} {
		if domain == d || strings.HasSuffix(domain, "."+d) {
			return true
		}
	}
	return false
}

// kubeletMaySet says whether the kubelet may register its Node with a
// label: any label outside the kubernetes.io and k8s.io domains, and the
// kubelet labels NodeRestriction allows inside them.
func kubeletMaySet(key string) bool {
	domain, _, found := strings.Cut(key, "/")
	if !found {
		return true
	}
	for _, d := range []string{"kubernetes.io", "k8s.io"} {
		if domain == d || strings.HasSuffix(domain, "."+d) {
			return kubeletapis.IsKubeletLabel(key)
		}
	}
	return true
}

// poolLabelsPath is where a profile sets the GPU pool's labels.
const poolLabelsPath = "spec.cluster.capi.gpuPool.labels"

// checkPoolLabels refuses pool labels that cannot reach the pool's Nodes:
// malformed ones, and those in a domain the kubelet may not set that
// Cluster API does not sync from Machines either.
func checkPoolLabels(g *profile.GPUPool) error {
	var problems []string
	for _, key := range slices.Sorted(maps.Keys(g.Labels)) {
		value := g.Labels[key]
		if errs := validation.IsQualifiedName(key); len(errs) > 0 {
			problems = append(problems, fmt.Sprintf("%s[%q]: not a valid label key: %s", poolLabelsPath, key, strings.Join(errs, "; ")))
			continue
		}
		if errs := validation.IsValidLabelValue(value); len(errs) > 0 {
			problems = append(problems, fmt.Sprintf("%s[%q]: %q is not a valid label value: %s", poolLabelsPath, key, value, strings.Join(errs, "; ")))
			continue
		}
		if !kubeletMaySet(key) && !capiSyncedLabel(key) {
			problems = append(problems, fmt.Sprintf("%s[%q]: label %s cannot reach the pool's Nodes: the kubelet may not set labels of its domain on its Node (NodeRestriction), and Cluster API copies Machine labels to Nodes only for node-role.kubernetes.io, node-restriction.kubernetes.io and node.cluster.x-k8s.io; use another domain (e.g. kaic.dev/) or one of those", poolLabelsPath, key, key))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("GPU pool labels: %s", strings.Join(problems, "; "))
	}
	return nil
}

// kubeletLabels are the pool labels the kubelet registers its Node with.
func kubeletLabels(g *profile.GPUPool) map[string]string {
	out := map[string]string{}
	for k, v := range g.Labels {
		if kubeletMaySet(k) {
			out[k] = v
		}
	}
	return out
}

// unsyncedLabels are the pool labels, sorted, that Cluster API does not
// copy from a Machine to its Node.
func unsyncedLabels(g *profile.GPUPool) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(g.Labels)) {
		if !capiSyncedLabel(k) {
			out = append(out, k)
		}
	}
	return out
}

// topologyPoolWarnings say what a ClusterClass topology leaves to the
// class: the pool's labels outside Cluster API's synced domains and its
// taints reach Nodes only if the class's worker class sets them in its
// bootstrap template, which kaic does not change.
func topologyPoolWarnings(g *profile.GPUPool, clusterClass, workerClass string) []string {
	var warnings []string
	if keys := unsyncedLabels(g); len(keys) > 0 {
		warnings = append(warnings, fmt.Sprintf("GPU pool labels %s reach its Nodes only if worker class %s of ClusterClass %s sets them (kubeletExtraArgs node-labels in its KubeadmConfigTemplate): Cluster API copies the topology machine deployment's metadata.labels to Nodes only for node-role.kubernetes.io, node-restriction.kubernetes.io and node.cluster.x-k8s.io", strings.Join(keys, ", "), workerClass, clusterClass))
	}
	if len(g.Taints) > 0 {
		warnings = append(warnings, fmt.Sprintf("GPU pool taints %s reach its Nodes only if worker class %s of ClusterClass %s sets them (joinConfiguration.nodeRegistration.taints in its KubeadmConfigTemplate): Cluster API does not copy taints from a machine deployment", taintList(g.Taints), workerClass, clusterClass))
	}
	return warnings
}

func taintList(taints []profile.Taint) string {
	ts := make([]string, len(taints))
	for i, t := range taints {
		ts[i] = fmt.Sprintf("%s=%s:%s", t.Key, t.Value, t.Effect)
	}
	return strings.Join(ts, ",")
}

// nodeRegistrationPath is where a KubeadmConfigTemplate configures how the
// kubelet of a worker registers its Node.
var nodeRegistrationPath = []string{"spec", "template", "spec", "joinConfiguration", "nodeRegistration"}

// setNodeRegistration adds node labels (kubelet --node-labels, merged with
// a value the template has) and taints to a KubeadmConfigTemplate. Its
// kubeletExtraArgs are a map in bootstrap.cluster.x-k8s.io/v1beta1 and a
// list of {name, value} from v1beta2 on; an existing value's shape wins.
func setNodeRegistration(obj map[string]any, labels map[string]string, taints []profile.Taint) error {
	if len(labels) == 0 && len(taints) == 0 {
		return nil
	}
	reg, _, err := unstructured.NestedMap(obj, nodeRegistrationPath...)
	if err != nil {
		return fmt.Errorf("reading %s: %w", strings.Join(nodeRegistrationPath, "."), err)
	}
	if reg == nil {
		reg = map[string]any{}
	}
	if len(labels) > 0 {
		apiVersion, _ := obj["apiVersion"].(string)
		args, err := withNodeLabels(reg["kubeletExtraArgs"], apiVersion, labels)
		if err != nil {
			return err
		}
		reg["kubeletExtraArgs"] = args
	}
	if len(taints) > 0 {
		existing, _ := reg["taints"].([]any)
		reg["taints"] = withTaints(existing, taints)
	}
	return unstructured.SetNestedMap(obj, reg, nodeRegistrationPath...)
}

// withNodeLabels returns kubeletExtraArgs with node-labels merged.
func withNodeLabels(args any, apiVersion string, labels map[string]string) (any, error) {
	switch a := args.(type) {
	case map[string]any:
		old, _ := a["node-labels"].(string)
		a["node-labels"] = mergeNodeLabels(old, labels)
		return a, nil
	case []any:
		for _, item := range a {
			arg, ok := item.(map[string]any)
			if ok && arg["name"] == "node-labels" {
				old, _ := arg["value"].(string)
				arg["value"] = mergeNodeLabels(old, labels)
				return a, nil
			}
		}
		return append(a, map[string]any{"name": "node-labels", "value": mergeNodeLabels("", labels)}), nil
	case nil:
		if strings.HasSuffix(apiVersion, "/v1beta1") {
			return map[string]any{"node-labels": mergeNodeLabels("", labels)}, nil
		}
		return []any{map[string]any{"name": "node-labels", "value": mergeNodeLabels("", labels)}}, nil
	default:
		return nil, fmt.Errorf("kubeletExtraArgs is neither a map nor a list: %T", args)
	}
}

// mergeNodeLabels adds labels to a --node-labels value (k=v,k=v): existing
// keys keep their place and take the pool's value, new keys follow sorted.
func mergeNodeLabels(old string, labels map[string]string) string {
	var parts []string
	seen := map[string]bool{}
	for _, pair := range strings.Split(old, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		k, _, _ := strings.Cut(pair, "=")
		if v, ok := labels[k]; ok {
			pair = k + "=" + v
			seen[k] = true
		}
		parts = append(parts, pair)
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if !seen[k] {
			parts = append(parts, k+"="+labels[k])
		}
	}
	return strings.Join(parts, ",")
}

// withTaints adds taints to a nodeRegistration's, replacing one with the
// same key and effect.
func withTaints(existing []any, taints []profile.Taint) []any {
	out := append([]any{}, existing...)
	for _, t := range taints {
		taint := map[string]any{"key": t.Key, "effect": t.Effect}
		if t.Value != "" {
			taint["value"] = t.Value
		}
		replaced := false
		for i, e := range out {
			if m, ok := e.(map[string]any); ok && m["key"] == t.Key && m["effect"] == t.Effect {
				out[i] = taint
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, taint)
		}
	}
	return out
}
