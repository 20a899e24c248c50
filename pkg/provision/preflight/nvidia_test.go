package preflight

import (
	"context"
	"maps"
	"strings"
	"testing"
)

// toolkitConfig is an NVIDIA container toolkit configuration in the shape
// the toolkit's packages install (top-level settings, then one table per
// component), with the volume-mounts setting as given.
func toolkitConfig(volumeMounts string) string {
	return volumeMounts + `
#accept-nvidia-visible-devices-envvar-when-unprivileged = true
disable-require = false
supported-driver-capabilities = "compat32,compute,display,graphics,ngx,utility,video"

[nvidia-container-cli]
environment = []
ldconfig = "@/sbin/ldconfig.real"
load-kmods = true

[nvidia-container-runtime]
log-level = "info"
mode = "auto"
runtimes = ["docker-runc", "runc", "crun"]

[nvidia-container-runtime.modes.cdi]
default-kind = "nvidia.com/gpu"
spec-dirs = ["/etc/cdi", "/var/run/cdi"]
`
}

// gpuHostFiles are the files of a host ready to pass two GPUs into kind
// nodes: the driver's device files and the toolkit's configuration.
func gpuHostFiles() map[string]string {
	return map[string]string{
		"/sys/fs/cgroup/cgroup.controllers":       "cpu memory",
		"/proc/sys/fs/inotify/max_user_watches":   "1048576\n",
		"/proc/sys/fs/inotify/max_user_instances": "8192\n",
		"/dev/nvidia0":      "",
		"/dev/nvidia1":      "",
		"/dev/nvidiactl":    "",
		"/dev/nvidia-uvm":   "",
		nvidiaToolkitConfig: toolkitConfig("accept-nvidia-visible-devices-as-volume-mounts = true"),
	}
}

// gpuDocker is a Docker engine configured by nvidia-ctk runtime configure
// --set-as-default, as docker info reports it.
func gpuDocker() map[string]string {
	return map[string]string{
		"docker info": "28.2.2\n",
		"docker ps":   "",
		"docker info --format {{json .Runtimes}}":  `{"io.containerd.runc.v2":{"path":"runc","status":{}},"nvidia":{"path":"nvidia-container-runtime"},"runc":{"path":"runc","status":{}}}` + "\n",
		"docker info --format {{.DefaultRuntime}}": "nvidia\n",
	}
}

// nvidiaFindings are the findings of the NVIDIA checks, by check.
func nvidiaFindings(fs []Finding) map[string]Finding {
	out := map[string]Finding{}
	for _, f := range fs {
		switch f.Check {
		case checkGPUDevices, checkNVIDIARuntime, checkDefaultRuntime, checkToolkitConfig:
			out[f.Check] = f
		}
	}
	return out
}

func TestGPUHostReady(t *testing.T) {
	for _, gpus := range []string{"all", "0,1", "1"} {
		t.Run(gpus, func(t *testing.T) {
			h := fixtureHost(t, gpuHostFiles(), gpuDocker(), 100<<30)
			fs := Check(context.Background(), h, Options{Runtime: "auto", ClusterName: "kaic-nvidia", Dir: t.TempDir(), GPUs: gpus})
			got := nvidiaFindings(fs)
			if len(got) != 4 {
				t.Fatalf("NVIDIA findings %+v, want one of each of the four checks", got)
			}
			for _, f := range fs {
				if f.Status != OK {
					t.Errorf("%s: %s %s (fix %q)", f.Check, f.Status, f.Detail, f.Fix)
				}
			}
			if d := got[checkGPUDevices].Detail; !strings.Contains(d, "/dev/nvidia1") || strings.Contains(d, "nvidiactl") || strings.Contains(d, "uvm") {
				t.Errorf("GPU devices detail %q: want the GPUs' device files and no control or UVM device", d)
			}
		})
	}
}

// TestGPUHostNotReady: each thing missing fails its own check, saying
// what is missing and the command that sets it up; the others pass.
func TestGPUHostNotReady(t *testing.T) {
	for _, tc := range []struct {
		name          string
		gpus          string
		files, docker func(map[string]string)
		check, detail string
		fix           string
	}{{
		name:   "no GPU device files",
		gpus:   "all",
		files:  func(f map[string]string) { delete(f, "/dev/nvidia0"); delete(f, "/dev/nvidia1") },
		check:  checkGPUDevices,
		detail: "no /dev/nvidia[0-9]* on this host",
		fix:    "install the NVIDIA driver",
	}, {
		name:   "a listed GPU is missing",
		gpus:   "0,2",
		check:  checkGPUDevices,
		detail: "this host has no /dev/nvidia2 (NVIDIA GPU device files here: /dev/nvidia0, /dev/nvidia1)",
		fix:    "name only the host's GPUs in spec.cluster.kind.gpus",
	}, {
		name: "Docker without the nvidia runtime",
		gpus: "all",
		docker: func(d map[string]string) {
			d["docker info --format {{json .Runtimes}}"] = `{"io.containerd.runc.v2":{"path":"runc"},"runc":{"path":"runc"}}`
			d["docker info --format {{.DefaultRuntime}}"] = "runc"
		},
		check:  checkNVIDIARuntime,
		detail: "Docker has no nvidia runtime (its runtimes: io.containerd.runc.v2, runc)",
		fix:    "nvidia-ctk runtime configure --runtime=docker --set-as-default",
	}, {
		name:   "nvidia is not Docker's default runtime",
		gpus:   "all",
		docker: func(d map[string]string) { d["docker info --format {{.DefaultRuntime}}"] = "runc\n" },
		check:  checkDefaultRuntime,
		detail: "Docker's default runtime is runc, not nvidia",
		fix:    "nvidia-ctk runtime configure --runtime=docker --set-as-default",
	}, {
		name:   "no toolkit configuration",
		gpus:   "all",
		files:  func(f map[string]string) { delete(f, nvidiaToolkitConfig) },
		check:  checkToolkitConfig,
		detail: "no /etc/nvidia-container-runtime/config.toml",
		fix:    "nvidia-ctk config --in-place --set accept-nvidia-visible-devices-as-volume-mounts=true",
	}, {
		name: "volume mounts left at the package's commented default",
		gpus: "all",
		files: func(f map[string]string) {
			f[nvidiaToolkitConfig] = toolkitConfig("#accept-nvidia-visible-devices-as-volume-mounts = false")
		},
		check:  checkToolkitConfig,
		detail: "accept-nvidia-visible-devices-as-volume-mounts in /etc/nvidia-container-runtime/config.toml is not set",
		fix:    "nvidia-ctk config --in-place --set accept-nvidia-visible-devices-as-volume-mounts=true",
	}, {
		name: "volume mounts off",
		gpus: "0",
		files: func(f map[string]string) {
			f[nvidiaToolkitConfig] = toolkitConfig("accept-nvidia-visible-devices-as-volume-mounts = false")
		},
		check:  checkToolkitConfig,
		detail: "is false",
		fix:    "nvidia-ctk config --in-place --set accept-nvidia-visible-devices-as-volume-mounts=true",
	}, {
		// A key of the same name inside a table is another setting.
		name: "volume mounts set in the wrong table",
		gpus: "all",
		files: func(f map[string]string) {
			f[nvidiaToolkitConfig] = strings.Replace(toolkitConfig(""), "load-kmods = true", "load-kmods = true\naccept-nvidia-visible-devices-as-volume-mounts = true", 1)
		},
		check:  checkToolkitConfig,
		detail: "is not set",
		fix:    "nvidia-ctk config --in-place",
	}, {
		name: "unparsable toolkit configuration",
		gpus: "all",
		files: func(f map[string]string) {
			f[nvidiaToolkitConfig] = "accept-nvidia-visible-devices-as-volume-mounts = \n["
		},
		check:  checkToolkitConfig,
		detail: "cannot parse /etc/nvidia-container-runtime/config.toml",
		fix:    "nvidia-ctk config --in-place --set accept-nvidia-visible-devices-as-volume-mounts=true",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			files, docker := gpuHostFiles(), gpuDocker()
			if tc.files != nil {
				tc.files(files)
			}
			if tc.docker != nil {
				tc.docker(docker)
			}
			h := fixtureHost(t, files, docker, 100<<30)
			fs := Check(context.Background(), h, Options{Runtime: "docker", ClusterName: "kaic-nvidia", Dir: t.TempDir(), GPUs: tc.gpus})
			if !Failed(fs) {
				t.Fatalf("the host passed: %+v", fs)
			}
			got := nvidiaFindings(fs)
			f, ok := got[tc.check]
			if !ok {
				t.Fatalf("no finding %q in %+v", tc.check, fs)
			}
			if f.Status != Fail || !strings.Contains(f.Detail, tc.detail) || !strings.Contains(f.Fix, tc.fix) {
				t.Errorf("%s: %s %q, fix %q; want fail saying %q with fix %q", tc.check, f.Status, f.Detail, f.Fix, tc.detail, tc.fix)
			}
			for _, other := range fs {
				if other.Check != tc.check && other.Status == Fail {
					t.Errorf("%s also fails: %s (fix %q)", other.Check, other.Detail, other.Fix)
				}
			}
		})
	}
}

// TestGPUsNeedDocker: another container engine cannot hand GPUs to kind
// nodes the nvkind way, and the finding says to use Docker.
func TestGPUsNeedDocker(t *testing.T) {
	podman := map[string]string{"podman info": "5.4.0", "podman ps": ""}
	h := fixtureHost(t, gpuHostFiles(), podman, 100<<30)
	f := nvidiaFindings(Check(context.Background(), h, Options{Runtime: "podman", GPUs: "all"}))[checkNVIDIARuntime]
	if f.Status != Fail || !strings.Contains(f.Detail, "the container engine here is podman") || !strings.Contains(f.Fix, "spec.cluster.kind.provider: docker") {
		t.Errorf("podman: %+v", f)
	}
}

// TestNoGPUsNoNVIDIAChecks: a cluster without host GPUs asks nothing of
// NVIDIA, on a host that has none of it.
func TestNoGPUsNoNVIDIAChecks(t *testing.T) {
	docker := gpuDocker()
	maps.DeleteFunc(docker, func(k, _ string) bool { return strings.Contains(k, "--format") })
	for _, gpus := range []string{"", "none"} {
		h := fixtureHost(t, nil, docker, 100<<30)
		fs := Check(context.Background(), h, Options{Runtime: "docker", GPUs: gpus})
		if got := nvidiaFindings(fs); len(got) > 0 {
			t.Errorf("gpus %q: NVIDIA findings %+v", gpus, got)
		}
	}
}
