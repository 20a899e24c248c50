package kaic_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/provision/preflight"
)

// TestDoctorReportsWhatPlanWouldRefuse: a Cluster API profile whose
// variables are not set fails doctor, naming them, before anything pulls.
// The host is a fixture with no container runtime, so the test does not
// depend on this machine.
func TestDoctorReportsWhatPlanWouldRefuse(t *testing.T) {
	host := &preflight.Host{
		Root:      t.TempDir(),
		LookPath:  func(string) (string, error) { return "", errors.New("not found") },
		Run:       func(context.Context, string, ...string) ([]byte, error) { return nil, errors.New("no runtime") },
		FreeBytes: func(string) (uint64, error) { return 1 << 40, nil },
	}
	unset := kaic.WithGetenv(func(string) string { return "" })
	report, err := kaic.New(unset).Doctor(t.Context(), kaic.DoctorOptions{Profile: "capi-aws-gpu", Host: host, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !report.Failed() || len(report.Findings) == 0 {
		t.Fatalf("doctor passed a profile whose variables are unset: %+v", report)
	}
	f := report.Findings[0]
	if f.Check != "profile plan" || f.Status != preflight.Fail || !strings.Contains(f.Detail, "AWS_REGION") {
		t.Errorf("first finding %+v, want the plan's failure naming AWS_REGION", f)
	}

	set := kaic.WithGetenv(func(k string) string { return "value-of-" + k })
	report, err = kaic.New(set).Doctor(t.Context(), kaic.DoctorOptions{Profile: "capi-aws-gpu", Host: host, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range report.Findings {
		if f.Check == "profile plan" {
			t.Errorf("variables set, still %+v", f)
		}
	}
}

// TestDoctorKindNVIDIAWithoutGPUs: kind-nvidia passes host GPUs into its
// worker, so doctor on a host without /dev/nvidia* fails, naming what is
// missing. The host is a fixture with a Docker engine that has the nvidia
// runtime as its default and a toolkit configured for it, so the GPUs are
// all that is missing.
func TestDoctorKindNVIDIAWithoutGPUs(t *testing.T) {
	root := t.TempDir()
	config := filepath.Join(root, "etc", "nvidia-container-runtime", "config.toml")
	if err := os.MkdirAll(filepath.Dir(config), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, []byte("accept-nvidia-visible-devices-as-volume-mounts = true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	docker := map[string]string{
		"info --format {{.ServerVersion}}":                                           "28.2.2",
		"info --format {{json .Runtimes}}":                                           `{"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc"}}`,
		"info --format {{.DefaultRuntime}}":                                          "nvidia",
		"ps -a --filter label=io.x-k8s.kind.cluster=kaic-nvidia --format {{.Names}}": "",
	}
	host := &preflight.Host{
		Root: root,
		LookPath: func(name string) (string, error) {
			if name == "docker" {
				return "/usr/bin/docker", nil
			}
			return "", errors.New("not found")
		},
		Run: func(_ context.Context, name string, args ...string) ([]byte, error) {
			if out, ok := docker[strings.Join(args, " ")]; ok && name == "docker" {
				return []byte(out), nil
			}
			return nil, fmt.Errorf("unexpected command %s %s", name, strings.Join(args, " "))
		},
		FreeBytes: func(string) (uint64, error) { return 1 << 40, nil },
	}
	report, err := kaic.New().Doctor(t.Context(), kaic.DoctorOptions{Profile: "kind-nvidia", Host: host, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !report.Failed() {
		t.Fatalf("doctor passed kind-nvidia on a host without GPUs: %+v", report.Findings)
	}
	var gpus *preflight.Finding
	for i, f := range report.Findings {
		switch {
		case strings.Contains(f.Check, "NVIDIA GPU"):
			gpus = &report.Findings[i]
		case f.Status == preflight.Fail:
			t.Errorf("%s fails too: %s", f.Check, f.Detail)
		}
	}
	if gpus == nil {
		t.Fatalf("no finding about the host's GPUs: %+v", report.Findings)
	}
	if gpus.Status != preflight.Fail || !strings.Contains(gpus.Detail, "/dev/nvidia") || gpus.Fix == "" {
		t.Errorf("GPU finding %+v, want a failure naming /dev/nvidia with a fix", *gpus)
	}
}
