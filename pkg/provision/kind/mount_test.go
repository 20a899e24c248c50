package kind

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kaic-dev/kaic/pkg/profile"
)

func TestMountArchivesMountsEachReadableArchiveIntoEveryNode(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.tar")
	colon := filepath.Join(dir, "b:1.tar")
	for _, f := range []string{a, colon} {
		if err := os.WriteFile(f, []byte("archive"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	workers := 1
	cfg, err := Config(&profile.KindCluster{Name: "c", NodeImage: "kindest/node:v1.37.2", Workers: &workers}, "run-1")
	if err != nil {
		t.Fatal(err)
	}
	before := len(cfg.Nodes[0].ExtraMounts)
	t.Chdir(dir)
	mounted := mountArchives(cfg, []string{"a.tar", colon, filepath.Join(dir, "missing.tar")})
	if len(mounted) != 1 || mounted["a.tar"] != (archiveMount{nodePath: archiveMountDir + "/0.tar", size: int64(len("archive"))}) {
		t.Fatalf("mounted %v, want only a.tar at %s/0.tar", mounted, archiveMountDir)
	}
	for _, n := range cfg.Nodes {
		got := n.ExtraMounts[before:]
		if len(got) != 1 || got[0].HostPath != a || got[0].ContainerPath != archiveMountDir+"/0.tar" || !got[0].Readonly {
			t.Errorf("%s node mounts %+v, want %s read-only at %s/0.tar", n.Role, got, a, archiveMountDir)
		}
	}
}

func TestLocalEngineFollowsDockerHost(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker CLI")
	}
	cli, _ := cliFor("docker")
	t.Setenv("DOCKER_CONTEXT", "")
	t.Setenv("DOCKER_HOST", "tcp://192.0.2.1:2375")
	if cli.localEngine(context.Background()) {
		t.Error("an engine at tcp://192.0.2.1:2375 is taken for a local one")
	}
	t.Setenv("DOCKER_HOST", "unix:///run/some-engine/docker.sock")
	if !cli.localEngine(context.Background()) {
		t.Error("an engine on a unix socket is not taken for a local one")
	}
}
