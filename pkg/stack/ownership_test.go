package stack_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/ownership"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
)

// releaseLabels returns the labels of a release's storage secret at
// revision rev.
func releaseLabels(t *testing.T, env *testenv.Env, ns, name, rev string) map[string]string {
	t.Helper()
	secrets, err := env.Clientset().CoreV1().Secrets(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "owner=helm,name=" + name + ",version=" + rev})
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 1 {
		t.Fatalf("release %s revision %s: %d storage secrets", name, rev, len(secrets.Items))
	}
	return secrets.Items[0].Labels
}

// A release of a component's name that the run did not install is neither
// upgraded nor uninstalled; adopting it makes it the run's.
func TestForeignReleaseLeftAloneUntilAdopted(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	chart := testChart{name: "own", version: "0.1.0"}.write(t)
	runID := ownership.NewRunID(time.Now())
	in := newInstaller(t, env, nil, stack.WithRunID(runID))
	if err := stack.InstallWithoutKaic(in, chart, "own", ns, map[string]any{"message": "user"}, 0); err != nil {
		t.Fatal(err)
	}
	comp := component("own", ns, &profile.HelmChart{Chart: chart}, map[string]any{"message": "kaic"})
	var recorded []stack.Record
	in = newInstaller(t, env, nil, stack.WithRunID(runID), stack.WithRecorder(func(r stack.Record) { recorded = append(recorded, r) }))

	recs, err := in.Install(t.Context(), []profile.Component{comp})
	var foreign *stack.ForeignReleaseError
	if !errors.As(err, &foreign) {
		t.Fatalf("install over a release kaic did not install: %v, want a ForeignReleaseError", err)
	}
	t.Logf("error: %v", err)
	if foreign.Release != "own" || foreign.Namespace != ns || foreign.Owner != ownership.Owner(nil) {
		t.Errorf("error %+v, want release own in %s owned by %q", foreign, ns, ownership.Owner(nil))
	}
	for _, want := range []string{"release own", "namespace " + ns, ownership.Owner(nil), "--adopt own"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q", want)
		}
	}
	if r := recs[0]; !r.PreExisting || r.Adopted || r.Action != stack.ActionFailed || r.RunID != runID || r.Owner == "" {
		t.Errorf("record %+v, want a failed pre-existing record of run %s", r, runID)
	}
	if len(recorded) != 2 || recorded[0].Action != stack.ActionStarted || !recorded[1].PreExisting {
		t.Errorf("recorder saw %+v, want the start and the pre-existing end", recorded)
	}
	untouched := func(when string) {
		t.Helper()
		if h := releaseHistory(t, env, ns, "own"); len(h) != 1 || h["1"] != "deployed" {
			t.Errorf("%s: history %v, want revision 1 deployed only", when, h)
		}
		if m := configMessage(t, env.Clientset(), ns, "own"); m != "user" {
			t.Errorf("%s: message %q, want the user's value", when, m)
		}
	}
	untouched("after the refused install")

	// Uninstalling what the run recorded leaves the release alone, and so
	// does a record of the release that claims to be the run's.
	if err := in.Uninstall(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	untouched("after uninstalling the records")
	claimed := recs[0]
	claimed.PreExisting = false
	if err := in.Uninstall(t.Context(), []stack.Record{claimed}); err != nil {
		t.Fatal(err)
	}
	untouched("after uninstalling a record that claims it")

	// Another kaic run is no owner either.
	other := newInstaller(t, env, nil, stack.WithRunID(ownership.NewRunID(time.Now())))
	if _, err := other.Install(t.Context(), []profile.Component{comp}); !errors.As(err, &foreign) {
		t.Fatalf("install by another run: %v, want a ForeignReleaseError", err)
	}
	untouched("after another run's install")

	// Adopted, it is upgraded with the run's values and labels.
	adopter := newInstaller(t, env, nil, stack.WithRunID(runID), stack.WithAdopt("own"))
	recs, err = adopter.Install(t.Context(), []profile.Component{comp})
	if err != nil {
		t.Fatalf("adopting: %v", err)
	}
	if r := recs[0]; !r.Adopted || r.PreExisting || r.Action != stack.ActionUpgraded || r.Owner != ownership.Owner(nil) {
		t.Errorf("record %+v, want an adopted upgrade", r)
	}
	if m := configMessage(t, env.Clientset(), ns, "own"); m != "kaic" {
		t.Errorf("message %q after adoption, want kaic's", m)
	}
	if l := releaseLabels(t, env, ns, "own", "2"); !ownership.CreatedBy(l, runID) {
		t.Errorf("labels %v after adoption, want run %s's", l, runID)
	}

	// From now on it is the run's: unchanged without --adopt, and removed
	// by the run's uninstall; another run still may not touch it.
	if _, err := other.Install(t.Context(), []profile.Component{comp}); !errors.As(err, &foreign) || !strings.Contains(foreign.Owner, runID) {
		t.Fatalf("install by another run after adoption: %v, want a ForeignReleaseError naming run %s", err, runID)
	}
	again, err := in.Install(t.Context(), []profile.Component{comp})
	if err != nil || again[0].Action != stack.ActionUnchanged {
		t.Fatalf("re-install after adoption: %+v, %v; want unchanged", again, err)
	}
	if err := in.Uninstall(t.Context(), stack.MergeRecords(recs, again)); err != nil {
		t.Fatal(err)
	}
	if h := releaseHistory(t, env, ns, "own"); len(h) != 0 {
		t.Errorf("history %v after uninstall, want none", h)
	}
}

// A failed release kaic did not install is not removed to make room.
func TestFailedForeignReleaseNotUninstalled(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	bad := testChart{name: "broken", version: "0.1.0", unschedulable: true}.write(t)
	in := newInstaller(t, env, nil)
	if err := stack.InstallWithoutKaic(in, bad, "broken", ns, nil, 3*time.Second); err == nil {
		t.Fatal("the unschedulable chart installed, want it failed")
	}
	if h := releaseHistory(t, env, ns, "broken"); len(h) != 1 || h["1"] != "failed" {
		t.Fatalf("history %v, want revision 1 failed", h)
	}
	good := testChart{name: "broken", version: "0.2.0"}.write(t)
	_, err := in.Install(t.Context(), []profile.Component{component("broken", ns, &profile.HelmChart{Chart: good}, nil)})
	var foreign *stack.ForeignReleaseError
	if !errors.As(err, &foreign) || foreign.Status != "failed" {
		t.Fatalf("install over a failed foreign release: %v, want a ForeignReleaseError of a failed release", err)
	}
	if h := releaseHistory(t, env, ns, "broken"); len(h) != 1 || h["1"] != "failed" {
		t.Errorf("history %v after the refused install, want revision 1 failed, untouched", h)
	}
}

// Objects of a manifests component that existed before the apply are
// recorded as pre-existing, not changed, and not deleted; what the run
// created carries its labels and is deleted.
func TestPreExistingObjectsSurviveUninstall(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	group := "o" + strings.ToLower(rand.String(6)) + ".test.kaic.dev"
	crd := func(plural, kind string) string {
		return `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ` + plural + `.` + group + `
spec:
  group: ` + group + `
  names: {kind: ` + kind + `, plural: ` + plural + `, singular: ` + strings.ToLower(kind) + `, listKind: ` + kind + `List}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
`
	}
	cmGVR := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	dyn := env.Dynamic()

	// The cluster already has the "olds" CRD and a ConfigMap, made by
	// someone else.
	var old unstructured.Unstructured
	if err := decodeInto(crd("olds", "Old"), &old); err != nil {
		t.Fatal(err)
	}
	old.SetLabels(map[string]string{"owner": "user"})
	_, err := dyn.Resource(testenv.CRDResource).Create(t.Context(), &old, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = dyn.Resource(testenv.CRDResource).Delete(t.Context(), old.GetName(), metav1.DeleteOptions{})
	})
	userCM := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "shared", "namespace": ns},
		"data":     map[string]any{"a": "user"},
	}}
	if _, err := dyn.Resource(cmGVR).Namespace(ns).Create(t.Context(), userCM, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(t.TempDir(), "manifests.yaml")
	content := crd("olds", "Old") + "---\n" + crd("news", "New") + `---
apiVersion: v1
kind: ConfigMap
metadata:
  name: shared
data:
  a: kaic
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: mine
data:
  a: kaic
`
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	comp := profile.Component{
		Name: "crds", Namespace: ns, Manifests: &profile.Manifests{Files: []string{file}},
		Readiness: &profile.Readiness{Timeout: profile.Duration{Duration: 30 * time.Second}},
	}
	runID := ownership.NewRunID(time.Now())
	in := newInstaller(t, env, nil, stack.WithRunID(runID))
	recs, err := in.Install(t.Context(), []profile.Component{comp})
	if err != nil {
		t.Fatal(err)
	}
	pre := map[string]bool{}
	for _, o := range recs[0].Objects {
		pre[o.Kind+" "+o.Name] = o.PreExisting
	}
	want := map[string]bool{"CustomResourceDefinition olds." + group: true, "CustomResourceDefinition news." + group: false, "ConfigMap shared": true, "ConfigMap mine": false}
	for k, v := range want {
		if got, ok := pre[k]; !ok || got != v {
			t.Errorf("%s recorded pre-existing=%v (recorded: %v), want %v", k, got, ok, v)
		}
	}
	after, err := dyn.Resource(testenv.CRDResource).Get(t.Context(), old.GetName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Its status changes as the API server establishes it: what must not
	// change is what kaic would have set, its labels and fields.
	if l := after.GetLabels(); len(l) != 1 || l["owner"] != "user" {
		t.Errorf("pre-existing CRD labels %v, want only the user's", l)
	}
	for _, f := range after.GetManagedFields() {
		if f.Manager == stack.FieldManager {
			t.Errorf("pre-existing CRD has fields managed by %s: %+v", stack.FieldManager, f)
		}
	}
	shared, err := dyn.Resource(cmGVR).Namespace(ns).Get(t.Context(), "shared", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _, _ := unstructured.NestedString(shared.Object, "data", "a"); v != "user" || ownership.CreatedBy(shared.GetLabels(), runID) {
		t.Errorf("pre-existing ConfigMap changed: data %q, labels %v", v, shared.GetLabels())
	}
	mine, err := dyn.Resource(cmGVR).Namespace(ns).Get(t.Context(), "mine", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !ownership.CreatedBy(mine.GetLabels(), runID) {
		t.Errorf("created ConfigMap labels %v, want run %s's", mine.GetLabels(), runID)
	}

	// A second apply by the same run still leaves them alone.
	if recs2, err := in.Install(t.Context(), []profile.Component{comp}); err != nil {
		t.Fatal(err)
	} else {
		recs = stack.MergeRecords(recs, recs2)
	}

	if err := in.Uninstall(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(testenv.CRDResource).Get(t.Context(), old.GetName(), metav1.GetOptions{}); err != nil {
		t.Errorf("pre-existing CRD after uninstall: %v", err)
	}
	if _, err := dyn.Resource(cmGVR).Namespace(ns).Get(t.Context(), "shared", metav1.GetOptions{}); err != nil {
		t.Errorf("pre-existing ConfigMap after uninstall: %v", err)
	}
	if _, err := dyn.Resource(cmGVR).Namespace(ns).Get(t.Context(), "mine", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("created ConfigMap after uninstall: %v, want not found", err)
	}
	if n, err := dyn.Resource(testenv.CRDResource).Get(t.Context(), "news."+group, metav1.GetOptions{}); err == nil && n.GetDeletionTimestamp() == nil {
		t.Errorf("created CRD still there after uninstall")
	}
}

// decodeInto reads one YAML document into u.
func decodeInto(doc string, u *unstructured.Unstructured) error {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		return err
	}
	u.Object = m
	return nil
}
