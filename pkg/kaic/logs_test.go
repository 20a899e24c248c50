package kaic_test

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/ownership"
	"github.com/kaic-dev/kaic/pkg/pipeline"
)

// TestLogsCollectsTheRunsNamespaces collects the logs of a run on a real
// API server: the namespace its release went into and a namespace carrying
// its id are in the archive with their pods and events. No kubelet runs
// here, so a container's log cannot be read: the archive says so in
// errors.txt instead of leaving it out silently.
func TestLogsCollectsTheRunsNamespaces(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	env := testenv.Shared(t)
	ctx := t.Context()
	client := env.Clientset()
	ns, err := env.CreateNamespace(ctx, "kaic-logs-")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "run")
	k := kaic.New()
	if _, err := k.Install(ctx, kaic.RunOptions{Profile: writeChartProfile(t, ns, "hello"), Dir: dir, Cluster: kaic.Target{Kubeconfig: env.KubeconfigPath}}); err != nil {
		t.Fatalf("install: %v", err)
	}
	state, err := pipeline.LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "kaic-check-", Labels: ownership.Labels(state.RunID)}}
	if checkNS, err = client.CoreV1().Namespaces().Create(ctx, checkNS, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.CoreV1().Namespaces().Delete(ctx, checkNS.Name, metav1.DeleteOptions{}) })

	// Bound to a node that has no kubelet (an unbound pod's log is empty,
	// not an error).
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "worker"}, Spec: corev1.PodSpec{NodeName: "no-kubelet-here", Containers: []corev1.Container{{Name: "main", Image: "example.invalid/worker"}}}}
	if pod, err = client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main", Image: "example.invalid/worker", RestartCount: 1}}
	if _, err := client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, e := range []struct{ ns, msg string }{{ns, "release event seen by the test"}, {checkNS.Name, "check event seen by the test"}} {
		ev := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{GenerateName: "ev-", Namespace: e.ns},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: e.ns, Name: "worker"},
			Reason:         "Tested", Message: e.msg, Type: corev1.EventTypeNormal, LastTimestamp: metav1.Now(),
		}
		if _, err := client.CoreV1().Events(e.ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	archive, err := k.Logs(ctx, kaic.LogsOptions{Dir: dir})
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	if filepath.Dir(archive) != filepath.Join(dir, kaic.LogsDir) {
		t.Errorf("archive %s is not in the run's logs directory", archive)
	}
	files := readTarGz(t, archive)
	want := map[string]string{
		"namespaces/" + ns + "/pods.yaml":             "name: worker",
		"namespaces/" + ns + "/events.yaml":           "release event seen by the test",
		"namespaces/" + checkNS.Name + "/events.yaml": "check event seen by the test",
		"errors.txt": "log of " + ns + "/worker main",
	}
	for name, content := range want {
		if got, ok := files[name]; !ok || !strings.Contains(got, content) {
			t.Errorf("%s: want it to contain %q; archive holds %v", name, content, keys(files))
		}
	}
	if !strings.Contains(files["errors.txt"], "previous log of") {
		t.Errorf("a restarted container's previous log was not asked for:\n%s", files["errors.txt"])
	}
}

func readTarGz(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string]string{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[hdr.Name] = string(data)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
