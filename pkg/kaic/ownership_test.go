package kaic_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/ownership"
	"github.com/kaic-dev/kaic/pkg/stack"
)

func crdObject(plural, kind, group string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": plural + "." + group},
		"spec": map[string]any{
			"group": group, "scope": "Namespaced",
			"names": map[string]any{"kind": kind, "plural": plural, "singular": strings.ToLower(kind), "listKind": kind + "List"},
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
			}},
		},
	}}
}

// installWithHelm installs the chart of a profile written by
// writeChartProfile as release name in ns with the Helm SDK alone, as a
// user would: no kaic labels.
func installWithHelm(t *testing.T, env *testenv.Env, profile, name, ns string) {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &env.KubeconfigPath, &ns
	cfg := action.NewConfiguration()
	if err := cfg.Init(flags, ns, "secret"); err != nil {
		t.Fatal(err)
	}
	chrt, err := loader.Load(filepath.Join(filepath.Dir(profile), "hello"))
	if err != nil {
		t.Fatal(err)
	}
	act := action.NewInstall(cfg)
	act.ReleaseName, act.Namespace, act.WaitStrategy = name, ns, kube.HookOnlyStrategy
	if _, err := act.Run(chrt, map[string]any{"message": "the user's"}); err != nil {
		t.Fatal(err)
	}
}

// On a cluster that already has a release of a component's name and one
// of a manifests component's CRDs: install stops on the release, --adopt
// takes it over, and down removes the release and the CRD the run created
// but not the CRD that was there before.
func TestDownRemovesOnlyWhatTheRunCreated(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	env := testenv.Shared(t)
	ns, err := env.CreateNamespace(t.Context(), "kaic-own-")
	if err != nil {
		t.Fatal(err)
	}
	profile := writeChartProfile(t, ns, "hello")
	group := "d" + strings.ToLower(rand.String(6)) + ".test.kaic.dev"
	old, fresh := crdObject("olds", "Old", group), crdObject("news", "New", group)
	var docs []string
	for _, o := range []*unstructured.Unstructured{old, fresh} {
		data, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(data))
	}
	manifests := filepath.Join(filepath.Dir(profile), "crds.yaml")
	if err := os.WriteFile(manifests, []byte(strings.Join(docs, "\n---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(profile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "      - name: crds\n        manifests:\n          files: [%s]\n", manifests)
	f.Close()

	dyn := env.Dynamic()
	if _, err := dyn.Resource(testenv.CRDResource).Create(t.Context(), old, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = dyn.Resource(testenv.CRDResource).Delete(t.Context(), old.GetName(), metav1.DeleteOptions{})
		_ = dyn.Resource(testenv.CRDResource).Delete(t.Context(), fresh.GetName(), metav1.DeleteOptions{})
	})
	installWithHelm(t, env, profile, "hello", ns)
	cs := env.Clientset()
	userRelease := func(when string) {
		t.Helper()
		secrets, err := cs.CoreV1().Secrets(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "owner=helm,name=hello"})
		if err != nil || len(secrets.Items) != 1 || secrets.Items[0].Labels["version"] != "1" {
			t.Errorf("%s: release hello has %d revisions (%v), want the user's one", when, len(secrets.Items), err)
		}
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "hello-settings", metav1.GetOptions{})
		if err != nil || cm.Data["message"] != "the user's" {
			t.Errorf("%s: the release's ConfigMap %v, %v; want the user's value", when, cm.Data, err)
		}
	}

	dir := filepath.Join(t.TempDir(), "run")
	client := kaic.New()
	opts := kaic.RunOptions{Profile: profile, Dir: dir, Cluster: kaic.Target{Kubeconfig: env.KubeconfigPath}}
	_, err = client.Install(t.Context(), opts)
	var foreign *stack.ForeignReleaseError
	if !errors.As(err, &foreign) || foreign.Release != "hello" || foreign.Namespace != ns {
		t.Fatalf("install over the user's release: %v, want a ForeignReleaseError naming hello in %s", err, ns)
	}
	userRelease("after the refused install")
	recs, err := stackRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]stack.Record{}
	for _, r := range recs {
		byName[r.Component] = r
	}
	if r := byName["hello"]; !r.PreExisting || r.Owner != ownership.Owner(nil) || r.RunID == "" {
		t.Errorf("record of hello %+v, want pre-existing, owned by nobody kaic knows", r)
	}

	// down --stacks-only now removes the CRD the run created and leaves
	// the release and the CRD that were there.
	if err := client.Down(t.Context(), kaic.DownOptions{Dir: dir, StacksOnly: true}); err != nil {
		t.Fatalf("down --stacks-only: %v", err)
	}
	userRelease("after down --stacks-only")
	if _, err := dyn.Resource(testenv.CRDResource).Get(t.Context(), old.GetName(), metav1.GetOptions{}); err != nil {
		t.Errorf("the CRD that was there before, after down: %v", err)
	}

	// Adopted, the release is the run's, and down removes it.
	opts.Adopt = []string{"hello"}
	if _, err := client.Install(t.Context(), opts); err != nil {
		t.Fatalf("install adopting hello: %v", err)
	}
	recs, err = stackRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		byName[r.Component] = r
	}
	if r := byName["hello"]; !r.Adopted || r.PreExisting || r.Owner == "" {
		t.Errorf("record of hello %+v, want adopted", r)
	}
	if r := byName["crds"]; len(r.Objects) != 2 || !r.Objects[0].PreExisting || r.Objects[1].PreExisting {
		t.Errorf("record of crds %+v, want olds pre-existing and news created", r)
	}
	if cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "hello-settings", metav1.GetOptions{}); err != nil || cm.Data["message"] != "from-profile" {
		t.Errorf("adopted release's ConfigMap %v, %v; want the profile's value", cm.Data, err)
	}
	// kaic down on a cluster kaic did not create removes what the run
	// installed on it.
	if err := client.Down(t.Context(), kaic.DownOptions{Dir: dir}); err != nil {
		t.Fatalf("down: %v", err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "hello-settings", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the adopted release's ConfigMap after down: %v, want not found", err)
	}
	if n, err := dyn.Resource(testenv.CRDResource).Get(t.Context(), fresh.GetName(), metav1.GetOptions{}); err == nil && n.GetDeletionTimestamp() == nil {
		t.Errorf("the CRD the run created is still there after down")
	}
	if _, err := dyn.Resource(testenv.CRDResource).Get(t.Context(), old.GetName(), metav1.GetOptions{}); err != nil {
		t.Errorf("the CRD that was there before, after down: %v", err)
	}
}
