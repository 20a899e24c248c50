package preflight

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fixtureHost is a host whose /proc, /sys, /dev and /etc are files under
// a temp dir and whose container runtime answers as given: runtimeOut maps
// a command to its output ("ERR:" makes it fail), keyed by the whole
// command line or, for any arguments, by the command and its first
// argument ("docker info").
func fixtureHost(t *testing.T, files map[string]string, runtimeOut map[string]string, free uint64) *Host {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &Host{
		Root: root,
		LookPath: func(name string) (string, error) {
			if _, ok := runtimeOut[name+" info"]; ok {
				return "/usr/bin/" + name, nil
			}
			return "", exec.ErrNotFound
		},
		Run: func(_ context.Context, name string, args ...string) ([]byte, error) {
			out, ok := runtimeOut[strings.Join(append([]string{name}, args...), " ")]
			if !ok {
				out, ok = runtimeOut[name+" "+args[0]]
			}
			if !ok {
				return nil, errors.New("unexpected command " + name + " " + strings.Join(args, " "))
			}
			if strings.HasPrefix(out, "ERR:") {
				return []byte(strings.TrimPrefix(out, "ERR:")), errors.New("exit status 1")
			}
			return []byte(out), nil
		},
		FreeBytes: func(string) (uint64, error) { return free, nil },
	}
}

func byCheck(fs []Finding) map[string]Finding {
	out := map[string]Finding{}
	for _, f := range fs {
		out[f.Check] = f
	}
	return out
}

func TestHealthyHost(t *testing.T) {
	h := fixtureHost(t, map[string]string{
		"/sys/fs/cgroup/cgroup.controllers":       "cpu memory",
		"/proc/sys/fs/inotify/max_user_watches":   "1048576\n",
		"/proc/sys/fs/inotify/max_user_instances": "8192\n",
	}, map[string]string{"docker info": "28.2.2\n", "docker ps": ""}, 100<<30)
	fs := Check(context.Background(), h, Options{Runtime: "auto", ClusterName: "kaic-dra", Dir: t.TempDir()})
	if Failed(fs) {
		t.Fatalf("healthy host failed: %+v", fs)
	}
	for _, f := range fs {
		if f.Status != OK {
			t.Errorf("%s: %s %s", f.Check, f.Status, f.Detail)
		}
	}
	if got := byCheck(fs)["container runtime"].Detail; got != "docker, engine 28.2.2" {
		t.Errorf("runtime detail %q", got)
	}
}

func TestUnhealthyHostSaysWhatToDo(t *testing.T) {
	h := fixtureHost(t, map[string]string{
		"/proc/sys/fs/inotify/max_user_watches":   "8192\n",
		"/proc/sys/fs/inotify/max_user_instances": "128\n",
	}, map[string]string{"docker info": "28.2.2", "docker ps": "kaic-dra-control-plane\nkaic-dra-worker\n"}, 3<<30)
	fs := byCheck(Check(context.Background(), h, Options{ClusterName: "kaic-dra", Dir: "/nonexistent/run"}))
	want := map[string]struct {
		status Status
		fix    string
	}{
		"cgroups":                    {Warn, "systemd.unified_cgroup_hierarchy=1"},
		"inotify max_user_watches":   {Warn, "sudo sysctl -w fs.inotify.max_user_watches=524288"},
		"inotify max_user_instances": {Warn, "sudo sysctl -w fs.inotify.max_user_instances=512"},
		"free disk":                  {Fail, "docker system prune"},
		"kind cluster kaic-dra":      {Fail, "kaic down"},
	}
	for check, w := range want {
		f, ok := fs[check]
		if !ok {
			t.Errorf("no finding %q", check)
			continue
		}
		if f.Status != w.status || !strings.Contains(f.Fix, w.fix) {
			t.Errorf("%s: %s, fix %q; want %s with %q", check, f.Status, f.Fix, w.status, w.fix)
		}
	}
	if d := fs["kind cluster kaic-dra"].Detail; !strings.Contains(d, "kaic-dra-control-plane, kaic-dra-worker") {
		t.Errorf("existing nodes not named: %q", d)
	}
}

func TestRuntimeMissingOrDown(t *testing.T) {
	h := fixtureHost(t, nil, map[string]string{}, 100<<30)
	f := byCheck(Check(context.Background(), h, Options{Runtime: "podman"}))["container runtime"]
	if f.Status != Fail || f.Detail != "podman not found" || !strings.Contains(f.Fix, "install Docker") {
		t.Errorf("missing runtime: %+v", f)
	}
	h = fixtureHost(t, nil, map[string]string{"docker info": "ERR:Cannot connect to the Docker daemon at unix:///var/run/docker.sock"}, 100<<30)
	f = byCheck(Check(context.Background(), h, Options{}))["container runtime"]
	if f.Status != Fail || !strings.Contains(f.Detail, "Cannot connect to the Docker daemon") || !strings.Contains(f.Fix, "systemctl start docker") {
		t.Errorf("engine down: %+v", f)
	}
}

// TestThisHost runs the checks against the real machine: they must all
// produce a finding without error, and a reachable Docker engine must be
// recognised.
func TestThisHost(t *testing.T) {
	fs := Check(context.Background(), &Host{}, Options{Dir: t.TempDir(), ClusterName: "kaic-preflight-test"})
	if len(fs) < 5 {
		t.Fatalf("findings: %+v", fs)
	}
	rt := byCheck(fs)["container runtime"]
	if _, err := exec.LookPath("docker"); err == nil {
		if out, err := exec.Command("docker", "info").CombinedOutput(); err == nil && rt.Status != OK {
			t.Errorf("docker answers here but the check says %+v (%d bytes of docker info)", rt, len(out))
		}
	}
	for _, f := range fs {
		t.Logf("%-28s %-7s %s", f.Check, f.Status, f.Detail)
	}
}
