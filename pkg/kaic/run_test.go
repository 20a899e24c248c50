package kaic_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/stack"
)

// writeChartProfile writes a one-ConfigMap chart and a profile adopting an
// existing cluster whose stack is that chart, installed into ns as release
// name. It returns the profile's path.
func writeChartProfile(t *testing.T, ns, name string) string {
	t.Helper()
	dir := t.TempDir()
	chart := filepath.Join(dir, "hello")
	files := map[string]string{
		"Chart.yaml":               "apiVersion: v2\nname: hello\nversion: 0.1.0\ndescription: a chart written by kaic's tests\n",
		"values.yaml":              "message: from-chart\n",
		"templates/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  message: {{ .Values.message | quote }}\n",
	}
	for f, content := range files {
		p := filepath.Join(chart, f)
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
  name: kaic-lib-test
spec:
  kubernetesVersion: v1.37.0
  conformanceVersion: "1.37"
  cluster:
    backend: existing
    existing: {}
  stack:
    components:
      - name: %s
        namespace: %s
        helm:
          chart: %s
        values:
          message: from-profile
`, name, ns, chart)
	path := filepath.Join(dir, "profile.yaml")
	if err := os.WriteFile(path, []byte(profile), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestSecondRunOnADirectoryFailsOnTheLockBeforeWritingAnything(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	held, err := kaic.OpenRunDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	profile := writeChartProfile(t, "default", "hello")
	client := kaic.New()
	for name, call := range map[string]func() error{
		"up": func() error {
			_, err := client.Up(t.Context(), kaic.RunOptions{Profile: profile, Dir: dir, Cluster: kaic.Target{Kubeconfig: "/nonexistent"}})
			return err
		},
		"verify": func() error {
			_, err := client.Verify(t.Context(), kaic.RunOptions{Profile: profile, Dir: dir})
			return err
		},
		"resume": func() error {
			_, err := client.Up(t.Context(), kaic.RunOptions{Dir: dir, Resume: true})
			return err
		},
	} {
		err := call()
		var locked *pipeline.LockedError
		if !errors.As(err, &locked) || locked.PID != os.Getpid() {
			t.Errorf("%s on a held directory: err = %v, want a *pipeline.LockedError naming this process", name, err)
		}
	}
	if got := dirEntries(t, dir); !slices.Equal(got, []string{pipeline.LockFileName}) {
		t.Errorf("the held directory holds %v after the refused runs, want only the lock", got)
	}
	// down and report need a run there, and also wait for the lock.
	if err := held.SaveState(&pipeline.State{SchemaVersion: pipeline.StateSchemaVersion}); err != nil {
		t.Fatal(err)
	}
	if err := client.Down(t.Context(), kaic.DownOptions{Dir: dir}); !errors.Is(err, pipeline.ErrLocked) {
		t.Errorf("down on a held directory: err = %v", err)
	}
	if _, err := client.Report(t.Context(), kaic.ReportOptions{Dir: dir}); !errors.Is(err, pipeline.ErrLocked) {
		t.Errorf("report on a held directory: err = %v", err)
	}
}

func TestKubeconfigRefusedForAProfileThatCreatesItsCluster(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	_, err := kaic.New().Up(t.Context(), kaic.RunOptions{Profile: "kind-dra", Dir: dir, Cluster: kaic.Target{Kubeconfig: "/home/me/.kube/config"}})
	var refused *kaic.TargetRefusedError
	if !errors.As(err, &refused) || refused.Backend != "kind" {
		t.Fatalf("err = %v, want a *kaic.TargetRefusedError for kind", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused run created its directory: %v", err)
	}
}

func TestStacksOnlyTeardownIsRecorded(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	env := testenv.Shared(t)
	ns, err := env.CreateNamespace(t.Context(), "kaic-lib-")
	if err != nil {
		t.Fatal(err)
	}
	profile := writeChartProfile(t, ns, "hello")
	dir := filepath.Join(t.TempDir(), "run")
	client := kaic.New()
	opts := kaic.RunOptions{Profile: profile, Dir: dir, Cluster: kaic.Target{Kubeconfig: env.KubeconfigPath}}
	if _, err := client.Install(t.Context(), opts); err != nil {
		t.Fatalf("install: %v", err)
	}
	cms := env.Clientset().CoreV1().ConfigMaps(ns)
	if _, err := cms.Get(t.Context(), "hello-settings", metav1.GetOptions{}); err != nil {
		t.Fatalf("the release's ConfigMap: %v", err)
	}
	state, err := pipeline.LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if state.Phase(pipeline.PhaseInstall) == nil || state.RunID == "" {
		t.Fatalf("state records no install or no run id: %+v", state)
	}

	// down takes no --kubeconfig: the run recorded its cluster.
	if err := client.Down(t.Context(), kaic.DownOptions{Dir: dir, StacksOnly: true}); err != nil {
		t.Fatalf("down --stacks-only: %v", err)
	}
	if _, err := cms.Get(t.Context(), "hello-settings", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the release's ConfigMap after down: %v, want not found", err)
	}
	after, err := pipeline.LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rec := after.Phase(pipeline.PhaseInstall); rec.Status != pipeline.StatusTornDown {
		t.Errorf("install after down --stacks-only is %s, want %s", rec.Status, pipeline.StatusTornDown)
	}
	if after.RunID != state.RunID {
		t.Errorf("the run id changed from %s to %s", state.RunID, after.RunID)
	}

	// Installing again in the same directory keeps the run id and installs.
	if _, err := client.Install(t.Context(), opts); err != nil {
		t.Fatalf("second install: %v", err)
	}
	if _, err := cms.Get(t.Context(), "hello-settings", metav1.GetOptions{}); err != nil {
		t.Errorf("the ConfigMap after installing again: %v", err)
	}
	recs, err := stackRecords(dir)
	if err != nil || len(recs) != 1 || recs[0].Component != "hello" {
		t.Errorf("releases.json: %+v, %v", recs, err)
	}
}

func stackRecords(dir string) ([]stack.Record, error) {
	d, err := kaic.OpenExistingRunDir(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Releases()
}
