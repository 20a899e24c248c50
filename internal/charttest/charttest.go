// Package charttest renders kaic's embedded charts in tests, offline,
// the way Helm would install them.
package charttest

import (
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	kubefake "helm.sh/helm/v4/pkg/kube/fake"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/kaic-dev/kaic/charts"
)

// RenderEmbedded renders an embedded chart (charts/<name>) offline with
// the Helm SDK, as a client-side dry-run install of release name into ns,
// and decodes the objects. A chart that does not render (a required
// value missing) is an error; anything else wrong fails t.
func RenderEmbedded(t testing.TB, name, ns string, values map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	sub, err := fs.Sub(charts.FS, name)
	if err != nil {
		t.Fatal(err)
	}
	var files []*archive.BufferedFile
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(sub, p)
		files = append(files, &archive.BufferedFile{Name: p, Data: data})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	cfg := action.NewConfiguration()
	cfg.Releases = storage.Init(driver.NewMemory())
	cfg.KubeClient = &kubefake.PrintingKubeClient{Out: io.Discard}
	cfg.Capabilities = common.DefaultCapabilities.Copy()
	act := action.NewInstall(cfg)
	act.ReleaseName, act.Namespace = name, ns
	act.DryRunStrategy = action.DryRunClient
	r, err := act.RunWithContext(t.Context(), ch, values)
	if err != nil {
		return nil, err
	}
	rel, ok := r.(*release.Release)
	if !ok {
		t.Fatalf("unexpected release type %T", r)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(rel.Manifest), 4096)
	var objs []*unstructured.Unstructured
	for {
		var raw map[string]any
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			t.Fatal(err)
		}
		if len(raw) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: raw})
		}
	}
}
