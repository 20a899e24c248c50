package stack_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/kaic-dev/kaic/pkg/fetch"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
)

func TestParseSet(t *testing.T) {
	tests := []struct {
		args    []string
		want    stack.Overrides
		wantErr bool
	}{
		{args: []string{"kueue.a.b=1", "kueue.c=x,d=true"}, want: stack.Overrides{"kueue": {"a": map[string]any{"b": int64(1)}, "c": "x", "d": true}}},
		{args: []string{"cert-manager.crds.enabled=false", "kueue.list={a,b}"}, want: stack.Overrides{"cert-manager": {"crds": map[string]any{"enabled": false}}, "kueue": {"list": []any{"a", "b"}}}},
		{args: []string{"noDot=1"}, wantErr: true},
		{args: []string{"kueue.=1"}, wantErr: true},
		{args: []string{"kueue.novalue"}, wantErr: true},
	}
	for _, tt := range tests {
		got, err := stack.ParseSet(tt.args)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseSet(%q) error %v, want error %v", tt.args, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseSet(%q) = %#v, want %#v", tt.args, got, tt.want)
		}
	}
}

func offlineInstaller(t *testing.T, opts ...stack.Option) *stack.Installer {
	t.Helper()
	base := []stack.Option{stack.WithCache(&fetch.Cache{Dir: t.TempDir(), Offline: true})}
	in, err := stack.New(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestImagesRendersChartsWithValues(t *testing.T) {
	dir := testChart{name: "imgs", version: "0.1.0"}.write(t)
	set, err := stack.ParseSet([]string{"b.image=registry.example/kaic-test/override:2.0"})
	if err != nil {
		t.Fatal(err)
	}
	in := offlineInstaller(t, stack.WithOverrides(set))
	imgs, err := in.Images(t.Context(), []profile.Component{
		{Name: "a", Namespace: "x", Helm: &profile.HelmChart{Chart: dir}},
		{Name: "b", Namespace: "y", Helm: &profile.HelmChart{Chart: dir}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []stack.Image{
		{Image: "registry.example/kaic-test/app:1.0", Components: []string{"a"}},
		{Image: "registry.example/kaic-test/init:1.0", Components: []string{"a", "b"}},
		{Image: "registry.example/kaic-test/override:2.0", Components: []string{"b"}},
	}
	if !reflect.DeepEqual(imgs, want) {
		t.Fatalf("Images = %+v, want %+v", imgs, want)
	}
}

func TestEmbeddedChartMissingFailsClearly(t *testing.T) {
	in := offlineInstaller(t, stack.WithEmbeddedCharts(fstest.MapFS{}))
	dir := testChart{name: "present", version: "0.1.0"}.write(t)
	imgs, err := in.Images(t.Context(), []profile.Component{
		{Name: "kaic-fake-gpu", Helm: &profile.HelmChart{Chart: "kaic://kaic-fake-gpu"}},
		{Name: "other", Helm: &profile.HelmChart{Chart: dir}},
	})
	if !errors.Is(err, stack.ErrEmbeddedChartMissing) || !strings.Contains(err.Error(), "kaic://kaic-fake-gpu") {
		t.Fatalf("error %v, want ErrEmbeddedChartMissing naming the chart", err)
	}
	if len(imgs) != 2 {
		t.Fatalf("images %+v: the other component's images should still be listed", imgs)
	}
}

func TestEmbeddedChartLoads(t *testing.T) {
	fsys := fstest.MapFS{
		"tiny/Chart.yaml":         {Data: []byte("apiVersion: v2\nname: tiny\nversion: 0.0.1\n")},
		"tiny/templates/pod.yaml": {Data: []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: c\n      image: {{ .Values.image }}\n")},
		"tiny/values.yaml":        {Data: []byte("image: registry.example/tiny:1\n")},
	}
	in := offlineInstaller(t, stack.WithEmbeddedCharts(fsys))
	imgs, err := in.Images(t.Context(), []profile.Component{{Name: "tiny", Helm: &profile.HelmChart{Chart: "kaic://tiny"}}})
	if err != nil || len(imgs) != 1 || imgs[0].Image != "registry.example/tiny:1" {
		t.Fatalf("Images = %+v, %v", imgs, err)
	}
}

func TestVersionPinMismatchRefused(t *testing.T) {
	dir := testChart{name: "v", version: "0.2.0"}.write(t)
	in := offlineInstaller(t)
	_, err := in.Images(t.Context(), []profile.Component{{Name: "v", Helm: &profile.HelmChart{Chart: dir, Version: "0.1.0"}}})
	var mismatch *stack.VersionMismatchError
	if !errors.As(err, &mismatch) || mismatch.Got != "0.2.0" {
		t.Fatalf("error %v, want a VersionMismatchError", err)
	}
}

// A later record replaces an earlier one of its component, but what an
// earlier run created is not forgotten: created objects the new record
// lacks stay, and an adopted release stays marked adopted.
func TestMergeRecordsKeepsWhatEarlierRunsCreated(t *testing.T) {
	crd := stack.ObjectRef{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition", Name: "a.example"}
	pre := stack.ObjectRef{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition", Name: "b.example", PreExisting: true, Owner: "helm"}
	earlier := []stack.Record{
		{Component: "crds", Kind: stack.KindManifests, Action: stack.ActionApplied, Objects: []stack.ObjectRef{crd, pre}},
		{Component: "app", Kind: stack.KindHelm, Release: "app", Namespace: "ns", Action: stack.ActionUpgraded, Adopted: true, Owner: "Helm"},
		{Component: "other", Kind: stack.KindHelm, Action: stack.ActionInstalled},
	}
	now := []stack.Record{
		{Component: "crds", Kind: stack.KindManifests, Action: stack.ActionNotStarted},
		{Component: "app", Kind: stack.KindHelm, Release: "app", Namespace: "ns", Action: stack.ActionUnchanged},
		{Component: "new", Kind: stack.KindHelm, Action: stack.ActionInstalled},
	}
	got := stack.MergeRecords(earlier, now)
	if len(got) != 4 || got[0].Component != "crds" || got[1].Component != "app" || got[2].Component != "other" || got[3].Component != "new" {
		t.Fatalf("merged %+v", got)
	}
	if got[0].Action != stack.ActionNotStarted || !reflect.DeepEqual(got[0].Objects, []stack.ObjectRef{crd}) {
		t.Errorf("crds merged as %+v, want not-started keeping the created CRD only", got[0])
	}
	if !got[1].Adopted || got[1].Owner != "Helm" || got[1].Action != stack.ActionUnchanged {
		t.Errorf("app merged as %+v, want unchanged and still adopted from Helm", got[1])
	}
	if !got[0].Created() || (stack.Record{PreExisting: true}).Created() || !(stack.Record{PreExisting: true, Adopted: true}).Created() {
		t.Errorf("Created() does not follow pre-existing and adopted")
	}
}
