package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/pipeline"
)

// The simulated nodes are kwok's: they report the probe pod of verify's
// preflight Running without pulling anything, so the resume below reaches
// the checks. What the preflight does on a real kubelet is proven by the
// kind e2e.
func TestMain(m *testing.M) { testenv.Main(m, testenv.WithControlLoops(), testenv.WithGPUNodes(1, 2)) }

// buildKaic builds the real kaic binary, stamped with a probe image as a
// release build is (the kwok nodes start any image), so that it verifies
// the existing cluster.
func buildKaic(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kaic")
	out, err := exec.Command("go", "build", "-ldflags", "-X github.com/kaic-dev/kaic/pkg/cmd.probeImage=example.com/kaic-probe:test", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// unreachableKubeconfig points at a loopback port nothing listens on.
func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {server: "https://%s", insecure-skip-tls-verify: true}
users:
- name: nobody
  user: {token: none}
contexts:
- name: nowhere
  context: {cluster: nowhere, user: nobody}
current-context: nowhere
`, addr)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

// TestInterruptAndResume sends SIGINT to the real binary while its
// provision phase waits for an API server, then resumes the run against a
// real one.
func TestInterruptAndResume(t *testing.T) {
	bin := buildKaic(t)
	out := filepath.Join(t.TempDir(), "run")

	cmd := exec.Command(bin, "provision", "-p", "existing", "--kubeconfig", unreachableKubeconfig(t), "--out", out)
	cmd.Env = append(os.Environ(), "CI=true")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	waiting := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if !signalled && strings.Contains(sc.Text(), "waiting for the API server") {
				signalled = true
				close(waiting)
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case <-waiting:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("provision never started waiting for the API server:\n%s", log.String())
	}
	time.Sleep(300 * time.Millisecond) // mid-phase, past the first attempt

	// status reads a run that is going, without its lock.
	statusOut, err := exec.Command(bin, "status", out, "-o", "json").Output()
	if err != nil {
		t.Fatalf("status of a running run: %v", err)
	}
	var running kaic.RunStatus
	if err := json.Unmarshal(statusOut, &running); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, statusOut)
	}
	if len(running.Phases) == 0 || running.Phases[0].Name != pipeline.PhaseProvision || running.Phases[0].Status != pipeline.StatusRunning {
		t.Errorf("status of a running run: %s", statusOut)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	<-done
	err = cmd.Wait()
	if code := exitCode(err); code != 130 {
		t.Fatalf("exit code %d, want 130:\n%s", code, log.String())
	}
	if !strings.Contains(log.String(), "kaic up --resume "+out) {
		t.Errorf("no resume hint:\n%s", log.String())
	}
	st, err := pipeline.LoadState(out)
	if err != nil {
		t.Fatalf("state after interruption: %v", err)
	}
	if p := st.Phase(pipeline.PhaseProvision); p == nil || p.Status != pipeline.StatusInterrupted {
		t.Fatalf("provision phase after SIGINT: %+v", p)
	}
	if _, err := os.Stat(filepath.Join(out, "profile.yaml")); err != nil {
		t.Fatalf("resolved profile not saved: %v", err)
	}

	// Resume against a real API server: provision now succeeds, install has
	// nothing to do (existing has no stack), and verify runs the checks
	// against a control plane without accelerators, so checks fail (exit 3)
	// and the evidence says so.
	env := testenv.Shared(t)
	checklists := testenv.OfficialChecklists(t)
	resume := exec.Command(bin, "up", "--resume", out, "--kubeconfig", env.KubeconfigPath, "--checklist-dir", checklists)
	resume.Env = append(os.Environ(), "CI=true")
	combined, err := resume.CombinedOutput()
	if code := exitCode(err); code != 3 {
		t.Fatalf("resume: exit %d, want 3 (checks fail without accelerators):\n%s", code, combined)
	}
	if !strings.Contains(string(combined), "[verify] dra_support") && !strings.Contains(string(combined), "[verify] secure_accelerator_access") {
		t.Errorf("resume output shows no check:\n%s", combined)
	}
	st, err = pipeline.LoadState(out)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]pipeline.Status{
		pipeline.PhaseProvision: pipeline.StatusSucceeded,
		pipeline.PhaseInstall:   pipeline.StatusSkipped,
		pipeline.PhaseVerify:    pipeline.StatusFailed,
	}
	for phase, status := range want {
		if p := st.Phase(phase); p == nil || p.Status != status {
			t.Errorf("%s after resume: %+v, want %s", phase, p, status)
		}
	}
	for _, f := range []string{"PRODUCT.yaml", "junit.xml", "results.json", "e2e.log"} {
		if _, err := os.Stat(filepath.Join(out, "v1.37", "my-platform", f)); err != nil {
			t.Errorf("evidence of a failed verify: %v", err)
		}
	}
	prov := st.Phase(pipeline.PhaseProvision)
	kc := prov.Outputs["kubeconfig"]
	fi, err := os.Stat(kc)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("adopted kubeconfig %q: %v %v", kc, fi, err)
	}
	if prov.Outputs["created"] != "false" {
		t.Errorf("an adopted cluster must be recorded as not created: %v", prov.Outputs)
	}

	// A second resume skips what succeeded.
	again := exec.Command(bin, "up", "--resume", out, "--kubeconfig", env.KubeconfigPath, "--checklist-dir", checklists)
	again.Env = append(os.Environ(), "CI=true")
	combined, _ = again.CombinedOutput()
	if !strings.Contains(string(combined), "[provision] skipped: already succeeded") {
		t.Errorf("second resume did not skip provision:\n%s", combined)
	}

	// Rerunning what did not pass keeps the results of what passed, as
	// they were, and runs the others again.
	resultsDir := filepath.Join(out, kaic.ResultsDir)
	before, err := conformance.LoadResults(resultsDir)
	if err != nil || len(before) == 0 {
		t.Fatalf("results of the resumed run: %d, %v", len(before), err)
	}
	rerun := exec.Command(bin, "verify", "--rerun-failed", out, "--kubeconfig", env.KubeconfigPath, "--checklist-dir", checklists)
	rerun.Env = append(os.Environ(), "CI=true")
	combined, err = rerun.CombinedOutput()
	if code := exitCode(err); code != 3 {
		t.Fatalf("rerun: exit %d, want 3 (the failed checks fail again):\n%s", code, combined)
	}
	if !strings.Contains(string(combined), "rerunning the checks that did not pass") {
		t.Errorf("rerun output does not say what it reruns:\n%s", combined)
	}
	after, err := conformance.LoadResults(resultsDir)
	if err != nil || len(after) != len(before) {
		t.Fatalf("results after the rerun: %d (want %d), %v", len(after), len(before), err)
	}
	rerunCount := 0
	for i, b := range before {
		a := after[i]
		switch {
		case b.Status == conformance.Passed && !a.Start.Equal(b.Start):
			t.Errorf("%s passed before and was run again", b.ID)
		case b.Status == conformance.Failed && !a.Start.After(b.Start):
			t.Errorf("%s failed before and was not run again", b.ID)
		case b.Status == conformance.Failed:
			rerunCount++
		}
	}
	if rerunCount == 0 {
		t.Errorf("no failed check was run again: %v", after)
	}

	// results prints every recorded result and exits with the verdict.
	summary, err := exec.Command(bin, "results", out).CombinedOutput()
	if code := exitCode(err); code != 3 {
		t.Errorf("results: exit %d, want 3 (checks failed):\n%s", code, summary)
	}
	for _, r := range after {
		if !strings.Contains(string(summary), r.ID+" ") {
			t.Errorf("results does not list %s:\n%s", r.ID, summary)
		}
	}
	if !strings.Contains(string(summary), "check(s) failed") {
		t.Errorf("results states no verdict:\n%s", summary)
	}
}
