package cmd

import (
	"bytes"
	"testing"

	"github.com/kaic-dev/kaic/pkg/probe"
	"github.com/kaic-dev/kaic/pkg/probe/image"
)

// The arguments checks give their probe containers, after the probe
// image's entrypoint, reach the mode they name with flags it accepts.
func TestProbeArgsMatchTheImageEntrypoint(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		flags []string
	}{
		{"devices", []string{"--hold=1h0m0s", "--env-prefix=GPU_DEVICE_"}},
		{"serve", []string{"--addr=:8080"}},
		{"serve", []string{"--addr=:8080", "--waiting=20", "--running=2", "--kv-cache=0.9"}},
		{"sleep", []string{"30s"}},
		{"load", []string{"--utilization=80", "--memory=40Gi"}},
		{"request", []string{"--url=http://gw.example/", "--count=10"}},
		{"request", []string{"--url=http://gw.example/v1/completions", "--count=10", "--completion-model=m"}},
		{"request", []string{"--url=http://gw.example/v1/completions", "--count=10", "--completion-model=m", "--warm-up=1m0s"}},
		{"isolation", []string{"--hold=1h0m0s"}},
		{"metrics-adapter", []string{"--prometheus-url=http://p:9090", "--metric=kaic_probe_load"}},
	} {
		root := NewRootCommand(&bytes.Buffer{}, &bytes.Buffer{})
		args := append(append([]string(nil), image.Entrypoint[1:]...), probe.Args(tc.mode, tc.flags...)...)
		cmd, rest, err := root.Find(args)
		if err != nil {
			t.Errorf("%q: %v", args, err)
			continue
		}
		if cmd.Name() != tc.mode || cmd.Parent() == nil || cmd.Parent().Name() != "probe" {
			t.Errorf("%q runs %q, want kaic probe %s", args, cmd.CommandPath(), tc.mode)
			continue
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("%q: %v", args, err)
		}
		if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
}
