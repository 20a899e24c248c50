package conformance

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kaic-dev/kaic/pkg/draapi"
	"github.com/kaic-dev/kaic/pkg/ownership"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// Defaults of Runner's time limits.
const (
	DefaultTimeout        = profile.DefaultCheckTimeout
	DefaultCleanupTimeout = 2 * time.Minute
	DefaultAbandonAfter   = 15 * time.Second
)

// Labels set on every namespace the runner creates.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelCheck     = "kaic.dev/check"
)

// Runner runs the checks of one conformance version, concurrently, each in
// its own namespace and with its own deadline. Set its fields and call Run.
type Runner struct {
	// Catalog lists the requirements; every one gets a result.
	Catalog Catalog
	// Registry holds the checks that can run.
	Registry *Registry
	// Env is the environment handed to the checks; each gets a copy with
	// its own Namespace. Without Env.Client no namespace is created.
	Env Env
	// Include, when not empty, selects the ids to run; Exclude drops ids.
	// Requirements not run are reported skipped, with the reason.
	Include, Exclude []string
	// Focus, when set, runs only the requirements whose id or test name it
	// matches; Skip drops those it matches (the command line's --focus and
	// --skip, on top of Include and Exclude).
	Focus, Skip *regexp.Regexp
	// Keep holds results of an earlier run to report again instead of
	// running their checks (a rerun of the failed checks keeps the rest).
	Keep map[string]Result
	// OptOuts are reported N/A with their notes, without running.
	OptOuts []profile.OptOut
	// Parallel bounds how many checks run at once; 0 runs all at once.
	Parallel int
	// Timeout bounds each check (default DefaultTimeout); a check that
	// implements NeedsTime gets at least its MinTimeout.
	Timeout time.Duration
	// CleanupTimeout bounds each check's cleanup, which runs on success,
	// failure, timeout and interruption alike (default
	// DefaultCleanupTimeout).
	CleanupTimeout time.Duration
	// AbandonAfter is how long a check may keep running after its deadline
	// before the runner records it failed and stops waiting for it
	// (default DefaultAbandonAfter).
	AbandonAfter time.Duration
	// ResultsDir, when set, receives each result as <id>.json as soon as it
	// is known, so an interrupted run keeps what finished.
	ResultsDir string
	// OnStart and OnResult, when set, are called as checks start and as
	// results are known, possibly concurrently.
	OnStart  func(Requirement)
	OnResult func(Result)
	// OnMissing, when set, is called before any check starts, once per
	// need of the selected checks the cluster lacks, with the checks that
	// need it (their results are failed without running).
	OnMissing func(missing string, ids []string)
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// ForProfile returns a runner configured by the profile's check settings:
// selection, opt-outs, parallelism and timeout.
func ForProfile(p *profile.Profile, cat Catalog, reg *Registry, env Env) *Runner {
	c := p.Spec.Checks
	return &Runner{
		Catalog:  cat,
		Registry: reg,
		Env:      env,
		Include:  c.Include,
		Exclude:  c.Exclude,
		OptOuts:  c.OptOuts,
		Parallel: c.Parallel,
		Timeout:  c.Timeout.Duration,
	}
}

// Run runs the selected checks and returns every result known when it
// ends, in catalog order. Checks that implement Alone run after the
// others, one at a time. When ctx is cancelled, running checks are
// cancelled and cleaned up, checks not started yet get no result, and the
// error matches ctx.Err(). Failed checks are not an error of Run; see
// FailedChecks.
func (r *Runner) Run(ctx context.Context) ([]Result, error) {
	if r.Env.Mapper == nil && r.Env.Client != nil {
		r.Env.Mapper = discoveryMapper(r.Env.Client)
	}
	if r.Env.Client != nil && !r.Env.DRAAPI.Discovered() {
		// Once per run: every check uses the version found here.
		if api, err := draapi.Discover(r.Env.Client.Discovery()); err != nil {
			r.logger().Warn("the checks will discover the DRA API each time they use it", "err", err)
		} else {
			r.Env.DRAAPI = api
		}
	}
	if r.Env.DRAAPI.Discovered() {
		r.logger().Info("DRA API of the checks", "api", r.Env.DRAAPI.String(), "served", r.Env.DRAAPI.ServedList())
	}
	var (
		mu       sync.Mutex
		results  []Result
		saveErrs []error
	)
	record := func(res Result) {
		if r.ResultsDir != "" {
			if err := SaveResult(r.ResultsDir, res); err != nil {
				mu.Lock()
				saveErrs = append(saveErrs, err)
				mu.Unlock()
			}
		}
		mu.Lock()
		results = append(results, res)
		mu.Unlock()
		if r.OnResult != nil {
			r.OnResult(res)
		}
	}

	var jobs []job
	for _, req := range r.Catalog.Requirements {
		if res, ok := r.notRun(req); ok {
			record(res)
			continue
		}
		check, _ := r.Registry.Lookup(req.ID)
		jobs = append(jobs, job{req, check})
	}

	jobs = r.dropMissingNeeds(ctx, jobs, record)

	// Checks that need the cluster to themselves run after the others,
	// one at a time.
	var shared, alone []job
	for _, j := range jobs {
		if a, ok := j.check.(Alone); ok && a.RunsAlone() {
			alone = append(alone, j)
		} else {
			shared = append(shared, j)
		}
	}
	limit := r.Parallel
	if limit <= 0 || limit > len(shared) {
		limit = len(shared)
	}
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for _, j := range shared {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if r.OnStart != nil {
				r.OnStart(j.req)
			}
			record(r.runOne(ctx, j.req, j.check))
		}()
	}
	wg.Wait()
	for _, j := range alone {
		if ctx.Err() != nil {
			break
		}
		if r.OnStart != nil {
			r.OnStart(j.req)
		}
		record(r.runOne(ctx, j.req, j.check))
	}

	order := map[string]int{}
	for i, req := range r.Catalog.Requirements {
		order[req.ID] = i
	}
	slices.SortFunc(results, func(a, b Result) int { return order[a.ID] - order[b.ID] })
	err := errors.Join(saveErrs...)
	if ctx.Err() != nil {
		err = errors.Join(fmt.Errorf("conformance run interrupted with %d of %d checks finished: %w",
			countRun(results), len(jobs), context.Cause(ctx)), err)
		if !errors.Is(err, ctx.Err()) {
			err = errors.Join(err, ctx.Err())
		}
	}
	return results, err
}

func countRun(results []Result) int {
	n := 0
	for _, r := range results {
		if r.Namespace != "" {
			n++
		}
	}
	return n
}

// job is a selected requirement and the check that verifies it.
type job struct {
	req   Requirement
	check Check
}

// dropMissingNeeds looks at the needs of the checks of jobs, once per
// need, records a failed result for each check whose need the cluster
// lacks, reports each missing need once (OnMissing), and returns the other
// jobs. A need that cannot be looked at lets its check run.
func (r *Runner) dropMissingNeeds(ctx context.Context, jobs []job, record func(Result)) []job {
	if r.Env.Client == nil {
		return jobs
	}
	present := map[string]bool{}
	var order []string // missing needs, in the order first met
	missing := map[string]string{}
	needers := map[string][]string{}
	var kept []job
	var failed []Result
	for _, j := range jobs {
		n, ok := j.check.(Needer)
		if !ok {
			kept = append(kept, j)
			continue
		}
		var lacks []string
		for _, need := range n.Needs(&r.Env) {
			has, known := present[need.Key]
			if !known {
				var err error
				has, err = need.Present(ctx, &r.Env)
				has = has || err != nil
				present[need.Key] = has
			}
			if !has {
				if _, seen := missing[need.Key]; !seen {
					order = append(order, need.Key)
					missing[need.Key] = need.Missing
				}
				needers[need.Key] = append(needers[need.Key], j.req.ID)
				lacks = append(lacks, need.Missing)
			}
		}
		if len(lacks) == 0 {
			kept = append(kept, j)
			continue
		}
		now := r.now()
		res := Result{ID: j.req.ID, TestName: TestName(j.req.ID), Category: j.req.Category, Level: j.req.Level, Start: now,
			Status: Failed, Reason: strings.Join(lacks, "; ") + " (found before any check ran: the check was not started)"}
		res.Test = &TestRecord{Name: res.TestName, Status: Failed, Start: now, Output: []string{res.Reason}}
		failed = append(failed, res)
	}
	if r.OnMissing != nil {
		for _, key := range order {
			r.OnMissing(missing[key], needers[key])
		}
	}
	for _, res := range failed {
		record(res)
	}
	return kept
}

// notRun returns the result of a requirement that is not run: opted out,
// not selected, or without a check.
func (r *Runner) notRun(req Requirement) (Result, bool) {
	res := Result{ID: req.ID, TestName: TestName(req.ID), Category: req.Category, Level: req.Level, Start: r.now()}
	if res.TestName == "" {
		res.TestName = "Test_" + req.ID
	}
	var line string
	switch {
	case slices.ContainsFunc(r.OptOuts, func(o profile.OptOut) bool { return o.ID == req.ID }):
		i := slices.IndexFunc(r.OptOuts, func(o profile.OptOut) bool { return o.ID == req.ID })
		res.Status, res.Reason = NotApplicable, strings.TrimSpace(r.OptOuts[i].Notes)
		line = "N/A: " + res.Reason
	case len(r.Include) > 0 && !slices.Contains(r.Include, req.ID):
		res.Status, res.Reason = Skipped, ReasonNotSelected
	case slices.Contains(r.Exclude, req.ID):
		res.Status, res.Reason = Skipped, ReasonExcluded
	case r.Keep != nil && r.Keep[req.ID].ID == req.ID:
		return r.Keep[req.ID], true
	case r.Focus != nil && !r.Focus.MatchString(req.ID) && !r.Focus.MatchString(res.TestName):
		res.Status, res.Reason = Skipped, ReasonNotFocused
	case r.Skip != nil && (r.Skip.MatchString(req.ID) || r.Skip.MatchString(res.TestName)):
		res.Status, res.Reason = Skipped, ReasonSkipFlag
	default:
		if _, ok := r.Registry.Lookup(req.ID); ok {
			return Result{}, false
		}
		res.Status, res.Reason = Skipped, "kaic has no check for this requirement yet"
	}
	if line == "" {
		line = "SKIP: " + res.Reason
	}
	res.Test = &TestRecord{Name: res.TestName, Status: Skipped, Start: res.Start, Output: []string{line}}
	return res, true
}

// runOne runs one check with its namespace, deadline and cleanup.
func (r *Runner) runOne(ctx context.Context, req Requirement, check Check) Result {
	logger := r.logger().With("check", req.ID)
	res := Result{ID: req.ID, TestName: TestName(req.ID), Category: req.Category, Level: req.Level,
		Namespace: NamespaceName(req.ID), Start: r.now()}
	if res.TestName == "" {
		res.TestName = "Test_" + req.ID
	}
	run := &checkRun{now: r.now}
	requests := &requestCounter{}
	env := withRequestCounting(r.Env.forCheck(res.Namespace), requests)
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if n, ok := check.(NeedsTime); ok && n.MinTimeout() > timeout {
		timeout = n.MinTimeout()
	}
	checkCtx, cancel := context.WithTimeout(context.WithValue(ctx, counterKey{}, requests), timeout)
	defer cancel()
	root := newRootT(checkCtx, res.TestName, env, run)

	created := false
	if env.Client != nil {
		if err := createNamespace(checkCtx, env, req.ID); err != nil {
			root.log(EntryError, err.Error(), "")
			root.Fail()
		} else {
			created = true
			run.note(res.TestName, EntryCleanup, "created namespace "+env.Namespace)
			if err := WaitForDefaultServiceAccount(checkCtx, env.Client, env.Namespace); err != nil {
				root.log(EntryError, err.Error(), "")
				root.Fail()
			}
		}
	}

	grace := r.AbandonAfter
	if grace <= 0 {
		grace = DefaultAbandonAfter
	}
	abandoned := false
	if !root.Failed() {
		logger.Debug("check starting", "namespace", env.Namespace, "timeout", timeout)
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer root.finish()
			check.Run(root, env)
		}()
		select {
		case <-done:
		case <-checkCtx.Done():
			timer := time.NewTimer(grace)
			select {
			case <-done:
			case <-timer.C:
				abandoned = true
			}
			timer.Stop()
		}
	}

	// Say why the check stopped, before anything else can be recorded.
	run.mu.Lock()
	var why string
	switch {
	case ctx.Err() != nil:
		why = fmt.Sprintf("interrupted after %s: %v", r.now().Sub(res.Start).Round(time.Millisecond), context.Cause(ctx))
	case errors.Is(checkCtx.Err(), context.DeadlineExceeded):
		why = fmt.Sprintf("timed out after %s", timeout)
	}
	if abandoned {
		why += fmt.Sprintf("; the check ignored cancellation and was abandoned %s later", grace)
	}
	if why != "" {
		run.transcript = append(run.transcript, Entry{Time: r.now(), Test: res.TestName, Kind: EntryError, Text: why})
		run.errors = append([]string{res.TestName + ": " + why}, run.errors...)
		root.rec.Output = append(root.rec.Output, why)
		for p := root; p != nil; p = p.parent {
			p.failed = true
		}
		markUnfinished(root.rec, r.now(), "still running when the check was stopped")
		if root.done {
			root.rec.Status = Failed
		}
	}
	root.close("")
	if root.rec.Status == Passed && run.unverified != "" {
		// A test could not exercise the requirement: the rest passing
		// does not make the check pass.
		root.rec.Status = Skipped
		root.rec.Output = append(root.rec.Output, run.unverified)
		run.transcript = append(run.transcript, Entry{Time: r.now(), Test: res.TestName, Kind: EntrySkip, Text: run.unverified})
	}
	if abandoned {
		run.sealed = true
	}
	run.mu.Unlock()

	res.CleanupProblems = r.cleanup(ctx, run, env, res.TestName, created)

	run.mu.Lock()
	defer run.mu.Unlock()
	res.Duration = r.now().Sub(res.Start)
	res.Test = root.rec
	res.Status = root.rec.Status
	res.Transcript = slices.Clone(run.transcript)
	res.APIRequests = requests.snapshot()
	res.Waits, res.WaitRequests, res.WaitTime = requests.waitStats()
	for _, e := range run.transcript {
		if e.Kind == EntryShown {
			res.Shown = append(res.Shown, e.Text)
		}
	}
	switch res.Status {
	case Failed:
		res.Reason = summarize(run.errors)
	case Skipped:
		for i := len(run.transcript) - 1; i >= 0; i-- {
			if e := run.transcript[i]; e.Kind == EntrySkip && e.Test == res.TestName {
				res.Reason = e.Text
				break
			}
		}
	}
	logger.Info("check finished", "status", res.Status, "duration", res.Duration, "reason", res.Reason)
	return res
}

// markUnfinished fails every test of rec that has not finished.
func markUnfinished(rec *TestRecord, now time.Time, line string) {
	for _, s := range rec.Subtests {
		markUnfinished(s, now, line)
	}
	if rec.Status == "" {
		if rec.Duration == 0 {
			rec.Duration = now.Sub(rec.Start)
		}
		if line != "" {
			rec.Output = append(rec.Output, line)
		}
		rec.Status = Failed
	}
}

// summarize joins the first failures into one reason.
func summarize(errs []string) string {
	const shown = 3
	if len(errs) == 0 {
		return "failed"
	}
	if len(errs) <= shown {
		return strings.Join(errs, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(errs[:shown], "; "), len(errs)-shown)
}

// note records a transcript entry that does not belong to a test's
// output; it is kept even after the check was abandoned.
func (r *checkRun) note(test string, kind EntryKind, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.transcript = append(r.transcript, Entry{Time: r.now(), Test: test, Kind: kind, Text: text})
}

// cleanup runs the check's cleanups, deletes the cluster-scoped objects it
// applied and its namespace, all within CleanupTimeout and whether or not
// ctx is cancelled.
func (r *Runner) cleanup(parent context.Context, run *checkRun, env *Env, test string, namespaceCreated bool) []string {
	limit := r.CleanupTimeout
	if limit <= 0 {
		limit = DefaultCleanupTimeout
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), limit)
	defer cancel()
	run.mu.Lock()
	cleanups := slices.Clone(run.cleanups)
	run.mu.Unlock()

	var mu sync.Mutex
	var problems []string
	problem := func(p string) {
		mu.Lock()
		problems = append(problems, p)
		mu.Unlock()
		run.note(test, EntryCleanup, p)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := len(cleanups) - 1; i >= 0; i-- {
			func() {
				defer func() {
					if v := recover(); v != nil {
						problem(fmt.Sprintf("a cleanup function panicked: %v", v))
					}
				}()
				cleanups[i](ctx)
			}()
		}
		if env.Dynamic != nil {
			for _, p := range run.deleteApplied(ctx, env) {
				problem(p)
			}
		}
		if namespaceCreated {
			started := r.now()
			if err := deleteNamespace(ctx, env); err != nil {
				problem(err.Error())
			} else {
				run.note(test, EntryCleanup, fmt.Sprintf("deleted namespace %s in %s", env.Namespace, r.now().Sub(started).Round(time.Millisecond)))
			}
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
		// The goroutine may still be running; it reports nothing more.
		problem(fmt.Sprintf("cleanup did not finish within %s; namespace %s may be left behind", limit, env.Namespace))
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(problems)
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(problems)
}

// NamespaceName returns a fresh namespace name for a check of id:
// kaic-<id>-<random>, with underscores turned into dashes.
func NamespaceName(id string) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	base := "kaic-" + strings.ReplaceAll(strings.ToLower(id), "_", "-")
	if len(base) > 57 {
		base = strings.TrimRight(base[:57], "-")
	}
	return base + "-" + string(b)
}

func createNamespace(ctx context.Context, env *Env, id string) error {
	labels := map[string]string{LabelManagedBy: ownership.ManagedBy, LabelCheck: strings.ReplaceAll(id, "_", "-")}
	if env.RunID != "" {
		maps.Copy(labels, ownership.Labels(env.RunID))
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: env.Namespace, Labels: labels}}
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", env.Namespace, err)
	}
	return nil
}

// deleteNamespace deletes the check's namespace and waits, watching, until
// it is gone.
func deleteNamespace(ctx context.Context, env *Env) error {
	nsClient := env.Client.CoreV1().Namespaces()
	w, err := nsClient.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", env.Namespace).String()})
	if err != nil {
		return fmt.Errorf("deleting namespace %s: %w", env.Namespace, err)
	}
	defer w.Stop()
	err = nsClient.Delete(ctx, env.Namespace, metav1.DeleteOptions{PropagationPolicy: ptrTo(metav1.DeletePropagationBackground)})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting namespace %s: %w", env.Namespace, err)
	}
	if _, err := nsClient.Get(ctx, env.Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s still terminating: %w", env.Namespace, ctx.Err())
		case ev, ok := <-w.ResultChan():
			if !ok {
				if _, err := nsClient.Get(ctx, env.Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
					return nil
				}
				return fmt.Errorf("namespace %s still terminating when the watch ended", env.Namespace)
			}
			if ev.Type == watch.Deleted {
				return nil
			}
		}
	}
}

func ptrTo[V any](v V) *V { return &v }

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}
