// Command stackproof installs the stack components of kaic's built-in
// profiles from their upstream charts into a real control plane with kwok
// nodes (internal/testenv), with kaic's own installer, and requires each to
// reach its declared readiness: what `make stack-proof` runs.
//
// A component is proven when its chart at the pinned version is published
// inside a Go module the module proxy serves (the chart is then packaged
// from the module as upstream's release packages it), or when kaic installs
// it from a module or from its own charts anyway; everything else about it
// (values, namespace, readiness, dependencies) is as the profile resolves
// it. Before installing, its readiness names and values keys are checked
// against the chart (stack.Installer.CheckAgainstChart). A component whose
// chart is only in a registry or repository that is not reachable offline,
// or that depends on such a component, is reported as not provable here,
// with the reason.
//
// Profiles whose provable components are the same (same versions, values,
// readiness and dependencies) share one control plane and one install; each
// profile still gets its lines. Output, one line per component:
//
//	<profile> <component> <version>: proven
//	<profile> <component> <version>: not provable here (<reason>)
//	<profile> <component> <version>: FAILED (<error>)
//
// The exit code is 1 when any component failed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
)

func main() {
	profiles := flag.String("profiles", "", "comma-separated built-in profiles (default: all)")
	timeout := flag.Duration("timeout", 15*time.Minute, "bound on the whole proof")
	flag.Parse()
	// client-go's reflectors log to stderr when Helm's watches end; the
	// outcome is in the verdicts.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var names []string
	if *profiles != "" {
		names = strings.Split(*profiles, ",")
	}
	failed, err := run(ctx, names, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stack-proof:", err)
		os.Exit(1)
	}
	if failed {
		os.Exit(1)
	}
}

// verdict is the outcome for one component of one profile.
type verdict struct {
	status string // proven, not provable here, FAILED
	detail string
}

func (v verdict) String() string {
	if v.detail == "" {
		return v.status
	}
	return v.status + " (" + v.detail + ")"
}

const (
	proven      = "proven"
	unprovable  = "not provable here"
	failedProof = "FAILED"
)

// plan is one profile's components: those to install and the verdicts
// already known.
type plan struct {
	name     string
	resolved *profile.Resolved
	install  []sourced
	verdicts map[string]verdict
	key      string
}

// run proves the named built-in profiles (all when names is empty),
// printing one line per component to out and progress to log. It reports
// whether any component failed; err is a failure to run at all.
func run(ctx context.Context, names []string, out, log io.Writer) (bool, error) {
	start := time.Now()
	loader := &profile.Loader{}
	if len(names) == 0 {
		names = loader.BuiltinNames()
	}
	workDir, err := os.MkdirTemp("", "kaic-stackproof-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(workDir)

	var plans []*plan
	sources := map[string]sourced{}
	for _, name := range names {
		res, err := loader.Load(name)
		if err != nil {
			return false, fmt.Errorf("profile %s: %w", name, err)
		}
		p := &plan{name: name, resolved: res, verdicts: map[string]verdict{}}
		if err := p.choose(ctx, workDir, sources, log); err != nil {
			return false, err
		}
		plans = append(plans, p)
	}

	// One control plane per distinct set of components to install.
	proofs := map[string]map[string]verdict{}
	for _, p := range plans {
		if len(p.install) == 0 {
			continue
		}
		if _, done := proofs[p.key]; done {
			fmt.Fprintf(log, "stack-proof: %s installs what an earlier profile's proof installed\n", p.name)
			continue
		}
		fmt.Fprintf(log, "stack-proof: %s: installing %s\n", p.name, componentNames(p.install))
		proofs[p.key], err = prove(ctx, p.install, log)
		if err != nil {
			return false, fmt.Errorf("profile %s: %w", p.name, err)
		}
	}

	anyFailed := false
	for _, p := range plans {
		for name, v := range proofs[p.key] {
			p.verdicts[name] = v
		}
		for _, c := range p.resolved.Components {
			v := p.verdicts[c.Name]
			anyFailed = anyFailed || v.status == failedProof
			fmt.Fprintf(out, "%s %s %s: %s\n", p.name, c.Name, displayVersion(c), v)
		}
	}
	fmt.Fprintf(log, "stack-proof: done in %s\n", time.Since(start).Round(time.Second))
	return anyFailed, nil
}

// choose sorts a profile's components into those to install and those not
// provable here; sources caches what each component resolved to.
func (p *plan) choose(ctx context.Context, workDir string, sources map[string]sourced, log io.Writer) error {
	waves, err := profile.InstallOrder(p.resolved.Components)
	if err != nil {
		return fmt.Errorf("profile %s: %w", p.name, err)
	}
	var keys []string
	for _, wave := range waves {
		for _, c := range wave {
			key, err := componentKey(c)
			if err != nil {
				return err
			}
			s, ok := sources[key]
			if !ok {
				s, err = source(ctx, c, workDir+"/"+fmt.Sprint(len(sources)))
				var np *notProvableError
				switch {
				case errors.As(err, &np):
					p.verdicts[c.Name] = verdict{status: unprovable, detail: np.reason}
					continue
				case err != nil:
					p.verdicts[c.Name] = verdict{status: failedProof, detail: err.Error()}
					continue
				}
				if s.from != "" {
					fmt.Fprintf(log, "stack-proof: %s %s: chart from %s, packaged as upstream's release packages it\n", c.Name, displayVersion(c), s.from)
				}
				sources[key] = s
			}
			// Its own chart first: that reason stands whatever its
			// dependencies are.
			if dep := unprovableDependency(c, p.verdicts); dep != "" {
				p.verdicts[c.Name] = verdict{status: unprovable, detail: "depends on " + dep + ", which is not provable here"}
				continue
			}
			p.install = append(p.install, s)
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	p.key = strings.Join(keys, "\n")
	return nil
}

// unprovableDependency names a dependency of c that has a verdict other
// than proven: one that will not be installed.
func unprovableDependency(c profile.Component, verdicts map[string]verdict) string {
	for _, d := range c.DependsOn {
		if v, decided := verdicts[d]; decided && v.status != proven {
			return d
		}
	}
	return ""
}

// componentKey identifies a component as the profile resolves it.
func componentKey(c profile.Component) (string, error) {
	c.Source = ""
	data, err := json.Marshal(c)
	return string(data), err
}

// prove starts a control plane, checks and installs the components and
// returns a verdict per component.
func prove(ctx context.Context, components []sourced, log io.Writer) (map[string]verdict, error) {
	began := time.Now()
	env, err := testenv.Start(ctx, testenv.WithControlLoops(),
		testenv.WithNodes(testenv.Node{Name: "kwok-stackproof-0"}, testenv.Node{Name: "kwok-stackproof-1"}),
		testenv.WithStartTimeout(5*time.Minute))
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	defer func() { _ = env.Stop() }()
	fmt.Fprintf(log, "stack-proof: control plane with 2 kwok nodes ready in %s\n", time.Since(began).Round(time.Second))

	in, err := stack.New(stack.WithKubeconfig(env.Kubeconfig, ""),
		stack.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return nil, err
	}
	verdicts := map[string]verdict{}
	var install []profile.Component
	for _, s := range components {
		c := s.component
		if dep := unprovableDependency(c, verdicts); dep != "" {
			verdicts[c.Name] = verdict{status: failedProof, detail: "depends on " + dep + ", which failed"}
			continue
		}
		if err := in.CheckAgainstChart(ctx, c); err != nil {
			verdicts[c.Name] = verdict{status: failedProof, detail: err.Error()}
			continue
		}
		install = append(install, c)
	}
	installing := time.Now()
	records, err := in.Install(ctx, install)
	if len(records) == 0 && err != nil {
		return nil, err
	}
	for _, r := range records {
		switch r.Action {
		case stack.ActionFailed, stack.ActionNotStarted, stack.ActionStarted:
			verdicts[r.Component] = verdict{status: failedProof, detail: r.Error}
		default:
			verdicts[r.Component] = verdict{status: proven}
		}
	}
	fmt.Fprintf(log, "stack-proof: %d components installed and ready in %s\n", len(install), time.Since(installing).Round(time.Second))
	return verdicts, nil
}

func componentNames(s []sourced) string {
	names := make([]string, 0, len(s))
	for _, c := range s {
		names = append(names, c.component.Name)
	}
	return strings.Join(names, ", ")
}

// displayVersion is the version a component installs; kaic's own charts
// are versioned with kaic.
func displayVersion(c profile.Component) string {
	if v := c.ChartVersion(); v != "" {
		return v
	}
	if c.Helm != nil && strings.HasPrefix(c.Helm.Chart, profile.EmbeddedChartScheme) {
		return "embedded"
	}
	return "-"
}
