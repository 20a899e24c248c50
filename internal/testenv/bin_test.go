package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRequiredVersion(t *testing.T) {
	tests := []struct {
		name    string
		gomod   string
		want    string
		wantErr bool
	}{
		{
			name:  "single-line require",
			gomod: "module x\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes v1.37.2\n",
			want:  "v1.37.2",
		},
		{
			name:  "require block with comments",
			gomod: "module x\n\nrequire (\n\tk8s.io/api v0.37.2 // indirect\n\tk8s.io/kubernetes v1.38.0 // pinned\n)\n",
			want:  "v1.38.0",
		},
		{
			name:    "replace directives are not requirements",
			gomod:   "module x\n\nreplace (\n\tk8s.io/kubernetes => k8s.io/kubernetes v1.1.1\n)\n",
			wantErr: true,
		},
		{
			name:    "other modules only",
			gomod:   "module x\n\nrequire k8s.io/kubernetes-extra v1.0.0\n",
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "go.mod")
			if err := os.WriteFile(path, []byte(tt.gomod), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := requiredVersion(path, "k8s.io/kubernetes")
			if (err != nil) != tt.wantErr {
				t.Fatalf("requiredVersion() error = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("requiredVersion() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBinDir(t *testing.T) {
	version, err := KubernetesVersion()
	if err != nil {
		t.Fatalf("KubernetesVersion: %v", err)
	}
	if !strings.HasPrefix(version, "v1.") {
		t.Fatalf("KubernetesVersion() = %q, want a v1.x version", version)
	}

	t.Run("KAIC_TESTBIN_DIR wins", func(t *testing.T) {
		t.Setenv("KAIC_TESTBIN_DIR", "/opt/bins")
		t.Setenv("XDG_CACHE_HOME", "/xdg")
		if got, _ := BinDir(); got != "/opt/bins" {
			t.Errorf("BinDir() = %q, want /opt/bins", got)
		}
	})
	t.Run("XDG_CACHE_HOME", func(t *testing.T) {
		t.Setenv("KAIC_TESTBIN_DIR", "")
		t.Setenv("XDG_CACHE_HOME", "/xdg")
		want := filepath.Join("/xdg", "kaic", "testbin", version)
		if got, _ := BinDir(); got != want {
			t.Errorf("BinDir() = %q, want %q", got, want)
		}
	})
	t.Run("home cache", func(t *testing.T) {
		t.Setenv("KAIC_TESTBIN_DIR", "")
		t.Setenv("XDG_CACHE_HOME", "")
		t.Setenv("HOME", "/home/tester")
		want := filepath.Join("/home/tester", ".cache", "kaic", "testbin", version)
		if got, _ := BinDir(); got != want {
			t.Errorf("BinDir() = %q, want %q", got, want)
		}
	})
}

func TestMissingBinaries(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, binEtcd), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, binAPIServer), []byte("not executable"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Start(t.Context(), WithBinDir(dir), WithGPUNodes(1, 1))
	var missing *MissingBinariesError
	if !errors.As(err, &missing) {
		t.Fatalf("Start() error = %v, want a *MissingBinariesError", err)
	}
	want := []string{binAPIServer, binKwok, kwokStagesFile}
	if strings.Join(missing.Missing, ",") != strings.Join(want, ",") {
		t.Errorf("missing = %v, want %v", missing.Missing, want)
	}
	if msg := err.Error(); !strings.Contains(msg, BuildHint) || strings.Contains(msg, "\n") {
		t.Errorf("error %q should be one line naming %q", msg, BuildHint)
	}
}

func TestValidateNodes(t *testing.T) {
	tests := []struct {
		name    string
		nodes   []Node
		wantErr string
	}{
		{name: "ok", nodes: []Node{{Name: "a", GPUs: 2}, {Name: "b"}}},
		{name: "unnamed", nodes: []Node{{}}, wantErr: "no name"},
		{name: "duplicate", nodes: []Node{{Name: "a"}, {Name: "a"}}, wantErr: "twice"},
		{name: "negative GPUs", nodes: []Node{{Name: "a", GPUs: -1}}, wantErr: "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateNodes(tt.nodes)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("validateNodes() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}
