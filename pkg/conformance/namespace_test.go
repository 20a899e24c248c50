package conformance

import (
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
