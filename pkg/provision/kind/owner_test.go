package kind

import (
	"archive/tar"
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/kind/pkg/cluster/nodes"

	"github.com/kaic-dev/kaic/pkg/profile"
)

// namedNode is a kind node known only by its container name, which is all
// the ownership check reads when it can ask the container engine.
type namedNode struct {
	nodes.Node
	name string
}

func (n namedNode) String() string { return n.name }

// docker runs the docker CLI, failing the test with its output.
func docker(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command("docker", args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestOwnershipMarkIsReadFromTheContainerEngine creates (never starts)
// containers on the host's Docker engine: one with the run's mark, as
// Config gives every node, and one without, as a user's cluster of the
// same name would be.
func TestOwnershipMarkIsReadFromTheContainerEngine(t *testing.T) {
	if err := exec.Command("docker", "info").Run(); err != nil {
		t.Skipf("no reachable Docker engine (%v): the ownership mark is read through docker inspect", err)
	}
	// An image from a tar of one file: no registry needed.
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	_ = tw.WriteHeader(&tar.Header{Name: "marker", Mode: 0o644, Size: 0, ModTime: time.Unix(0, 0)})
	_ = tw.Close()
	image := "kaic-test/owner:" + rand.String(6)
	docker(t, layer.Bytes(), "import", "-", image)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })

	const runID = "20261203-00c0ffee"
	cfg, err := Config(testKindCluster(), runID)
	if err != nil {
		t.Fatal(err)
	}
	var mark string
	for _, m := range cfg.Nodes[0].ExtraMounts {
		if m.ContainerPath == RunMarkPath(runID) {
			mark = m.HostPath + ":" + m.ContainerPath + ":ro"
		}
	}
	if mark == "" {
		t.Fatalf("Config gives the control plane no mark of run %s: %+v", runID, cfg.Nodes[0].ExtraMounts)
	}
	mine, theirs := "kaic-owner-"+rand.String(6), "kaic-owner-"+rand.String(6)
	docker(t, nil, "create", "--name", mine, "-v", mark, image, "/marker")
	docker(t, nil, "create", "--name", theirs, image, "/marker")
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", mine, theirs).Run() })

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := nodesCarryRunID(ctx, "docker", []nodes.Node{namedNode{name: mine}}, runID); err != nil {
		t.Errorf("the run's own node: %v", err)
	}
	if err := nodesCarryRunID(ctx, "docker", []nodes.Node{namedNode{name: mine}}, "20261203-0000beef"); err == nil {
		t.Error("a node of another run passed as this run's")
	}
	err = nodesCarryRunID(ctx, "docker", []nodes.Node{namedNode{name: mine}, namedNode{name: theirs}}, runID)
	if err == nil || !strings.Contains(err.Error(), theirs) {
		t.Errorf("a cluster with a node the run did not create: err = %v, want it named", err)
	}
	if err := nodesCarryRunID(ctx, "docker", []nodes.Node{namedNode{name: mine}}, ""); err == nil {
		t.Error("a record without a run id passed")
	}
}

func testKindCluster() *profile.KindCluster {
	workers := 1
	return &profile.KindCluster{Name: "owner-test", NodeImage: "kindest/node:v1.37.0", Workers: &workers}
}
