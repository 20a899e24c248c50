package prooftest

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/internal/testenv"
)

func TestSimulatedNodesCarryDeclaredResources(t *testing.T) {
	env := testenv.Shared(t)
	nodes, err := env.Clientset().CoreV1().Nodes().List(t.Context(), metav1.ListOptions{LabelSelector: "kaic.dev/accelerator=fake-gpu"})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != nodeCount {
		t.Fatalf("got %d fake-GPU nodes, want %d", len(nodes.Items), nodeCount)
	}
	for _, node := range nodes.Items {
		gpus := node.Status.Allocatable[testenv.GPUResourceName]
		if gpus.Value() != gpusPerNode {
			t.Errorf("node %s: allocatable %s = %s, want %d", node.Name, testenv.GPUResourceName, gpus.String(), gpusPerNode)
		}
		if len(node.Spec.Taints) > 0 {
			t.Errorf("node %s is tainted: %v", node.Name, node.Spec.Taints)
		}
	}
	slices, err := env.Clientset().ResourceV1().ResourceSlices().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	perNode := map[string]int{}
	for _, s := range slices.Items {
		if s.Spec.Driver == env.DRADriver && s.Spec.NodeName != nil {
			perNode[*s.Spec.NodeName] += len(s.Spec.Devices)
		}
	}
	for _, node := range nodes.Items {
		if perNode[node.Name] != gpusPerNode {
			t.Errorf("node %s publishes %d %s devices, want %d", node.Name, perNode[node.Name], env.DRADriver, gpusPerNode)
		}
	}
}
