package verifytest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/cmd"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/dra"
	kaiclib "github.com/kaic-dev/kaic/pkg/kaic"
)

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithGPUNodes(2, 2))
}

// profileYAML is a v1.35 profile (dra_support is a MUST there) for the
// test environment's simulated accelerators, with complete metadata.
const profileYAML = `apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: verify-test
spec:
  kubernetesVersion: v1.35.0
  cluster:
    backend: existing
  accelerator:
    model: example
  output:
    productDir: acme-ai
  product:
    platformName: Acme AI Platform
    platformVersion: "2.4.0"
    vendorName: Acme Corporation
    websiteUrl: https://acme.example/ai
    documentationUrl: https://acme.example/ai/docs
    productLogoUrl: https://acme.example/logo.svg
    description: Acme's managed Kubernetes for AI workloads.
    contactEmailAddress: conformance@acme.example
    k8sConformanceUrl: https://github.com/cncf/k8s-conformance/tree/master/v1.35/acme-ai
`

func checklistsDir(t *testing.T) string { return testenv.OfficialChecklists(t) }

// registry holds the real dra_support check and synthetic checks for the
// other MUSTs of 1.35; failing names one that fails.
func registry(t *testing.T, failing string) *conformance.Registry {
	t.Helper()
	reg, err := conformance.NewRegistry(dra.Check())
	if err != nil {
		t.Fatal(err)
	}
	cat, _ := conformance.Builtin("1.35")
	for _, req := range cat.Requirements {
		if req.Level != conformance.Must || req.ID == dra.ID {
			continue
		}
		id := req.ID
		err := reg.Register(conformance.NewCheck(id, func(t *conformance.T, env *conformance.Env) {
			t.Step("record a marker in the check's namespace")
			t.Apply(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "marker"}, Data: map[string]string{"check": id}})
			t.Run("Behaviour", func(t *conformance.T) {
				if id == failing {
					t.Fatalf("synthetic failure of %s", id)
				}
				t.Observe("outcome", "as expected")
			})
		}))
		if err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// verify runs the verify phase the way `kaic verify` does.
func verify(t *testing.T, env *testenv.Env, failing string) (string, error) {
	t.Helper()
	if _, err := env.CreateDeviceClass(t.Context(), "gpu.example.com"); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	dir := t.TempDir()
	profilePath := filepath.Join(t.TempDir(), "verify-test.yaml")
	if err := os.WriteFile(profilePath, []byte(profileYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	client := kaiclib.New(
		kaiclib.WithChecks(registry(t, failing)),
		kaiclib.WithChecklist(conformance.Source{Dir: checklistsDir(t)}),
		kaiclib.WithVersion("v0.0.0-test"),
		// As a release build: kwok nodes start any image.
		kaiclib.WithPublishedProbeImage("example.com/kaic-probe:test"),
	)
	_, err := client.Verify(t.Context(), kaiclib.RunOptions{
		Profile: profilePath,
		Dir:     dir,
		Cluster: kaiclib.Target{Kubeconfig: env.KubeconfigPath},
	})
	return dir, err
}

func kaic(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := cmd.Execute(t.Context(), args, &out, &out)
	return code, out.String()
}

func TestVerifyWritesEvidenceThatValidates(t *testing.T) {
	env := testenv.Shared(t)
	dir, err := verify(t, env, "")
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	product := filepath.Join(dir, "v1.35", "acme-ai")
	for _, f := range []string{"PRODUCT.yaml", "junit.xml", "results.json", "e2e.log", "report.html",
		"tests/TestDRASupport/output.md", "tests/TestGangScheduling/output.md", "tests/TestGPUSharing/output.md"} {
		if _, err := os.Stat(filepath.Join(product, f)); err != nil {
			t.Errorf("missing artifact: %v", err)
		}
	}
	results, err := conformance.LoadResults(filepath.Join(dir, "results"))
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 12 {
		t.Errorf("%d results saved, want the 12 requirements of 1.35", len(results))
	}
	for _, res := range results {
		if res.Level == conformance.Must && res.Status != conformance.Passed {
			t.Errorf("%s: %s %s", res.ID, res.Status, res.Reason)
		}
	}
	transcript, _ := os.ReadFile(filepath.Join(product, "tests/TestDRASupport/output.md"))
	for _, want := range []string{"SIMULATED ACCELERATORS", "cannot allocate all claims", "kind: ResourceClaimTemplate", "**PASS**"} {
		if !bytes.Contains(transcript, []byte(want)) {
			t.Errorf("TestDRASupport transcript lacks %q", want)
		}
	}

	// The run is simulated: kaic validate refuses it as certification
	// evidence, and accepts it otherwise.
	code, out := kaic(t, "validate", dir)
	if code == 0 || !strings.Contains(out, "simulated accelerators") || strings.Count(out, "ERROR") != 1 {
		t.Errorf("validate of a simulated run: exit %d\n%s", code, out)
	}
	code, out = kaic(t, "validate", filepath.Join(product, "PRODUCT.yaml"), "--allow-simulated")
	if code != 0 || !strings.Contains(out, "OK ") {
		t.Errorf("validate --allow-simulated of a run where every MUST passed: exit %d\n%s", code, out)
	}

	// kaic report regenerates the evidence from the saved results.
	if err := os.Remove(filepath.Join(product, "junit.xml")); err != nil {
		t.Fatal(err)
	}
	code, out = kaic(t, "report", dir, "--checklist-dir", checklistsDir(t))
	if code != 0 {
		t.Fatalf("report: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(product, "junit.xml")); err != nil {
		t.Errorf("report did not rewrite junit.xml: %v", err)
	}
}

func TestVerifyWithAFailedMust(t *testing.T) {
	env := testenv.Shared(t)
	dir, err := verify(t, env, "gang_scheduling")
	var failed *conformance.ChecksFailedError
	if !errors.As(err, &failed) || len(failed.IDs) != 1 || failed.IDs[0] != "gang_scheduling" {
		t.Fatalf("verify error = %v, want a ChecksFailedError naming gang_scheduling", err)
	}
	if code := cmd.ExitCode(err); code != cmd.ExitChecksFailed {
		t.Errorf("exit code %d, want %d", code, cmd.ExitChecksFailed)
	}
	code, out := kaic(t, "validate", dir, "--allow-simulated")
	for _, want := range []string{
		`spec.schedulingOrchestration.gang_scheduling: MUST requirement has status "Not Implemented"`,
		"junit.xml: test TestGangScheduling/Behaviour failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q", want)
		}
	}
	if code != cmd.ExitFailure {
		t.Errorf("validate exit %d, want %d\n%s", code, cmd.ExitFailure, out)
	}
}
