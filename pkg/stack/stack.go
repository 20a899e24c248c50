package stack

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"sync"
	"time"

	"helm.sh/helm/v4/pkg/registry"

	"github.com/kaic-dev/kaic/charts"
	"github.com/kaic-dev/kaic/pkg/fetch"
	"github.com/kaic-dev/kaic/pkg/ownership"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
)

// FieldManager is the server-side apply field manager of everything kaic
// applies outside Helm.
const FieldManager = "kaic"

// DefaultTimeout bounds a component without a readiness timeout: its
// install and the wait for it to be ready.
const DefaultTimeout = 5 * time.Minute

// DefaultParallel is how many components install at once by default.
const DefaultParallel = 4

// Installer installs, upgrades and uninstalls stack components. Build one
// with New; it is safe for concurrent use.
type Installer struct {
	kubeconfig []byte
	context    string
	cluster    *cluster
	clusterErr error
	clusterMu  sync.Once

	cache          *fetch.Cache
	parallel       int
	set            Overrides
	logger         *slog.Logger
	steps          progress.Steps
	defaultTimeout time.Duration
	embedded       fs.FS
	embeddedValues map[string]any
	goProxy        string
	runID          string
	adopt          map[string]bool
	recorder       func(Record)

	registryOnce sync.Once
	registry     *registry.Client
	registryErr  error
}

// Option configures an Installer.
type Option func(*Installer)

// WithKubeconfig sets the target cluster: a kubeconfig's content and the
// context to use ("" for its current context). Install and Uninstall need
// it; Images renders against it when given.
func WithKubeconfig(kubeconfig []byte, context string) Option {
	return func(in *Installer) { in.kubeconfig, in.context = kubeconfig, context }
}

// WithCache sets the download cache (and, through its Client, the HTTP
// client with retries used for registries and repositories). By default
// the cache lives in fetch.DefaultDir.
func WithCache(c *fetch.Cache) Option {
	return func(in *Installer) {
		if c != nil {
			in.cache = c
		}
	}
}

// WithParallel bounds how many components install at once (at least 1).
func WithParallel(n int) Option {
	return func(in *Installer) { in.parallel = max(n, 1) }
}

// WithOverrides sets --set overrides per component, merged over the
// profile's values.
func WithOverrides(o Overrides) Option {
	return func(in *Installer) { in.set = o }
}

// WithLogger sets the logger for diagnostics, Helm's included.
func WithLogger(l *slog.Logger) Option {
	return func(in *Installer) {
		if l != nil {
			in.logger = l
		}
	}
}

// WithProgress reports one step per component ("install NAME",
// "uninstall NAME") and notes to s.
func WithProgress(s progress.Steps) Option {
	return func(in *Installer) {
		if s != nil {
			in.steps = s
		}
	}
}

// WithDefaultTimeout bounds components that declare no readiness timeout.
func WithDefaultTimeout(d time.Duration) Option {
	return func(in *Installer) {
		if d > 0 {
			in.defaultTimeout = d
		}
	}
}

// WithEmbeddedCharts replaces the charts kaic:// references resolve to
// (kaic's own by default): one directory per chart.
func WithEmbeddedCharts(fsys fs.FS) Option {
	return func(in *Installer) {
		if fsys != nil {
			in.embedded = fsys
		}
	}
}

// WithEmbeddedChartValues sets values every embedded chart (kaic://) is
// installed with, beneath the component's values and --set: how kaic hands
// its own charts what only the running kaic knows. The install phase sets
// "image" to the probe image, which the kaic-fake-gpu chart runs.
func WithEmbeddedChartValues(v map[string]any) Option {
	return func(in *Installer) { in.embeddedValues = v }
}

// WithGoProxy sets the Go module proxy that manifest modules come from
// (default: the first proxy of $GOPROXY, else https://proxy.golang.org).
func WithGoProxy(url string) Option {
	return func(in *Installer) { in.goProxy = url }
}

// WithRunID sets the id of the run installing: the releases and objects
// the Installer creates carry it (ownership.Labels), and only what carries
// it is upgraded, changed or removed. Without it New makes a new id, so an
// Installer touches only what it created itself.
func WithRunID(id string) Option {
	return func(in *Installer) { in.runID = id }
}

// WithAdopt names components whose existing Helm release, which this run
// did not install, the Installer takes over (labels as the run's, then
// upgrades) instead of stopping with a *ForeignReleaseError.
func WithAdopt(components ...string) Option {
	return func(in *Installer) {
		for _, c := range components {
			if in.adopt == nil {
				in.adopt = map[string]bool{}
			}
			in.adopt[c] = true
		}
	}
}

// WithRecorder receives a component's record as it starts, as objects of
// a manifests component are applied, and when it ends, so that what an
// interrupted install created can be written down before it is lost. It
// is called from concurrent installs.
func WithRecorder(f func(Record)) Option {
	return func(in *Installer) { in.recorder = f }
}

// New returns an Installer with opts applied over the defaults.
func New(opts ...Option) (*Installer, error) {
	in := &Installer{
		parallel:       DefaultParallel,
		logger:         slog.New(slog.DiscardHandler),
		steps:          progress.ForPhase(progress.Discard, ""),
		defaultTimeout: DefaultTimeout,
		embedded:       charts.FS,
	}
	for _, opt := range opts {
		opt(in)
	}
	if in.cache == nil {
		dir, err := fetch.DefaultDir()
		if err != nil {
			return nil, err
		}
		in.cache = &fetch.Cache{Dir: dir}
	}
	if in.cache.Client == nil {
		c := *in.cache
		c.Client = fetch.New(fetch.WithLogger(in.logger))
		in.cache = &c
	}
	if in.goProxy == "" {
		in.goProxy = defaultGoProxy()
	}
	if in.runID == "" {
		in.runID = ownership.NewRunID(time.Now())
	}
	if err := ownership.ValidRunID(in.runID); err != nil {
		return nil, err
	}
	return in, nil
}

// target returns the cluster clients, or an error when no cluster is set.
func (in *Installer) target() (*cluster, error) {
	in.clusterMu.Do(func() {
		if len(in.kubeconfig) == 0 {
			in.clusterErr = errors.New("no cluster: a kubeconfig is needed (WithKubeconfig)")
			return
		}
		in.cluster, in.clusterErr = newCluster(in.kubeconfig, in.context)
	})
	return in.cluster, in.clusterErr
}

func (in *Installer) timeout(c profile.Component) time.Duration {
	if c.Readiness != nil && c.Readiness.Timeout.Duration > 0 {
		return c.Readiness.Timeout.Duration
	}
	return in.defaultTimeout
}

// ComponentError says which component failed and why. Err carries the
// diagnosis: the unready objects and their last events.
type ComponentError struct {
	Component string
	Err       error
}

func (e *ComponentError) Error() string { return fmt.Sprintf("component %s: %v", e.Component, e.Err) }

func (e *ComponentError) Unwrap() error { return e.Err }

// DependencyFailedError is the error of a component that was not started
// because a component it depends on failed.
type DependencyFailedError struct {
	Dependency string
	// Interrupted is the interruption that stopped the dependency, when it
	// did not fail of its own.
	Interrupted error
}

func (e *DependencyFailedError) Error() string {
	if e.Interrupted != nil {
		return fmt.Sprintf("not started: interrupted while %s, which it depends on, was installing", e.Dependency)
	}
	return fmt.Sprintf("not started: it depends on %s, which failed", e.Dependency)
}

// Unwrap returns the interruption, so that an interrupted install is told
// from a failed one.
func (e *DependencyFailedError) Unwrap() error { return e.Interrupted }

// Install installs or upgrades components in dependency order, running
// independent ones concurrently. It returns a record per component, in
// install order, also for those that failed or were not started; the error
// joins a *ComponentError per component that did not install.
func (in *Installer) Install(ctx context.Context, components []profile.Component) ([]Record, error) {
	waves, err := profile.InstallOrder(components)
	if err != nil {
		return nil, err
	}
	if _, err := in.target(); err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, c := range components {
		known[c.Name] = true
	}

	type outcome struct {
		done chan struct{}
		rec  Record
		err  error
	}
	outcomes := map[string]*outcome{}
	var order []string
	for _, wave := range waves {
		for _, c := range wave {
			outcomes[c.Name] = &outcome{done: make(chan struct{})}
			order = append(order, c.Name)
		}
	}
	sem := make(chan struct{}, in.parallel)
	var wg sync.WaitGroup
	for _, wave := range waves {
		for _, c := range wave {
			o := outcomes[c.Name]
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(o.done)
				o.rec = newRecord(c)
				o.rec.RunID = in.runID
				for _, d := range c.DependsOn {
					if !known[d] {
						continue
					}
					dep := outcomes[d]
					<-dep.done
					if dep.err != nil {
						failed := &DependencyFailedError{Dependency: d}
						if ctx.Err() != nil {
							failed.Interrupted = ctx.Err()
						}
						o.err = failed
						o.rec.Action = ActionNotStarted
						o.rec.Error = o.err.Error()
						return
					}
				}
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					o.err = ctx.Err()
					o.rec.Action = ActionNotStarted
					o.rec.Error = o.err.Error()
					return
				}
				defer func() { <-sem }()
				o.rec, o.err = in.installOne(ctx, c)
			}()
		}
	}
	wg.Wait()

	records := make([]Record, 0, len(order))
	var errs []error
	for _, name := range order {
		o := outcomes[name]
		records = append(records, o.rec)
		if o.err != nil {
			errs = append(errs, &ComponentError{Component: name, Err: o.err})
		}
	}
	return records, errors.Join(errs...)
}

// installOne installs one component and reports it as a step.
func (in *Installer) installOne(ctx context.Context, c profile.Component) (Record, error) {
	step := in.steps.StartStep("install " + c.Name)
	rec := newRecord(c)
	rec.RunID = in.runID
	rec.Started = time.Now().UTC()
	rec.Action = ActionStarted
	in.record(rec)
	// An admission webhook of a component installing beside this one
	// (Kueue's, for Deployments everywhere) refuses objects until its own
	// pods serve it: wait for it, within the component's time.
	waiting := func(hook string, err error) {
		in.steps.Notef("%s: admission webhook %s does not answer yet; trying again in %s", c.Name, hook, webhookRetryPause)
		in.logger.Info("webhook not serving yet, retrying", "component", c.Name, "webhook", hook, "error", err)
	}
	err := RetryPastWebhooks(ctx, in.timeout(c), webhookRetryPause, waiting, func() error {
		switch {
		case c.Helm != nil:
			return in.installChart(ctx, c, &rec)
		case c.Manifests != nil:
			return in.applyComponentManifests(ctx, c, &rec)
		}
		return errors.New("neither a Helm chart nor manifests")
	})
	rec.Finished = time.Now().UTC()
	rec.Duration = rec.Finished.Sub(rec.Started).Round(time.Millisecond).String()
	if err != nil {
		rec.Action = ActionFailed
		rec.Error = err.Error()
	}
	in.logger.Info("component", "name", c.Name, "action", rec.Action, "duration", rec.Duration, "error", err)
	in.record(rec)
	step.Done(err)
	return rec, err
}

// Uninstall removes what records say was installed, in reverse dependency
// order: a component goes only after every component that depends on it.
// A release or object that is already gone is not an error, so a
// component recorded as failed or not started is harmless.
func (in *Installer) Uninstall(ctx context.Context, records []Record) error {
	if _, err := in.target(); err != nil {
		return err
	}
	comps := make([]profile.Component, 0, len(records))
	byName := map[string]Record{}
	for _, r := range records {
		comps = append(comps, profile.Component{Name: r.Component, DependsOn: r.DependsOn})
		byName[r.Component] = r
	}
	waves, err := profile.InstallOrder(comps)
	if err != nil {
		return err
	}
	var errs []error
	for i := len(waves) - 1; i >= 0; i-- {
		wave := waves[i]
		sort.Slice(wave, func(a, b int) bool { return wave[a].Name > wave[b].Name })
		for _, c := range wave {
			r := byName[c.Name]
			step := in.steps.StartStep("uninstall " + c.Name)
			err := in.uninstallOne(ctx, r)
			step.Done(err)
			if err != nil {
				errs = append(errs, &ComponentError{Component: c.Name, Err: err})
			}
		}
	}
	return errors.Join(errs...)
}

func (in *Installer) uninstallOne(ctx context.Context, r Record) error {
	switch r.Kind {
	case KindHelm:
		return in.uninstallRelease(ctx, r)
	case KindManifests:
		return in.deleteObjects(ctx, r.Component, in.recordRunID(r), r.Objects)
	}
	return fmt.Errorf("unknown record kind %q", r.Kind)
}

// record hands rec to the recorder, if any.
func (in *Installer) record(rec Record) {
	if in.recorder != nil {
		in.recorder(rec)
	}
}
