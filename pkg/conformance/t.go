package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/pkg/draapi"
)

// FieldManager is the server-side apply field manager of objects checks
// apply.
const FieldManager = "kaic"

// T is the handle a check reports through, modelled on *testing.T: a
// check and each of its subtests get one. FailNow, Fatalf, SkipNow and
// Skipf stop the calling (sub)test by exiting its goroutine, so they must
// be called from the goroutine running it. All methods are safe for
// concurrent use.
type T struct {
	name   string
	ctx    context.Context
	env    *Env
	run    *checkRun
	rec    *TestRecord
	parent *T

	// guarded by run.mu
	failed, skipped, done bool
	subNames              map[string]int
}

// checkRun is the state one check's tests share: the transcript, the
// cleanups and whether the runner stopped listening.
type checkRun struct {
	mu         sync.Mutex
	now        func() time.Time
	transcript []Entry
	cleanups   []func(context.Context)
	// applied are cluster-scoped objects T.Apply created; the namespace's
	// deletion does not remove them, so cleanup deletes them.
	applied []appliedObject
	errors  []string // "<test>: <message>" of every failure, in order
	// unverified is the reason of the first Unverifiedf: the check is
	// reported skipped with it unless one of its tests failed.
	unverified string
	// sealed is set when the runner gave up on the check (it ignored its
	// deadline): anything it does afterwards is dropped.
	sealed bool
}

type appliedObject struct {
	gvr  schema.GroupVersionResource
	name string
	desc string
}

func newRootT(ctx context.Context, name string, env *Env, run *checkRun) *T {
	return &T{
		name: name, ctx: ctx, env: env, run: run,
		rec: &TestRecord{Name: name, Start: run.now()},
	}
}

// Name returns the full test name, e.g. "TestDRASupport/APIServed".
func (t *T) Name() string { return t.name }

// Context is cancelled when the check times out or the run is interrupted.
func (t *T) Context() context.Context { return t.ctx }

// Env returns the check's environment.
func (t *T) Env() *Env { return t.env }

// Namespace is the check's own namespace.
func (t *T) Namespace() string { return t.env.Namespace }

// Helper is accepted for familiarity with testing.T; kaic records no
// file:line positions.
func (t *T) Helper() {}

// Logf records a line in the test's output and the transcript.
func (t *T) Logf(format string, args ...any) { t.log(EntryLog, fmt.Sprintf(format, args...), "") }

// Log is Logf with fmt.Sprintln formatting.
func (t *T) Log(args ...any) { t.log(EntryLog, strings.TrimSuffix(fmt.Sprintln(args...), "\n"), "") }

// Errorf records a failure and lets the test continue.
func (t *T) Errorf(format string, args ...any) {
	t.log(EntryError, fmt.Sprintf(format, args...), "")
	t.Fail()
}

// Error is Errorf with fmt.Sprintln formatting.
func (t *T) Error(args ...any) {
	t.log(EntryError, strings.TrimSuffix(fmt.Sprintln(args...), "\n"), "")
	t.Fail()
}

// Fatalf records a failure and stops the test.
func (t *T) Fatalf(format string, args ...any) {
	t.log(EntryError, fmt.Sprintf(format, args...), "")
	t.FailNow()
}

// Fatal is Fatalf with fmt.Sprintln formatting.
func (t *T) Fatal(args ...any) {
	t.log(EntryError, strings.TrimSuffix(fmt.Sprintln(args...), "\n"), "")
	t.FailNow()
}

// Fail marks the test (and its parents) failed.
func (t *T) Fail() {
	t.run.mu.Lock()
	defer t.run.mu.Unlock()
	for p := t; p != nil; p = p.parent {
		p.failed = true
	}
}

// FailNow marks the test failed and stops it.
func (t *T) FailNow() {
	t.Fail()
	runtime.Goexit()
}

// Failed reports whether the test failed.
func (t *T) Failed() bool {
	t.run.mu.Lock()
	defer t.run.mu.Unlock()
	return t.failed
}

// Skipf records why the test is skipped and stops it.
func (t *T) Skipf(format string, args ...any) {
	t.log(EntrySkip, fmt.Sprintf(format, args...), "")
	t.SkipNow()
}

// Unverifiedf skips the test like Skipf and marks the whole check not
// verified: unless one of its tests fails, the check is reported skipped
// with this reason, however its other tests end. It is for a test that
// could not exercise what the requirement asks (the cluster's devices are
// all held by other workloads, say), whose skip must not let the check
// pass on the rest.
func (t *T) Unverifiedf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	t.run.mu.Lock()
	if t.run.unverified == "" {
		t.run.unverified = msg
	}
	t.run.mu.Unlock()
	t.Skipf("%s", msg)
}

// Skip is Skipf with fmt.Sprintln formatting.
func (t *T) Skip(args ...any) {
	t.log(EntrySkip, strings.TrimSuffix(fmt.Sprintln(args...), "\n"), "")
	t.SkipNow()
}

// SkipNow marks the test skipped and stops it.
func (t *T) SkipNow() {
	t.run.mu.Lock()
	t.skipped = true
	t.run.mu.Unlock()
	runtime.Goexit()
}

// Skipped reports whether the test was skipped.
func (t *T) Skipped() bool {
	t.run.mu.Lock()
	defer t.run.mu.Unlock()
	return t.skipped
}

// Step starts a new section of the transcript: what the check does next.
func (t *T) Step(format string, args ...any) {
	t.log(EntryStep, fmt.Sprintf(format, args...), "")
}

// Shown records, as a short phrase, what the check has shown the platform
// do ("a 3-pod Job was admitted all together"): PRODUCT.yaml's notes of a
// passing check are made of these phrases, so a reviewer reads what the
// platform did rather than which test passed.
func (t *T) Shown(format string, args ...any) {
	t.log(EntryShown, fmt.Sprintf(format, args...), "")
}

// Observe records observed state for the transcript: what was looked at
// and its value. Strings are kept verbatim; other values are written as
// YAML. Decisive values (the ones a verdict rests on) belong here.
func (t *T) Observe(what string, value any) {
	body := renderValue(value)
	text := what
	if !strings.Contains(body, "\n") && len(body) <= 120 {
		text, body = what+": "+body, ""
	}
	t.log(EntryObserve, text, body)
}

// Cleanup registers fn to run after the check, last registered first,
// with a context bounded by the runner's cleanup timeout that is not
// cancelled when the check's is.
func (t *T) Cleanup(fn func(ctx context.Context)) {
	t.run.mu.Lock()
	defer t.run.mu.Unlock()
	t.run.cleanups = append(t.run.cleanups, fn)
}

// Run runs fn as a subtest called name and waits for it. It reports
// whether the subtest passed (or was skipped). A panic in fn fails the
// subtest and its parents; it does not crash the run.
func (t *T) Run(name string, fn func(t *T)) bool {
	sub := t.newSub(name)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer sub.finish()
		fn(sub)
	}()
	<-done
	return !sub.Failed()
}

func (t *T) newSub(name string) *T {
	t.run.mu.Lock()
	defer t.run.mu.Unlock()
	name = strings.Join(strings.Fields(name), "_")
	if name == "" {
		name = "#"
	}
	if t.subNames == nil {
		t.subNames = map[string]int{}
	}
	n := t.subNames[name]
	t.subNames[name] = n + 1
	if n > 0 {
		name = fmt.Sprintf("%s#%02d", name, n)
	}
	full := t.name + "/" + name
	sub := &T{name: full, ctx: t.ctx, env: t.env, run: t.run, parent: t,
		rec: &TestRecord{Name: full, Start: t.run.now()}}
	if !t.run.sealed {
		t.rec.Subtests = append(t.rec.Subtests, sub.rec)
	}
	return sub
}

// finish closes the test when its function returns, exits or panics. It
// must be deferred directly so that recover sees the panic.
func (t *T) finish() {
	if r := recover(); r != nil {
		t.log(EntryError, fmt.Sprintf("panic: %v\n%s", r, debug.Stack()), "")
		t.Fail()
	}
	t.run.mu.Lock()
	defer t.run.mu.Unlock()
	if t.run.sealed {
		return
	}
	t.close("")
}

// close records the test's final status; run.mu must be held.
func (t *T) close(extraLine string) {
	if t.done {
		return
	}
	t.done = true
	if extraLine != "" {
		t.rec.Output = append(t.rec.Output, extraLine)
	}
	t.rec.Duration = t.run.now().Sub(t.rec.Start)
	switch {
	case t.failed:
		t.rec.Status = Failed
	case t.skipped:
		t.rec.Status = Skipped
	default:
		t.rec.Status = Passed
	}
}

// log records a line of the test's output and a transcript entry.
func (t *T) log(kind EntryKind, text, body string) {
	t.run.mu.Lock()
	defer t.run.mu.Unlock()
	if t.run.sealed {
		return
	}
	t.run.transcript = append(t.run.transcript, Entry{Time: t.run.now(), Test: t.name, Kind: kind, Text: text, Body: body})
	line := text
	switch kind {
	case EntryStep:
		line = "STEP: " + text
	case EntryApply:
		line = "applied " + text
	case EntryObserve:
		line = "observed " + text
	case EntryShown:
		line = "SHOWN: " + text
	case EntryError:
		t.run.errors = append(t.run.errors, t.name+": "+firstLine(text))
	}
	t.rec.Output = append(t.rec.Output, strings.Split(line, "\n")...)
	if kind == EntryObserve && body != "" {
		t.rec.Output = append(t.rec.Output, strings.Split(body, "\n")...)
	}
}

// Apply creates or updates obj with server-side apply and records its
// manifest in the transcript. A namespaced object without a namespace goes
// into the check's namespace; cluster-scoped objects are deleted by the
// check's cleanup. Typed objects from k8s.io/api need no TypeMeta. It
// stops the test on error; see TryApply to examine the error instead.
func (t *T) Apply(obj k8sruntime.Object) *unstructured.Unstructured {
	u, err := t.TryApply(obj)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return u
}

// TryApply is Apply returning the error instead of stopping the test, for
// objects the cluster is expected to reject (the attempt and the error are
// recorded all the same).
func (t *T) TryApply(obj k8sruntime.Object) (*unstructured.Unstructured, error) {
	u, mapping, err := t.toUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("applying object: %w", err)
	}
	namespaced := mapping.Scope.Name() == meta.RESTScopeNameNamespace
	if namespaced && u.GetNamespace() == "" {
		u.SetNamespace(t.env.Namespace)
	}
	desc := describeObject(u)
	manifest, _ := yaml.Marshal(u.Object)
	if t.env.Dynamic == nil {
		return nil, fmt.Errorf("applying %s: no dynamic client", desc)
	}
	var res interface {
		Apply(context.Context, string, *unstructured.Unstructured, metav1.ApplyOptions, ...string) (*unstructured.Unstructured, error)
	}
	if namespaced {
		res = t.env.Dynamic.Resource(mapping.Resource).Namespace(u.GetNamespace())
	} else {
		res = t.env.Dynamic.Resource(mapping.Resource)
	}
	applied, err := res.Apply(t.ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		t.log(EntryApply, desc+" (rejected: "+firstLine(err.Error())+")", string(manifest))
		return nil, fmt.Errorf("applying %s: %w", desc, err)
	}
	t.log(EntryApply, desc, string(manifest))
	if !namespaced {
		t.run.mu.Lock()
		if !slices.ContainsFunc(t.run.applied, func(a appliedObject) bool { return a.gvr == mapping.Resource && a.name == u.GetName() }) {
			t.run.applied = append(t.run.applied, appliedObject{gvr: mapping.Resource, name: u.GetName(), desc: desc})
		}
		t.run.mu.Unlock()
	}
	return applied, nil
}

// toUnstructured converts obj, filling its apiVersion and kind from the
// client-go scheme for typed objects, and finds its resource.
func (t *T) toUnstructured(obj k8sruntime.Object) (*unstructured.Unstructured, *meta.RESTMapping, error) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Empty() {
		kinds, _, err := scheme.Scheme.ObjectKinds(obj)
		if err != nil || len(kinds) == 0 {
			return nil, nil, fmt.Errorf("unknown kind of %T: set its apiVersion and kind", obj)
		}
		gvk = kinds[0]
	}
	var content map[string]any
	if v := t.draVersionFor(gvk); v != "" {
		// A resource.k8s.io/v1 object goes to the version the cluster
		// serves, and the transcript shows it as sent.
		converted, err := draapi.ToVersion(obj, v)
		if err != nil {
			return nil, nil, err
		}
		content, gvk = converted.Object, converted.GroupVersionKind()
	} else {
		var err error
		if content, err = k8sruntime.DefaultUnstructuredConverter.ToUnstructured(obj); err != nil {
			return nil, nil, err
		}
	}
	u := &unstructured.Unstructured{Object: content}
	u.SetGroupVersionKind(gvk)
	delete(u.Object, "status")
	if md, ok := u.Object["metadata"].(map[string]any); ok {
		if v, ok := md["creationTimestamp"]; ok && v == nil {
			delete(md, "creationTimestamp")
		}
	}
	if t.env.Mapper == nil {
		return nil, nil, fmt.Errorf("no cluster client to discover %s with", gvk)
	}
	mapping, err := t.env.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, nil, fmt.Errorf("the cluster does not serve %s: %w", gvk, err)
	}
	return u, mapping, nil
}

// draVersionFor returns the version of resource.k8s.io an object of gvk
// is to be sent as when that is not gvk's: a resource.k8s.io/v1 object on
// a cluster that serves an older version of the group. It returns "" for
// every other object, and when the cluster serves no version kaic can use
// (the object then fails to map, saying what the cluster does not serve).
func (t *T) draVersionFor(gvk schema.GroupVersionKind) draapi.Version {
	if gvk.GroupVersion() != draapi.V1.GroupVersion() {
		return ""
	}
	if v := t.env.DRA().Version(); v != draapi.V1 {
		return v
	}
	return ""
}

// deleteApplied deletes the cluster-scoped objects Apply created.
func (r *checkRun) deleteApplied(ctx context.Context, env *Env) []string {
	r.mu.Lock()
	applied := slices.Clone(r.applied)
	r.mu.Unlock()
	var problems []string
	for i := len(applied) - 1; i >= 0; i-- {
		a := applied[i]
		err := env.Dynamic.Resource(a.gvr).Delete(ctx, a.name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			problems = append(problems, fmt.Sprintf("deleting %s: %v", a.desc, err))
		}
	}
	return problems
}

func describeObject(u *unstructured.Unstructured) string {
	if u.GetNamespace() != "" {
		return fmt.Sprintf("%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
	}
	return fmt.Sprintf("%s %s", u.GetKind(), u.GetName())
}

// renderValue writes an observed value for people: strings verbatim,
// everything else as YAML.
func renderValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case fmt.Stringer:
		return x.String()
	case error:
		return x.Error()
	}
	if b, err := json.Marshal(v); err == nil {
		var generic any
		if json.Unmarshal(b, &generic) == nil {
			switch generic.(type) {
			case map[string]any, []any:
				if y, err := yaml.Marshal(generic); err == nil {
					return strings.TrimSuffix(string(y), "\n")
				}
			default:
				return strings.Trim(string(b), `"`)
			}
		}
	}
	return fmt.Sprintf("%v", v)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
