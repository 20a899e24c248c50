package kind

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"sigs.k8s.io/kind/pkg/cluster/nodes"

	"github.com/kaic-dev/kaic/pkg/ownership"
)

// ExistsError is returned when a kind cluster of the profile's name exists
// and this run did not create it. kaic neither uses nor deletes it.
type ExistsError struct{ Name string }

func (e *ExistsError) Error() string {
	return fmt.Sprintf("a kind cluster named %s already exists and this run did not create it; kaic leaves it alone: "+
		"remove it yourself (or with kaic down <run dir> of the run that created it), or set spec.cluster.kind.name", e.Name)
}

// alreadyExists recognises kind's own refusal to create a cluster whose
// nodes exist, which another process can cause between kaic's check and
// kind's.
func alreadyExists(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "already exist")
}

// kubeadmConfigPath is where kind writes each node's kubeadm configuration,
// which holds the node's labels, the run id among them, from the node's
// first moments on.
const kubeadmConfigPath = "/kind/kubeadm.conf"

// nodesCarryRunID checks that every node of a cluster was created with
// runID among its labels.
func nodesCarryRunID(ns []nodes.Node, runID string) error {
	if runID == "" {
		return errors.New("the run records no run id, so its nodes cannot be told apart from another cluster's of the same name (delete it with kind if it is yours)")
	}
	want := ownership.RunIDLabel + "=" + runID
	for _, n := range ns {
		var out bytes.Buffer
		if err := n.Command("cat", kubeadmConfigPath).SetStdout(&out).Run(); err != nil {
			return fmt.Errorf("node %s: cannot read %s to check it belongs to run %s: %w", n.String(), kubeadmConfigPath, runID, err)
		}
		if !strings.Contains(out.String(), want) {
			return fmt.Errorf("node %s does not carry %s: another run or the user created it", n.String(), want)
		}
	}
	return nil
}
