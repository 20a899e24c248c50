package gang

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
)

// Two kwok nodes of 32 CPUs each: room for every pod of the check's Jobs,
// so only the queue's quota decides what runs.
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithNodes(testenv.Node{Name: "kwok-0"}, testenv.Node{Name: "kwok-1"}))
}

// testConfig is the check as the tests run it: a short observation window.
func testConfig() config {
	return config{pods: 3, window: 10 * time.Second, sleep: 5 * time.Second, queueTimeout: 20 * time.Second}
}

// runCheck runs the check c through the runner against env.
func runCheck(t *testing.T, env *testenv.Env, c config) conformance.Result {
	t.Helper()
	return runCheckWithCleanup(t, env, c, 0)
}

// runCheckWithCleanup is runCheck with a cleanup time limit: without a
// controller manager the check's namespace is never deleted, and the
// runner would wait its full cleanup time for it.
func runCheckWithCleanup(t *testing.T, env *testenv.Env, c config, cleanup time.Duration) conformance.Result {
	t.Helper()
	return checktest.RunWith(t, env, conformance.NewCheck(ID, c.run), checktest.Options{
		Version: "1.35", Category: "schedulingOrchestration", Level: conformance.Must,
		Timeout: 4 * time.Minute, CleanupTimeout: cleanup,
	})
}

func TestGangSchedulingPasses(t *testing.T) {
	env := sharedWithKueue(t)
	res := runCheck(t, env, testConfig())
	if res.TestName != "TestGangScheduling" {
		t.Errorf("test name %q, want the official suite's TestGangScheduling", res.TestName)
	}
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"KueueAPIServed":             conformance.Passed,
		"QueueActive":                conformance.Passed,
		"JobThatFitsIsAdmittedWhole": conformance.Passed,
		"JobBeyondQuotaGetsNoPod":    conformance.Passed,
	})
	all := checktest.Transcript(res)
	for _, want := range []string{
		"Kueue API used: kueue.x-k8s.io/v1beta2 (served: v1beta2, v1beta1)",
		"spec.suspend=true",          // Kueue's webhook held the Jobs
		"pod set main: 3 pods",       // admitted whole
		"Complete, 3 pods succeeded", // and completed
		"QuotaReserved=False",        // why the big one waits
		"insufficient quota",
		"deleted namespace " + res.Namespace,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	if !strings.Contains(all, "pods of Job beyond-quota during the window: (none)") {
		t.Errorf("the transcript does not show that the Job beyond the quota got no pod")
	}
	// The two cases ran side by side, each in a queue of its own: the
	// window of the Job beyond the quota opened before the Job that fits
	// had finished.
	fits, beyond := checktest.Subtest(res, "JobThatFitsIsAdmittedWhole"), checktest.Subtest(res, "JobBeyondQuotaGetsNoPod")
	if fits == nil || beyond == nil {
		t.Fatalf("subtests missing from %s", res.TestName)
	}
	if !beyond.Start.Before(fits.Start.Add(fits.Duration)) {
		t.Errorf("the case beyond the quota started at %s, after the case that fits had ended (%s + %s): they ran one after the other",
			beyond.Start.Format(time.StampMilli), fits.Start.Format(time.StampMilli), fits.Duration)
	}
	for _, q := range []string{res.Namespace, res.Namespace + beyondQueueSuffix} {
		if !strings.Contains(all, "ClusterQueue "+q+": Active=True") {
			t.Errorf("the transcript does not show ClusterQueue %s Active", q)
		}
	}
	// The cluster-scoped queue objects named after the namespace are gone
	// or going (Kueue's finalizers release them).
	for _, o := range []struct {
		kind, name string
		gvr        schema.GroupVersionResource
	}{
		{"ClusterQueue", res.Namespace, v1beta2.Resource(clusterQueues)},
		{"ClusterQueue", res.Namespace + beyondQueueSuffix, v1beta2.Resource(clusterQueues)},
		{"ResourceFlavor", res.Namespace, v1beta2.Resource(resourceFlavors)},
	} {
		obj, err := env.Dynamic().Resource(o.gvr).Get(t.Context(), o.name, metav1.GetOptions{})
		switch {
		case err == nil && obj.GetDeletionTimestamp() == nil:
			t.Errorf("%s %s still exists after cleanup", o.kind, o.name)
		case err != nil && !apierrors.IsNotFound(err):
			t.Error(err)
		}
	}
}

// Without Kueue's API the check fails at once saying Kueue is missing; with
// the API but no controller it fails saying no controller reconciles the
// queue. Neither needs the Kueue manager binary.
func TestGangSchedulingFailsWithoutKueue(t *testing.T) {
	env := testenv.New(t, testenv.WithControlLoops()) // the service account controller fills the check's namespace
	res := runCheckWithCleanup(t, env, testConfig(), 3*time.Second)
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "does not serve kueue.x-k8s.io: Kueue") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{"KueueAPIServed": conformance.Failed, "QueueActive": ""})

	moduleDir, err := kueue.ModuleDir(t.Context())
	if err != nil {
		t.Skipf("Kueue's CRDs are not at hand: %v", err)
	}
	// Conversion is never needed: everything is stored and read as v1beta2.
	if err := installKueueCRDs(t.Context(), env, filepath.Join(moduleDir, "config/components/crd/bases"), "https://127.0.0.1:1", nil, nil); err != nil {
		t.Fatal(err)
	}
	res = runCheckWithCleanup(t, env, testConfig(), 3*time.Second)
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "did not become Active") || !strings.Contains(res.Reason, "no Kueue controller") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"KueueAPIServed":             conformance.Passed,
		"QueueActive":                conformance.Failed,
		"JobThatFitsIsAdmittedWhole": "",
	})
}

// v1beta2 is Kueue's API as the test's Kueue manager serves it.
var v1beta2 = ChooseAPI([]string{"v1beta2"})

// The version of Kueue's API is discovered, not assumed: with Kueue's own
// CRDs (from the module the tests' Kueue is built from) made to serve only
// v1beta1, as an older Kueue does, or only v1beta2, as a newer one does,
// the check drives the one served and says which. Kueue's API server side
// (the CRDs' schemas) accepts the queue objects at either version; no Kueue
// manager runs here (it talks v1beta2 only), so the queue never becomes
// Active and the check fails there, after the objects were accepted.
func TestGangSchedulingDiscoversKueueVersion(t *testing.T) {
	moduleDir, err := kueue.ModuleDir(t.Context())
	if err != nil {
		t.Skipf("Kueue's CRDs are not at hand: %v", err)
	}
	for _, tc := range []struct {
		only, used string
	}{
		{"v1beta1", "kueue.x-k8s.io/v1beta1 (v1beta2 not served) (served: v1beta1)"},
		{"v1beta2", "kueue.x-k8s.io/v1beta2 (served: v1beta2)"},
	} {
		t.Run(tc.only, func(t *testing.T) {
			env := testenv.New(t, testenv.WithControlLoops())
			only := tc.only
			// Conversion is never needed: one version is served and stored.
			if err := installKueueCRDs(t.Context(), env, filepath.Join(moduleDir, "config/components/crd/bases"), "https://127.0.0.1:1", nil, &only); err != nil {
				t.Fatal(err)
			}
			res := runCheckWithCleanup(t, env, testConfig(), 3*time.Second)
			checktest.ExpectSubtests(t, res, map[string]conformance.Status{
				"KueueAPIServed":             conformance.Passed,
				"QueueActive":                conformance.Failed,
				"JobThatFitsIsAdmittedWhole": "",
			})
			all := checktest.Transcript(res)
			for _, want := range []string{
				"Kueue API used: " + tc.used,
				"resources served by kueue.x-k8s.io/" + tc.only,
				"apiVersion: kueue.x-k8s.io/" + tc.only + "\nkind: ClusterQueue", // the queue objects as applied
			} {
				if !strings.Contains(all, want) {
					t.Errorf("transcript lacks %q", want)
				}
			}
			if !strings.Contains(res.Reason, "did not become Active") {
				t.Errorf("reason %q: the queue objects were not accepted at %s", res.Reason, tc.only)
			}
		})
	}
}

// A queue that admits the Job beyond the quota (its quota raised behind the
// check's back, as if it let pods bypass the gang) fails the negative case,
// which reports the admission and the pods it saw bound; the Job that fits,
// in a queue of its own, still passes beside it.
func TestGangSchedulingFailsWhenQueueAdmitsBeyondQuota(t *testing.T) {
	env := sharedWithKueue(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	raised := make(chan string, 1)
	go func() {
		defer close(raised)
		if name, err := raiseNextQuota(ctx, env, beyondQueueSuffix); err != nil {
			t.Errorf("raising the quota: %v", err)
		} else {
			raised <- name
		}
	}()
	res := runCheck(t, env, testConfig())
	if name := <-raised; name != res.Namespace+beyondQueueSuffix {
		t.Fatalf("raised the quota of ClusterQueue %q, want %q", name, res.Namespace+beyondQueueSuffix)
	}
	if res.Status != conformance.Failed {
		t.Fatalf("status %s, want Failed", res.Status)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"KueueAPIServed":             conformance.Passed,
		"QueueActive":                conformance.Passed,
		"JobThatFitsIsAdmittedWhole": conformance.Passed,
		"JobBeyondQuotaGetsNoPod":    conformance.Failed,
	})
	out := strings.Join(checktest.Subtest(res, "JobBeyondQuotaGetsNoPod").Output, "\n")
	for _, want := range []string{
		"4 pod(s) of Job beyond-quota, which does not fit the quota, were bound or ran",
		"was admitted (quota reserved for 4 pods)",
		"node \"kwok-",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the negative case's output lacks %q:\n%s", want, out)
		}
	}
}

// raiseNextQuota waits for the next ClusterQueue whose name ends in suffix
// to be created and raises its quota far beyond what the check's Jobs ask
// for. It returns the queue's name.
func raiseNextQuota(ctx context.Context, env *testenv.Env, suffix string) (string, error) {
	queues := env.Dynamic().Resource(v1beta2.Resource(clusterQueues))
	list, err := queues.List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	w, err := queues.Watch(ctx, metav1.ListOptions{ResourceVersion: list.GetResourceVersion()})
	if err != nil {
		return "", err
	}
	defer w.Stop()
	for event := range w.ResultChan() {
		if event.Type != watch.Added {
			continue
		}
		name := event.Object.(*unstructured.Unstructured).GetName()
		if !strings.HasSuffix(name, suffix) {
			continue
		}
		patch := `[{"op": "replace", "path": "/spec/resourceGroups/0/flavors/0/resources/0/nominalQuota", "value": "1000"},
			{"op": "replace", "path": "/spec/resourceGroups/0/flavors/0/resources/1/nominalQuota", "value": "1000Gi"}]`
		_, err := queues.Patch(ctx, name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
		return name, err
	}
	return "", fmt.Errorf("no ClusterQueue was created: %w", ctx.Err())
}

// The check prefers v1beta2 and falls back to v1beta1; a cluster serving
// neither (an older Kueue's v1alpha1) has no version it can drive.
func TestChooseAPI(t *testing.T) {
	for _, tc := range []struct {
		served []string
		want   string
	}{
		{[]string{"v1beta2", "v1beta1"}, "kueue.x-k8s.io/v1beta2"},
		{[]string{"v1beta1", "v1beta2"}, "kueue.x-k8s.io/v1beta2"},
		{[]string{"v1beta1"}, "kueue.x-k8s.io/v1beta1 (v1beta2 not served)"},
		{[]string{"v1alpha1"}, "none of kueue.x-k8s.io/v1beta2, v1beta1"},
		{nil, "none of kueue.x-k8s.io/v1beta2, v1beta1"},
	} {
		api := ChooseAPI(tc.served)
		if got := api.String(); got != tc.want {
			t.Errorf("ChooseAPI(%v) = %q, want %q", tc.served, got, tc.want)
		}
		if api.Usable() != strings.HasPrefix(tc.want, "kueue") {
			t.Errorf("ChooseAPI(%v).Usable() = %t", tc.served, api.Usable())
		}
	}
	if got := ChooseAPI([]string{"v1beta1"}).Object("LocalQueue", "q", "ns", nil).GetAPIVersion(); got != "kueue.x-k8s.io/v1beta1" {
		t.Errorf("a LocalQueue at v1beta1 has apiVersion %q", got)
	}
}
