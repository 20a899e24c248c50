package existing_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/provision"
	"github.com/kaic-dev/kaic/pkg/provision/existing"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// notes records what a provisioner reports.
type notes struct{ lines []string }

func (n *notes) StartStep(name string) *progress.Step {
	n.lines = append(n.lines, "step: "+name)
	return progress.StartStep(progress.Discard, "", name)
}
func (n *notes) Notef(format string, args ...any) {
	n.lines = append(n.lines, "note: "+strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func TestAdoptRealCluster(t *testing.T) {
	env := testenv.Shared(t)
	dir := t.TempDir()
	p := &existing.Provisioner{Kubeconfig: env.KubeconfigPath, KubernetesVersion: "v1.36.0"}
	var n notes
	rec, err := p.Create(t.Context(), provision.Paths{Dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig")}, &n)
	if err != nil {
		t.Fatal(err)
	}
	if rec[provision.KeyCreated] != "false" || rec[provision.KeyBackend] != "existing" {
		t.Errorf("record: %v", rec)
	}
	cfg, err := clientcmd.LoadFromFile(rec[provision.KeyKubeconfig])
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Contexts) != 1 || cfg.CurrentContext != rec[provision.KeyContext] {
		t.Errorf("written kubeconfig holds %d contexts, current %q", len(cfg.Contexts), cfg.CurrentContext)
	}
	all := strings.Join(n.lines, "\n")
	if !strings.Contains(all, "step: waiting for the API server at https://127.0.0.1:") {
		t.Errorf("progress:\n%s", all)
	}
	// The test control plane runs 1.37 while this profile expects 1.36.
	if !strings.Contains(all, "the profile expects Kubernetes") {
		t.Errorf("version mismatch not reported:\n%s", all)
	}
	if strings.Contains(all, "resource.k8s.io/v1 is not served") || strings.Contains(all, "may not") {
		t.Errorf("an admin on a 1.37 server was reported lacking something:\n%s", all)
	}
	if err := p.Delete(t.Context(), rec, &n); err != nil {
		t.Errorf("delete of an adopted cluster: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "kubeconfig")); err != nil {
		t.Error(err)
	}
}

// A cluster without resource.k8s.io/v1 (as 1.33) is adopted with a
// warning that names what it serves and the version the checks will use.
func TestAdoptClusterWithoutDRAV1(t *testing.T) {
	env := testenv.New(t, testenv.WithResourceAPIVersions("v1beta2", "v1beta1"))
	dir := t.TempDir()
	p := &existing.Provisioner{Kubeconfig: env.KubeconfigPath, KubernetesVersion: "v1.37.0"}
	var n notes
	if _, err := p.Create(t.Context(), provision.Paths{Dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig")}, &n); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(n.lines, "\n")
	want := "warning: resource.k8s.io/v1 is not served (served: v1beta2, v1beta1): the DRA checks will use resource.k8s.io/v1beta2"
	if !strings.Contains(all, want) {
		t.Errorf("progress lacks %q:\n%s", want, all)
	}
}

func TestMissingPermissionsOfUnprivilegedUser(t *testing.T) {
	env := testenv.Shared(t)
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "kaic-nobody"}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	missing, err := existing.MissingPermissions(t.Context(), client, existing.RequiredPermissions)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != len(existing.RequiredPermissions) {
		t.Errorf("an identity without roles lacks %d of %d permissions: %v", len(missing), len(existing.RequiredPermissions), missing)
	}
	admin, err := existing.MissingPermissions(t.Context(), env.Clientset(), existing.RequiredPermissions)
	if err != nil || len(admin) != 0 {
		t.Errorf("admin lacks %v (%v)", admin, err)
	}
}

func TestUnreachableServerTimesOut(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	data := "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\"}\nusers:\n- name: u\n  user: {token: x}\ncontexts:\n- name: ctx\n  context: {cluster: c, user: u}\ncurrent-context: ctx\n"
	if err := os.WriteFile(kc, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &existing.Provisioner{Kubeconfig: kc, WaitTimeout: 1500 * time.Millisecond}
	start := time.Now()
	_, err := p.Create(context.Background(), provision.Paths{Dir: t.TempDir(), Kubeconfig: filepath.Join(t.TempDir(), "kubeconfig")}, &notes{})
	if err == nil || !strings.Contains(err.Error(), "API server did not answer within 1.5s") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("gave up after %s", time.Since(start))
	}
	p = &existing.Provisioner{Kubeconfig: kc, Context: "other"}
	if _, err := p.Create(context.Background(), provision.Paths{Dir: t.TempDir(), Kubeconfig: filepath.Join(t.TempDir(), "kubeconfig")}, &notes{}); err == nil || !strings.Contains(err.Error(), `no context "other"`) {
		t.Errorf("unknown context: %v", err)
	}
}
