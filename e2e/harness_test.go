//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// repoRoot is the repository this package lives in.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the e2e package")
	}
	return filepath.Dir(filepath.Dir(file))
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// result is what a command did.
type result struct {
	code   int
	stdout string
	stderr string
	took   time.Duration
}

func (r result) output() string { return r.stdout + r.stderr }

// run runs a command in dir and returns its exit code and output; it fails
// the test only when the command cannot be started.
func run(t *testing.T, ctx context.Context, dir string, name string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	t.Logf("$ %s %s  (exit %d, %s)", filepath.Base(name), strings.Join(args, " "), r.code, r.took.Round(100*time.Millisecond))
	return r
}

// docker runs the engine's CLI (DOCKER_HOST is inherited) and returns the
// non-empty lines it prints.
func docker(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// leftovers is what the engine still holds of a kind cluster: its node
// containers (kind labels them with the cluster name) and the given
// volumes and networks that still exist.
type leftovers struct {
	containers, volumes, networks []string
}

func (l leftovers) empty() bool {
	return len(l.containers)+len(l.volumes)+len(l.networks) == 0
}

func (l leftovers) String() string {
	return fmt.Sprintf("containers %q, volumes %q, networks %q", l.containers, l.volumes, l.networks)
}

func clusterContainers(t *testing.T, cluster string) []string {
	return docker(t, "ps", "-a", "--filter", "label=io.x-k8s.kind.cluster="+cluster, "--format", "{{.Names}}")
}

// clusterVolumes are the volumes mounted into the cluster's node containers
// (kind gives every node an anonymous volume for /var).
func clusterVolumes(t *testing.T, cluster string) []string {
	var vols []string
	for _, c := range clusterContainers(t, cluster) {
		vols = append(vols, docker(t, "inspect", "--format", "{{range .Mounts}}{{if eq .Type \"volume\"}}{{println .Name}}{{end}}{{end}}", c)...)
	}
	return vols
}

func networkExists(t *testing.T, name string) bool {
	for _, n := range docker(t, "network", "ls", "--format", "{{.Name}}") {
		if n == name {
			return true
		}
	}
	return false
}

func remaining(t *testing.T, cluster string, volumes, networks []string) leftovers {
	l := leftovers{containers: clusterContainers(t, cluster)}
	existing := map[string]bool{}
	for _, v := range docker(t, "volume", "ls", "--format", "{{.Name}}") {
		existing[v] = true
	}
	for _, v := range volumes {
		if existing[v] {
			l.volumes = append(l.volumes, v)
		}
	}
	for _, n := range networks {
		if networkExists(t, n) {
			l.networks = append(l.networks, n)
		}
	}
	return l
}

// safeBuffer collects a running command's output while the test reads it.
type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
