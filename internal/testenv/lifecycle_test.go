package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// These tests start their own control planes (etcd and kube-apiserver
// only) because they are about starting and stopping one.

func TestStartServesAPIAndStopLeavesNothing(t *testing.T) {
	env := New(t)
	t.Logf("etcd healthy after %s, kube-apiserver ready after %s", env.Timings.Etcd, env.Timings.APIServer)

	groups, err := env.Clientset().Discovery().ServerGroups()
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, g := range groups.Groups {
		if g.Name == "resource.k8s.io" {
			for _, v := range g.Versions {
				served = append(served, v.Version)
			}
		}
	}
	for _, v := range resourceAPIVersions {
		if !slices.Contains(served, v) {
			t.Errorf("resource.k8s.io/%s not served; served: %v", v, served)
		}
	}

	// The kubeconfig is a usable admin identity on its own.
	fromFile, err := clientcmd.BuildConfigFromFlags("", env.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(fromFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Namespaces().Get(t.Context(), "kube-system", metav1.GetOptions{}); err != nil {
		t.Errorf("kubeconfig client: %v", err)
	}

	pids := env.pids()
	if err := env.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, pid := range pids {
		if processRunning(pid) {
			t.Errorf("process %d still running after Stop", pid)
		}
	}
	if _, err := os.Stat(env.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists after Stop (err %v)", env.Dir, err)
	}
}

// An API server without resource.k8s.io/v1, as on Kubernetes 1.33: the
// 1.37 binary serves the betas when asked to, becomes ready without v1
// once the Node authorizer is left out, and the nodes' ResourceSlices are
// published through v1beta2. The controller manager runs; the scheduler,
// which needs v1 to become ready, does not.
func TestServesResourceAPIWithoutV1(t *testing.T) {
	env := New(t, WithResourceAPIVersions("v1beta2", "v1beta1"), WithControlLoops(), WithoutScheduler(), WithGPUNodes(1, 2))
	groups, err := env.Clientset().Discovery().ServerGroups()
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, g := range groups.Groups {
		if g.Name == "resource.k8s.io" {
			for _, v := range g.Versions {
				served = append(served, v.Version)
			}
		}
	}
	if !slices.Equal(served, []string{"v1beta2", "v1beta1"}) {
		t.Errorf("resource.k8s.io versions served: %v, want v1beta2, v1beta1", served)
	}
	if v := env.DRA().Version(); v != "v1beta2" {
		t.Errorf("the environment's DRA client uses %q, want v1beta2", v)
	}
	list, err := env.DRA().ResourceSlices().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || len(list.Items[0].Spec.Devices) != 2 {
		t.Errorf("ResourceSlices %+v, want one of the node's two devices", list.Items)
	}
	if _, err := os.Stat(env.LogPath("kube-scheduler")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("kube-scheduler ran (log: %v)", err)
	}
	if _, err := env.CreateNamespace(t.Context(), "without-v1-"); err != nil {
		t.Errorf("the controller manager does not create service accounts: %v", err)
	}
}

func TestFailingComponentErrorQuotesItsLog(t *testing.T) {
	if _, err := BinDir(); err != nil {
		t.Skip(err)
	}
	_, err := Start(t.Context(), WithAPIServerArgs("--no-such-flag=1"))
	if isMissingBinaries(err) {
		handleStartError(t, err)
	}
	var componentErr *ComponentError
	if !errors.As(err, &componentErr) {
		t.Fatalf("Start() error = %v, want a *ComponentError", err)
	}
	if componentErr.Component != "kube-apiserver" || !strings.Contains(componentErr.LogTail, "no-such-flag") {
		t.Errorf("error names %s with log tail %q; want kube-apiserver complaining about the flag", componentErr.Component, componentErr.LogTail)
	}
	// The directory is kept and named for inspection.
	dir := strings.TrimSuffix(componentErr.LogPath, "/logs/kube-apiserver.log")
	if !strings.Contains(err.Error(), "kept "+dir) {
		t.Errorf("error does not name the kept directory %s:\n%v", dir, err)
	}
	if _, statErr := os.Stat(componentErr.LogPath); statErr != nil {
		t.Errorf("log not kept: %v", statErr)
	}
	os.RemoveAll(dir)
}

// helperEnv makes the test binary, run by TestPanicLeavesNoProcesses,
// start a control plane and panic.
const helperEnv = "KAIC_TESTENV_PANIC_HELPER"

func TestPanicLeavesNoProcesses(t *testing.T) {
	if os.Getenv(helperEnv) == "1" {
		env, err := Start(context.Background())
		if err != nil {
			fmt.Println("start error:", err)
			os.Exit(3)
		}
		fmt.Printf("pids %v dir %s\n", env.pids(), env.Dir)
		panic("a test panicked while its control plane ran")
	}
	if _, err := BinDir(); err != nil {
		t.Skip(err)
	}
	if err := (binaries{dir: mustBinDir(t)}).check(binEtcd, binAPIServer); err != nil {
		handleStartError(t, err)
	}

	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestPanicLeavesNoProcesses$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.Success() {
		t.Fatalf("helper did not fail:\n%s", out)
	}
	var pids []int
	var dir string
	scanner := bufio.NewScanner(strings.NewReader(string(out)))
	for scanner.Scan() {
		line := scanner.Text()
		if !strings.HasPrefix(line, "pids [") {
			continue
		}
		list, rest, _ := strings.Cut(strings.TrimPrefix(line, "pids ["), "] dir ")
		for _, f := range strings.Fields(list) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("bad pid in %q", line)
			}
			pids = append(pids, pid)
		}
		dir = rest
	}
	if len(pids) != 2 {
		t.Fatalf("helper reported pids %v, want etcd and kube-apiserver; output:\n%s", pids, out)
	}
	// The kernel delivers the parent-death signal at once; give the
	// processes a moment to be torn down.
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for processRunning(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if processRunning(pid) {
			t.Errorf("process %d outlived the panicking test binary", pid)
			signalGroup(pid, 9)
		}
	}
	// The next Start clears the directory the dead binary left behind.
	removeAbandonedDirs(defaultConfig())
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("abandoned directory %s not removed (err %v)", dir, err)
		os.RemoveAll(dir)
	}
}

func mustBinDir(t *testing.T) string {
	dir, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// processRunning reports whether pid exists and is not a zombie waiting
// for a reaper.
func processRunning(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}
