package inference

import (
	"archive/zip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// inferenceExtension is the Gateway API Inference Extension release whose
// InferencePool CRD the ingress tests install.
const (
	inferenceExtensionModule  = "sigs.k8s.io/gateway-api-inference-extension"
	inferenceExtensionVersion = "v1.5.0"
	inferencePoolCRDFile      = "config/crd/bases/inference.networking.k8s.io_inferencepools.yaml"
)

// installGatewayAPI applies the CRDs of the built-in gateway-api stack
// component, as pinned, to env.
func installGatewayAPI(t *testing.T, env *testenv.Env) {
	t.Helper()
	catalog, err := profile.LoadComponentCatalog(nil)
	if err != nil {
		t.Fatal(err)
	}
	comp, ok := catalog.Get("gateway-api")
	if !ok || comp.Manifests == nil || len(comp.Manifests.Modules) != 1 {
		t.Fatalf("built-in gateway-api: %+v, want manifests from one module", comp)
	}
	mod := comp.Manifests.Modules[0]
	dir := moduleFiles(t, mod.Path, mod.Version, mod.Sum, func(name string) bool {
		return path.Dir(name) == strings.Trim(mod.Dir, "/") && strings.HasSuffix(name, ".yaml")
	})
	if _, err := testenv.ApplyManifests(t.Context(), env, dir, nil); err != nil {
		t.Fatalf("installing the Gateway API CRDs of %s@%s: %v", mod.Path, mod.Version, err)
	}
}

// installInferencePool applies the InferencePool CRD of the Gateway API
// Inference Extension to env.
func installInferencePool(t *testing.T, env *testenv.Env) {
	t.Helper()
	dir := moduleFiles(t, inferenceExtensionModule, inferenceExtensionVersion, "", func(name string) bool { return name == inferencePoolCRDFile })
	if _, err := testenv.ApplyManifests(t.Context(), env, dir, nil); err != nil {
		t.Fatalf("installing the InferencePool CRD of %s@%s: %v", inferenceExtensionModule, inferenceExtensionVersion, err)
	}
}

// moduleFiles copies the files of module@version that keep selects (by
// their path in the module) into a temporary directory. The module zip
// comes from the module cache, downloaded through the Go module proxy if
// missing (the go command checks it against the checksum database); sum,
// if given, must be its hash. Without the proxy, t is skipped.
func moduleFiles(t *testing.T, module, version, sum string, keep func(string) bool) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = t.TempDir()
	// The go command may refuse to use a module that needs a newer Go
	// (an error in its answer) and still download and report its zip.
	out, _ := cmd.Output()
	var info struct{ Zip, Sum, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Zip == "" {
		if testenv.InCI() {
			t.Fatalf("downloading %s@%s: %s (%v)", module, version, out, err)
		}
		t.Skipf("cannot download %s@%s from the Go module proxy (%s): skipping", module, version, strings.TrimSpace(info.Error))
	}
	if sum != "" && info.Sum != sum {
		t.Fatalf("%s@%s has hash %s, the stack pins %s", module, version, info.Sum, sum)
	}
	zr, err := zip.OpenReader(info.Zip)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	dir := t.TempDir()
	prefix := module + "@" + version + "/"
	n := 0
	for _, f := range zr.File {
		name, ok := strings.CutPrefix(f.Name, prefix)
		if !ok || !keep(name) {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, path.Base(name)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("%s@%s has no files to install", module, version)
	}
	return dir
}
