package cmd

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kaic-dev/kaic/pkg/probe"
	"github.com/kaic-dev/kaic/pkg/probe/fakegpu"
	"github.com/kaic-dev/kaic/pkg/provision/existing"
)

func newProbeDRADriverCommand(o *globalOptions) *cobra.Command {
	var (
		opts                  fakegpu.Options
		memory                string
		metricsAddr, nodeName string
		podUID                string
	)
	c := &cobra.Command{
		Use:   "dra-driver",
		Short: "Run kaic-fake-gpu, the simulated accelerator's DRA kubelet plugin or device plugin",
		Long: `dra-driver is the node plugin of kaic-fake-gpu (DRA driver ` + fakegpu.DriverName + `), run by
the kaic-fake-gpu chart as a DaemonSet. It publishes the node's simulated
devices in a ResourceSlice, registers with the kubelet, prepares allocated
claims by writing CDI specs (each container of a claim gets
` + fakegpu.EnvPrefix + `<index>=<device> and the device's load directory
under ` + fakegpu.DefaultStateDir + `), and serves per-device metrics on
/metrics that follow the load 'kaic probe load' puts on held devices.

With --mode device-plugin it registers a kubelet device plugin instead
(API v1beta1, in --device-plugin-dir): the same devices are advertised as
the extended resource --resource-name, and each container allocated one
gets the same variables and load directory; which devices containers hold
comes from the kubelet's pod resources API (--pod-resources-socket).

With --sharing-strategy time-slicing the last --shared-devices devices are
shared, each by up to --sharing-replicas holders that all see that device:
in DRA mode they allow multiple allocations (a claim consumes one of their
shares) and carry the attribute sharing; in device-plugin mode they are
advertised as <resource>.shared, one unit per replica, and the node is
labelled <resource>.shared.replicas, .count and .sharing-strategy.

In DRA mode it talks to the API server with the pod's service account, or
the kubeconfig given with --kubeconfig; device-plugin mode does only to
label the node when it shares devices.`,
		Example: "  kaic probe dra-driver --node $NODE_NAME --devices 8\n  kaic probe dra-driver --mode device-plugin --node $NODE_NAME --devices 2\n  kaic probe dra-driver --node $NODE_NAME --devices 8 --sharing-strategy time-slicing --sharing-replicas 4 --shared-devices 2",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if nodeName == "" {
				nodeName = o.getenv("NODE_NAME")
			}
			if podUID == "" {
				podUID = o.getenv("POD_UID")
			}
			q, err := resource.ParseQuantity(memory)
			if err != nil {
				return usageError("--memory %q: %v", memory, err)
			}
			switch opts.Mode {
			case fakegpu.ModeDRA:
				cfg, err := existing.RESTConfig(o.kubeconfig, o.context)
				if err != nil {
					return err
				}
				if opts.Client, err = kubernetes.NewForConfig(cfg); err != nil {
					return err
				}
			case fakegpu.ModeDevicePlugin:
				// The API only to label the node with what it shares.
				if opts.Devices.Sharing.Enabled() {
					cfg, err := existing.RESTConfig(o.kubeconfig, o.context)
					if err != nil {
						return err
					}
					if opts.Client, err = kubernetes.NewForConfig(cfg); err != nil {
						return err
					}
				}
			default:
				return usageError("--mode %q: must be %s or %s", opts.Mode, fakegpu.ModeDRA, fakegpu.ModeDevicePlugin)
			}
			opts.Devices.Node, opts.Devices.Memory = nodeName, q
			opts.MetricsAddr, opts.PodUID = metricsAddr, types.UID(podUID)
			opts.Logger = o.logger()
			return fakegpu.Run(c.Context(), opts, func(a net.Addr) {
				what := "DRIVER=" + fakegpu.DriverName
				if opts.Mode == fakegpu.ModeDevicePlugin {
					what = "RESOURCE=" + opts.ResourceName
				}
				fmt.Fprintf(o.stdout, "%s%s NODE=%s DEVICES=%d METRICS=%s\n", probe.ResultPrefix, what, nodeName, opts.Devices.Count, a)
			})
		},
	}
	f := c.Flags()
	o.addClusterFlags(c)
	f.StringVar(&opts.Mode, "mode", fakegpu.ModeDRA, "how the kubelet learns of the devices: "+fakegpu.ModeDRA+" (a DRA kubelet plugin) or "+fakegpu.ModeDevicePlugin+" (a device plugin)")
	f.StringVar(&nodeName, "node", "", "node the driver runs on (default: $NODE_NAME)")
	f.IntVar(&opts.Devices.Count, "devices", fakegpu.DefaultDevices, "simulated devices on the node")
	f.StringVar(&memory, "memory", fakegpu.DefaultMemory.String(), "memory capacity of each device")
	f.StringVar(&opts.Devices.Model, "model", fakegpu.DefaultModel, "model attribute of the devices")
	f.StringVar(&opts.Devices.DriverVersion, "driver-version", fakegpu.DefaultDriverVersion, "driverVersion attribute of the devices (a semantic version)")
	f.StringVar(&opts.CDIDir, "cdi-dir", fakegpu.DefaultCDIDir, "directory the container runtime reads CDI specs from")
	f.StringVar(&opts.StateDir, "state-dir", fakegpu.DefaultStateDir, "directory of the devices' load directories")
	f.StringVar(&opts.PluginDir, "plugin-dir", "", "directory of the DRA gRPC socket (default /var/lib/kubelet/plugins/"+fakegpu.DriverName+")")
	f.StringVar(&opts.RegistryDir, "registry-dir", "", "kubelet plugin registration directory (default /var/lib/kubelet/plugins_registry)")
	f.StringVar(&podUID, "pod-uid", "", "UID of the driver's pod, enabling the kubelet's rolling plugin updates (default: $POD_UID)")
	f.StringVar(&metricsAddr, "metrics-addr", ":9400", "listen address of /metrics, /healthz and /readyz")
	f.StringVar(&opts.Devices.Sharing.Strategy, "sharing-strategy", fakegpu.StrategyNone, "how devices are shared: "+fakegpu.StrategyNone+" or "+fakegpu.StrategyTimeSlicing)
	f.IntVar(&opts.Devices.Sharing.Replicas, "sharing-replicas", 4, "holders a shared device takes at once")
	f.IntVar(&opts.Devices.Sharing.Devices, "shared-devices", 1, "how many of the node's devices are shared (the last ones)")
	f.StringVar(&opts.ResourceName, "resource-name", fakegpu.ResourceName, "extended resource the devices are advertised as (device-plugin mode)")
	f.StringVar(&opts.DevicePluginDir, "device-plugin-dir", "/var/lib/kubelet/device-plugins", "directory of the kubelet's device plugin sockets (device-plugin mode)")
	f.StringVar(&opts.PodResourcesSocket, "pod-resources-socket", fakegpu.DefaultPodResourcesSocket, "the kubelet's pod resources API, which says which devices containers hold (device-plugin mode)")
	return c
}

func newProbeLoadCommand(o *globalOptions) *cobra.Command {
	var (
		utilization float64
		memory      string
		duration    time.Duration
		hold        time.Duration
		devices     []string
		dir         string
	)
	c := &cobra.Command{
		Use:   "load",
		Short: "Put simulated load on the kaic-fake-gpu devices this container holds",
		Long: `load makes the kaic-fake-gpu devices this container holds (those whose load
directories are mounted under --dir) report the given utilization and memory
use in the driver's metrics, for --for (0: until terminated), then removes
the load. It prints RESULT: LOAD_DEVICES=<devices>, and RESULT: LOAD=done
when the load ended. With --hold it then keeps running (holding the devices,
idle) so a check can see the metrics fall back.`,
		Example: "  kaic probe load --utilization 80 --memory 40Gi --for 60s\n  kaic probe load --utilization 100 --device gpu-1",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			l := fakegpu.Load{UtilizationPercent: utilization}
			if memory != "" {
				q, err := resource.ParseQuantity(memory)
				if err != nil {
					return usageError("--memory %q: %v", memory, err)
				}
				l.MemoryBytes = q.Value()
			}
			if err := l.Validate(); err != nil {
				return usageError("%v", err)
			}
			if duration > 0 {
				// A writer that is killed cannot remove its load; the
				// expiry ends it anyway.
				l.Expires = time.Now().Add(duration + 5*time.Second)
			}
			host, _ := os.Hostname()
			writer := fmt.Sprintf("%s-%d", host, os.Getpid())
			held, files, err := fakegpu.PutLoad(dir, devices, writer, l)
			if err != nil {
				return err
			}
			fmt.Fprintf(o.stdout, "%sLOAD_DEVICES=%s\n%sLOAD_UTILIZATION=%g\n%sLOAD_MEMORY_BYTES=%d\n",
				probe.ResultPrefix, strings.Join(held, ","), probe.ResultPrefix, utilization, probe.ResultPrefix, l.MemoryBytes)
			d := duration
			if d == 0 {
				d = 100 * 365 * 24 * time.Hour
			}
			_ = sleepOrDone(c.Context(), d)
			for _, f := range files {
				os.Remove(f)
			}
			fmt.Fprintf(o.stdout, "%sLOAD=done\n", probe.ResultPrefix)
			return sleepOrDone(c.Context(), hold)
		},
	}
	f := c.Flags()
	f.Float64Var(&utilization, "utilization", 100, "utilization to report, in percent")
	f.StringVar(&memory, "memory", "", "device memory to report in use, e.g. 40Gi")
	f.DurationVar(&duration, "for", 0, "how long the load lasts (0: until terminated)")
	f.DurationVar(&hold, "hold", 0, "keep running this long after the load ended")
	f.StringSliceVar(&devices, "device", nil, "load only these held devices (default: all held)")
	f.StringVar(&dir, "dir", fakegpu.DefaultStateDir, "where the held devices' load directories are mounted")
	return c
}
