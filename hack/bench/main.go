// Command bench measures kaic's verify phase on a real control plane with
// kwok nodes (no Docker): the same accelerator checks on a small and on a
// large cluster, in parallel and one at a time, and how many API requests
// each check sends. It prints a table and, as its last line, the ratios as
// key=value pairs, and writes the same as JSON under bench/.
//
//	go run ./hack/bench                 # make bench
//	go run ./hack/bench -large 300      # a smaller large cluster
//
// The control-plane binaries come from hack/testbin/build.sh
// (KAIC_TESTBIN_DIR), as for the tests.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/dra"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/driverruntime"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/gpusharing"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/secureaccess"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/provision/existing"
)

// deviceClass is the DeviceClass of the fake accelerators.
const deviceClass = "gpu.example.com"

// run is one verify of the checks on one cluster.
type run struct {
	Nodes    int                 `json:"nodes"`
	Parallel int                 `json:"parallel"` // 0: all at once
	Wall     float64             `json:"wallSeconds"`
	Checks   map[string]checkRun `json:"checks"`
}

// checkRun is one check's part of a run.
type checkRun struct {
	Status   string         `json:"status"`
	Seconds  float64        `json:"seconds"`
	Requests map[string]int `json:"requests"`
	// RequestsPerSecond are the requests other than watches over the
	// check's duration; WaitRequestsPerSecond those sent while it waited
	// beyond the first of each wait (a watch's list), over the time it
	// waited.
	RequestsPerSecond     float64 `json:"requestsPerSecond"`
	WaitSeconds           float64 `json:"waitSeconds"`
	WaitRequestsPerSecond float64 `json:"waitRequestsPerSecond"`
}

// report is what bench writes.
type report struct {
	Date   time.Time          `json:"date"`
	Runs   []run              `json:"runs"`
	Ratios map[string]float64 `json:"ratios"`
	Goals  map[string]string  `json:"goals"`
}

func main() {
	small := flag.Int("small", 3, "accelerator nodes of the small cluster")
	large := flag.Int("large", 1000, "accelerator nodes of the large cluster")
	out := flag.String("out", "bench", "directory the JSON report is written to")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, os.Stdout, *small, *large, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func bench(ctx context.Context, w io.Writer, small, large int, out string) error {
	rep := report{Date: time.Now().UTC()}
	for _, nodes := range []int{small, large} {
		runs, err := onCluster(ctx, nodes)
		if err != nil {
			return fmt.Errorf("%d nodes: %w", nodes, err)
		}
		rep.Runs = append(rep.Runs, runs...)
	}
	smallPar, smallSerial, largePar := rep.Runs[0], rep.Runs[1], rep.Runs[2]
	// The runs compare like with like only if every check ends the same
	// way in each, and none failed.
	for _, r := range rep.Runs {
		for id, c := range r.Checks {
			if c.Status == string(conformance.Failed) || c.Status != smallPar.Checks[id].Status {
				return fmt.Errorf("%s is %s on %d nodes (parallel %d) but %s on %d nodes in parallel: the runs would not compare like with like",
					id, c.Status, r.Nodes, r.Parallel, smallPar.Checks[id].Status, smallPar.Nodes)
			}
		}
	}
	longest, maxWaitRate := 0.0, 0.0
	for _, c := range smallPar.Checks {
		longest = max(longest, c.Seconds)
	}
	for _, r := range rep.Runs {
		for _, c := range r.Checks {
			maxWaitRate = max(maxWaitRate, c.WaitRequestsPerSecond)
		}
	}
	rep.Ratios = map[string]float64{
		fmt.Sprintf("verify_%d_over_%d", large, small): round(largePar.Wall / smallPar.Wall),
		"max_wait_requests_per_s":                      round(maxWaitRate),
		"verify_over_longest_check":                    round(smallPar.Wall / longest),
		"serial_over_parallel":                         round(smallSerial.Wall / smallPar.Wall),
	}
	rep.Goals = map[string]string{
		fmt.Sprintf("verify_%d_over_%d", large, small): "<= 1.5",
		"max_wait_requests_per_s":                      "<= 1",
		"verify_over_longest_check":                    "<= 1.25",
		"serial_over_parallel":                         "higher is better",
	}
	printReport(w, rep)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(out, "bench-"+rep.Date.Format("20060102T150405Z")+".json")
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return err
	}
	keys := slices.Sorted(maps.Keys(rep.Ratios))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%.2f", k, rep.Ratios[k])
	}
	fmt.Fprintf(w, "report written to %s\n", path)
	fmt.Fprintf(w, "bench: %s\n", strings.Join(parts, " "))
	return nil
}

// onCluster starts a control plane with nodes accelerator nodes (two fake
// devices each) and runs the checks on it in parallel, then, on the small
// cluster only, one at a time.
func onCluster(ctx context.Context, nodes int) ([]run, error) {
	start := time.Now()
	env, err := testenv.Start(ctx, testenv.WithControlLoops(), testenv.WithGPUNodes(nodes, 2),
		testenv.WithStartTimeout(10*time.Minute))
	if err != nil {
		return nil, err
	}
	defer func() { _ = env.Stop() }()
	fmt.Fprintf(os.Stderr, "bench: control plane with %d kwok accelerator nodes ready in %s\n", nodes, time.Since(start).Round(time.Second))
	client, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return nil, err
	}
	if _, err := client.ResourceV1().DeviceClasses().Create(ctx, testenv.DeviceClassFor(deviceClass, env.DRADriver), metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	parallel := []int{0}
	if nodes <= 10 {
		parallel = append(parallel, 1)
	}
	var runs []run
	for _, p := range parallel {
		r, err := verify(ctx, env, nodes, p)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "bench: %d nodes, parallel %d: %.1fs\n", nodes, p, r.Wall)
		runs = append(runs, r)
	}
	return runs, nil
}

// verify runs the accelerator checks that kwok nodes can serve through
// kaic's runner, with kaic's client limits.
func verify(ctx context.Context, env *testenv.Env, nodes, parallel int) (run, error) {
	cfg := *env.Config
	cfg.QPS, cfg.Burst = existing.ClientQPS, existing.ClientBurst
	cenv, err := conformance.NewEnv(&cfg, nil)
	if err != nil {
		return run{}, err
	}
	cenv.Accelerator = profile.Accelerator{Model: "example", DRADriver: env.DRADriver, DeviceClass: deviceClass,
		DeviceEnvPrefix: "GPU_DEVICE_", NodeTaintKey: "example.com/gpu"}
	checks := []conformance.Check{dra.Check(), secureaccess.Check(), gpusharing.Check(), driverruntime.Check()}
	reg, err := conformance.NewRegistry(checks...)
	if err != nil {
		return run{}, err
	}
	cat, err := conformance.Builtin("1.37")
	if err != nil {
		return run{}, err
	}
	ids := reg.IDs()
	r := &conformance.Runner{Catalog: cat, Registry: reg, Env: *cenv, Include: ids, Parallel: parallel, Timeout: 10 * time.Minute}
	start := time.Now()
	results, err := r.Run(ctx)
	wall := time.Since(start)
	if err != nil {
		return run{}, err
	}
	out := run{Nodes: nodes, Parallel: parallel, Wall: round(wall.Seconds()), Checks: map[string]checkRun{}}
	for _, res := range results {
		if !slices.Contains(ids, res.ID) {
			continue
		}
		nonWatch := 0
		for verb, n := range res.APIRequests {
			if verb != "watch" {
				nonWatch += n
			}
		}
		secs := res.Duration.Seconds()
		c := checkRun{Status: string(res.Status), Seconds: round(secs), Requests: res.APIRequests,
			RequestsPerSecond: round(float64(nonWatch) / max(secs, 0.001)), WaitSeconds: round(res.WaitTime.Seconds())}
		// A wait on a watch starts with one list; what a check sends
		// beyond that while it waits is polling.
		if res.WaitTime > 0 {
			c.WaitRequestsPerSecond = round(float64(max(res.WaitRequests-res.Waits, 0)) / res.WaitTime.Seconds())
		}
		out.Checks[res.ID] = c
	}
	return out, nil
}

func printReport(w io.Writer, rep report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODES\tPARALLEL\tCHECK\tSTATUS\tSECONDS\tREQUESTS\tREQ/S\tWAITING S\tREQ/S WAITING")
	for _, r := range rep.Runs {
		ids := slices.Sorted(maps.Keys(r.Checks))
		par := "all"
		if r.Parallel > 0 {
			par = fmt.Sprint(r.Parallel)
		}
		for _, id := range ids {
			c := r.Checks[id]
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%.1f\t%s\t%.2f\t%.1f\t%.2f\n", r.Nodes, par, id, c.Status, c.Seconds, conformance.APIRequestSummary(c.Requests),
				c.RequestsPerSecond, c.WaitSeconds, c.WaitRequestsPerSecond)
		}
		fmt.Fprintf(tw, "%d\t%s\t(verify)\t\t%.1f\t\t\t\t\n", r.Nodes, par, r.Wall)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	for _, k := range slices.Sorted(maps.Keys(rep.Ratios)) {
		fmt.Fprintf(w, "%-28s %6.2f  goal %s\n", k, rep.Ratios[k], rep.Goals[k])
	}
}

func round(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
