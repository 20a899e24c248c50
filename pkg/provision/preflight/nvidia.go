package preflight

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// A kind node is a container, so host GPUs reach it the way nvkind hands
// them over: the container engine runs the node with NVIDIA's runtime,
// and the NVIDIA container toolkit gives the container the GPUs named by
// the files mounted under /var/run/nvidia-container-devices (kaic mounts
// /dev/null there once per GPU). kind cannot choose a runtime per
// container, so nvidia must be the engine's default, and the toolkit
// reads such mounts only when its configuration allows it. None of this
// can be set up by kaic without root on the host, so doctor checks it.

// nvidiaToolkitConfig is the NVIDIA container toolkit's configuration.
const nvidiaToolkitConfig = "/etc/nvidia-container-runtime/config.toml"

// volumeMountsKey is the toolkit setting that makes it read device lists
// from volume mounts.
const volumeMountsKey = "accept-nvidia-visible-devices-as-volume-mounts"

// The commands that configure what the checks look for.
const (
	configureRuntimeFix = "sudo nvidia-ctk runtime configure --runtime=docker --set-as-default && sudo systemctl restart docker"
	volumeMountsFix     = "sudo nvidia-ctk config --in-place --set " + volumeMountsKey + "=true"
	installToolkit      = "install the NVIDIA container toolkit (package nvidia-container-toolkit)"
)

// Names of the NVIDIA findings.
const (
	checkGPUDevices     = "NVIDIA GPU devices"
	checkNVIDIARuntime  = "nvidia container runtime"
	checkDefaultRuntime = "default container runtime"
	checkToolkitConfig  = "NVIDIA container toolkit"
)

// checkNVIDIA checks what passing the GPUs gpus ("all" or a list of
// indexes) into kind nodes needs from this host and its container engine
// runtime ("" when none answers).
func checkNVIDIA(ctx context.Context, h *Host, runtime, gpus string) []Finding {
	out := []Finding{checkGPUFiles(h, gpus)}
	out = append(out, checkNVIDIARuntimes(ctx, h, runtime)...)
	return append(out, checkToolkit(h))
}

// checkGPUFiles looks for the device files the NVIDIA driver creates, one
// per GPU, numbered by the GPU's minor number (which nvidia-smi's index
// follows on usual hosts).
func checkGPUFiles(h *Host, gpus string) Finding {
	matches, err := filepath.Glob(h.path("/dev/nvidia[0-9]*"))
	if err != nil {
		return Finding{Check: checkGPUDevices, Status: Warn, Detail: fmt.Sprintf("cannot list /dev: %v", err)}
	}
	have := make([]string, 0, len(matches))
	for _, m := range matches {
		have = append(have, "/dev/"+filepath.Base(m))
	}
	slices.SortFunc(have, func(a, b string) int { return cmp.Compare(gpuNumber(a), gpuNumber(b)) })
	const fix = "install the NVIDIA driver and check that nvidia-smi -L lists the GPUs; on a host without NVIDIA GPUs use a profile that simulates them (kind-dra)"
	if gpus == "all" {
		if len(have) == 0 {
			return Finding{Check: checkGPUDevices, Status: Fail,
				Detail: "no /dev/nvidia[0-9]* on this host: spec.cluster.kind.gpus is all, but no NVIDIA GPU is visible (none installed, or the NVIDIA driver is not loaded)",
				Fix:    fix}
		}
		return Finding{Check: checkGPUDevices, Status: OK, Detail: strings.Join(have, ", ")}
	}
	var missing []string
	for _, index := range strings.Split(gpus, ",") {
		dev := "/dev/nvidia" + strings.TrimSpace(index)
		if !slices.Contains(have, dev) {
			missing = append(missing, dev)
		}
	}
	if len(missing) > 0 {
		found := "none"
		if len(have) > 0 {
			found = strings.Join(have, ", ")
		}
		return Finding{Check: checkGPUDevices, Status: Fail,
			Detail: fmt.Sprintf("spec.cluster.kind.gpus names GPUs %s, but this host has no %s (NVIDIA GPU device files here: %s)", gpus, strings.Join(missing, ", "), found),
			Fix:    fix + "; or name only the host's GPUs in spec.cluster.kind.gpus"}
	}
	return Finding{Check: checkGPUDevices, Status: OK, Detail: fmt.Sprintf("GPUs %s: %s", gpus, strings.Join(have, ", "))}
}

// gpuNumber is the number of a /dev/nvidiaN file, for sorting.
func gpuNumber(dev string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(dev, "/dev/nvidia"))
	if err != nil {
		return -1
	}
	return n
}

// checkNVIDIARuntimes checks that the container engine has NVIDIA's
// runtime and runs containers with it by default.
func checkNVIDIARuntimes(ctx context.Context, h *Host, runtime string) []Finding {
	switch runtime {
	case "":
		// The container runtime finding already fails.
		return nil
	case "docker":
	default:
		return []Finding{{Check: checkNVIDIARuntime, Status: Fail,
			Detail: fmt.Sprintf("kaic passes GPUs into kind nodes through Docker's nvidia runtime, as nvkind does; the container engine here is %s", runtime),
			Fix:    "use Docker (spec.cluster.kind.provider: docker) with the NVIDIA container toolkit: " + configureRuntimeFix}}
	}
	out, err := h.run(ctx, "docker", "info", "--format", "{{json .Runtimes}}")
	if err != nil {
		return []Finding{{Check: checkNVIDIARuntime, Status: Fail, Detail: "cannot list Docker's runtimes: " + firstLine(string(out), err),
			Fix: "make sure docker info answers for this user"}}
	}
	var runtimes map[string]json.RawMessage
	if err := json.Unmarshal(out, &runtimes); err != nil {
		return []Finding{{Check: checkNVIDIARuntime, Status: Fail, Detail: fmt.Sprintf("cannot read Docker's runtimes from %q: %v", strings.TrimSpace(string(out)), err)}}
	}
	names := slices.Sorted(maps.Keys(runtimes))
	if _, ok := runtimes["nvidia"]; !ok {
		return []Finding{{Check: checkNVIDIARuntime, Status: Fail,
			Detail: fmt.Sprintf("Docker has no nvidia runtime (its runtimes: %s), so a kind node can get no GPU", strings.Join(names, ", ")),
			Fix:    installToolkit + ", then " + configureRuntimeFix}}
	}
	found := Finding{Check: checkNVIDIARuntime, Status: OK, Detail: "Docker's runtimes: " + strings.Join(names, ", ")}
	out, err = h.run(ctx, "docker", "info", "--format", "{{.DefaultRuntime}}")
	if err != nil {
		return []Finding{found, {Check: checkDefaultRuntime, Status: Fail, Detail: "cannot read Docker's default runtime: " + firstLine(string(out), err),
			Fix: "make sure docker info answers for this user"}}
	}
	if def := strings.TrimSpace(string(out)); def != "nvidia" {
		return []Finding{found, {Check: checkDefaultRuntime, Status: Fail,
			Detail: fmt.Sprintf("Docker's default runtime is %s, not nvidia: kind creates its nodes with the default runtime, so the worker would get no GPU", def),
			Fix:    configureRuntimeFix}}
	}
	return []Finding{found, {Check: checkDefaultRuntime, Status: OK, Detail: "nvidia"}}
}

// checkToolkit checks that the NVIDIA container toolkit reads device
// lists from volume mounts.
func checkToolkit(h *Host) Finding {
	data, err := os.ReadFile(h.path(nvidiaToolkitConfig))
	if errors.Is(err, fs.ErrNotExist) {
		return Finding{Check: checkToolkitConfig, Status: Fail,
			Detail: fmt.Sprintf("no %s: the NVIDIA container toolkit is not installed", nvidiaToolkitConfig),
			Fix:    installToolkit + ", then " + configureRuntimeFix + " and " + volumeMountsFix}
	}
	if err != nil {
		return Finding{Check: checkToolkitConfig, Status: Fail, Detail: fmt.Sprintf("cannot read %s: %v", nvidiaToolkitConfig, err),
			Fix: "make the file readable for this user, or run kaic doctor as a user who can read it"}
	}
	var cfg struct {
		AcceptVolumeMounts *bool `toml:"accept-nvidia-visible-devices-as-volume-mounts"`
	}
	if _, err := toml.Decode(string(data), &cfg); err != nil {
		return Finding{Check: checkToolkitConfig, Status: Fail, Detail: fmt.Sprintf("cannot parse %s: %v", nvidiaToolkitConfig, err),
			Fix: "repair the file (nvidia-ctk config --in-place rewrites it), then " + volumeMountsFix}
	}
	if cfg.AcceptVolumeMounts == nil || !*cfg.AcceptVolumeMounts {
		state := "is not set"
		if cfg.AcceptVolumeMounts != nil {
			state = "is false"
		}
		return Finding{Check: checkToolkitConfig, Status: Fail,
			Detail: fmt.Sprintf("%s in %s %s: the toolkit ignores the device-list mounts through which kaic hands GPUs to the kind worker", volumeMountsKey, nvidiaToolkitConfig, state),
			Fix:    volumeMountsFix}
	}
	return Finding{Check: checkToolkitConfig, Status: OK, Detail: fmt.Sprintf("%s = true in %s", volumeMountsKey, nvidiaToolkitConfig)}
}
