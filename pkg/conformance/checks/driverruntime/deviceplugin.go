package driverruntime

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
)

// In device-plugin mode no device attribute carries the driver version:
// the platform advertises it on the node, as NVIDIA's GPU feature
// discovery does with the label nvidia.com/cuda.driver-version.full. The
// check reads a label or annotation of the extended resource's domain
// whose name ends in driver-version (or driverVersion, optionally
// followed by .full); parts such as .major are not versions.
var nodeVersionKey = regexp.MustCompile(`(?i)driver[-_.]?version(\.full)?$`)

// nodeVersions reads the driver version each node advertising the
// extended resource states, keyed as devicepod.RequestsOne names a unit on
// that node. It returns why nothing is verifiable when no node states one.
func nodeVersions(t *conformance.T, env *conformance.Env, inventory map[string][]devicepod.Device) (map[devicepod.Device]string, string) {
	res := env.Accelerator.ResourceName
	domain, _, _ := strings.Cut(res, "/")
	t.Step("Read the driver version the nodes advertising %s state in a label or annotation of %s", res, domain)
	nodes, err := env.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing nodes: %v", err)
	}
	versions := map[devicepod.Device]string{}
	var rows, missing []string
	for i := range nodes.Items {
		node := &nodes.Items[i]
		if _, has := inventory[node.Name]; !has {
			continue
		}
		key, v := advertisedVersion(domain, node.Labels, node.Annotations)
		if key == "" {
			missing = append(missing, node.Name)
			continue
		}
		versions[devicepod.Device{Driver: res, Pool: node.Name}] = v
		rows = append(rows, fmt.Sprintf("%s: %s=%s", node.Name, key, v))
	}
	sort.Strings(rows)
	t.Observe("driver version of the nodes advertising "+res, rows)
	if len(versions) == 0 {
		return nil, fmt.Sprintf("no node advertising %s states its driver version (a label or annotation of %s such as %s/cuda.driver-version.full, as NVIDIA's GPU feature discovery sets): the driver version is not advertised, so it cannot be compared with the one a container reads",
			res, domain, domain)
	}
	if len(missing) > 0 {
		t.Errorf("%d of the %d nodes advertising %s state no driver version: %s", len(missing), len(inventory), res, abbreviate(missing))
	}
	return versions, ""
}

// advertisedVersion finds the driver version among a node's labels and
// annotations of domain (or its subdomains), labels first.
func advertisedVersion(domain string, sources ...map[string]string) (key, version string) {
	for _, m := range sources {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			d, name, ok := strings.Cut(k, "/")
			if !ok || (d != domain && !strings.HasSuffix(d, "."+domain)) || !nodeVersionKey.MatchString(name) || m[k] == "" {
				continue
			}
			return k, m[k]
		}
	}
	return "", ""
}
