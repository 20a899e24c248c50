package kind

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"sigs.k8s.io/kind/pkg/cluster/nodes"
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

// RunMarkPath is where every node of a cluster created by run runID has a
// read-only mount: the container engine shows it from the moment the node
// container exists, so a cluster is known to be the run's even when its
// creation stopped before Kubernetes started.
func RunMarkPath(runID string) string { return "/etc/kaic/run/" + runID }

// nodesCarryRunID checks that every node of a cluster has the run's mark.
func nodesCarryRunID(ctx context.Context, provider string, ns []nodes.Node, runID string) error {
	if runID == "" {
		return errors.New("the run records no run id, so its nodes cannot be told apart from another cluster's of the same name (delete it with kind if it is yours)")
	}
	mark := RunMarkPath(runID)
	cli, haveCLI := cliFor(provider)
	for _, n := range ns {
		var err error
		if haveCLI {
			err = cli.hasMount(ctx, n.String(), mark)
		} else {
			err = n.Command("test", "-e", mark).Run()
		}
		if err != nil {
			return fmt.Errorf("node %s does not carry the mark of run %s (another run or the user created it): %w", n.String(), runID, err)
		}
	}
	return nil
}

// hasMount returns nil when the container has a mount at destination.
func (c nodeCLI) hasMount(ctx context.Context, container, destination string) error {
	out, err := c.run(ctx, "inspect", "--format", "{{range .Mounts}}{{.Destination}}\n{{end}}", container)
	if err != nil {
		return fmt.Errorf("%s inspect %s: %w: %s", c.binary, container, err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == destination {
			return nil
		}
	}
	return fmt.Errorf("no mount at %s", destination)
}
