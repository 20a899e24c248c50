package stack_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/fetch"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
	"github.com/kaic-dev/kaic/stacks"
)

// goProxy serves modules in the GOPROXY layout (<escaped path>/@v/list,
// <version>.info, .mod, .zip) and plain files, on loopback with TLS. Its
// next failNext requests are answered 503.
type goProxy struct {
	*httptest.Server
	failNext atomic.Int32
	failed   atomic.Int32

	mu    sync.Mutex
	files map[string][]byte
	hits  map[string]int
}

func newGoProxy(t *testing.T) *goProxy {
	t.Helper()
	p := &goProxy{files: map[string][]byte{}, hits: map[string]int{}}
	p.Server = httptest.NewTLSServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

func (p *goProxy) serve(w http.ResponseWriter, r *http.Request) {
	if p.failNext.Add(-1) >= 0 {
		p.failed.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	p.mu.Lock()
	data, ok := p.files[r.URL.Path]
	p.hits[r.URL.Path]++
	p.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write(data)
}

func (p *goProxy) put(path string, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files[path] = data
}

func (p *goProxy) hitsOf(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[path]
}

// addModule builds the zip of a module holding files (go.mod is added) the
// way the go command does, publishes it with its .info and .mod, and returns
// its go.sum hash (h1:) and the path of its zip on the proxy.
func (p *goProxy) addModule(t *testing.T, modPath, version string, files map[string]string) (sum, zipPath string) {
	t.Helper()
	dir := t.TempDir()
	gomod := "module " + modPath + "\n\ngo 1.22\n"
	files["go.mod"] = gomod
	for name, content := range files {
		full := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := modzip.CreateFromDir(&buf, module.Version{Path: modPath, Version: version}, dir); err != nil {
		t.Fatal(err)
	}
	zipFile := filepath.Join(t.TempDir(), "module.zip")
	if err := os.WriteFile(zipFile, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := dirhash.HashZip(zipFile, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	escPath, err := module.EscapePath(modPath)
	if err != nil {
		t.Fatal(err)
	}
	base := "/" + escPath + "/@v/"
	p.put(base+"list", []byte(version+"\n"))
	p.put(base+version+".info", fmt.Appendf(nil, `{"Version":%q,"Time":"2026-01-02T03:04:05Z"}`, version))
	p.put(base+version+".mod", []byte(gomod))
	p.put(base+version+".zip", buf.Bytes())
	return sum, base + version + ".zip"
}

func sha256Hex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// configMapExists reports whether a ConfigMap exists, failing on other
// errors.
func configMapExists(t *testing.T, env *testenv.Env, ns, name string) bool {
	t.Helper()
	_, err := env.Clientset().CoreV1().ConfigMaps(ns).Get(t.Context(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func crdExists(t *testing.T, env *testenv.Env, name string) bool {
	t.Helper()
	_, err := env.Dynamic().Resource(crdResource).Get(t.Context(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func configMapYAML(name string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\ndata:\n  from: test\n", name)
}

// Manifests from a Go module: the zip comes through the module proxy
// protocol, is checked against its go.sum hash before anything is applied,
// and the YAML files of its directory are applied with server-side apply.
func TestModuleManifestsVerifiedBeforeApplying(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	const crd = "gizmos.module.test.kaic.dev"
	deleteCRDAtEnd(t, env, crd)

	proxy := newGoProxy(t)
	// An upper-case letter exercises the proxy's path escaping (!kaic).
	const modPath = "example.test/Kaic/manifests"
	sum, zipPath := proxy.addModule(t, modPath, "v0.3.0", map[string]string{
		"config/crd/gizmos.yaml":      crdYAML("module.test.kaic.dev", "Gizmo", "gizmos"),
		"config/crd/settings.yml":     configMapYAML("module-settings"),
		"config/crd/skipped.yaml":     configMapYAML("module-skipped"),
		"config/crd/README.md":        "not a manifest\n",
		"config/crd/nested/deep.yaml": configMapYAML("module-nested"),
		"config/other/elsewhere.yaml": configMapYAML("module-elsewhere"),
		"config/crd/zz-instance.yaml": "apiVersion: module.test.kaic.dev/v1\nkind: Gizmo\nmetadata:\n  name: first\nspec:\n  size: 2\n",
	})
	if !strings.HasPrefix(zipPath, "/example.test/!kaic/manifests/@v/") {
		t.Fatalf("zip published at %s: the module path is not escaped", zipPath)
	}
	extra := []byte(configMapYAML("from-url"))
	proxy.put("/files/extra.yaml", extra)

	comp := func(sum, urlSHA string) profile.Component {
		return profile.Component{
			Name: "gizmos", Namespace: ns,
			Manifests: &profile.Manifests{
				Modules: []profile.ModuleManifest{{Path: modPath, Version: "v0.3.0", Sum: sum, Dir: "config/crd", Exclude: []string{"skipped.yaml"}}},
				URLs:    []profile.PinnedURL{{URL: proxy.URL + "/files/extra.yaml", SHA256: urlSHA}},
			},
			Readiness: &profile.Readiness{Timeout: profile.Duration{Duration: 30 * time.Second}, CRDs: []string{crd}},
		}
	}
	nothingApplied := func(when string) {
		t.Helper()
		if crdExists(t, env, crd) {
			t.Errorf("%s: CRD %s was applied", when, crd)
		}
		for _, cm := range []string{"module-settings", "from-url"} {
			if configMapExists(t, env, ns, cm) {
				t.Errorf("%s: configmap %s was applied", when, cm)
			}
		}
	}

	// 1. A hash that is not the module's: refused, nothing applied.
	in := newInstaller(t, env, proxy.Client(), stack.WithGoProxy(proxy.URL))
	other := sha256.Sum256([]byte("another module"))
	wrong := "h1:" + base64.StdEncoding.EncodeToString(other[:])
	recs, err := in.Install(t.Context(), []profile.Component{comp(wrong, sha256Hex(extra))})
	var mismatch *stack.ModuleHashMismatchError
	if !errors.As(err, &mismatch) || mismatch.Want != wrong || mismatch.Got != sum || mismatch.Module != modPath {
		t.Fatalf("error %v, want a ModuleHashMismatchError (want %s, got %s)", err, wrong, sum)
	}
	if !strings.Contains(err.Error(), "nothing was applied") || recs[0].Action != stack.ActionFailed || len(recs[0].Objects) != 0 {
		t.Errorf("error %q, record %+v", err, recs[0])
	}
	nothingApplied("wrong module hash")

	// 2. The right module hash, but another source of the component (a
	// pinned URL) does not match: still nothing applied, the module's
	// objects included.
	_, err = in.Install(t.Context(), []profile.Component{comp(sum, strings.Repeat("0", 64))})
	var sumErr *fetch.ChecksumError
	if !errors.As(err, &sumErr) || !strings.Contains(err.Error(), "/files/extra.yaml") {
		t.Fatalf("error %v, want a checksum error naming the URL", err)
	}
	nothingApplied("wrong URL checksum")

	// 3. Everything right, from a proxy that fails its first requests (a
	// new cache, so that nothing is served from an earlier download).
	fresh := newInstaller(t, env, proxy.Client(), stack.WithGoProxy(proxy.URL))
	proxy.failNext.Store(3)
	zipHits := proxy.hitsOf(zipPath)
	recs, err = fresh.Install(t.Context(), []profile.Component{comp(sum, sha256Hex(extra))})
	if err != nil {
		t.Fatal(err)
	}
	if got := proxy.failed.Load(); got != 3 {
		t.Errorf("the proxy failed %d requests, want 3", got)
	}
	if proxy.hitsOf(zipPath) <= zipHits {
		t.Error("the zip was not downloaded again into the new cache")
	}
	if r := recs[0]; r.Action != stack.ActionApplied || len(r.Objects) != 4 {
		t.Errorf("record %+v, want 4 objects applied: CRD, gizmo, settings, from-url", r)
	}
	if err := testenv.WaitForCRDEstablished(t.Context(), env.Dynamic(), crd); err != nil {
		t.Error(err)
	}
	cm, err := env.Clientset().CoreV1().ConfigMaps(ns).Get(t.Context(), "module-settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cm.ManagedFields) == 0 || cm.ManagedFields[0].Manager != stack.FieldManager || cm.ManagedFields[0].Operation != metav1.ManagedFieldsOperationApply {
		t.Errorf("managed fields %+v, want an Apply by %s", cm.ManagedFields, stack.FieldManager)
	}
	for _, name := range []string{"from-url"} {
		if !configMapExists(t, env, ns, name) {
			t.Errorf("configmap %s not applied", name)
		}
	}
	for _, name := range []string{"module-skipped", "module-nested", "module-elsewhere"} {
		if configMapExists(t, env, ns, name) {
			t.Errorf("configmap %s applied: excluded, nested or outside the directory", name)
		}
	}

	if err := fresh.Uninstall(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	if configMapExists(t, env, ns, "module-settings") {
		t.Error("configmap module-settings still there after uninstall")
	}
}

// Manifests pinned by URL and sha256, end to end; content that changed on
// the server is refused and nothing is applied.
func TestPinnedManifestURL(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	srv := newGoProxy(t)
	content := []byte(configMapYAML("pinned-a") + "---\n" + configMapYAML("pinned-b"))
	srv.put("/release/v1/manifests.yaml", content)
	comp := profile.Component{
		Name: "pinned", Namespace: ns,
		Manifests: &profile.Manifests{URLs: []profile.PinnedURL{{URL: srv.URL + "/release/v1/manifests.yaml", SHA256: "sha256:" + sha256Hex(content)}}},
		Readiness: &profile.Readiness{Timeout: profile.Duration{Duration: 20 * time.Second}},
	}
	srv.failNext.Store(2)
	recs, err := newInstaller(t, env, srv.Client()).Install(t.Context(), []profile.Component{comp})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs[0].Objects) != 2 || !configMapExists(t, env, ns, "pinned-a") || !configMapExists(t, env, ns, "pinned-b") {
		t.Fatalf("record %+v: both configmaps should be applied", recs[0])
	}

	// The server now serves other content under the same URL.
	other := namespace(t, env)
	comp.Namespace = other
	srv.put("/release/v1/manifests.yaml", []byte(configMapYAML("pinned-a")+"---\n"+configMapYAML("intruder")))
	_, err = newInstaller(t, env, srv.Client()).Install(t.Context(), []profile.Component{comp})
	var sumErr *fetch.ChecksumError
	if !errors.As(err, &sumErr) || sumErr.Want != sha256Hex(content) || !strings.Contains(err.Error(), srv.URL+"/release/v1/manifests.yaml") {
		t.Fatalf("error %v, want a sha256 mismatch naming the URL", err)
	}
	for _, name := range []string{"pinned-a", "intruder"} {
		if configMapExists(t, env, other, name) {
			t.Errorf("configmap %s applied from tampered content", name)
		}
	}
}

// goProxyURL is the module proxy kaic uses by default: the first URL of
// $GOPROXY, else proxy.golang.org.
func goProxyURL() string {
	for _, p := range strings.FieldsFunc(os.Getenv("GOPROXY"), func(r rune) bool { return r == ',' || r == '|' }) {
		if strings.HasPrefix(p, "https://") || strings.HasPrefix(p, "http://") {
			return strings.TrimSuffix(p, "/")
		}
	}
	return "https://proxy.golang.org"
}

// The built-in gateway-api component, as pinned, from the real module
// proxy: proves its version, hash and directory are right.
func TestBuiltinGatewayAPIFromRealModuleProxy(t *testing.T) {
	catalog, err := profile.LoadComponentCatalog(stacks.FS)
	if err != nil {
		t.Fatal(err)
	}
	comp, ok := catalog.Get("gateway-api")
	if !ok || comp.Manifests == nil || len(comp.Manifests.Modules) != 1 {
		t.Fatalf("built-in gateway-api: %+v, want manifests from one module", comp)
	}
	mod := comp.Manifests.Modules[0]
	proxy := goProxyURL()
	escPath, err := module.EscapePath(mod.Path)
	if err != nil {
		t.Fatal(err)
	}
	info := proxy + "/" + escPath + "/@v/" + mod.Version + ".info"
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, info, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Skipf("Go module proxy unreachable (%v): skipping the real gateway-api install", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Skipf("Go module proxy answered %s for %s: skipping the real gateway-api install", resp.Status, info)
	}

	env := testenv.Shared(t)
	in := newInstaller(t, env, nil) // default module proxy, as kaic uses it
	recs, err := in.Install(t.Context(), []profile.Component{comp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := in.Uninstall(context.Background(), recs); err != nil {
			t.Errorf("uninstall gateway-api: %v", err)
		}
	})
	var crds []string
	for _, o := range recs[0].Objects {
		if o.Kind == "CustomResourceDefinition" {
			crds = append(crds, o.Name)
		}
	}
	if len(crds) < len(comp.Readiness.CRDs) {
		t.Fatalf("applied CRDs %v, want at least %v", crds, comp.Readiness.CRDs)
	}
	for _, name := range crds {
		if !strings.HasSuffix(name, ".gateway.networking.k8s.io") {
			t.Errorf("unexpected CRD %s", name)
		}
		if err := testenv.WaitForCRDEstablished(t.Context(), env.Dynamic(), name); err != nil {
			t.Errorf("CRD %s: %v", name, err)
		}
	}
	t.Logf("gateway-api %s: %d objects applied, CRDs established: %s", mod.Version, len(recs[0].Objects), strings.Join(crds, ", "))
}
