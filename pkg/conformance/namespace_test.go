package conformance

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/ownership"
)

// TestMain starts a control plane (with the control loops, whose service
// account controller fills new namespaces) for the tests that need one,
// on first use.
func TestMain(m *testing.M) { testenv.Main(m, testenv.WithControlLoops()) }

// TestCheckNamespace runs a check against a real API server: its
// namespace carries the run's marks, a pod can be created in it at once
// (the default service account exists before the check starts), and it
// is gone afterwards.
func TestCheckNamespace(t *testing.T) {
	kube := testenv.Shared(t)
	env, err := NewEnv(kube.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	const runID = "20261203-0a0b0c0d"
	env.RunID = runID
	var seen map[string]string
	reg := mustRegistry(t, NewCheck("dra_support", func(t *T, env *Env) {
		ns, err := env.Client.CoreV1().Namespaces().Get(t.Context(), env.Namespace, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%v", err)
		}
		seen = ns.Labels
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "first"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: env.ProbeImage}}},
		}
		if _, err := env.Client.CoreV1().Pods(env.Namespace).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating the first pod: %v", err)
		}
	}))
	r := &Runner{Catalog: testCatalog("dra_support"), Registry: reg, Env: *env, Timeout: 30 * time.Second}
	results, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results[0].Status != Passed {
		t.Fatalf("results: %+v", results)
	}
	if !ownership.CreatedBy(seen, runID) || seen[LabelCheck] != "dra-support" {
		t.Errorf("namespace labels %v: want the run %s's marks and the check's name", seen, runID)
	}
	if _, err := kube.Clientset().CoreV1().Namespaces().Get(t.Context(), results[0].Namespace, metav1.GetOptions{}); err == nil {
		t.Errorf("namespace %s still there after the check", results[0].Namespace)
	}
}

// A need the cluster lacks is looked at once and reported once, before any
// check starts, for every check that needs it; those checks fail without
// running and the others run.
func TestMissingNeedsReportedOnceUpFront(t *testing.T) {
	kube := testenv.Shared(t)
	env, err := NewEnv(kube.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ran sync.Map
	needing := func(id string, groups ...string) Check {
		return WithNeeds(NewCheck(id, func(t *T, env *Env) { ran.Store(id, true) }), func(*Env) []Need {
			var out []Need
			for _, g := range groups {
				out = append(out, APIGroupNeed(g, "a stack component"))
			}
			return out
		})
	}
	reg := mustRegistry(t,
		needing("gang_scheduling", "queues.example.kaic.dev"),
		needing("robust_controller", "apps", "queues.example.kaic.dev"),
		needing("pod_autoscaling", "apps"),
	)
	var reports []string
	r := &Runner{Catalog: testCatalog("gang_scheduling", "robust_controller", "pod_autoscaling"), Registry: reg, Env: *env, Timeout: 30 * time.Second,
		OnMissing: func(missing string, ids []string) { reports = append(reports, missing+" <- "+strings.Join(ids, ",")) },
		OnStart: func(req Requirement) {
			if len(reports) == 0 {
				t.Errorf("%s started before the missing needs were reported", req.ID)
			}
		},
	}
	results, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"the cluster does not serve the API group queues.example.kaic.dev (a stack component) <- gang_scheduling,robust_controller"}
	if !slices.Equal(reports, want) {
		t.Errorf("missing needs reported %q, want %q", reports, want)
	}
	got := byID(results)
	for _, id := range []string{"gang_scheduling", "robust_controller"} {
		if res := got[id]; res.Status != Failed || !strings.Contains(res.Reason, "does not serve the API group queues.example.kaic.dev") {
			t.Errorf("%s: %s %q, want failed for the missing API group", id, res.Status, res.Reason)
		}
		if _, ok := ran.Load(id); ok {
			t.Errorf("%s ran although its need is missing", id)
		}
	}
	if res := got["pod_autoscaling"]; res.Status != Passed {
		t.Errorf("pod_autoscaling, whose need is present: %s %q", res.Status, res.Reason)
	}
}
