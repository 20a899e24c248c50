package image_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kaic-dev/kaic/pkg/probe"
	"github.com/kaic-dev/kaic/pkg/probe/image"
)

// staticKaic builds kaic as the probe image needs it: static, for linux.
func staticKaic(t *testing.T) []byte {
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

func TestDynamicBinaryRefused(t *testing.T) {
	data, err := os.ReadFile("/bin/ls")
	if err != nil {
		t.Skip("no /bin/ls to use as a dynamic binary")
	}
	if _, err := image.Build(data); !errors.Is(err, image.ErrNotStatic) {
		t.Errorf("err = %v", err)
	}
	if _, err := image.Build([]byte("#!/bin/sh\necho hi\n")); err == nil || !strings.Contains(err.Error(), "not a linux executable") {
		t.Errorf("script: %v", err)
	}
}
