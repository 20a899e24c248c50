package promconfig

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
	"github.com/kaic-dev/kaic/pkg/ownership"
)

// A real control plane with no controllers: the Prometheus objects,
// StatefulSets and pods are written as prometheus-operator and Helm would
// leave them, and no controller adopts or replaces them; no kubelet runs,
// so what the test sees is the annotation the kubelet would react to, not
// the reaction (the kind end-to-end run and make bench-kind measure that).
func TestMain(m *testing.M) { testenv.Main(m) }

// serviceAccounts creates the default service account of every namespace
// the runner creates for a check, as the service account controller would,
// until ctx ends.
func serviceAccounts(ctx context.Context, t *testing.T, env *testenv.Env) {
	t.Helper()
	w, err := env.Clientset().CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			ns, ok := ev.Object.(*corev1.Namespace)
			if !ok || ev.Type != watch.Added || !strings.HasPrefix(ns.Name, "kaic-") {
				continue
			}
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
			_, _ = env.Clientset().CoreV1().ServiceAccounts(ns.Name).Create(ctx, sa, metav1.CreateOptions{})
		}
	}()
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCRD serves monitoring.coreos.com/v1 Prometheus, schema-less.
func installCRD(t *testing.T, env *testenv.Env) {
	t.Helper()
	name := Prometheuses.Resource + "." + Prometheuses.Group
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"group": Prometheuses.Group,
			"scope": "Namespaced",
			"names": map[string]any{"plural": Prometheuses.Resource, "singular": "prometheus", "kind": "Prometheus", "listKind": "PrometheusList"},
			"versions": []any{map[string]any{
				"name": Prometheuses.Version, "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
			}},
		},
	}}
	if _, err := env.Dynamic().Resource(crdGVR).Create(t.Context(), crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if err := testenv.WaitForCRDEstablished(t.Context(), env.Dynamic(), name); err != nil {
		t.Fatal(err)
	}
}

// release is a Helm release as its Secrets show it: the labels of each
// revision, oldest first. Without a name, the Prometheus is applied
// without Helm, with labels of its own.
type release struct {
	name      string
	revisions []map[string]string
	labels    map[string]string
}

// server writes a Prometheus that release created in namespace ns, its
// StatefulSet and pod as prometheus-operator makes them, and a pod that
// carries the same label but belongs to no StatefulSet of it. It returns
// the names of the two pods.
func server(t *testing.T, env *testenv.Env, ns, name string, rel release) (own, stray string) {
	t.Helper()
	ctx := t.Context()
	cs := env.Clientset()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for i, l := range rel.revisions {
		labels := map[string]string{helmOwnerLabel: "helm", helmNameLabel: rel.name, helmVersionLabel: fmt.Sprint(i + 1), "status": "superseded"}
		for k, v := range l {
			labels[k] = v
		}
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sh.helm.release.v1.%s.v%d", rel.name, i+1), Labels: labels}, Type: "helm.sh/release.v1",
			Data: map[string][]byte{"release": []byte("not read")}}
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	p := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": Prometheuses.GroupVersion().String(), "kind": "Prometheus",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"replicas": int64(1)},
	}}
	if rel.name != "" {
		p.SetAnnotations(map[string]string{releaseNameAnnotation: rel.name, releaseNamespaceAnnotation: ns})
	}
	p.SetLabels(rel.labels)
	p, err := env.Dynamic().Resource(Prometheuses).Namespace(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	labels := map[string]string{podNameLabel: name}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-" + name, OwnerReferences: []metav1.OwnerReference{{APIVersion: p.GetAPIVersion(), Kind: "Prometheus", Name: name, UID: p.GetUID(), Controller: &yes}}},
		Spec: appsv1.StatefulSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec()},
		},
	}
	if sts, err = cs.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, pod := range []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Name: sts.Name + "-0", Labels: labels, OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: sts.Name, UID: sts.UID, Controller: &yes}}}, Spec: podSpec()},
		{ObjectMeta: metav1.ObjectMeta{Name: "lookalike", Labels: labels}, Spec: podSpec()},
	} {
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return sts.Name + "-0", "lookalike"
}

func podSpec() corev1.PodSpec {
	no := false
	return corev1.PodSpec{AutomountServiceAccountToken: &no, Containers: []corev1.Container{{Name: "prometheus", Image: "prometheus"}}}
}

// watchAnnotations records every value of Annotation each pod of ns
// carries, in order, until ctx ends ("" for none).
func watchAnnotations(ctx context.Context, t *testing.T, env *testenv.Env, ns string) func() map[string][]string {
	t.Helper()
	w, err := env.Clientset().CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string][]string{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			v := p.Annotations[Annotation]
			mu.Lock()
			if vs := seen[p.Name]; len(vs) == 0 || vs[len(vs)-1] != v {
				seen[p.Name] = append(vs, v)
			}
			mu.Unlock()
		}
	}()
	return func() map[string][]string {
		w.Stop()
		<-done
		return seen
	}
}

// While a check waits, Refresh changes the annotation on the pod of the
// Prometheus kaic's release created, and on that of one kaic applied as a
// manifest, about every Interval, and removes it when stopped; the
// Prometheus of a release that is not kaic's (an earlier revision was, the
// latest is not), one with neither labels nor release, and a pod that only
// looks like a Prometheus pod are never touched.
func TestRefreshTouchesOnlyKaicsPrometheus(t *testing.T) {
	env := testenv.Shared(t)
	installCRD(t, env)
	kaics := map[string]string{ownership.ManagedByLabel: ownership.ManagedBy, ownership.RunIDLabel: "20261205-0123abcd"}
	ownPod, stray := server(t, env, "monitoring", "kube-prometheus-stack", release{name: "kube-prometheus-stack", revisions: []map[string]string{kaics, kaics}})
	theirPod, _ := server(t, env, "theirs", "their-prometheus", release{name: "their-stack", revisions: []map[string]string{kaics, {ownership.ManagedByLabel: "Helm"}}})
	appliedPod, _ := server(t, env, "applied", "applied", release{labels: kaics})
	handPod, _ := server(t, env, "by-hand", "by-hand", release{})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	serviceAccounts(ctx, t, env)
	ours := watchAnnotations(ctx, t, env, "monitoring")
	theirs := watchAnnotations(ctx, t, env, "theirs")
	applied := watchAnnotations(ctx, t, env, "applied")
	byHand := watchAnnotations(ctx, t, env, "by-hand")

	var servers []Server
	var findErr error
	check := conformance.NewCheck("ai_service_metrics", func(t *conformance.T, env *conformance.Env) {
		servers, findErr = Find(t.Context(), env)
		stop := Refresh(t, env)
		time.Sleep(Interval + Interval/2) // the first change at once, the second after Interval
		stop()
		stop() // a second call does nothing
	})
	// No namespace controller deletes the check's namespace: the runner's
	// cleanup gives up on it soon.
	res := checktest.RunWith(t, env, check, checktest.Options{Version: "1.37", Category: "observability", Level: conformance.Must, Timeout: time.Minute, CleanupTimeout: 2 * time.Second})
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	if findErr != nil {
		t.Fatal(findErr)
	}
	got := map[string]Server{}
	for _, s := range servers {
		got[s.String()] = s
	}
	if s := got["monitoring/kube-prometheus-stack"]; !s.Kaics || strings.Join(s.Pods, ",") != ownPod {
		t.Errorf("kaic's Prometheus found as %+v, want kaic's with pod %s only", s, ownPod)
	}
	if s := got["theirs/their-prometheus"]; s.Kaics || len(s.Pods) != 0 || !strings.Contains(s.Owner, "Helm release theirs/their-stack of Helm") {
		t.Errorf("their Prometheus found as %+v, want theirs (the latest revision's labels), no pods", s)
	}

	// Let the watches deliver the last change.
	time.Sleep(time.Second)
	cancel()
	seenOurs, seenTheirs, seenApplied, seenByHand := ours(), theirs(), applied(), byHand()
	for pod, values := range map[string][]string{ownPod: seenOurs[ownPod], appliedPod: seenApplied[appliedPod]} {
		if len(values) < 4 || values[0] != "" || values[len(values)-1] != "" {
			t.Errorf("annotation values of %s: %q; want none, at least two distinct times, then none", pod, values)
		}
		for i := 1; i < len(values)-1; i++ {
			if _, err := time.Parse(time.RFC3339Nano, values[i]); err != nil {
				t.Errorf("annotation value %q of %s is not a time: %v", values[i], pod, err)
			}
		}
	}
	if vs := seenByHand[handPod]; len(vs) != 1 || vs[0] != "" {
		t.Errorf("pod %s of a Prometheus with no kaic label and no Helm release was annotated: %q", handPod, vs)
	}
	if vs := seenOurs[stray]; len(vs) != 1 || vs[0] != "" {
		t.Errorf("pod %s, which no StatefulSet of the Prometheus controls, was annotated: %q", stray, vs)
	}
	if vs := seenTheirs[theirPod]; len(vs) != 1 || vs[0] != "" {
		t.Errorf("pod %s of a Prometheus that is not kaic's was annotated: %q", theirPod, vs)
	}
	checktest.ExpectTranscript(t, res,
		"Prometheus monitoring/kube-prometheus-stack was installed by kaic (Helm release monitoring/kube-prometheus-stack of kaic run 20261205-0123abcd)",
		"Prometheus theirs/their-prometheus is not kaic's (Helm release theirs/their-stack of Helm): left alone",
		"Prometheus applied/applied was installed by kaic (kaic run 20261205-0123abcd)",
		"Prometheus by-hand/by-hand is not kaic's (neither labelled as kaic's nor created by a Helm release): left alone",
		"then removed from 2 of 2",
	)
	pod, err := env.Clientset().CoreV1().Pods("monitoring").Get(t.Context(), ownPod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := pod.Annotations[Annotation]; ok {
		t.Errorf("annotation %s=%q left on %s", Annotation, v, ownPod)
	}
}
