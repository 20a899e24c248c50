package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/kaic"
)

// run executes kaic in-process and returns its exit code and output.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Execute(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestPlanEveryBuiltinProfile(t *testing.T) {
	for _, v := range []string{"AWS_REGION", "AWS_SSH_KEY_NAME", "AWS_B64ENCODED_CREDENTIALS", "AZURE_SUBSCRIPTION_ID", "AZURE_TENANT_ID",
		"AZURE_CLIENT_ID", "AZURE_LOCATION", "AZURE_RESOURCE_GROUP", "GCP_PROJECT", "GCP_REGION", "GCP_NETWORK_NAME", "GCP_B64ENCODED_CREDENTIALS", "IMAGE_ID"} {
		t.Setenv(v, "value-of-"+strings.ToLower(v))
	}
	for _, name := range kaic.NewLoader().BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := run(t, "plan", "-p", name, "-o", "json")
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var pl kaic.Plan
			if err := json.Unmarshal([]byte(stdout), &pl); err != nil {
				t.Fatalf("plan -o json is not JSON: %v\n%s", err, stdout)
			}
			if pl.Profile.Metadata.Name != name || len(pl.Checks) < 9 {
				t.Errorf("plan of %s: name %q, %d checks", name, pl.Profile.Metadata.Name, len(pl.Checks))
			}
			switch pl.Cluster.Backend {
			case "kind":
				if !strings.Contains(pl.Cluster.KindConfig, "kind.x-k8s.io/v1alpha4") {
					t.Errorf("no kind config: %q", pl.Cluster.KindConfig)
				}
			case "capi":
				if pl.Cluster.CAPI == nil || len(pl.Cluster.CAPI.Objects) != 3 {
					t.Fatalf("capi plan without the GPU pool objects: %+v", pl.Cluster.CAPI)
				}
				if strings.Contains(stdout, "value-of-aws_b64encoded_credentials") || strings.Contains(stdout, "value-of-gcp_b64encoded_credentials") {
					t.Error("a credential variable is printed in clear")
				}
			}
			for i := 1; i < len(pl.Releases); i++ {
				if pl.Releases[i].Wave < pl.Releases[i-1].Wave {
					t.Errorf("releases not in wave order: %+v", pl.Releases)
				}
			}
		})
	}
}

func TestPlanCAPIWithoutVariablesNamesThem(t *testing.T) {
	for _, v := range []string{"AWS_REGION", "AWS_SSH_KEY_NAME", "AWS_B64ENCODED_CREDENTIALS"} {
		t.Setenv(v, "")
	}
	code, _, stderr := run(t, "plan", "-p", "capi-aws-gpu")
	if code != ExitFailure {
		t.Fatalf("exit %d, want %d", code, ExitFailure)
	}
	if !strings.Contains(stderr, "AWS_B64ENCODED_CREDENTIALS, AWS_REGION, AWS_SSH_KEY_NAME") {
		t.Errorf("missing variables not named: %s", stderr)
	}
}

func TestPlanTableShowsStackAndChecks(t *testing.T) {
	code, stdout, stderr := run(t, "plan")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"Profile kind-dra from builtin:kind-dra",
		"oci://registry.k8s.io/kueue/charts/kueue",
		"secure_accelerator_access    MUST    TestSecureAcceleratorAccess",
		"cluster_autoscaling          MUST    TestAcceleratorClusterAutoscaling       N/A",
		"accelerators are simulated",
		"Accelerators: model example, allocated through DRA: claims of DeviceClass gpu.example.com (driver gpu.example.com); a container holds a device when it sees environment variables GPU_DEVICE_*",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("plan output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: kaic.dev/v1alpha1\nkind: Profile\nmetadata: {name: x}\nspec: {kubernetesVersion: v1.37.0, cluster: {backend: kind, kind: {workers: -1}}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"plan", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"plan", "extra"}, "takes no arguments"},
		{[]string{"plan", "-o", "xml"}, "--output must be table, yaml or json"},
		{[]string{"plan", "-p", bad}, "spec.cluster.kind.workers: must be >= 0 and <= 16, got -1"},
		{[]string{"no-such-command"}, "unknown command"},
		{[]string{"down"}, "takes 1 argument(s), got 0"},
		{[]string{"requirements", "list", "--version", "1.20"}, "unknown conformance version"},
		{[]string{"plan", "-p", "no-such-profile"}, "neither a profile file nor a built-in profile"},
		{[]string{"plan", "-p", "missing.yaml"}, "profile file missing.yaml does not exist"},
		{[]string{"profiles", "show", "no-such-profile"}, `no built-in profile "no-such-profile"`},
		{[]string{"verify", "--focus", "("}, "--focus: error parsing regexp"},
		{[]string{"up", "--skip", "[z-a]"}, "--skip: error parsing regexp"},
		{[]string{"status", "/no/such/run"}, "/no/such/run is not a kaic run directory"},
		{[]string{"results", "/no/such/run"}, "/no/such/run is not a kaic run directory"},
		{[]string{"report", "/no/such/run"}, "/no/such/run is not a kaic run directory"},
		{[]string{"down", "/no/such/run"}, "/no/such/run is not a kaic run directory"},
		{[]string{"logs", "/no/such/run"}, "/no/such/run is not a kaic run directory"},
	}
	for _, c := range cases {
		code, _, stderr := run(t, c.args...)
		if code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, code, ExitUsage, stderr)
		}
		if !strings.Contains(stderr, c.want) {
			t.Errorf("%v: stderr lacks %q:\n%s", c.args, c.want, stderr)
		}
	}
}

func TestFailedRunKeepsState(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := run(t, "up", "-p", "existing", "--kubeconfig", filepath.Join(dir, "missing"), "--out", dir)
	if code != ExitFailure || !strings.Contains(stderr, "phase provision failed: reading kubeconfig") {
		t.Errorf("up with a missing kubeconfig: exit %d, stderr %q", code, stderr)
	}
	for _, f := range []string{"state.json", "profile.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("a failed run keeps no %s: %v", f, err)
		}
	}
	for _, next := range []string{"kaic logs " + dir, "kaic up --resume " + dir, "kaic down " + dir} {
		if !strings.Contains(stderr, next) {
			t.Errorf("a failed run does not suggest %q:\n%s", next, stderr)
		}
	}
}

// Without --version the list is the newest version's, read from the
// directory $KAIC_CHECKLIST_DIR names.
func TestRequirementsListDefaultsToNewestFromEnvDir(t *testing.T) {
	t.Setenv(ChecklistDirEnv, testenv.OfficialChecklists(t))
	code, stdout, stderr := run(t, "requirements", "list", "--offline", "-o", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct{ Version string }
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	versions := conformance.Versions()
	if got.Version != versions[len(versions)-1] {
		t.Errorf("version %q, want the newest %q", got.Version, versions[len(versions)-1])
	}

	t.Setenv(ChecklistDirEnv, t.TempDir())
	code, _, stderr = run(t, "requirements", "list", "--offline")
	if code == ExitOK || !strings.Contains(stderr, "is "+os.Getenv(ChecklistDirEnv)+" the directory of the official checklists") {
		t.Errorf("empty checklist dir: exit %d, want a hint naming the directory:\n%s", code, stderr)
	}
}

func TestRequirementsListFromOfficialChecklist(t *testing.T) {
	code, stdout, stderr := run(t, "requirements", "list", "--version", "1.35", "--checklist-dir", testenv.OfficialChecklists(t), "-o", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		Version      string
		Requirements []requirementRow
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	if got.Version != "1.35" || len(got.Requirements) != 12 {
		t.Fatalf("version %s with %d requirements", got.Version, len(got.Requirements))
	}
	for _, r := range got.Requirements {
		if r.ID == "dra_support" && (r.Level != "MUST" || !strings.Contains(r.Description, "Dynamic Resource Allocation")) {
			t.Errorf("dra_support row: %+v", r)
		}
		if r.Description == "" {
			t.Errorf("%s has no description", r.ID)
		}
	}
}

func TestProfilesListAndShow(t *testing.T) {
	code, stdout, _ := run(t, "profiles", "list")
	if code != ExitOK || !strings.Contains(stdout, "kind-dra") || !strings.Contains(stdout, "example (simulated)") {
		t.Errorf("profiles list: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = run(t, "profiles", "show", "existing")
	if code != ExitOK || !strings.HasPrefix(stdout, "apiVersion: kaic.dev/v1alpha1") {
		t.Errorf("profiles show: exit %d\n%s", code, stdout)
	}
	// -o changes the format, not what is shown: the stored profile, or with
	// --resolved the one a run uses, in YAML or JSON alike.
	for _, tc := range []struct {
		args     []string
		has, not string
	}{
		{[]string{"-o", "json"}, `"kind": "Profile"`, "kaic-out/kind-dra"}, // the output dir is a default
		{[]string{"--resolved"}, "dir: kaic-out/kind-dra", `"dir"`},
		{[]string{"--resolved", "-o", "json"}, `"dir": "kaic-out/kind-dra"`, "dir: kaic-out"},
	} {
		code, stdout, stderr := run(t, append([]string{"profiles", "show", "kind-dra"}, tc.args...)...)
		if code != ExitOK || !strings.Contains(stdout, tc.has) || strings.Contains(stdout, tc.not) {
			t.Errorf("profiles show kind-dra %v: exit %d, want %q and not %q\n%s%s", tc.args, code, tc.has, tc.not, stdout, stderr)
		}
	}
}

// TestEveryCommandExplainsItself checks --help of every command has a
// description and examples.
func TestEveryCommandExplainsItself(t *testing.T) {
	root := NewRootCommand(&bytes.Buffer{}, &bytes.Buffer{})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" || sub.Parent().Name() == "completion" {
				continue
			}
			if sub.Short == "" {
				t.Errorf("%s has no short description", sub.CommandPath())
			}
			if sub.Runnable() && sub.Example == "" {
				t.Errorf("%s has no examples", sub.CommandPath())
			}
			walk(sub)
		}
	}
	walk(root)
}

func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, stdout, stderr := run(t, "completion", shell)
		if code != ExitOK || len(stdout) < 500 {
			t.Errorf("completion %s: exit %d, %d bytes, %s", shell, code, len(stdout), stderr)
		}
	}
}

func TestVerifyOfAClusterThatDoesNotAnswerIsARunError(t *testing.T) {
	// Nothing listens on port 1: the API server refuses at once.
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	doc := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}]
current-context: ctx
`
	if err := os.WriteFile(kubeconfig, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	start := time.Now()
	code, _, stderr := run(t, "verify", "-p", "existing", "--kubeconfig", kubeconfig, "--out", dir, "--checklist-dir", testenv.OfficialChecklists(t))
	took := time.Since(start)
	if code != ExitFailure {
		t.Errorf("exit %d, want %d (a cluster kaic cannot use is an error of the run)\n%s", code, ExitFailure, stderr)
	}
	if !strings.Contains(stderr, "127.0.0.1:1") || !strings.Contains(stderr, "does not answer") {
		t.Errorf("the error does not name the server and what is wrong:\n%s", stderr)
	}
	if took > 20*time.Second {
		t.Errorf("verify took %s to find out the server does not answer", took)
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && (d.Name() == "PRODUCT.yaml" || d.Name() == "results") {
			t.Errorf("verify of an unusable cluster wrote %s", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPlanStrictRefusesComponentsOutsideTheirSupportRange(t *testing.T) {
	code, stdout, stderr := run(t, "plan", "-p", "kind-dra")
	if code != ExitOK {
		t.Fatalf("plan without --strict: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "envoy-gateway v1.9.1 supports Kubernetes 1.33–1.36") || !strings.Contains(stdout, "the profile runs v1.37.0") {
		t.Errorf("no support-range warning naming both versions:\n%s", stdout)
	}
	code, _, stderr = run(t, "plan", "-p", "kind-dra", "--strict")
	if code != ExitUsage || !strings.Contains(stderr, "envoy-gateway v1.9.1 (supports 1.33–1.36)") {
		t.Fatalf("plan --strict: exit %d, want %d naming the component: %s", code, ExitUsage, stderr)
	}

	// A version other than the pinned one has no stated range, and a
	// range the profile states itself replaces the built-in's.
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	own := "        supports: {kubernetes: \"1.30+\", source: \"our own tests\", checked: \"2026-12-01\"}\n"
	doc := "apiVersion: kaic.dev/v1alpha1\nkind: Profile\nextends: kind-dra\nmetadata:\n  name: p\nspec:\n  stack:\n    components:\n" +
		"      - name: cert-manager\n        version: v1.21.0\n" +
		"      - name: envoy-gateway\n" + own +
		"      - name: envoy-gateway-crds\n" + own
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = run(t, "plan", "-p", path, "--strict", "-o", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var pl kaic.Plan
	if err := json.Unmarshal([]byte(stdout), &pl); err != nil {
		t.Fatal(err)
	}
	if len(pl.SupportGaps) != 0 {
		t.Errorf("gaps %+v", pl.SupportGaps)
	}
	for _, r := range pl.Releases {
		if strings.HasPrefix(r.Name, "envoy-gateway ") && r.Supports != "1.30 and later" {
			t.Errorf("%s supports %q, want the profile's own range", r.Name, r.Supports)
		}
		if r.Name == "cert-manager" && r.Supports != "" {
			t.Errorf("cert-manager v1.21.0 shows the range stated for the pinned version: %q", r.Supports)
		}
	}
}

func TestValidateJSONOutput(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v1.37", "acme")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	product := "metadata:\n  kubernetesVersion: v1.37\n  platformName: \"[Platform Name]\"\n  platformVersion: 2.4\nspec:\n  accelerators: []\n"
	if err := os.WriteFile(filepath.Join(dir, "PRODUCT.yaml"), []byte(product), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, "validate", dir, "-o", "json")
	if code == ExitOK {
		t.Fatalf("a broken submission passed: %s", stdout)
	}
	var got struct {
		OK      bool   `json:"ok"`
		Version string `json:"version"`
		Errors  []struct {
			Where   string `json:"where"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("-o json is not JSON: %v\n%s\n%s", err, stdout, stderr)
	}
	if got.OK || got.Version != "1.37" || len(got.Errors) == 0 {
		t.Fatalf("report %+v", got)
	}
	found := false
	for _, e := range got.Errors {
		found = found || (e.Where == "metadata.platformVersion" && strings.Contains(e.Message, "not a string"))
	}
	if !found {
		t.Errorf("no error for the unquoted platformVersion among %+v", got.Errors)
	}
}
