package cmd

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/probe"
	"github.com/kaic-dev/kaic/pkg/probe/image"
)

func newProbeCommand(o *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "probe",
		Short: "The workload of kaic's checks (runs inside the probe image)",
		Long: `probe is what kaic's check pods run: the probe image's entrypoint is
'kaic probe'. Each mode prints machine-readable "RESULT: KEY=value" lines
to its log. 'kaic probe image' builds that image from this kaic binary.`,
		Args: noArgs,
	}
	c.AddCommand(newProbeDevicesCommand(o), newProbeServeCommand(o), newProbeSleepCommand(o), newProbeImageCommand(o),
		newProbeDRADriverCommand(o), newProbeLoadCommand(o))
	return c
}

func newProbeDevicesCommand(o *globalOptions) *cobra.Command {
	var (
		envPrefix string
		glob      string
		hold      time.Duration
	)
	c := &cobra.Command{
		Use:   "devices",
		Short: "Report the accelerator devices this container holds",
		Long: `devices lists the accelerators visible to the container, from environment
variables named <prefix><n> (CDI-injected simulated devices) and device files
matching a glob, and prints RESULT: ACCELERATOR_COUNT=<n>, DEVICES=<list> and
ACCELERATOR_FOUND or ACCELERATOR_MISSING. With --hold it then waits, so the
pod stays Running while a check reads its log.`,
		Example: `  kaic probe devices --env-prefix GPU_DEVICE_ --hold 1h
  kaic probe devices --device-glob '/dev/nvidia[0-9]*'`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if envPrefix == "" && glob == "" {
				return usageError("give --env-prefix, --device-glob or both")
			}
			r, err := probe.FindDevices(os.Environ(), envPrefix, glob)
			if err != nil {
				return err
			}
			if err := probe.WriteDeviceReport(o.stdout, r); err != nil {
				return err
			}
			return sleepOrDone(c.Context(), hold)
		},
	}
	c.Flags().StringVar(&envPrefix, "env-prefix", "", "environment variable prefix naming held devices, e.g. GPU_DEVICE_")
	c.Flags().StringVar(&glob, "device-glob", "", "device file glob, e.g. /dev/nvidia[0-9]*")
	c.Flags().DurationVar(&hold, "hold", 0, "keep running this long after reporting (0: exit)")
	return c
}

func newProbeServeCommand(o *globalOptions) *cobra.Command {
	var (
		addr    string
		backend string
	)
	c := &cobra.Command{
		Use:   "serve",
		Short: "Serve identity, an inference endpoint, a settable gauge and metrics over HTTP",
		Long: `serve answers / with who served the request (backend, pod, node and the
request headers), counts POSTs to /v1/infer and records their latency,
sets the kaic_probe_load gauge with PUT /load?value=N, and exposes
Prometheus metrics on /metrics.`,
		Example: "  kaic probe serve --addr :8080 --backend v1",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			pod, ns, node := probe.DownwardEnv()
			s := probe.NewServer(backend, pod, ns, node)
			return s.Serve(c.Context(), addr, func(a net.Addr) {
				fmt.Fprintf(o.stdout, "%sLISTENING=%s\n", probe.ResultPrefix, a)
			})
		},
	}
	c.Flags().StringVar(&addr, "addr", ":8080", "listen address")
	c.Flags().StringVar(&backend, "backend", "", "name answered as the backend (default: the pod name)")
	return c
}

func newProbeSleepCommand(o *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "sleep [DURATION]",
		Short:   "Sleep (for ever by default) until terminated",
		Example: "  kaic probe sleep\n  kaic probe sleep 30s",
		Args:    maxArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			d := time.Duration(0)
			if len(args) == 1 {
				var err error
				if d, err = time.ParseDuration(args[0]); err != nil {
					return usageError("sleep: %v", err)
				}
			}
			if d == 0 {
				d = 100 * 365 * 24 * time.Hour
			}
			return sleepOrDone(c.Context(), d)
		},
	}
}

// sleepOrDone waits for d or until the context ends (SIGTERM), which is a
// normal end for a probe.
func sleepOrDone(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	return nil
}

func newProbeImageCommand(o *globalOptions) *cobra.Command {
	var (
		binary string
		out    string
	)
	c := &cobra.Command{
		Use:   "image",
		Short: "Build the probe image from a static linux kaic binary",
		Long: `image assembles the probe image (only the kaic binary, entrypoint
'kaic probe') without Docker or a registry and writes it as an archive that
'docker load' and kind nodes accept. It prints the image reference, whose tag
is derived from the binary.`,
		Example: "  kaic probe image --output probe.tar\n  kaic probe image --binary bin/kaic-linux-amd64 --output probe.tar",
		Args:    noArgs,
		RunE: func(*cobra.Command, []string) error {
			if out == "" {
				return usageError("--output is required")
			}
			if binary == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				binary = exe
			}
			data, err := os.ReadFile(binary)
			if err != nil {
				return err
			}
			img, err := image.Build(data)
			if err != nil {
				return fmt.Errorf("%s: %w", binary, err)
			}
			ref := image.Reference(data)
			if err := image.WriteArchive(img, ref, out); err != nil {
				return err
			}
			fmt.Fprintln(o.stdout, ref)
			return nil
		},
	}
	c.Flags().StringVar(&binary, "binary", "", "static linux kaic binary (default: this one)")
	c.Flags().StringVarP(&out, "output", "o", "", "archive to write")
	return c
}
