package cmd

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/stack"
)

// writeStackProfile writes a chart (a ConfigMap and a Pod, whose images
// kaic images lists) and a profile adopting an existing cluster whose stack
// is that chart, installed into ns. It returns the profile's path.
func writeStackProfile(t *testing.T, ns string) string {
	t.Helper()
	dir := t.TempDir()
	chart := filepath.Join(dir, "hello")
	files := map[string]string{
		"Chart.yaml":  "apiVersion: v2\nname: hello\nversion: 0.1.0\ndescription: a chart written by kaic's tests\n",
		"values.yaml": "message: from-chart\nimage: registry.example/kaic-test/hello:1.0\n",
		"templates/configmap.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
data:
  message: {{ .Values.message | quote }}
`,
		// A pod template that never runs: the control plane has no
		// scheduler here, and no readiness waits for it.
		"templates/job-template.yaml": `apiVersion: v1
kind: PodTemplate
metadata:
  name: {{ .Release.Name }}-template
template:
  spec:
    initContainers:
      - name: setup
        image: registry.example/kaic-test/setup:2.0
    containers:
      - name: hello
        image: {{ .Values.image }}
`,
	}
	for name, content := range files {
		p := filepath.Join(chart, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	profile := fmt.Sprintf(`apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: cmd-stack-test
spec:
  kubernetesVersion: v1.37.0
  conformanceVersion: "1.37"
  cluster:
    backend: existing
    existing: {}
  stack:
    components:
      - name: hello
        namespace: %s
        helm:
          chart: %s
        values:
          message: from-profile
`, ns, chart)
	path := filepath.Join(dir, "profile.yaml")
	if err := os.WriteFile(path, []byte(profile), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInstallThenDownStacksOnly(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	env := testenv.Shared(t)
	ns, err := env.CreateNamespace(t.Context(), "cmd-")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.Kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	profile := writeStackProfile(t, ns)
	out := filepath.Join(t.TempDir(), "run")

	code, _, stderr := run(t, "install", "-p", profile, "--kubeconfig", kubeconfig, "--out", out)
	if code != ExitOK {
		t.Fatalf("install: exit %d\n%s", code, stderr)
	}
	recs, err := stack.ReadRecords(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("releases.json records %+v, want the one component", recs)
	}
	r := recs[0]
	if r.Component != "hello" || r.Kind != stack.KindHelm || r.Release != "hello" || r.Namespace != ns ||
		r.ChartName != "hello" || r.Version != "0.1.0" || r.Action != stack.ActionInstalled || r.Revision != 1 || r.Duration == "" {
		t.Errorf("record %+v", r)
	}
	cs := env.Clientset()
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "hello-settings", metav1.GetOptions{})
	if err != nil || cm.Data["message"] != "from-profile" {
		t.Fatalf("configmap of the release: %v %v, want the profile's message", cm.Data, err)
	}

	// Installing again changes nothing.
	if code, _, stderr := run(t, "install", "-p", profile, "--kubeconfig", kubeconfig, "--out", out); code != ExitOK {
		t.Fatalf("second install: exit %d\n%s", code, stderr)
	}
	if recs, err := stack.ReadRecords(out); err != nil || recs[0].Action != stack.ActionUnchanged || recs[0].Revision != 1 {
		t.Errorf("second install recorded %+v, %v; want unchanged at revision 1", recs, err)
	}

	// The install phase recorded the cluster it used: down finds it without
	// being told.
	code, _, stderr = run(t, "down", out, "--stacks-only")
	if code != ExitOK {
		t.Fatalf("down --stacks-only: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "uninstall hello") {
		t.Errorf("down does not report the uninstall:\n%s", stderr)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "hello-settings", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("configmap after down --stacks-only: %v, want not found", err)
	}
	secrets, err := cs.CoreV1().Secrets(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "owner=helm,name=hello"})
	if err != nil || len(secrets.Items) != 0 {
		t.Errorf("release hello still recorded: %d (%v)", len(secrets.Items), err)
	}
	// The namespace and the cluster stay.
	if _, err := cs.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{}); err != nil {
		t.Errorf("namespace %s: %v", ns, err)
	}
}

func TestImagesOfLocalChartAsJSON(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	profile := writeStackProfile(t, "images")
	code, stdout, stderr := run(t, "images", "-p", profile, "-o", "json", "--set", "hello.image=registry.example/kaic-test/hello:1.1")
	if code != ExitOK {
		t.Fatalf("images: exit %d\n%s", code, stderr)
	}
	var got []stack.Image
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("images -o json is not JSON: %v\n%s", err, stdout)
	}
	want := []stack.Image{
		{Image: "registry.example/kaic-test/hello:1.1", Components: []string{"hello"}},
		{Image: "registry.example/kaic-test/setup:2.0", Components: []string{"hello"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("images = %+v, want %+v", got, want)
	}

	code, stdout, stderr = run(t, "images", "-p", profile)
	if code != ExitOK || !strings.Contains(stdout, "registry.example/kaic-test/hello:1.0") || !strings.Contains(stdout, "IMAGE") {
		t.Errorf("images table: exit %d\n%s\n%s", code, stdout, stderr)
	}
}
