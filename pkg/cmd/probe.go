package cmd

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
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
	c.AddCommand(newProbeRequestCommand(o))
	c.AddCommand(newProbeIsolationCommand(o))
	c.AddCommand(newProbeMetricsAdapterCommand(o))
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
		load    probe.ModelLoad
	)
	c := &cobra.Command{
		Use:   "serve",
		Short: "Serve identity, an inference endpoint, a settable gauge and metrics over HTTP",
		Long: `serve answers / with who served the request (backend, pod, node and the
request headers), counts POSTs to /v1/infer and records their latency,
sets the kaic_probe_load gauge with PUT /load?value=N, and exposes
Prometheus metrics on /metrics.

It also stands where an endpoint picker expects a vLLM model server: it
answers OpenAI-style POST /v1/completions (a JSON body naming the model)
with the pod that served it, and reports vLLM's queue and KV-cache gauges
(vllm:num_requests_waiting, vllm:num_requests_running,
vllm:kv_cache_usage_perc) on /metrics with the load it is told: the flags
below at start, then PUT /model-load?waiting=N&running=N&kvCache=F.`,
		Example: "  kaic probe serve --addr :8080 --backend v1\n  kaic probe serve --waiting 20 --kv-cache 0.9",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			pod, ns, node := probe.DownwardEnv()
			s := probe.NewServer(backend, pod, ns, node)
			if err := s.SetModelLoad(load); err != nil {
				return usageError("model load: %v", err)
			}
			return s.Serve(c.Context(), addr, func(a net.Addr) {
				fmt.Fprintf(o.stdout, "%sLISTENING=%s\n", probe.ResultPrefix, a)
			})
		},
	}
	c.Flags().StringVar(&addr, "addr", ":8080", "listen address")
	c.Flags().StringVar(&backend, "backend", "", "name answered as the backend (default: the pod name)")
	c.Flags().IntVar(&load.Waiting, "waiting", 0, "requests reported waiting in the queue (vllm:num_requests_waiting)")
	c.Flags().IntVar(&load.Running, "running", 0, "requests reported running (vllm:num_requests_running)")
	c.Flags().Float64Var(&load.KVCache, "kv-cache", 0, "fraction of the KV cache reported in use, 0 to 1 (vllm:kv_cache_usage_perc)")
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
		binaries  []string
		platforms []string
		out       string
		push      string
		insecure  bool
	)
	c := &cobra.Command{
		Use:   "image",
		Short: "Build the probe image from kaic binaries; write it as an archive or push it",
		Long: `image assembles the probe image (the kaic binary, entrypoint 'kaic probe')
without Docker: no Dockerfile, no build daemon.

With --output it writes one image as an archive that 'docker load' and kind
nodes accept, and prints its reference (kaic.dev/probe:<tag derived from the
binary>). kaic up does this by itself for kind clusters and loads the image
into the nodes.

With --push REF it pushes the image to a registry and prints the pushed
reference by digest, which is what spec.checks.probeImage should name for a
cluster whose nodes pull from that registry. Credentials are those 'docker
login' stored: the Docker config file ($DOCKER_CONFIG/config.json or
~/.docker/config.json) and the credential helpers it names. A REF without a
tag gets the tag derived from the binaries. Pushing the same image again
changes nothing and prints the same digest.

Several --binary flags (kaic cross-compiled for each platform, e.g.
CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build ./cmd/kaic) build a
multi-platform index; --platform then says which platforms must be there.
A binary linked against the C library (a kaic built with cgo) gets its loader
and libraries from this machine, which must then be linux of the same
architecture.`,
		Example: `  kaic probe image --output probe.tar
  kaic probe image --push registry.example.com/kaic/kaic-probe
  kaic probe image --push ghcr.io/example/kaic-probe:v0.4.0 \
      --binary dist/kaic-linux-amd64 --binary dist/kaic-linux-arm64 --platform linux/amd64,linux/arm64`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if (out == "") == (push == "") {
				return usageError("give one of --output FILE or --push REF")
			}
			if len(binaries) == 0 {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				binaries = []string{exe}
			}
			var bins []image.Binary
			for _, path := range binaries {
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				bins = append(bins, image.Binary{Name: path, Data: data})
			}
			built, err := image.BuildAll(bins, platforms)
			if err != nil {
				return err
			}
			if out != "" {
				if built.Image == nil {
					return usageError("--output writes one image, for one platform; push a multi-platform index with --push")
				}
				ref := image.Repository + ":" + built.Tag
				if err := image.WriteArchive(built.Image, ref, out); err != nil {
					return err
				}
				fmt.Fprintln(o.stdout, ref)
				return nil
			}
			ref, err := image.Push(c.Context(), push, built, image.PushOptions{Insecure: insecure})
			if err != nil {
				return err
			}
			fmt.Fprintln(o.stdout, ref.String())
			return nil
		},
	}
	c.Flags().StringArrayVar(&binaries, "binary", nil, "linux kaic binary to build from; repeat for a multi-platform index (default: this one)")
	c.Flags().StringSliceVar(&platforms, "platform", nil, "platforms the image must hold, e.g. linux/amd64,linux/arm64 (default: those of the binaries)")
	c.Flags().StringVarP(&out, "output", "o", "", "archive to write")
	c.Flags().StringVar(&push, "push", "", "image reference to push to, e.g. registry.example.com/kaic-probe[:tag]")
	c.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP and unverified TLS certificates (a local registry)")
	return c
}

func newProbeRequestCommand(o *globalOptions) *cobra.Command {
	var (
		url     string
		count   int
		headers []string
		timeout time.Duration
		model   string
		warmUp  time.Duration
	)
	c := &cobra.Command{
		Use:   "request",
		Short: "Send HTTP requests and count which backend answered each",
		Long: `request sends --count GET requests to --url, one after the other on new
connections, and prints one line RESULT: REQUESTS=<json> counting the 2xx
answers per backend (the identity 'kaic probe serve' answers with), the
answers per status code and the requests that got no answer per error.
Unanswered requests do not make it fail: the report says what happened.
With --completion-model each request is an OpenAI-style POST whose JSON
body names that model, with a prompt of its own. With --warm-up it first
sends requests, half a second apart, until one gets a 2xx answer or the
duration has passed, and reports them apart from the counted ones: for a
route whose data path may still be settling after its objects report ready.`,
		Example: `  kaic probe request --url http://gateway.example.svc/ --count 100
  kaic probe request --url http://gateway.example.svc/ --count 20 --header x-model:model-b
  kaic probe request --url http://gateway.example.svc/v1/completions --completion-model probe-model`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if url == "" {
				return usageError("--url is required")
			}
			h := http.Header{}
			for _, kv := range headers {
				k, v, ok := strings.Cut(kv, ":")
				if !ok || strings.TrimSpace(k) == "" {
					return usageError("--header %q: want NAME:VALUE", kv)
				}
				h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			rep, err := probe.SendRequests(c.Context(), probe.RequestOptions{URL: url, Count: count, Header: h, Timeout: timeout, CompletionModel: model, WarmUp: warmUp})
			if err != nil {
				return err
			}
			return probe.WriteRequestReport(o.stdout, rep)
		},
	}
	c.Flags().StringVar(&url, "url", "", "URL to GET (or POST to, with --completion-model)")
	c.Flags().StringVar(&model, "completion-model", "", "POST an OpenAI-style completion request naming this model instead of a GET")
	c.Flags().IntVar(&count, "count", 100, "number of requests")
	c.Flags().StringArrayVar(&headers, "header", nil, "header NAME:VALUE added to every request (repeatable; Host sets the host)")
	c.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "time limit of each request")
	c.Flags().DurationVar(&warmUp, "warm-up", 0, "before the counted requests, send requests until one gets a 2xx answer or this long has passed (0: none)")
	return c
}

func newProbeIsolationCommand(o *globalOptions) *cobra.Command {
	var hold time.Duration
	c := &cobra.Command{
		Use:   "isolation",
		Short: "Report what this container sees and reaches of the node",
		Long: `isolation prints one line, RESULT: ISOLATION=<json>, with the kernel release,
/proc/version, the boot id, whether /dev/mem and /dev/kmem can be opened, the
processes in /proc (the node agents among them) and process 1's command line,
the host names, the network interfaces with their addresses, and how far it
got trying to reach the node: container runtime sockets, the kubelet's and
the runtime's files and directories, mounts from the node's paths, and the
node's loopback-only services at 127.0.0.1. The sandboxing check compares a
sandboxed pod's report with a plain pod's on the same node. With --hold it
then waits, so the pod stays Running while a check reads its log.`,
		Example: "  kaic probe isolation --hold 1h",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := probe.WriteIsolationReport(o.stdout, probe.InspectIsolation(probe.IsolationOptions{})); err != nil {
				return err
			}
			return sleepOrDone(c.Context(), hold)
		},
	}
	c.Flags().DurationVar(&hold, "hold", 0, "keep running this long after reporting (0: exit)")
	return c
}
