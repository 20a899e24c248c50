package kind

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// KeyNetworkCreated names the container network kind created for this run's
// cluster (kind creates its network on first use and never removes it). It
// is set only when the network did not exist before, so kaic down removes
// the network only when kaic brought it into being and no container still
// uses it.
const KeyNetworkCreated = "networkCreated"

// nodeCLI is the command line tool of a node provider, which kind itself
// drives: docker, podman or nerdctl.
type nodeCLI struct {
	binary string
	// networkEnv is the variable kind reads to override its network name.
	networkEnv string
}

// cliFor returns the tool of a resolved provider name.
func cliFor(provider string) (nodeCLI, bool) {
	switch provider {
	case "docker":
		return nodeCLI{binary: "docker", networkEnv: "KIND_EXPERIMENTAL_DOCKER_NETWORK"}, true
	case "podman":
		return nodeCLI{binary: "podman", networkEnv: "KIND_EXPERIMENTAL_PODMAN_NETWORK"}, true
	case "nerdctl":
		// kind's nerdctl provider reads the docker variable.
		return nodeCLI{binary: "nerdctl", networkEnv: "KIND_EXPERIMENTAL_DOCKER_NETWORK"}, true
	}
	return nodeCLI{}, false
}

// network is the name of the network kind puts the nodes on.
func (c nodeCLI) network() string {
	if n := os.Getenv(c.networkEnv); n != "" {
		return n
	}
	return "kind"
}

func (c nodeCLI) run(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, c.binary, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// networkExists reports whether the named network exists; an error means
// the tool could not tell.
func (c nodeCLI) networkExists(ctx context.Context, name string) (bool, error) {
	out, err := c.run(ctx, "network", "ls", "--format", "{{.Name}}")
	if err != nil {
		return false, fmt.Errorf("%s network ls: %w: %s", c.binary, err, out)
	}
	for _, n := range strings.Fields(out) {
		if n == name {
			return true, nil
		}
	}
	return false, nil
}

// removeNetwork removes a network; the engine refuses while a container
// (another kind cluster) is still attached, and that refusal is returned.
func (c nodeCLI) removeNetwork(ctx context.Context, name string) error {
	if out, err := c.run(ctx, "network", "rm", name); err != nil {
		return fmt.Errorf("%s network rm %s: %w: %s", c.binary, name, err, out)
	}
	return nil
}

// detectProvider resolves "auto" the way kind's DetectNodeProvider does
// (docker, then nerdctl, then podman, each recognised by its -v output), so
// that the record names the tool actually used.
func detectProvider(ctx context.Context) (string, error) {
	for _, c := range []struct{ name, prefix string }{
		{"docker", "Docker version"},
		{"nerdctl", "nerdctl version"},
		{"podman", "podman version"},
	} {
		out, err := exec.CommandContext(ctx, c.name, "-v").Output()
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) == 1 && strings.HasPrefix(lines[0], c.prefix) {
			return c.name, nil
		}
	}
	return "", fmt.Errorf("no container runtime found for kind nodes (docker, nerdctl or podman); kaic doctor says more")
}

// localEngine reports whether the tool's engine runs on this host, so that
// a file here can be bind-mounted into a node: a docker endpoint on a unix
// socket or named pipe, a podman that is not a remote client, or nerdctl
// (which has no remote mode). A remote engine, or a tool that cannot tell,
// is not local.
func (c nodeCLI) localEngine(ctx context.Context) bool {
	switch c.binary {
	case "docker":
		// The current context's endpoint, which DOCKER_HOST and
		// DOCKER_CONTEXT both decide, as for every command kind runs.
		out, err := c.run(ctx, "context", "inspect", "--format", "{{.Endpoints.docker.Host}}")
		return err == nil && (strings.HasPrefix(out, "unix://") || strings.HasPrefix(out, "npipe://"))
	case "podman":
		out, err := c.run(ctx, "info", "--format", "{{.Host.ServiceIsRemote}}")
		return err == nil && out == "false"
	case "nerdctl":
		return true
	}
	return false
}
