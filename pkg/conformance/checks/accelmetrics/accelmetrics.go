// Package accelmetrics verifies the accelerator_metrics requirement: the
// accelerator model's metrics exporter serves per-device utilization and
// memory series for every device the DRA driver publishes, and those
// series follow the work a pod puts on the device it holds.
//
// The check waits, for a bounded time, for the exporter's Service (the
// one the model names or, when that does not exist, one its selectors
// find in any namespace, saying which) and a ready endpoint of it, then
// scrapes every pod behind it through the API server's pod proxy (a
// Service of a per-node exporter answers for one node per request). It
// checks that each utilization and memory series carries the model's
// device label and that each device published in a ResourceSlice on a
// Ready node has a series of its own: a whole device matched by its uuid
// attribute (else by its name or index and node), a partition (an NVIDIA
// MIG instance) by its parent's UUID and the exporter's GPU instance of
// its profile. It records each device's memory capacity (the exporter's
// total, else used plus free), logs the optional temperature, power and
// interconnect series, and then runs a pod holding one device that
// generates load: that device's utilization and memory use must rise while
// devices no pod holds stay as they were, and fall back once the pod is
// gone.
//
// In device-plugin mode (deviceplugin.go) the nodes' allocatable of the
// model's extended resource stands in for the ResourceSlices: every node
// that advertises it must have a series for each of its units, and the
// loaded device is the one the load pod names.
package accelmetrics

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/promtext"
	"github.com/kaic-dev/kaic/pkg/probe"
	"github.com/kaic-dev/kaic/pkg/probe/fakegpu"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// ID is the requirement this package verifies.
const ID = "accelerator_metrics"

// Names of the objects the check creates.
const (
	template = "metrics-accelerator"
	loadPod  = "metrics-load"
	podClaim = "accelerator"
)

// Defaults of Options.
const (
	DefaultPath = "/metrics"
	// DefaultChangeTimeout bounds the waits for a device's utilization to
	// rise under load and to fall back after it.
	DefaultChangeTimeout = 2 * time.Minute
	// DefaultUtilization is the load, in percent, the workload puts on
	// its device.
	DefaultUtilization = 80
	// DefaultMemory is the device memory the workload reports in use.
	DefaultMemory = "8Gi"

	// DefaultScrapeTimeout bounds the first scrape of the exporter,
	// retried while its pods are not all answering yet.
	DefaultScrapeTimeout = 30 * time.Second

	poll = 2 * time.Second
)

// DeviceLabels are the labels that identify a device in a series when the
// model names none, those the official suite accepts.
var DeviceLabels = []string{"gpu", "UUID", "uuid", "device", "device_id", "dev_id", "card_id", "GPU_I_ID", "minor_number", "pci_bus_id"}

// Name patterns of series the model does not name, those of the official
// suite.
var (
	utilizationPattern  = regexp.MustCompile(`(?i)util|utilization`)
	memoryPattern       = regexp.MustCompile(`(?i)mem|memory|fb|vram|hbm`)
	temperaturePattern  = regexp.MustCompile(`(?i)temp`)
	powerPattern        = regexp.MustCompile(`(?i)power|watt|energy`)
	interconnectPattern = regexp.MustCompile(`(?i)nvlink|pcie_tx|pcie_rx|bandwidth|xgmi`)
)

// nodeLabels name a series' node in exporters that say it.
var nodeLabels = []string{"node", "Hostname", "hostname", "kubernetes_node", "node_name"}

// Options configure the check.
type Options struct {
	// Endpoint overrides the accelerator model's metrics endpoint,
	// namespace/service:port.
	Endpoint string
	// Path is the path scraped (default DefaultPath).
	Path string
	// ChangeTimeout bounds each wait for utilization to change (default
	// DefaultChangeTimeout).
	ChangeTimeout time.Duration
	// Utilization is the load in percent the workload generates (default
	// DefaultUtilization).
	Utilization float64
	// ScrapeTimeout bounds the first scrape (default DefaultScrapeTimeout).
	ScrapeTimeout time.Duration
	// ExporterTimeout bounds the wait for the exporter's Service and a
	// ready endpoint of it to appear (default
	// profile.DefaultExporterTimeout).
	ExporterTimeout time.Duration
}

// Check returns the accelerator_metrics check with default options.
func Check() conformance.Check { return New(Options{}) }

// ForProfile returns the accelerator_metrics check configured by the
// profile's spec.checks.acceleratorMetrics (nil: the defaults).
func ForProfile(p *profile.Profile) conformance.Check {
	var o Options
	if p != nil {
		o.ExporterTimeout = p.Spec.Checks.AcceleratorMetrics.ExporterTimeout.Duration
	}
	return New(o)
}

// New returns the accelerator_metrics check configured by o.
func New(o Options) conformance.Check {
	if o.Path == "" {
		o.Path = DefaultPath
	}
	if o.ChangeTimeout <= 0 {
		o.ChangeTimeout = DefaultChangeTimeout
	}
	if o.ScrapeTimeout <= 0 {
		o.ScrapeTimeout = DefaultScrapeTimeout
	}
	if o.ExporterTimeout <= 0 {
		o.ExporterTimeout = profile.DefaultExporterTimeout
	}
	if o.Utilization <= 0 || o.Utilization > 100 {
		o.Utilization = DefaultUtilization
	}
	return conformance.WithNeeds(conformance.NewCheck(ID, func(t *conformance.T, env *conformance.Env) { run(t, env, o) }), devicepod.Needs)
}

// names are the series the check reads, from the model or Options.
type names struct {
	endpoint    promtext.Service
	selectors   []string
	deviceLabel string
	utilization string
	// partitionUtilization is read for partitions that have no
	// utilization series.
	partitionUtilization string
	memoryUsed           string
	memoryTotal          string
	memoryFree           string
	temperature          string
	power                string
}

func resolve(t *conformance.T, env *conformance.Env, o Options) names {
	acc := env.Accelerator
	var n names
	endpoint := o.Endpoint
	if m := acc.Metrics; m != nil {
		if endpoint == "" {
			endpoint = m.Endpoint
		}
		n.deviceLabel, n.utilization, n.memoryUsed, n.memoryTotal, n.memoryFree, n.temperature, n.power =
			m.DeviceLabel, m.Utilization, m.MemoryUsed, m.MemoryTotal, m.MemoryFree, m.Temperature, m.Power
		n.selectors, n.partitionUtilization = m.ServiceSelectors, m.PartitionUtilization
	}
	if endpoint == "" {
		t.Fatalf("the accelerator model %q names no metrics endpoint (spec.accelerator.metrics.endpoint, namespace/service:port of the exporter)", acc.Model)
	}
	svc, err := promtext.ParseService(endpoint)
	if err != nil {
		t.Fatalf("the accelerator model's metrics endpoint: %v", err)
	}
	n.endpoint = svc
	t.Observe("metrics of accelerator model "+acc.Model, map[string]string{
		"endpoint": svc.String(), "serviceSelectors": orNone(strings.Join(n.selectors, " or ")), "deviceLabel": orAny(n.deviceLabel, strings.Join(DeviceLabels, "|")),
		"utilization": orAny(n.utilization, utilizationPattern.String()), "partitionUtilization": orNone(n.partitionUtilization), "memoryUsed": orAny(n.memoryUsed, memoryPattern.String()),
		"memoryTotal": orNone(n.memoryTotal), "memoryFree": orNone(n.memoryFree), "temperature": orAny(n.temperature, temperaturePattern.String()), "power": orAny(n.power, powerPattern.String()),
	})
	return n
}

func orAny(name, pattern string) string {
	if name != "" {
		return name
	}
	return "any matching " + pattern
}

func run(t *conformance.T, env *conformance.Env, o Options) {
	n := resolve(t, env, o)
	var first *scrape
	if !t.Run("MetricsEndpointReachable", func(t *conformance.T) { first = reachable(t, env, &n, o) }) || first == nil {
		t.Logf("the exporter could not be scraped, so its series were not examined")
		return
	}
	var (
		inv   []device
		nodes map[string]int
		count int
	)
	if devicepod.DevicePlugin(env) {
		nodes = units(t, env)
		for _, u := range nodes {
			count += u
		}
	} else {
		var rows, notes []string
		inv, rows, notes = identify(first, inventory(t, env))
		if len(rows) > 0 {
			t.Observe("partitions matched to the exporter's instances", strings.Join(rows, "\n"))
		}
		for _, note := range notes {
			t.Logf("%s", note)
		}
		count = len(inv)
	}
	// perKind checks the kind's series cover every device, as the mode
	// lists them; what it could not verify ends the check not verified.
	var unverified []string
	perKind := func(t *conformance.T, kind, name string, pattern *regexp.Regexp, partitionName string) {
		if nodes != nil {
			if why := perNode(t, env, n, first, nodes, kind, name, pattern); why != "" {
				unverified = append(unverified, why)
				t.Skipf("not verified: %s", why)
			}
			return
		}
		perDevice(t, env, n, first, inv, kind, name, pattern, partitionName)
	}
	util := t.Run("PerAcceleratorUtilizationMetric", func(t *conformance.T) {
		perKind(t, "utilization", n.utilization, utilizationPattern, n.partitionUtilization)
	})
	mem := t.Run("PerAcceleratorMemoryMetric", func(t *conformance.T) {
		perKind(t, "memory", n.memoryUsed, memoryPattern, "")
		if nodes == nil {
			memoryCapacity(t, n, first, inv)
			return
		}
		if n.memoryTotal != "" {
			logSeries(t, first, "memory capacity", n.memoryTotal, nil)
		}
		if n.memoryFree != "" {
			logSeries(t, first, "free memory", n.memoryFree, nil)
		}
	})
	if util && mem && len(unverified) == 0 && nodes != nil {
		t.Shown("%s serves %s and %s for each of the %d devices", n.endpoint, n.utilization, n.memoryUsed, count)
	} else if util && mem && nodes == nil {
		required := 0
		for _, d := range inv {
			if d.required() {
				required++
			}
		}
		utilization := n.utilization
		if n.partitionUtilization != "" && slices.ContainsFunc(inv, device.partition) {
			utilization += " (" + n.partitionUtilization + " for partitions)"
		}
		if required == len(inv) {
			t.Shown("%s serves %s and %s for each of the %d devices", n.endpoint, utilization, n.memoryUsed, len(inv))
		} else {
			t.Shown("%s serves %s and %s for each of the %d devices that must exist (of %d published; partitions no claim holds may not exist yet)",
				n.endpoint, utilization, n.memoryUsed, required, len(inv))
		}
	}
	t.Run("OptionalMetrics", func(t *conformance.T) {
		logSeries(t, first, "temperature", n.temperature, temperaturePattern)
		logSeries(t, first, "power", n.power, powerPattern)
		logSeries(t, first, "interconnect", "", interconnectPattern)
	})
	t.Run("UtilizationFollowsWorkload", func(t *conformance.T) {
		workload(t, env, n, o, inv)
		if !t.Failed() {
			t.Shown("a device's series followed the load a pod put on it")
		}
	})
	if len(unverified) > 0 && !t.Failed() {
		t.Skipf("not verified: per-accelerator series: %s", unverified[0])
	}
}

// series is a scraped sample with the node of the exporter pod that
// served it.
type series struct {
	promtext.Sample
	node string
}

// node is the series' node: its own label, else the exporter pod's node.
func (s series) nodeName() string {
	for _, l := range nodeLabels {
		if v := s.Labels[l]; v != "" {
			return v
		}
	}
	return s.node
}

// scrape is what every exporter pod served at once.
type scrape struct {
	samples []series
}

func (s *scrape) named(name string) []series {
	var out []series
	for _, x := range s.samples {
		if x.Name == name {
			out = append(out, x)
		}
	}
	return out
}

// matching returns the series names that match pattern, sorted.
func (s *scrape) matching(pattern *regexp.Regexp) []string {
	var out []string
	for _, x := range s.samples {
		if pattern.MatchString(x.Name) && !slices.Contains(out, x.Name) {
			out = append(out, x.Name)
		}
	}
	sort.Strings(out)
	return out
}

// reachable finds the exporter's Service and its pods and scrapes each;
// it points n at the Service it found.
func reachable(t *conformance.T, env *conformance.Env, n *names, o Options) *scrape {
	svc := locate(t, env, *n, o)
	n.endpoint = svc
	t.Step("Scrape %s from every pod behind Service %s through the API server's proxy", o.Path, svc)
	_, eps, err := promtext.Endpoints(t.Context(), env.Client, svc)
	if err != nil {
		t.Fatalf("finding the metrics exporter %s: %v", svc, err)
	}
	rows := []string{}
	for _, e := range eps {
		rows = append(rows, fmt.Sprintf("%s ready=%t", e, e.Ready))
	}
	t.Observe("endpoints of Service "+svc.Namespace+"/"+svc.Name, rows)
	ctx, cancel := context.WithTimeout(t.Context(), o.ScrapeTimeout)
	defer cancel()
	var sc *scrape
	var lastErr error
	err = conformance.PollUntilContextCancel(ctx, poll, true, func(ctx context.Context) (bool, error) {
		sc, lastErr = scrapeAll(ctx, env, svc, o.Path)
		return lastErr == nil, nil
	})
	if err != nil {
		t.Fatalf("the metrics exporter %s could not be scraped within %s: %v", svc, o.ScrapeTimeout, lastErr)
	}
	counts := map[string]int{}
	for _, s := range sc.samples {
		if !runtimeSeries(s.Name) {
			counts[s.Name]++
		}
	}
	var lines []string
	for _, name := range slices.Sorted(maps.Keys(counts)) {
		lines = append(lines, fmt.Sprintf("%s: %d series", name, counts[name]))
	}
	t.Observe("series served (without the exporter's own runtime series)", strings.Join(lines, "\n"))
	return sc
}

// runtimeSeries reports whether a series describes the exporter process
// rather than accelerators.
func runtimeSeries(name string) bool {
	for _, p := range []string{"go_", "process_", "promhttp_"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// scrapeAll scrapes every ready pod behind the Service through the pod
// proxy, or the Service itself through the service proxy when its
// endpoints name no pod. Every pod must answer.
func scrapeAll(ctx context.Context, env *conformance.Env, svc promtext.Service, path string) (*scrape, error) {
	_, eps, err := promtext.Endpoints(ctx, env.Client, svc)
	if err != nil {
		return nil, err
	}
	sc := &scrape{}
	ready := 0
	for _, e := range eps {
		if !e.Ready {
			continue
		}
		ready++
		var body []byte
		if e.Pod != "" {
			body, err = promtext.GetPod(ctx, env.Client, e.Namespace, e.Pod, e.Port, path)
		} else {
			body, err = promtext.Get(ctx, env.Client, svc, path, nil)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e, err)
		}
		samples, err := promtext.Parse(body)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e, err)
		}
		for _, s := range samples {
			sc.samples = append(sc.samples, series{Sample: s, node: e.Node})
		}
	}
	if ready == 0 {
		return nil, fmt.Errorf("service %s has no ready endpoint (%d not ready): no exporter pod is running", svc, len(eps))
	}
	return sc, nil
}

// pick returns the series names a kind is read from: the model's name,
// else those matching pattern that carry a device label.
func pick(sc *scrape, name string, pattern *regexp.Regexp, label string) []string {
	if name != "" {
		return []string{name}
	}
	var out []string
	for _, candidate := range sc.matching(pattern) {
		if slices.ContainsFunc(sc.named(candidate), func(s series) bool { _, ok := deviceLabel(s, label); return ok }) {
			out = append(out, candidate)
		}
	}
	return out
}

// perDevice checks that the kind's series carry the device label and
// that every device has one of its own. A partition without a series of
// the kind's metric may have one of partitionMetric instead (DCGM serves
// no GPU_UTIL for MIG instances); an unallocated partition needs none.
func perDevice(t *conformance.T, env *conformance.Env, n names, sc *scrape, inv []device, kind, name string, pattern *regexp.Regexp, partitionMetric string) {
	label := n.deviceLabel
	labelDesc := "device label " + label
	if label == "" {
		labelDesc = "a device label (" + strings.Join(DeviceLabels, ", ") + ")"
	}
	metrics := pick(sc, name, pattern, label)
	t.Step("Check that every %s series carries %s and every device of %s has one of its own", kind, labelDesc, env.Accelerator.DRADriver)
	if len(metrics) == 0 {
		t.Fatalf("the exporter %s serves no per-device %s series (none whose name matches %s with %s); it serves: %s",
			n.endpoint, kind, pattern, labelDesc, strings.Join(promtextNames(sc), ", "))
	}
	driver := env.Accelerator.DRADriver
	for _, metric := range metrics {
		got := sc.named(metric)
		var alt []series
		if partitionMetric != "" && partitionMetric != metric && slices.ContainsFunc(inv, device.partition) {
			alt = sc.named(partitionMetric)
		}
		if len(got) == 0 && len(alt) == 0 {
			t.Errorf("the exporter %s serves no %s series %s; it serves: %s", n.endpoint, kind, metric, strings.Join(promtextNames(sc), ", "))
			continue
		}
		var unlabelled []string
		for _, set := range [][]series{got, alt} {
			if len(set) == 0 {
				continue
			}
			rows := make([]string, len(set))
			for i, s := range set {
				rows[i] = s.String()
				if _, ok := deviceLabel(s, label); !ok {
					unlabelled = append(unlabelled, s.Series())
				}
			}
			t.Observe("series "+set[0].Name, strings.Join(rows, "\n"))
		}
		if len(unlabelled) > 0 {
			t.Errorf("%d of %d %s series lack %s, so they cannot be attributed to an accelerator: %s",
				len(unlabelled), len(got)+len(alt), metric, labelDesc, strings.Join(unlabelled, "; "))
		}
		var missing, absent, mapping []string
		required := 0
		owners := map[string][]string{}
		for _, d := range inv {
			if d.required() {
				required++
			}
			own := ownSeries(got, d, label)
			if len(own) == 0 && d.partition() {
				own = ownSeries(alt, d, label)
			}
			if len(own) == 0 {
				if d.required() {
					missing = append(missing, describe(d))
				} else {
					absent = append(absent, describe(d))
				}
				continue
			}
			for _, s := range own {
				key := s.Series() + " from the exporter on " + orNone(s.node)
				owners[key] = append(owners[key], d.String())
				mapping = append(mapping, d.String()+": "+s.String())
			}
		}
		if len(mapping) > 0 {
			t.Observe(metric+" series of each device", strings.Join(mapping, "\n"))
		}
		for _, key := range slices.Sorted(maps.Keys(owners)) {
			if ds := owners[key]; len(ds) > 1 {
				t.Errorf("series %s is matched by %d devices (%s), so it is no device's own", key, len(ds), strings.Join(ds, ", "))
			}
		}
		none, some := metric+" series", metric+" series"
		if len(alt) > 0 {
			none += " (nor, for partitions, " + partitionMetric + ")"
			some += " (or, for partitions, " + partitionMetric + ")"
		}
		if len(missing) > 0 {
			t.Errorf("%d of %d devices published by %s on Ready nodes have no %s: %s",
				len(missing), required, driver, none, strings.Join(missing, ", "))
		} else {
			t.Logf("all %d devices of %s that must exist have a %s of their own", required, driver, some)
		}
		if len(absent) > 0 {
			t.Logf("%d partitions no ResourceClaim holds have no %s: %s. A driver that creates partitions (MIG instances) when it allocates them publishes placements that do not exist yet, so these need none",
				len(absent), none, strings.Join(absent, ", "))
		}
	}
}

// ownSeries returns the series of set that are the device's.
func ownSeries(set []series, d device, label string) []series {
	var out []series
	for _, s := range set {
		if matches(s, d, label) {
			out = append(out, s)
		}
	}
	return out
}

// describe names a device with what it is matched by.
func describe(d device) string {
	if d.partition() {
		return fmt.Sprintf("%s (uuid %s, parent %s, profile %s)", d, orNone(d.uuid), d.parentUUID, orNone(d.profile))
	}
	return fmt.Sprintf("%s (uuid %s)", d, orNone(d.uuid))
}

// memoryCapacity records each device's memory in use and capacity: the
// exporter's total where it serves one, else used plus free (DCGM serves
// FB_USED and FB_FREE, no total). A device that reports more memory in
// use than its capacity fails; a capacity the exporter does not serve is
// logged, as the requirement asks for memory use.
func memoryCapacity(t *conformance.T, n names, sc *scrape, inv []device) {
	if n.memoryUsed == "" || (n.memoryTotal == "" && n.memoryFree == "") {
		return
	}
	var rows, unknown []string
	for _, d := range inv {
		used, ok := sc.value(n.memoryUsed, d, n.deviceLabel)
		if !ok {
			continue
		}
		var total float64
		var from string
		if v, ok := sc.value(n.memoryTotal, d, n.deviceLabel); ok && n.memoryTotal != "" {
			total, from = v, n.memoryTotal
			if used > total {
				t.Errorf("device %s reports %g memory in use (%s), more than its capacity %g (%s)", d, used, n.memoryUsed, total, n.memoryTotal)
			}
		} else if v, ok := sc.value(n.memoryFree, d, n.deviceLabel); ok && n.memoryFree != "" {
			total, from = used+v, n.memoryUsed+" + "+n.memoryFree
		} else {
			unknown = append(unknown, d.String())
			continue
		}
		row := fmt.Sprintf("%s: used %g of %g (%s)", d, used, total, from)
		if d.memory != "" {
			row += ", ResourceSlice capacity " + d.memory
		}
		rows = append(rows, row)
	}
	if len(rows) > 0 {
		t.Observe("memory per device (the exporter's units)", strings.Join(rows, "\n"))
	}
	if len(unknown) > 0 {
		var named []string
		for _, m := range []string{n.memoryTotal, n.memoryFree} {
			if m != "" {
				named = append(named, m)
			}
		}
		t.Logf("SHOULD: the exporter serves no %s for %s, so their memory capacity is not known", strings.Join(named, " or "), strings.Join(unknown, ", "))
	}
}

func promtextNames(sc *scrape) []string {
	var out []string
	for _, s := range sc.samples {
		if !slices.Contains(out, s.Name) {
			out = append(out, s.Name)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return []string{"(nothing)"}
	}
	return out
}

// logSeries records an optional kind of series, found or not; it never
// fails.
func logSeries(t *conformance.T, sc *scrape, kind, name string, pattern *regexp.Regexp) {
	metrics := []string{name}
	if name == "" {
		metrics = sc.matching(pattern)
	}
	found := false
	for _, m := range metrics {
		got := sc.named(m)
		if len(got) == 0 {
			continue
		}
		found = true
		rows := make([]string, len(got))
		for i, s := range got {
			rows[i] = s.String()
		}
		t.Observe(kind+" series "+m, strings.Join(rows, "\n"))
	}
	if !found {
		what := name
		if what == "" {
			what = "matching " + pattern.String()
		}
		t.Logf("SHOULD: the exporter serves no %s series (%s)", kind, what)
	}
}

// value reads the device's series of metric, if any.
func (s *scrape) value(metric string, d device, label string) (float64, bool) {
	for _, x := range s.named(metric) {
		if matches(x, d, label) {
			return x.Value, true
		}
	}
	return 0, false
}

// workload runs a pod that loads the one device it holds and follows the
// device's series.
func workload(t *conformance.T, env *conformance.Env, n names, o Options, inv []device) {
	acc := env.Accelerator
	if acc.DevicePlugin() && acc.ResourceName != fakegpu.ResourceName {
		t.Skipf("the accelerator model %q uses extended resource %s: the workload this check runs (kaic probe load) generates load only on kaic-fake-gpu (%s) devices, and the probe image carries no compute kernels for other accelerators",
			acc.Model, acc.ResourceName, fakegpu.ResourceName)
	}
	if !acc.DevicePlugin() && acc.DRADriver != fakegpu.DriverName {
		t.Skipf("the accelerator model %q uses driver %s: the workload this check runs (kaic probe load) generates load only on kaic-fake-gpu (%s) devices, and the probe image carries no compute kernels for other accelerators",
			acc.Model, acc.DRADriver, fakegpu.DriverName)
	}
	if n.utilization == "" || n.memoryUsed == "" {
		t.Fatalf("the accelerator model %q names no utilization or memory series (spec.accelerator.metrics.utilization, memoryUsed) to follow", acc.Model)
	}
	devicepod.Preflight(t, env)
	before, err := scrapeAll(t.Context(), env, n.endpoint, o.Path)
	if err != nil {
		t.Fatalf("scraping the exporter before the workload: %v", err)
	}
	t.Step("Run pod %s whose container %s and loads it to %g%% utilization and %s of memory (kaic probe load)", loadPod, devicepod.Asking(env), o.Utilization, DefaultMemory)
	devicepod.ApplyTemplate(t, env, template)
	pod := devicepod.Pod(env, devicepod.OneDevicePod(env, loadPod, template, podClaim))
	pod.Spec.Containers[0].Args = probe.Args("load",
		"--utilization="+strconv.FormatFloat(o.Utilization, 'g', -1, 64), "--memory="+DefaultMemory)
	t.Apply(pod)
	t.Cleanup(func(ctx context.Context) {
		if err := devicepod.Release(ctx, env, loadPod); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	running := devicepod.WaitRunning(t, env, loadPod)
	held := devicepod.Holds(t, env, running, podClaim)
	node, err := env.Client.CoreV1().Nodes().Get(t.Context(), running.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting node %s of pod %s: %v", running.Spec.NodeName, loadPod, err)
	}
	if why, none := conformance.NodeRunsNoContainers(node); none {
		t.Skipf("pod %s runs on %s: %s, so no load reaches device %s", loadPod, node.Name, why, held)
	}
	var dev device
	if acc.DevicePlugin() {
		dev = loadedDevice(t, env, running)
		// The devices no pod may be loading are those of the nodes where
		// only the load pod holds units.
		busy := otherHolders(t, env)
		inv = nil
		for _, d := range seriesDevices(before, n.utilization, n.deviceLabel, units(t, env)) {
			if busy[d.node] == 0 {
				inv = append(inv, d)
			}
		}
	} else {
		i := slices.IndexFunc(inv, func(d device) bool { return d.pool == held.Pool && d.name == held.Name })
		if i < 0 {
			t.Fatalf("device %s held by pod %s is not among the devices published on Ready nodes", held, loadPod)
		}
		dev = inv[i]
	}
	baseUtil, okU := before.value(n.utilization, dev, n.deviceLabel)
	baseMem, okM := before.value(n.memoryUsed, dev, n.deviceLabel)
	if !okU || !okM {
		t.Fatalf("device %s has no %s or %s series to follow", dev, n.utilization, n.memoryUsed)
	}
	t.Observe("before the workload, device "+dev.String(), map[string]float64{n.utilization: baseUtil, n.memoryUsed: baseMem})

	t.Step("Wait for %s and %s of device %s to rise above %g and %g", n.utilization, n.memoryUsed, dev, baseUtil, baseMem)
	loaded := follow(t, env, n, o, func(sc *scrape) bool {
		u, _ := sc.value(n.utilization, dev, n.deviceLabel)
		m, _ := sc.value(n.memoryUsed, dev, n.deviceLabel)
		return u > baseUtil && m > baseMem
	})
	if loaded == nil {
		return
	}
	u, _ := loaded.value(n.utilization, dev, n.deviceLabel)
	m, _ := loaded.value(n.memoryUsed, dev, n.deviceLabel)
	t.Observe("under load, device "+dev.String(), map[string]float64{n.utilization: u, n.memoryUsed: m})
	unchanged(t, env, n, before, loaded, inv, dev)

	t.Step("Delete pod %s and wait for %s of device %s to fall back to %g", loadPod, n.utilization, dev, baseUtil)
	devicepod.ReleaseNow(t, env, loadPod)
	idle := follow(t, env, n, o, func(sc *scrape) bool {
		u, _ := sc.value(n.utilization, dev, n.deviceLabel)
		return u <= baseUtil
	})
	if idle != nil {
		u, _ := idle.value(n.utilization, dev, n.deviceLabel)
		m, _ := idle.value(n.memoryUsed, dev, n.deviceLabel)
		t.Observe("after the workload, device "+dev.String(), map[string]float64{n.utilization: u, n.memoryUsed: m})
	}
}

// follow scrapes until done holds and returns that scrape; on timeout it
// fails the test with the device's last values and returns nil.
func follow(t *conformance.T, env *conformance.Env, n names, o Options, done func(*scrape) bool) *scrape {
	ctx, cancel := context.WithTimeout(t.Context(), o.ChangeTimeout)
	defer cancel()
	var last *scrape
	var lastErr error
	err := conformance.PollUntilContextCancel(ctx, poll, true, func(ctx context.Context) (bool, error) {
		sc, err := scrapeAll(ctx, env, n.endpoint, o.Path)
		if err != nil {
			lastErr = err
			return false, nil
		}
		last = sc
		return done(sc), nil
	})
	if err == nil {
		return last
	}
	if last == nil {
		t.Errorf("the exporter %s could not be scraped for %s: %v", n.endpoint, o.ChangeTimeout, lastErr)
		return nil
	}
	t.Errorf("the device's series did not change as expected within %s; last scrape: %s", o.ChangeTimeout, strings.Join(utilRows(last, n), "; "))
	return nil
}

func utilRows(sc *scrape, n names) []string {
	var rows []string
	for _, metric := range []string{n.utilization, n.memoryUsed} {
		for _, s := range sc.named(metric) {
			rows = append(rows, s.String())
		}
	}
	return rows
}

// unchanged fails for devices other than dev that no claim holds and
// whose utilization changed while dev was loaded (in device-plugin mode,
// inv lists only devices no other pod can hold).
func unchanged(t *conformance.T, env *conformance.Env, n names, before, after *scrape, inv []device, dev device) {
	held := map[string]bool{}
	if !devicepod.DevicePlugin(env) {
		held = heldDevices(t, env)
	}
	var changed []string
	for _, d := range inv {
		if d == dev || held[d.pool+"/"+d.name] {
			continue
		}
		b, ok1 := before.value(n.utilization, d, n.deviceLabel)
		a, ok2 := after.value(n.utilization, d, n.deviceLabel)
		if ok1 && ok2 && a != b {
			changed = append(changed, fmt.Sprintf("%s %g -> %g", d, b, a))
		}
	}
	if len(changed) > 0 {
		t.Errorf("devices no pod holds changed %s while only %s was loaded: %s", n.utilization, dev, strings.Join(changed, ", "))
	}
}
