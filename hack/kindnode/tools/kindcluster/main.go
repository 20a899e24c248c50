// Command kindcluster creates or deletes a kind cluster through the kind Go
// library (no kind binary): one control-plane node, pod networking from the
// node image's default CNI manifest, and kubelet allowed to run on a cgroup
// v1 host.
//
//	kindcluster -name x -image kaic.local/kind-node:v1.37.2 -kubeconfig /tmp/x.kubeconfig
//	kindcluster -name x -delete
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cmd"
)

const config = `kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
kubeadmConfigPatches:
- |
  kind: KubeletConfiguration
  failCgroupV1: false
`

func main() {
	name := flag.String("name", "kaic-kindnode", "cluster name")
	image := flag.String("image", "", "node image")
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig path (default: kind's)")
	wait := flag.Duration("wait", 5*time.Minute, "wait for the control plane to be Ready")
	retain := flag.Bool("retain", false, "keep the node container when creation fails")
	del := flag.Bool("delete", false, "delete the cluster instead of creating it")
	flag.Parse()

	p := cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(cmd.NewLogger()))
	start := time.Now()
	var err error
	if *del {
		err = p.Delete(*name, *kubeconfig)
	} else {
		if *image == "" {
			fmt.Fprintln(os.Stderr, "kindcluster: -image is required")
			os.Exit(2)
		}
		err = p.Create(*name,
			cluster.CreateWithNodeImage(*image),
			cluster.CreateWithRawConfig([]byte(config)),
			cluster.CreateWithKubeconfigPath(*kubeconfig),
			cluster.CreateWithWaitForReady(*wait),
			cluster.CreateWithRetain(*retain),
			cluster.CreateWithDisplayUsage(false),
			cluster.CreateWithDisplaySalutation(false),
		)
	}
	fmt.Fprintf(os.Stderr, "kindcluster: %s took %s\n", map[bool]string{true: "delete", false: "create"}[*del], time.Since(start).Round(time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kindcluster:", err)
		os.Exit(1)
	}
}
