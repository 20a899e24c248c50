package prooftest

import (
	"testing"

	"github.com/kaic-dev/kaic/internal/testenv"
)

// Two simulated nodes with two fake GPUs each: enough to show a claim
// allocated on one node and a claim no single node can satisfy.
const (
	nodeCount   = 2
	gpusPerNode = 2
)

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithGPUNodes(nodeCount, gpusPerNode))
}
