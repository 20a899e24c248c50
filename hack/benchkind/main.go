// Command benchkind measures kaic on real kind clusters made of the offline
// node image, next to its floor: the same cluster created with kind's Go
// library directly. It runs, one after another on the same engine:
//
//  1. kind's library alone: create the profile's cluster (same node image,
//     same nodes, same kubelet settings, no images loaded) and wait until
//     every node is Ready;
//  2. kaic provision of the profile without its image archives (kaic still
//     builds its probe image and loads it);
//  3. kaic up of the whole profile: provision with every stack image
//     loaded, install, verify;
//
// deleting each cluster before the next. Steps 1 and 2 run -pairs times,
// alternating, and their ratio is that of their medians: a single pair
// moves by about a tenth between runs on a 2-core machine. It prints a
// table and, as its last line, the ratios as key=value pairs, and writes
// the same as JSON under bench/. make bench-kind runs it through
// e2e/offline.sh, which builds the node and stack images and starts the
// private engine where needed.
//
//	go run ./hack/benchkind -kaic bin/kaic -profile e2e/testdata/kind-dra-offline.yaml
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/provision/kind"
)

// step is one measured part of the bench.
type step struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	// Samples are the measurements of a step measured more than once,
	// in the order taken; Seconds is their median.
	Samples []float64 `json:"samples,omitempty"`
}

// checkTime is one check's wall time in the kaic up run.
type checkTime struct {
	ID      string  `json:"id"`
	Status  string  `json:"status"`
	Seconds float64 `json:"seconds"`
}

// componentTime is one stack component's install in the kaic up run:
// when it started after the first component did, and how long it took.
type componentTime struct {
	Component string   `json:"component"`
	Action    string   `json:"action"`
	DependsOn []string `json:"dependsOn,omitempty"`
	StartS    float64  `json:"startSeconds"`
	Seconds   float64  `json:"seconds"`
}

// report is what benchkind writes.
type report struct {
	Date    time.Time   `json:"date"`
	Profile string      `json:"profile"`
	Nodes   int         `json:"nodes"`
	Steps   []step      `json:"steps"`
	Checks  []checkTime `json:"checks"`
	// Components are the install phase's components, by when they ended.
	Components []componentTime    `json:"components,omitempty"`
	Ratios     map[string]float64 `json:"ratios"`
	Goals      map[string]string  `json:"goals"`
	// UpExit is kaic up's exit status when it reported a verdict (3)
	// rather than 0.
	UpExit int `json:"upExit,omitempty"`
}

func main() {
	kaicBin := flag.String("kaic", "bin/kaic", "the kaic binary to measure")
	profilePath := flag.String("profile", "e2e/testdata/kind-dra-offline.yaml", "the kind profile (its node image must be on the engine)")
	checklists := flag.String("checklist-dir", os.Getenv("KAIC_CHECKLIST_DIR"), "the official checklists, for kaic up's verify phase")
	out := flag.String("out", "bench", "directory the JSON report and the run directories go to")
	pairs := flag.Int("pairs", 3, "how many times kind's floor and kaic provision are each measured, one after the other; provision_over_kind is the ratio of their medians")
	flag.Parse()
	if *pairs < 1 {
		fmt.Fprintln(os.Stderr, "bench-kind: -pairs must be at least 1")
		os.Exit(2)
	}
	if *checklists == "" {
		// Beside the repository, where the tests read them too.
		if _, err := os.Stat(filepath.Join("..", "shared", "checklists")); err == nil {
			*checklists = filepath.Join("..", "shared", "checklists")
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, os.Stdout, *kaicBin, *profilePath, *checklists, *out, *pairs); err != nil {
		fmt.Fprintln(os.Stderr, "bench-kind:", err)
		os.Exit(1)
	}
}

func bench(ctx context.Context, w io.Writer, kaicBin, profilePath, checklists, out string, pairs int) error {
	kaicBin, err := filepath.Abs(kaicBin)
	if err != nil {
		return err
	}
	res, err := (&profile.Loader{}).Load(profilePath)
	if err != nil {
		return err
	}
	k := res.Profile.Spec.Cluster.Kind
	if k == nil {
		return fmt.Errorf("%s is not a kind profile", profilePath)
	}
	rep := report{Date: time.Now().UTC(), Profile: profilePath, Nodes: 1 + *k.Workers}
	stamp := rep.Date.Format("20060102T150405Z")
	work := filepath.Join(out, "bench-kind-"+stamp)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	say := func(name string, d time.Duration) {
		fmt.Fprintf(os.Stderr, "bench-kind: %s: %s\n", name, d.Round(100*time.Millisecond))
	}
	add := func(name string, d time.Duration) {
		rep.Steps = append(rep.Steps, step{Name: name, Seconds: round(d.Seconds())})
		say(name, d)
	}

	// 1 and 2, alternating: the floor (kind's library with the same
	// configuration), then kaic provision without the image archives.
	bare, err := withoutArchives(profilePath, filepath.Join(work, "no-archives.yaml"))
	if err != nil {
		return err
	}
	var floors, provisions []time.Duration
	for i := range pairs {
		floor, err := kindFloor(ctx, k, filepath.Join(work, "kind-kubeconfig"))
		if err != nil {
			return fmt.Errorf("kind alone: %w", err)
		}
		say(fmt.Sprintf("kind create, nodes Ready (%d of %d)", i+1, pairs), floor)
		floors = append(floors, floor)
		dir := filepath.Join(work, fmt.Sprintf("provision-%d", i+1))
		took, err := timed(ctx, kaicBin, "provision", "-p", bare, "--out", dir)
		down(kaicBin, dir)
		if err != nil {
			return fmt.Errorf("kaic provision: %w", err)
		}
		say(fmt.Sprintf("kaic provision (probe image only) (%d of %d)", i+1, pairs), took)
		provisions = append(provisions, took)
	}
	floor, took := median(floors), median(provisions)
	rep.Steps = append(rep.Steps,
		step{Name: "kind create, nodes Ready", Seconds: round(floor.Seconds()), Samples: seconds(floors)},
		step{Name: "kaic provision (probe image only)", Seconds: round(took.Seconds()), Samples: seconds(provisions)})

	// 3. kaic up of the whole profile.
	dir := filepath.Join(work, "up")
	args := []string{"up", "-p", profilePath, "--out", dir}
	if checklists != "" {
		args = append(args, "--checklist-dir", checklists)
	}
	upTook, err := timed(ctx, kaicBin, args...)
	phases, resultsDir, perr := phaseTimes(dir)
	components, cerr := componentTimes(dir)
	down(kaicBin, dir)
	// Exit 3 is kaic up's verdict (a check failed or a MUST was not
	// verified), not a failed run: its phases and checks still took the
	// time measured. It is reported beside the numbers.
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		rep.UpExit = 3
		fmt.Fprintf(os.Stderr, "bench-kind: kaic up exit 3: a check failed or a MUST was not verified (see %s); its times are measured all the same\n", resultsDir)
	} else if err != nil {
		return fmt.Errorf("kaic up: %w", err)
	}
	if perr != nil {
		return perr
	}
	if cerr != nil {
		return cerr
	}
	rep.Components = components
	checks, err := checkTimes(resultsDir)
	if err != nil {
		return err
	}
	add("kaic up", upTook)
	for _, ph := range []string{"provision", "install", "verify"} {
		add("  "+ph, phases[ph])
	}
	rep.Checks = checks
	longest := 0.0
	for _, c := range checks {
		longest = max(longest, c.Seconds)
	}

	rep.Ratios = map[string]float64{
		"provision_over_kind":             round(took.Seconds() / floor.Seconds()),
		"provision_with_images_over_kind": round(phases["provision"].Seconds() / floor.Seconds()),
		"up_s":                            round(upTook.Seconds()),
		"longest_check_s":                 round(longest),
	}
	rep.Goals = map[string]string{
		"provision_over_kind":             "<= 1.2",
		"provision_with_images_over_kind": "<= 1.3",
		"up_s":                            "<= 180",
		"longest_check_s":                 "<= 30",
	}
	printReport(w, rep)
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(out, "bench-kind-"+stamp+".json")
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return err
	}
	keys := slices.Sorted(maps.Keys(rep.Ratios))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%.2f", k, rep.Ratios[k])
	}
	fmt.Fprintf(w, "report written to %s\n", path)
	fmt.Fprintf(w, "bench-kind: %s\n", strings.Join(parts, " "))
	return nil
}

// kindFloor creates the profile's cluster with kind's library, under
// another name and without image archives, waits until every node is
// Ready, and deletes it again. It returns the time to Ready.
func kindFloor(ctx context.Context, k *profile.KindCluster, kubeconfig string) (time.Duration, error) {
	floor := *k
	floor.Name = "kaic-bench-kind"
	floor.ImageArchives = nil
	cfg, err := kind.Config(&floor, "")
	if err != nil {
		return 0, err
	}
	// As kaic provision does: kubelet 1.35+ refuses a cgroup v1 host
	// unless told to accept it, and kubeadm init then never comes up.
	if kind.HostCgroupV1() {
		if _, err := kind.AcceptCgroupV1(cfg, &floor); err != nil {
			return 0, err
		}
	}
	provider := kindcluster.NewProvider(kindcluster.ProviderWithDocker())
	defer func() {
		if err := provider.Delete(floor.Name, kubeconfig); err != nil {
			fmt.Fprintf(os.Stderr, "bench-kind: deleting %s: %v\n", floor.Name, err)
		}
	}()
	start := time.Now()
	if err := provider.Create(floor.Name,
		kindcluster.CreateWithV1Alpha4Config(cfg),
		kindcluster.CreateWithKubeconfigPath(kubeconfig),
		kindcluster.CreateWithDisplayUsage(false),
		kindcluster.CreateWithDisplaySalutation(false),
	); err != nil {
		return 0, err
	}
	// The floor is the quickest use of kind's library: no wait of kind's
	// (it polls kubectl inside the node, for the control plane only) and
	// one watch until every node is Ready, the same wait kaic does.
	if err := kind.WaitNodesReady(ctx, kubeconfig, len(cfg.Nodes), 5*time.Minute, progress.ForPhase(progress.Discard, "bench")); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// withoutArchives writes a copy of the profile file with no image archives
// and another cluster name.
func withoutArchives(src, dst string) (string, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("%s: %w", src, err)
	}
	spec, _ := doc["spec"].(map[string]any)
	cluster, _ := spec["cluster"].(map[string]any)
	kindSection, _ := cluster["kind"].(map[string]any)
	if kindSection == nil {
		return "", fmt.Errorf("%s has no spec.cluster.kind", src)
	}
	delete(kindSection, "imageArchives")
	kindSection["name"] = "kaic-bench-provision"
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "", err
	}
	return dst, os.WriteFile(dst, out, 0o644)
}

// timed runs kaic with args, its output going to stderr, and returns its
// wall time.
func timed(ctx context.Context, kaicBin string, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, kaicBin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 2 * time.Minute
	start := time.Now()
	err := cmd.Run()
	return time.Since(start), err
}

// down tears a run directory's cluster down, whatever the run got to.
func down(kaicBin, dir string) {
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err != nil {
		return
	}
	cmd := exec.Command(kaicBin, "down", dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench-kind: kaic down %s: %v\n", dir, err)
	}
}

// phaseTimes reads each phase's wall time from a run directory's state,
// and where the verify phase wrote its results.
func phaseTimes(dir string) (map[string]time.Duration, string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, "", err
	}
	var st struct {
		Phases []struct {
			Name    string            `json:"name"`
			Status  string            `json:"status"`
			Start   time.Time         `json:"start"`
			End     time.Time         `json:"end"`
			Outputs map[string]string `json:"outputs"`
		} `json:"phases"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, "", fmt.Errorf("%s/state.json: %w", dir, err)
	}
	out := map[string]time.Duration{}
	results := ""
	verifyRanOut := false
	for _, p := range st.Phases {
		// A verify phase that failed because a check failed (kaic up exit
		// 3) ran to its end: its time counts like a passing one's. kaic up
		// stops there, so the phases after it stay pending: not measured.
		ranOut := p.Name == "verify" && p.Status == "failed" && !p.End.IsZero()
		verifyRanOut = verifyRanOut || ranOut
		if p.Status == "pending" && verifyRanOut {
			continue
		}
		if p.Status != "succeeded" && !ranOut {
			return nil, "", fmt.Errorf("phase %s of kaic up is %s", p.Name, p.Status)
		}
		out[p.Name] = p.End.Sub(p.Start)
		if p.Name == "verify" {
			results = p.Outputs["results"]
		}
	}
	return out, results, nil
}

// componentTimes reads when each stack component's install started and
// ended from a run directory's releases.json, ordered by when they ended,
// so that the install's longest chain of dependencies shows.
func componentTimes(dir string) ([]componentTime, error) {
	rd, err := kaic.OpenExistingRunDir(dir)
	if err != nil {
		return nil, err
	}
	records, err := rd.Releases()
	if cerr := rd.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	var first time.Time
	for _, r := range records {
		if !r.Started.IsZero() && (first.IsZero() || r.Started.Before(first)) {
			first = r.Started
		}
	}
	out := make([]componentTime, 0, len(records))
	for _, r := range records {
		if r.Started.IsZero() || r.Finished.IsZero() {
			continue
		}
		out = append(out, componentTime{
			Component: r.Component, Action: r.Action, DependsOn: r.DependsOn,
			StartS: round(r.Started.Sub(first).Seconds()), Seconds: round(r.Finished.Sub(r.Started).Seconds()),
		})
	}
	slices.SortFunc(out, func(a, b componentTime) int {
		if c := cmp.Compare(a.StartS+a.Seconds, b.StartS+b.Seconds); c != 0 {
			return c
		}
		return strings.Compare(a.Component, b.Component)
	})
	return out, nil
}

// checkTimes reads each check's wall time from the verify phase's results.
func checkTimes(dir string) ([]checkTime, error) {
	if dir == "" {
		return nil, errors.New("the verify phase recorded no results directory")
	}
	results, err := conformance.LoadResults(dir)
	if err != nil {
		return nil, err
	}
	out := make([]checkTime, 0, len(results))
	for _, r := range results {
		out = append(out, checkTime{ID: r.ID, Status: string(r.Status), Seconds: round(r.Duration.Seconds())})
	}
	slices.SortFunc(out, func(a, b checkTime) int {
		switch {
		case a.Seconds > b.Seconds:
			return -1
		case a.Seconds < b.Seconds:
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

func printReport(w io.Writer, rep report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "STEP (%d nodes)\tSECONDS\t\n", rep.Nodes)
	for _, s := range rep.Steps {
		samples := ""
		if len(s.Samples) > 1 {
			parts := make([]string, len(s.Samples))
			for i, v := range s.Samples {
				parts[i] = fmt.Sprintf("%.1f", v)
			}
			samples = "median of " + strings.Join(parts, ", ")
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%s\n", s.Name, s.Seconds, samples)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(rep.Components) > 0 {
		fmt.Fprintln(tw, "COMPONENT\tSTARTED AT\tENDED AT\tSECONDS\tDEPENDS ON")
		for _, c := range rep.Components {
			fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%s\n", c.Component, c.StartS, c.StartS+c.Seconds, c.Seconds, strings.Join(c.DependsOn, ", "))
		}
		_ = tw.Flush()
		fmt.Fprintln(w)
	}
	fmt.Fprintln(tw, "CHECK\tSTATUS\tSECONDS")
	for _, c := range rep.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%.1f\n", c.ID, c.Status, c.Seconds)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	for _, k := range slices.Sorted(maps.Keys(rep.Ratios)) {
		fmt.Fprintf(w, "%-32s %7.2f  goal %s\n", k, rep.Ratios[k], rep.Goals[k])
	}
}

func round(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// median is the middle of ds, or the mean of the two middle ones.
func median(ds []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// seconds are ds in seconds, rounded as the report's numbers are.
func seconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = round(d.Seconds())
	}
	return out
}
