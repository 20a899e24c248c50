package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kaic-dev/kaic/pkg/profile"
)

// testCatalog is a catalog of the given ids with levels from 1.37 (ids
// missing there get MUST).
func testCatalog(ids ...string) Catalog {
	builtin, _ := Builtin("1.37")
	cat := Catalog{Version: "1.37", Source: "test"}
	for _, id := range ids {
		req, ok := builtin.Requirement(id)
		if !ok {
			req = Requirement{ID: id, Category: "accelerators", Level: Must}
		}
		cat.Requirements = append(cat.Requirements, req)
	}
	return cat
}

func mustRegistry(t *testing.T, checks ...Check) *Registry {
	t.Helper()
	reg, err := NewRegistry(checks...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func byID(results []Result) map[string]Result {
	m := map[string]Result{}
	for _, r := range results {
		m[r.ID] = r
	}
	return m
}

func TestRunnerOutcomes(t *testing.T) {
	var cleaned sync.Map
	reg := mustRegistry(t,
		NewCheck("gang_scheduling", func(t *T, env *Env) {
			t.Cleanup(func(context.Context) { cleaned.Store("gang_scheduling", true) })
			t.Step("admit a job")
			t.Observe("admitted pods", 3)
			t.Run("Positive", func(t *T) { t.Logf("all pods ran") })
			t.Run("Negative", func(t *T) { t.Logf("no pod ran") })
		}),
		NewCheck("pod_autoscaling", func(t *T, env *Env) {
			t.Cleanup(func(context.Context) { cleaned.Store("pod_autoscaling", true) })
			t.Run("ScaleUp", func(t *T) { t.Errorf("replicas stayed at %d", 1) })
			t.Run("ScaleDown", func(t *T) { t.Logf("fine") })
		}),
		NewCheck("ai_service_metrics", func(t *T, env *Env) {
			t.Run("Query", func(t *T) {
				panic(errors.New("query exploded")) // a panic inside a subtest
			})
			t.Logf("after the panicking subtest")
		}),
		NewCheck("accelerator_metrics", func(t *T, env *Env) {
			panic("top-level panic")
		}),
		NewCheck("robust_controller", func(t *T, env *Env) {
			t.Skipf("no operator installed")
		}),
		NewCheck("cluster_autoscaling", func(t *T, env *Env) {
			t.Fatalf("must not run: opted out")
		}),
		NewCheck("ai_inference", func(t *T, env *Env) {
			t.Run("Sub", func(t *T) {
				t.Fatalf("fatal in subtest")
				t.Errorf("unreachable")
			})
			t.Logf("parent continues")
		}),
	)
	r := &Runner{
		Catalog:  testCatalog("gang_scheduling", "pod_autoscaling", "ai_service_metrics", "accelerator_metrics", "robust_controller", "cluster_autoscaling", "ai_inference", "secure_accelerator_access", "gpu_sharing"),
		Registry: reg,
		OptOuts:  []profile.OptOut{{ID: "cluster_autoscaling", Status: "N/A", Notes: "no node groups"}},
		Exclude:  []string{"gpu_sharing"},
		Timeout:  5 * time.Second,
	}
	results, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 9 {
		t.Fatalf("got %d results, want 9", len(results))
	}
	got := byID(results)
	want := map[string]struct {
		status Status
		reason string
	}{
		"gang_scheduling":           {Passed, ""},
		"pod_autoscaling":           {Failed, "TestPodAutoscaling/ScaleUp: replicas stayed at 1"},
		"ai_service_metrics":        {Failed, "TestAIServiceMetrics/Query: panic: query exploded"},
		"accelerator_metrics":       {Failed, "TestAcceleratorPerformanceMetrics: panic: top-level panic"},
		"robust_controller":         {Skipped, "no operator installed"},
		"cluster_autoscaling":       {NotApplicable, "no node groups"},
		"ai_inference":              {Failed, "TestAIInference/Sub: fatal in subtest"},
		"secure_accelerator_access": {Skipped, "kaic has no check for this requirement yet"},
		"gpu_sharing":               {Skipped, "excluded by the profile (spec.checks.exclude)"},
	}
	for id, w := range want {
		res := got[id]
		if res.Status != w.status || res.Reason != w.reason {
			t.Errorf("%s: got %s %q, want %s %q", id, res.Status, res.Reason, w.status, w.reason)
		}
		if res.Test == nil || res.Test.Name != TestName(id) {
			t.Errorf("%s: test record %+v, want name %s", id, res.Test, TestName(id))
		}
	}
	// Results come in catalog order.
	if results[0].ID != "gang_scheduling" || results[8].ID != "gpu_sharing" {
		t.Errorf("results not in catalog order: %s … %s", results[0].ID, results[8].ID)
	}
	// Subtest statuses and the parent of a failed subtest.
	ps := got["pod_autoscaling"].Test
	if len(ps.Subtests) != 2 || ps.Subtests[0].Status != Failed || ps.Subtests[1].Status != Passed || ps.Status != Failed {
		t.Errorf("pod_autoscaling tests: %+v", ps)
	}
	ai := got["ai_inference"].Test
	if !strings.Contains(strings.Join(ai.Output, "\n"), "parent continues") || strings.Contains(strings.Join(ai.Subtests[0].Output, "\n"), "unreachable") {
		t.Errorf("Fatalf did not stop only the subtest: parent %q, sub %q", ai.Output, ai.Subtests[0].Output)
	}
	if !strings.Contains(strings.Join(got["ai_service_metrics"].Test.Output, "\n"), "after the panicking subtest") {
		t.Errorf("the parent did not continue after a panicking subtest: %q", got["ai_service_metrics"].Test.Output)
	}
	// Transcript of the passing check.
	var kinds []string
	for _, e := range got["gang_scheduling"].Transcript {
		kinds = append(kinds, string(e.Kind)+":"+e.Text)
	}
	if j := strings.Join(kinds, "|"); !strings.Contains(j, "step:admit a job|observe:admitted pods: 3|log:all pods ran|log:no pod ran") {
		t.Errorf("transcript: %s", j)
	}
	// Cleanups ran for the passing and the failing check.
	for _, id := range []string{"gang_scheduling", "pod_autoscaling"} {
		if _, ok := cleaned.Load(id); !ok {
			t.Errorf("cleanup of %s did not run", id)
		}
	}
	if err := FailedChecks(results); err == nil || !strings.Contains(err.Error(), "4 check(s) failed (4 MUST)") {
		t.Errorf("FailedChecks: %v", err)
	}
}

func TestRunnerParallelLimit(t *testing.T) {
	ids := []string{"gang_scheduling", "pod_autoscaling", "ai_service_metrics", "accelerator_metrics", "robust_controller", "ai_inference"}
	for _, tc := range []struct {
		parallel int
		want     int32
	}{{2, 2}, {0, int32(len(ids))}} {
		var running, peak atomic.Int32
		release := make(chan struct{})
		var checks []Check
		for _, id := range ids {
			checks = append(checks, NewCheck(id, func(t *T, env *Env) {
				n := running.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				<-release
				running.Add(-1)
			}))
		}
		// Release the checks once as many run at once as allowed, or after
		// a while if the runner never gets there.
		go func() {
			deadline := time.Now().Add(5 * time.Second)
			for running.Load() < tc.want && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond) // room for an excess check to start
			close(release)
		}()
		r := &Runner{Catalog: testCatalog(ids...), Registry: mustRegistry(t, checks...), Parallel: tc.parallel}
		results, err := r.Run(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, res := range results {
			if res.Status != Passed {
				t.Errorf("%s: %s %s", res.ID, res.Status, res.Reason)
			}
		}
		if got := peak.Load(); got != tc.want {
			t.Errorf("parallel %d: at most %d checks ran at once, want %d", tc.parallel, got, tc.want)
		}
	}
}

func TestRunnerTimeoutsAndCleanupBox(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var cleanupCtxOK atomic.Bool
	reg := mustRegistry(t,
		// Honours its context: fails promptly when it times out.
		NewCheck("gang_scheduling", func(t *T, env *Env) {
			t.Cleanup(func(ctx context.Context) {
				// The cleanup context is live although the check's expired.
				cleanupCtxOK.Store(ctx.Err() == nil && t.Context().Err() != nil)
			})
			t.Run("Wait", func(t *T) {
				<-t.Context().Done()
				t.Fatalf("gave up: %v", t.Context().Err())
			})
		}),
		// Ignores cancellation entirely: abandoned after the grace period.
		NewCheck("pod_autoscaling", func(t *T, env *Env) {
			t.Run("Stuck", func(t *T) {
				<-release
				t.Logf("too late")
			})
		}),
		// Its cleanup blocks: the cleanup is cut at CleanupTimeout.
		NewCheck("ai_inference", func(t *T, env *Env) {
			t.Cleanup(func(ctx context.Context) { <-release })
		}),
	)
	r := &Runner{
		Catalog:        testCatalog("gang_scheduling", "pod_autoscaling", "ai_inference"),
		Registry:       reg,
		Timeout:        200 * time.Millisecond,
		AbandonAfter:   200 * time.Millisecond,
		CleanupTimeout: 300 * time.Millisecond,
	}
	start := time.Now()
	results, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("run took %s; timeouts and the cleanup box should bound it near 0.5s", d)
	}
	got := byID(results)
	if res := got["gang_scheduling"]; res.Status != Failed || !strings.Contains(res.Reason, "timed out after 200ms") ||
		!strings.Contains(res.Reason, "gave up: context deadline exceeded") {
		t.Errorf("blocking check: %s %q", res.Status, res.Reason)
	}
	if !cleanupCtxOK.Load() {
		t.Error("cleanup of the timed-out check did not get a live context")
	}
	res := got["pod_autoscaling"]
	if res.Status != Failed || !strings.Contains(res.Reason, "ignored cancellation and was abandoned 200ms later") {
		t.Errorf("check ignoring cancellation: %s %q", res.Status, res.Reason)
	}
	if len(res.Test.Subtests) != 1 || res.Test.Subtests[0].Status != Failed {
		t.Errorf("the stuck subtest is not recorded failed: %+v", res.Test.Subtests)
	}
	if res := got["ai_inference"]; res.Status != Passed || len(res.CleanupProblems) != 1 ||
		!strings.Contains(res.CleanupProblems[0], "cleanup did not finish within 300ms") {
		t.Errorf("blocking cleanup: %s, problems %q", res.Status, res.CleanupProblems)
	}
}

func TestRunnerInterruptKeepsFinishedResults(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	var cleanedUp atomic.Bool
	reg := mustRegistry(t,
		NewCheck("gang_scheduling", func(t *T, env *Env) { t.Logf("quick") }),
		NewCheck("pod_autoscaling", func(t *T, env *Env) {
			t.Cleanup(func(context.Context) { cleanedUp.Store(true) })
			<-t.Context().Done()
			t.Fatalf("stopped: %v", t.Context().Err())
		}),
		NewCheck("ai_inference", func(t *T, env *Env) { t.Fatalf("must not start") }),
	)
	r := &Runner{
		Catalog:    testCatalog("gang_scheduling", "pod_autoscaling", "ai_inference"),
		Registry:   reg,
		Parallel:   1,
		ResultsDir: dir,
		OnResult: func(res Result) {
			// The quick check's file exists as soon as its result is known.
			if res.ID == "gang_scheduling" {
				if _, err := os.Stat(filepath.Join(dir, "gang_scheduling.json")); err != nil {
					t.Errorf("result not saved when reported: %v", err)
				}
			}
		},
		OnStart: func(req Requirement) {
			if req.ID == "pod_autoscaling" {
				go func() {
					time.Sleep(100 * time.Millisecond)
					cancel(errors.New("SIGINT"))
				}()
			}
		},
	}
	results, err := r.Run(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "SIGINT") {
		t.Fatalf("Run error = %v, want the cancellation with its cause", err)
	}
	got := byID(results)
	if len(results) != 2 || got["gang_scheduling"].Status != Passed || got["pod_autoscaling"].Status != Failed {
		t.Fatalf("results: %+v", results)
	}
	if !strings.Contains(got["pod_autoscaling"].Reason, "interrupted after") {
		t.Errorf("interrupted check reason: %q", got["pod_autoscaling"].Reason)
	}
	if !cleanedUp.Load() {
		t.Error("cleanup did not run on interruption")
	}
	saved, err := LoadResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(saved) != 2 || saved[0].ID != "gang_scheduling" || saved[1].ID != "pod_autoscaling" {
		t.Errorf("saved results: %+v", saved)
	}
}

func TestRegistry(t *testing.T) {
	reg := &Registry{}
	if err := reg.Register(NewCheck("gang_scheduling", func(*T, *Env) {})); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(NewCheck("gang_scheduling", func(*T, *Env) {})); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Errorf("duplicate: %v", err)
	}
	if err := reg.Register(NewCheck("gang_sched", func(*T, *Env) {})); err == nil || !strings.Contains(err.Error(), "no conformance version") {
		t.Errorf("unknown id: %v", err)
	}
	if ids := reg.IDs(); len(ids) != 1 || ids[0] != "gang_scheduling" {
		t.Errorf("IDs = %v", ids)
	}
}

func TestNamespaceName(t *testing.T) {
	a, b := NamespaceName("secure_accelerator_access"), NamespaceName("secure_accelerator_access")
	if a == b || !strings.HasPrefix(a, "kaic-secure-accelerator-access-") || len(a) != len("kaic-secure-accelerator-access-")+5 {
		t.Errorf("names %q %q", a, b)
	}
	if long := NamespaceName(strings.Repeat("x", 80)); len(long) > 63 {
		t.Errorf("%q is longer than a DNS label", long)
	}
}

func TestSkippedMustIsNotASuccess(t *testing.T) {
	results := []Result{
		{ID: "gang_scheduling", Level: Must, Status: Passed},
		{ID: "ai_inference", Level: Must, Status: Skipped, Reason: "kaic has no check for this requirement yet"},
		{ID: "pod_autoscaling", Level: Must, Status: Skipped, Reason: ReasonExcluded},
		{ID: "robust_controller", Level: Must, Status: Skipped, Reason: ReasonNotSelected},
		{ID: "gpu_sharing", Level: Should, Status: Skipped, Reason: "kaic has no check for this requirement yet"},
		{ID: "cluster_autoscaling", Level: Must, Status: NotApplicable, Reason: "no autoscaler"},
	}
	err := FailedChecks(results)
	var failed *ChecksFailedError
	if !errors.As(err, &failed) {
		t.Fatalf("err = %v", err)
	}
	if len(failed.IDs) != 0 || strings.Join(failed.Unverified, ",") != "ai_inference" {
		t.Errorf("failed %v, unverified %v", failed.IDs, failed.Unverified)
	}
	if err.Error() != "1 MUST requirement(s) not verified: ai_inference" {
		t.Errorf("message %q", err)
	}
	if err := FailedChecks(results[:1]); err != nil {
		t.Errorf("all passed: %v", err)
	}
}

// A check that must run alone starts only after every other check has
// finished, nothing runs beside it, and it gets its own minimum timeout.
func TestRunnerRunsAloneChecksLast(t *testing.T) {
	ids := []string{"gang_scheduling", "cluster_autoscaling", "pod_autoscaling", "ai_inference"}
	var (
		mu      sync.Mutex
		running int
		events  []string
	)
	enter := func(id string) {
		mu.Lock()
		defer mu.Unlock()
		running++
		events = append(events, fmt.Sprintf("start %s (%d running)", id, running))
	}
	leave := func(id string) {
		mu.Lock()
		defer mu.Unlock()
		running--
		events = append(events, "end "+id)
	}
	var aloneDeadline time.Duration
	var checks []Check
	for _, id := range ids {
		c := NewCheck(id, func(t *T, env *Env) {
			enter(id)
			defer leave(id)
			if id == "cluster_autoscaling" {
				d, _ := t.Context().Deadline()
				aloneDeadline = time.Until(d)
			}
			time.Sleep(20 * time.Millisecond)
		})
		if id == "cluster_autoscaling" {
			c = RunAlone(c, time.Hour)
		}
		checks = append(checks, c)
	}
	r := &Runner{Catalog: testCatalog(ids...), Registry: mustRegistry(t, checks...), Timeout: time.Minute}
	results, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(ids) {
		t.Fatalf("results = %v", results)
	}
	// The alone check is the last to start, and starts with nothing else running.
	var starts []string
	for _, e := range events {
		if strings.HasPrefix(e, "start ") {
			starts = append(starts, e)
		}
	}
	if last := starts[len(starts)-1]; last != "start cluster_autoscaling (1 running)" {
		t.Errorf("events = %q: cluster_autoscaling did not run last and alone", events)
	}
	if aloneDeadline < 59*time.Minute {
		t.Errorf("cluster_autoscaling had %s, want its minimum of an hour over the runner's minute", aloneDeadline)
	}
}

// Focus and Skip narrow the selection by requirement id or test name, and
// Keep reports an earlier result instead of running its check; what they
// leave out is the user's choice, not a gap of the run.
func TestRunnerFocusSkipKeep(t *testing.T) {
	var ran sync.Map
	check := func(id string) Check {
		return NewCheck(id, func(t *T, env *Env) { ran.Store(id, true) })
	}
	reg := mustRegistry(t, check("gang_scheduling"), check("pod_autoscaling"), check("dra_support"), check("robust_controller"))
	kept := Result{ID: "robust_controller", TestName: TestName("robust_controller"), Level: Must, Status: Passed, Reason: "from the earlier run"}
	r := &Runner{
		Catalog:  testCatalog("gang_scheduling", "pod_autoscaling", "dra_support", "robust_controller"),
		Registry: reg,
		Focus:    regexp.MustCompile(`^gang|TestPodAutoscaling|robust`),
		Skip:     regexp.MustCompile(`Autoscaling`),
		Keep:     map[string]Result{"robust_controller": kept},
		Timeout:  5 * time.Second,
	}
	results, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := byID(results)
	want := map[string]struct {
		status Status
		reason string
	}{
		"gang_scheduling":   {Passed, ""},
		"pod_autoscaling":   {Skipped, ReasonSkipFlag},   // focused by test name, then skipped
		"dra_support":       {Skipped, ReasonNotFocused}, // matched by neither
		"robust_controller": {Passed, "from the earlier run"},
	}
	for id, w := range want {
		if res := got[id]; res.Status != w.status || res.Reason != w.reason {
			t.Errorf("%s: got %s %q, want %s %q", id, res.Status, res.Reason, w.status, w.reason)
		}
	}
	for _, id := range []string{"pod_autoscaling", "dra_support", "robust_controller"} {
		if _, ok := ran.Load(id); ok {
			t.Errorf("%s ran", id)
		}
	}
	if err := FailedChecks(results); err != nil {
		t.Errorf("deselected MUSTs counted as unverified: %v", err)
	}
}

// What a check shows, in its subtests too, reaches the result in order and
// the test output; a failing check keeps its phrases but they are no claim.
func TestRunnerCollectsWhatChecksShow(t *testing.T) {
	reg := mustRegistry(t,
		NewCheck("gang_scheduling", func(t *T, _ *Env) {
			t.Run("Fits", func(t *T) { t.Shown("a 3-pod Job was admitted whole") })
			t.Shown("a 4-pod Job got no pod")
		}),
		NewCheck("ai_inference", func(t *T, _ *Env) {
			t.Errorf("no route")
		}),
	)
	r := &Runner{Catalog: testCatalog("gang_scheduling", "ai_inference"), Registry: reg}
	results, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := byID(results)
	gang := got["gang_scheduling"]
	if strings.Join(gang.Shown, "|") != "a 3-pod Job was admitted whole|a 4-pod Job got no pod" {
		t.Errorf("shown = %q", gang.Shown)
	}
	if !slices.Contains(gang.Test.Subtests[0].Output, "SHOWN: a 3-pod Job was admitted whole") {
		t.Errorf("subtest output %q lacks the shown phrase", gang.Test.Subtests[0].Output)
	}
	if inf := got["ai_inference"]; inf.Status != Failed || len(inf.Shown) != 0 {
		t.Errorf("ai_inference: %s, shown %q", inf.Status, inf.Shown)
	}
}

// Each check's API requests are counted by verb and kept in its result.
func TestRunnerCountsEachChecksRequests(t *testing.T) {
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/api/v1/nodes":
			_, _ = w.Write([]byte(`{"kind":"NodeList","apiVersion":"v1","items":[]}`))
		default:
			_, _ = w.Write([]byte(`{"kind":"Node","apiVersion":"v1","metadata":{"name":"n1"}}`))
		}
	}))
	defer srv.Close()
	cfg := &rest.Config{Host: srv.URL}
	env, err := NewEnv(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	env.Client = nil // no namespace: only the check's own requests
	reg := mustRegistry(t,
		NewCheck("gang_scheduling", func(t *T, env *Env) {
			c, err := kubernetes.NewForConfig(env.Config)
			if err != nil {
				t.Fatalf("%v", err)
			}
			for range 3 {
				if _, err := c.CoreV1().Nodes().Get(t.Context(), "n1", metav1.GetOptions{}); err != nil {
					t.Fatalf("get: %v", err)
				}
			}
			if _, err := c.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{}); err != nil {
				t.Fatalf("list: %v", err)
			}
		}),
		NewCheck("ai_inference", func(*T, *Env) {}),
	)
	r := &Runner{Catalog: testCatalog("gang_scheduling", "ai_inference"), Registry: reg, Env: *env}
	results, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := byID(results)
	if c := got["gang_scheduling"].APIRequests; c["get"] != 3 || c["list"] != 1 || len(c) != 2 {
		t.Errorf("gang_scheduling counted %v, want get 3, list 1", c)
	}
	if c := got["ai_inference"].APIRequests; len(c) != 0 {
		t.Errorf("a check that sent nothing counted %v", c)
	}
	if s := APIRequestSummary(got["gang_scheduling"].APIRequests); s != "4 (get 3, list 1)" {
		t.Errorf("summary %q", s)
	}
	if served.Load() != 4 {
		t.Errorf("the server saw %d requests", served.Load())
	}
}

// Requests sent while a check waits are counted apart, over the time it
// waited; a context outside a check's run counts nothing.
func TestRunnerCountsRequestsWhileWaiting(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"Node","apiVersion":"v1","metadata":{"name":"n1"}}`))
	}))
	defer srv.Close()
	env, err := NewEnv(&rest.Config{Host: srv.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	env.Client = nil
	reg := mustRegistry(t, NewCheck("gang_scheduling", func(t *T, env *Env) {
		c, err := kubernetes.NewForConfig(env.Config)
		if err != nil {
			t.Fatalf("%v", err)
		}
		if _, err := c.CoreV1().Nodes().Get(t.Context(), "n1", metav1.GetOptions{}); err != nil {
			t.Fatalf("get: %v", err)
		}
		polls := 0
		err = PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
			polls++
			_, err := c.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
			return polls == 4, err
		})
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
	}))
	r := &Runner{Catalog: testCatalog("gang_scheduling"), Registry: reg, Env: *env}
	results, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	res := byID(results)["gang_scheduling"]
	if res.APIRequests["get"] != 5 || res.WaitRequests != 4 || res.Waits != 1 {
		t.Errorf("requests %v, %d while waiting in %d waits; want 5 gets, 4 of them in 1 wait", res.APIRequests, res.WaitRequests, res.Waits)
	}
	if res.WaitTime < 100*time.Millisecond || res.WaitTime > res.Duration {
		t.Errorf("waited %s of %s", res.WaitTime, res.Duration)
	}
	if ctx, done := StartWait(context.Background()); ctx.Value(waitingKey{}) != nil {
		t.Error("a context of no check was marked as waiting")
	} else {
		done()
	}
}

// A test that could not exercise the requirement (Unverifiedf) leaves the
// check not verified although its other tests pass; a failure elsewhere
// still fails it. A plain Skipf of a subtest does not touch the verdict.
func TestUnverifiedSubtestMakesCheckNotVerified(t *testing.T) {
	const busy = "not verified: 2 of 2 devices on node n are held by other workloads"
	reg := mustRegistry(t,
		NewCheck("secure_accelerator_access", func(t *T, env *Env) {
			t.Run("Positive", func(t *T) { t.Unverifiedf("%s", busy) })
			t.Run("Other", func(t *T) { t.Logf("fine") })
		}),
		NewCheck("gpu_sharing", func(t *T, env *Env) {
			t.Run("Shared", func(t *T) { t.Unverifiedf("%s", busy) })
			t.Run("Broken", func(t *T) { t.Errorf("broken") })
		}),
		NewCheck("gang_scheduling", func(t *T, env *Env) {
			t.Run("OnKwok", func(t *T) { t.Skipf("simulated node") })
			t.Run("Admitted", func(t *T) { t.Logf("fine") })
		}),
	)
	r := &Runner{Catalog: testCatalog("secure_accelerator_access", "gpu_sharing", "gang_scheduling"), Registry: reg, Timeout: 5 * time.Second}
	results, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := byID(results)
	for id, want := range map[string]struct {
		status Status
		reason string
	}{
		"secure_accelerator_access": {Skipped, busy},
		"gpu_sharing":               {Failed, "TestGPUSharing/Broken: broken"},
		"gang_scheduling":           {Passed, ""},
	} {
		if res := got[id]; res.Status != want.status || res.Reason != want.reason {
			t.Errorf("%s: %s %q, want %s %q", id, res.Status, res.Reason, want.status, want.reason)
		}
	}
	if sub := got["secure_accelerator_access"].Test.Subtests; len(sub) != 2 || sub[0].Status != Skipped || sub[1].Status != Passed {
		t.Errorf("subtests %+v", sub)
	}
}
