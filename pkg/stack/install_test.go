package stack_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/ownership"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
)

func namespace(t *testing.T, env *testenv.Env) string {
	t.Helper()
	ns, err := env.CreateNamespace(t.Context(), "stack-")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func configMessage(t *testing.T, cs kubernetes.Interface, ns, release string) string {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), release+"-settings", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("configmap of release %s: %v", release, err)
	}
	return cm.Data["message"]
}

func component(name, ns string, h *profile.HelmChart, values map[string]any, deps ...string) profile.Component {
	return profile.Component{
		Name: name, Namespace: ns, Helm: h, Values: values, DependsOn: deps,
		Readiness: &profile.Readiness{Timeout: profile.Duration{Duration: time.Minute}, Deployments: []string{name}},
	}
}

func recordOf(t *testing.T, recs []stack.Record, name string) stack.Record {
	t.Helper()
	for _, r := range recs {
		if r.Component == name {
			return r
		}
	}
	t.Fatalf("no record for %s in %+v", name, recs)
	return stack.Record{}
}

func TestInstallFromEachSourceKind(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)

	host, hc := ociRegistry(t)
	ociChart := testChart{name: "from-oci", version: "0.1.0"}
	tgz, ociDigest := ociChart.pack(t)
	ociRef := pushChart(t, host, hc, tgz, ociChart)

	repoChart := testChart{name: "from-repo", version: "1.2.3"}
	chartRepo := newChartRepo(t, 0, false, repoChart, testChart{name: "from-repo", version: "1.0.0"})

	archiveChart := testChart{name: "from-tgz", version: "0.3.0"}
	archivePath, archiveDigest := archiveChart.pack(t)
	dirPath := testChart{name: "from-dir", version: "0.4.0"}.write(t)

	comps := []profile.Component{
		component("from-oci", ns, &profile.HelmChart{Chart: ociRef, Version: "0.1.0", Digest: ociDigest}, map[string]any{"message": "oci"}),
		component("from-repo", ns, &profile.HelmChart{Chart: "from-repo", Repo: chartRepo.URL, Version: "1.2.3"}, map[string]any{"message": "repo"}),
		component("from-tgz", ns, &profile.HelmChart{Chart: archivePath, Digest: archiveDigest}, map[string]any{"message": "tgz"}),
		component("from-dir", ns, &profile.HelmChart{Chart: dirPath, Version: "0.4.0"}, map[string]any{"message": "dir"}),
	}
	in := newInstaller(t, env, chartRepo.Client())
	recs, err := in.Install(t.Context(), comps)
	if err != nil {
		t.Fatal(err)
	}
	cs := env.Clientset()
	for name, want := range map[string]string{"from-oci": "oci", "from-repo": "repo", "from-tgz": "tgz", "from-dir": "dir"} {
		if got := configMessage(t, cs, ns, name); got != want {
			t.Errorf("%s: message %q, want %q (profile values over chart defaults)", name, got, want)
		}
		r := recordOf(t, recs, name)
		if r.Action != stack.ActionInstalled || r.Revision != 1 || r.Kind != stack.KindHelm || r.Duration == "" {
			t.Errorf("%s: record %+v, want installed at revision 1 with a duration", name, r)
		}
	}
	if r := recordOf(t, recs, "from-oci"); r.Digest != ociDigest || r.Source != stack.SourceOCI || r.Version != "0.1.0" {
		t.Errorf("oci record %+v, want digest %s", r, ociDigest)
	}
	if r := recordOf(t, recs, "from-repo"); r.Version != "1.2.3" || r.Source != stack.SourceRepo || !strings.HasPrefix(r.Digest, "sha256:") {
		t.Errorf("repo record %+v, want version 1.2.3 with a digest", r)
	}
	if r := recordOf(t, recs, "from-dir"); r.Digest != "" || r.Source != stack.SourceLocal {
		t.Errorf("dir record %+v, want no archive digest", r)
	}

	// The records survive in the run directory.
	dir := t.TempDir()
	if err := stack.WriteRecords(dir, recs); err != nil {
		t.Fatal(err)
	}
	back, err := stack.ReadRecords(dir)
	if err != nil || len(back) != len(recs) || back[0].Component != recs[0].Component {
		t.Fatalf("ReadRecords = %+v, %v", back, err)
	}
}

func TestUpgradeIdempotentRerunAndOverrides(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	cs := env.Clientset()
	dir := testChart{name: "app", version: "0.1.0"}.write(t)
	comp := component("app", ns, &profile.HelmChart{Chart: dir}, map[string]any{"message": "first"})

	// Both installers act for one run: each may upgrade what the other
	// installed.
	runID := ownership.NewRunID(time.Now())
	in := newInstaller(t, env, nil, stack.WithRunID(runID))
	recs, err := in.Install(t.Context(), []profile.Component{comp})
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[0]; r.Action != stack.ActionInstalled || r.Revision != 1 {
		t.Fatalf("first run: %+v", r)
	}

	// Same chart, same values: nothing changes.
	recs, err = in.Install(t.Context(), []profile.Component{comp})
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[0]; r.Action != stack.ActionUnchanged || r.Revision != 1 {
		t.Fatalf("re-run: %+v, want unchanged at revision 1", r)
	}

	// Changed values: upgrade, with --set winning over the profile.
	comp.Values = map[string]any{"message": "second", "replicas": 2}
	set, err := stack.ParseSet([]string{"app.message=from-set"})
	if err != nil {
		t.Fatal(err)
	}
	withSet := newInstaller(t, env, nil, stack.WithOverrides(set), stack.WithRunID(runID))
	recs, err = withSet.Install(t.Context(), []profile.Component{comp})
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[0]; r.Action != stack.ActionUpgraded || r.Revision != 2 {
		t.Fatalf("changed values: %+v, want upgraded to revision 2", r)
	}
	if got := configMessage(t, cs, ns, "app"); got != "from-set" {
		t.Fatalf("message %q, want from-set", got)
	}
	d, err := cs.AppsV1().Deployments(ns).Get(t.Context(), "app", metav1.GetOptions{})
	if err != nil || *d.Spec.Replicas != 2 {
		t.Fatalf("deployment after upgrade: %v %v, want 2 replicas from the profile values", d.Spec.Replicas, err)
	}

	// Changed chart content, same version: upgrade too.
	if err := os.WriteFile(filepath.Join(dir, "templates", "extra.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	recs, err = withSet.Install(t.Context(), []profile.Component{comp})
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[0]; r.Action != stack.ActionUpgraded || r.Revision != 3 {
		t.Fatalf("changed chart: %+v, want upgraded to revision 3", r)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "extra", metav1.GetOptions{}); err != nil {
		t.Fatalf("object added by the new chart: %v", err)
	}
}

func TestDependencyOrderConcurrencyAndReverseUninstall(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	chartDir := testChart{name: "layer", version: "0.1.0"}.write(t)
	h := func() *profile.HelmChart { return &profile.HelmChart{Chart: chartDir} }
	comps := []profile.Component{
		component("top", ns, h(), nil, "left", "right"),
		component("left", ns, h(), nil, "base"),
		component("right", ns, h(), nil, "base"),
		component("base", ns, h(), nil),
	}
	steps := &stepRecorder{}
	in := newInstaller(t, env, nil, stack.WithParallel(2), stack.WithProgress(steps))
	recs, err := in.Install(t.Context(), comps)
	if err != nil {
		t.Fatal(err)
	}
	base, left, right, top := recordOf(t, recs, "base"), recordOf(t, recs, "left"), recordOf(t, recs, "right"), recordOf(t, recs, "top")
	for _, r := range []stack.Record{left, right} {
		if r.Started.Before(base.Finished) {
			t.Errorf("%s started at %s, before its dependency base finished at %s", r.Component, r.Started, base.Finished)
		}
		if top.Started.Before(r.Finished) {
			t.Errorf("top started at %s, before its dependency %s finished at %s", top.Started, r.Component, r.Finished)
		}
	}
	if !left.Started.Before(right.Finished) || !right.Started.Before(left.Finished) {
		t.Errorf("independent components did not overlap: left %s–%s, right %s–%s", left.Started, left.Finished, right.Started, right.Finished)
	}

	steps.steps = nil
	if err := in.Uninstall(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	want := []string{"uninstall top", "uninstall right", "uninstall left", "uninstall base"}
	if got := steps.list(); !slices.Equal(got, want) {
		t.Fatalf("uninstall order %v, want %v", got, want)
	}
	for _, name := range []string{"base", "left", "right", "top"} {
		_, err := env.Clientset().CoreV1().ConfigMaps(ns).Get(t.Context(), name+"-settings", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s: configmap still there after uninstall (err %v)", name, err)
		}
	}
}

func TestDigestMismatchRefusedBeforeApplying(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	host, hc := ociRegistry(t)
	c := testChart{name: "pinned", version: "0.1.0"}
	tgz, _ := c.pack(t)
	ref := pushChart(t, host, hc, tgz, c)
	wrong := "sha256:" + strings.Repeat("0", 64)

	in := newInstaller(t, env, hc)
	comp := component("pinned", ns, &profile.HelmChart{Chart: ref, Version: "0.1.0", Digest: wrong}, nil)
	dependant := component("after", ns, &profile.HelmChart{Chart: ref, Version: "0.1.0"}, nil, "pinned")
	recs, err := in.Install(t.Context(), []profile.Component{comp, dependant})
	var mismatch *stack.DigestMismatchError
	if !errors.As(err, &mismatch) || mismatch.Want != wrong {
		t.Fatalf("error %v, want a DigestMismatchError pinning %s", err, wrong)
	}
	var dep *stack.DependencyFailedError
	if !errors.As(err, &dep) || dep.Dependency != "pinned" {
		t.Fatalf("error %v, want the dependant not started because pinned failed", err)
	}
	if r := recordOf(t, recs, "after"); r.Action != stack.ActionNotStarted {
		t.Fatalf("dependant record %+v, want not-started", r)
	}
	cms, err := env.Clientset().CoreV1().ConfigMaps(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		if cm.Name != "kube-root-ca.crt" {
			t.Errorf("configmap %s exists: something was applied", cm.Name)
		}
	}
	secrets, err := env.Clientset().CoreV1().Secrets(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "owner=helm"})
	if err != nil || len(secrets.Items) != 0 {
		t.Fatalf("helm release records in %s: %d (%v), want none", ns, len(secrets.Items), err)
	}
}

func TestFlakyRepositoryStillYieldsVerifiedChart(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	c := testChart{name: "flaky", version: "0.2.0"}
	r := newChartRepo(t, 3, true, c)
	in := newInstaller(t, env, r.Client())
	recs, err := in.Install(t.Context(), []profile.Component{
		component("flaky", ns, &profile.HelmChart{Chart: "flaky", Repo: r.URL, Version: "0.2.0"}, nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.requests.Load(); got < 6 {
		t.Fatalf("repository saw %d requests, want at least 3 failures + index + truncated + full archive", got)
	}
	if recs[0].Action != stack.ActionInstalled || !strings.HasPrefix(recs[0].Digest, "sha256:") {
		t.Fatalf("record %+v", recs[0])
	}
}

func TestNeverReadyFailsWithEventsAndRollsBack(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	cs := env.Clientset()
	dir := testChart{name: "stuck", version: "0.1.0", unschedulable: true}.write(t)
	comp := component("stuck", ns, &profile.HelmChart{Chart: dir}, nil)
	comp.Readiness.Timeout.Duration = 15 * time.Second
	dependant := component("later", ns, &profile.HelmChart{Chart: dir}, nil, "stuck")

	in := newInstaller(t, env, nil)
	start := time.Now()
	_, err := in.Install(t.Context(), []profile.Component{comp, dependant})
	elapsed := time.Since(start)
	if elapsed > 50*time.Second {
		t.Errorf("failure took %s, want it within the 15s timeout plus diagnosis", elapsed)
	}
	var notReady *stack.NotReadyError
	var compErr *stack.ComponentError
	if !errors.As(err, &notReady) || !errors.As(err, &compErr) || compErr.Component != "stuck" {
		t.Fatalf("error %v, want a NotReadyError of component stuck", err)
	}
	msg := err.Error()
	t.Logf("error:\n%s", msg)
	for _, want := range []string{"component stuck", "Deployment " + ns + "/stuck", "FailedScheduling", "rolled back: release stuck uninstalled"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
	if !strings.Contains(msg, "component later: not started") {
		t.Errorf("error does not say the dependant was not started:\n%s", msg)
	}
	if _, err := cs.AppsV1().Deployments(ns).Get(context.Background(), "stuck", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("deployment still there after the rollback (err %v)", err)
	}
	secrets, err := cs.CoreV1().Secrets(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "owner=helm,name=stuck"})
	if err != nil || len(secrets.Items) != 0 {
		t.Errorf("release stuck still recorded: %d secrets (%v)", len(secrets.Items), err)
	}
}

func TestManifestsServerSideApplied(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	file := filepath.Join(t.TempDir(), "manifests.yaml")
	content := `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.kaic.dev
spec:
  group: test.kaic.dev
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
---
apiVersion: test.kaic.dev/v1
kind: Widget
metadata:
  name: w
spec:
  size: 3
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: plain
data:
  a: b
`
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	comp := profile.Component{
		Name: "plain", Namespace: ns, Manifests: &profile.Manifests{Files: []string{file}},
		Readiness: &profile.Readiness{Timeout: profile.Duration{Duration: 30 * time.Second}, CRDs: []string{"widgets.test.kaic.dev"}},
	}
	in := newInstaller(t, env, nil)
	recs, err := in.Install(t.Context(), []profile.Component{comp})
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[0]; r.Action != stack.ActionApplied || len(r.Objects) != 3 {
		t.Fatalf("record %+v, want 3 objects applied (CRD, widget, configmap)", r)
	}
	cm, err := env.Clientset().CoreV1().ConfigMaps(ns).Get(t.Context(), "plain", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cm.ManagedFields) == 0 || cm.ManagedFields[0].Manager != stack.FieldManager || cm.ManagedFields[0].Operation != metav1.ManagedFieldsOperationApply {
		t.Fatalf("managed fields %+v, want an Apply by %s", cm.ManagedFields, stack.FieldManager)
	}
	if err := in.Uninstall(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Clientset().CoreV1().ConfigMaps(ns).Get(t.Context(), "plain", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("configmap after uninstall: %v, want not found", err)
	}
}

// A component of CRDs only, then one whose objects are of those kinds:
// the second must find the kinds, however discovery was read while the
// CRDs were still being established.
func TestComponentUsesKindsOfAnEarlierCRDOnlyComponent(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	group := "k" + strings.ToLower(rand.String(6)) + ".test.kaic.dev"
	dir := t.TempDir()
	crds := filepath.Join(dir, "crds.yaml")
	crs := filepath.Join(dir, "gadget.yaml")
	if err := os.WriteFile(crds, []byte(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.`+group+`
spec:
  group: `+group+`
  names: {kind: Gadget, plural: gadgets, singular: gadget, listKind: GadgetList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crs, []byte(`apiVersion: `+group+`/v1
kind: Gadget
metadata:
  name: g
spec:
  size: 1
`), 0o644); err != nil {
		t.Fatal(err)
	}
	timeout := &profile.Readiness{Timeout: profile.Duration{Duration: 30 * time.Second}}
	comps := []profile.Component{
		{Name: "gadget-crds", Manifests: &profile.Manifests{Files: []string{crds}}, Readiness: timeout},
		{Name: "gadgets", Namespace: ns, Manifests: &profile.Manifests{Files: []string{crs}}, DependsOn: []string{"gadget-crds"}, Readiness: timeout},
	}
	in := newInstaller(t, env, nil)
	recs, err := in.Install(t.Context(), comps)
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	t.Cleanup(func() { _ = in.Uninstall(context.WithoutCancel(t.Context()), recs) })
	if len(recs) != 2 || len(recs[1].Objects) != 1 || recs[1].Objects[0].Kind != "Gadget" {
		t.Fatalf("records %+v", recs)
	}
}

// An install interrupted while a component waits for readiness says that
// its dependants were interrupted, not that something failed.
func TestInterruptedInstallSaysInterrupted(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	dir := testChart{name: "waiting", version: "0.1.0", unschedulable: true}.write(t)
	comp := component("waiting", ns, &profile.HelmChart{Chart: dir}, nil)
	dependant := component("next", ns, &profile.HelmChart{Chart: dir}, nil, "waiting")

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(3*time.Second, cancel) // mid-wait: the Deployment never becomes ready
	_, err := newInstaller(t, env, nil).Install(ctx, []profile.Component{comp, dependant})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want the interruption", err)
	}
	var dep *stack.DependencyFailedError
	if !errors.As(err, &dep) || !strings.Contains(dep.Error(), "not started: interrupted while waiting, which it depends on, was installing") {
		t.Fatalf("error %v, want the dependant reported interrupted", err)
	}
	if strings.Contains(err.Error(), "which failed") {
		t.Errorf("an interruption reads as a failure:\n%v", err)
	}
}

// A component whose image cannot be pulled fails when the kubelet has
// reported the pull failure for a while, not at the readiness timeout. No
// kubelet runs here: the test writes the container state a kubelet
// reports for an image it cannot pull.
func TestImagePullFailureEndsTheWaitEarly(t *testing.T) {
	defer stack.SetPullGrace(3 * time.Second)()
	env := testenv.Shared(t)
	ns := namespace(t, env)
	cs := env.Clientset()
	dir := testChart{name: "unpullable", version: "0.1.0", unschedulable: true}.write(t)
	comp := component("unpullable", ns, &profile.HelmChart{Chart: dir}, nil)
	comp.Readiness.Timeout.Duration = 2 * time.Minute

	ctx := t.Context()
	go func() {
		for ctx.Err() == nil {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err == nil && len(pods.Items) > 0 {
				pod := pods.Items[0]
				pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: pod.Spec.Containers[0].Name, Image: pod.Spec.Containers[0].Image,
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff",
						Message: `Back-off pulling image "registry.example/kaic-test/app:1.0"`}}}}
				if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, &pod, metav1.UpdateOptions{}); err == nil {
					return
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	start := time.Now()
	_, err := newInstaller(t, env, nil).Install(ctx, []profile.Component{comp})
	elapsed := time.Since(start)
	var pull *stack.ImagePullError
	if !errors.As(err, &pull) {
		t.Fatalf("error %v, want an ImagePullError", err)
	}
	for _, want := range []string{"image registry.example/kaic-test/app:1.0", "ImagePullBackOff", "Back-off pulling image"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if elapsed > time.Minute {
		t.Errorf("the failure took %s, want well before the 2m readiness timeout", elapsed)
	}
}

// An object of the run still being deleted (a teardown just before) is
// applied again only once it is gone, not patched on its way out.
func TestManifestsWaitForTheRunsObjectBeingDeleted(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	file := filepath.Join(t.TempDir(), "manifests.yaml")
	if err := os.WriteFile(file, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: again\ndata:\n  round: two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runID := ownership.NewRunID(time.Now())
	cms := env.Clientset().CoreV1().ConfigMaps(ns)
	old := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "again", Labels: ownership.Labels(runID), Finalizers: []string{"test.kaic.dev/hold"}},
		Data: map[string]string{"round": "one"}}
	if _, err := cms.Create(t.Context(), old, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(t.Context(), "again", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The finalizer goes a second later, as a controller's would.
	released := time.Now().Add(time.Second)
	go func() {
		time.Sleep(time.Until(released))
		_, _ = cms.Patch(context.Background(), "again", types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{})
	}()
	comp := profile.Component{Name: "again", Namespace: ns, Manifests: &profile.Manifests{Files: []string{file}}}
	in := newInstaller(t, env, nil, stack.WithRunID(runID))
	if _, err := in.Install(t.Context(), []profile.Component{comp}); err != nil {
		t.Fatal(err)
	}
	if time.Now().Before(released) {
		t.Error("the install ended before the object being deleted was gone")
	}
	cm, err := cms.Get(t.Context(), "again", metav1.GetOptions{})
	if err != nil || cm.Data["round"] != "two" || cm.DeletionTimestamp != nil {
		t.Fatalf("after the install: %v, %v; want the new object", cm, err)
	}
}
