package image_test

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kaic-dev/kaic/pkg/probe"
	"github.com/kaic-dev/kaic/pkg/probe/image"
)

// staticKaic builds kaic as the probe image needs it: static, for linux.
func staticKaic(t testing.TB) []byte {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kaic")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/kaic-dev/kaic/cmd/kaic")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestBuildIsReproducibleAndLoadable(t *testing.T) {
	bin := staticKaic(t)
	img, err := image.Build(bin)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := image.Build(bin)
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("same binary, different digests: %s %s", d1, d2)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != "/kaic probe" || cfg.OS != "linux" {
		t.Errorf("config: %+v", cfg.Config)
	}
	ref := image.Reference(bin)
	if !strings.HasPrefix(ref, image.Repository+":") || len(ref) != len(image.Repository)+17 {
		t.Errorf("reference %q", ref)
	}
	archive := filepath.Join(t.TempDir(), "probe.tar")
	if err := image.WriteArchive(img, ref, archive); err != nil {
		t.Fatal(err)
	}
	back, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d3, _ := back.Digest(); d3 != d1 {
		t.Errorf("archive holds %s, built %s", d3, d1)
	}

	// Where a Docker engine answers, run the image for real.
	runInDocker(t, archive, ref)
}

func TestNotALinuxExecutable(t *testing.T) {
	if _, err := image.Build([]byte("#!/bin/sh\necho hi\n")); err == nil || !strings.Contains(err.Error(), "not a linux executable") {
		t.Errorf("script: %v", err)
	}
}

// TestCgoKaicMakesItsProbeImage builds kaic as go install does on a machine
// with a C compiler (cgo on, so linked against the C library), has that
// binary build its own probe image and, where a Docker engine answers, runs
// the image.
func TestCgoKaicMakesItsProbeImage(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no C compiler: go build links kaic statically here")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "kaic")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/kaic-dev/kaic/cmd/kaic")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if out, _ := exec.Command("file", bin).CombinedOutput(); len(out) > 0 && !strings.Contains(string(out), "dynamically linked") {
		t.Fatalf("the cgo build is not dynamically linked, nothing to test: %s", out)
	}
	archive := filepath.Join(dir, "probe.tar")
	out, err := exec.Command(bin, "probe", "image", "--output", archive).CombinedOutput()
	if err != nil {
		t.Fatalf("kaic probe image with a cgo kaic: %v\n%s", err, out)
	}
	ref := strings.TrimSpace(string(out))
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(cfg.Config.Env, func(e string) bool { return strings.HasPrefix(e, "LD_LIBRARY_PATH=/") }) {
		t.Errorf("image env %v has no LD_LIBRARY_PATH for the libraries it holds", cfg.Config.Env)
	}
	runInDocker(t, archive, ref)
}

// runInDocker runs the probe image in the archive where a Docker engine
// answers, and checks what it reports.
func runInDocker(t *testing.T, archive, ref string) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Log("docker not found: image not run")
		return
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Logf("docker engine not reachable, image not run: %s", out)
		return
	}
	if out, err := exec.Command("docker", "load", "-i", archive).CombinedOutput(); err != nil {
		t.Fatalf("docker load: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", ref).Run() })
	out, err := exec.Command("docker", "run", "--rm", "--network", "none", "-e", "GPU_DEVICE_0=gpu-4", "-e", "GPU_DEVICE_1=gpu-6", ref, "devices", "--env-prefix", "GPU_DEVICE_").CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	res := probe.ParseResults(string(out))
	if res["ACCELERATOR_COUNT"] != "2" || res["DEVICES"] != "gpu-4,gpu-6" {
		t.Errorf("probe in the container reported %v:\n%s", res, out)
	}
}

// BenchmarkBuildAndWriteTwoNodes is what provisioning a two-node kind
// cluster does with the probe image: build it from the kaic binary, then
// stream its archive to each node.
func BenchmarkBuildAndWriteTwoNodes(b *testing.B) {
	bin := staticKaic(b)
	ref := image.Reference(bin)
	b.SetBytes(int64(len(bin)))
	for b.Loop() {
		img, err := image.Build(bin)
		if err != nil {
			b.Fatal(err)
		}
		for range 2 {
			if err := image.WriteArchiveTo(img, ref, io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	}
}
