// Package probe is the workload side of kaic's checks: what `kaic probe
// <mode>` does inside the probe image in a test pod. Every mode prints
// machine-readable "RESULT: KEY=value" lines that checks read from the pod
// log, so no check depends on a public image or shell tools.
package probe

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// ResultPrefix starts every line a check parses.
const ResultPrefix = "RESULT: "

// DeviceReport is what a container can see of accelerators.
type DeviceReport struct {
	// Devices are the device identifiers found: environment variable
	// values for an env prefix, device file paths for a glob.
	Devices []string
	// DriverVersions are the driver versions the container can read
	// (distinct, sorted): <prefix><n>_DRIVER_VERSION variables of the
	// devices announced through the environment, and the kernel module
	// version in /proc/driver/nvidia/version when a device glob is used
	// and that file exists. Empty when the driver exposes none.
	DriverVersions []string
}

// driverVersionSuffix ends the variable that carries a device's driver
// version next to the one announcing it (GPU_DEVICE_0_DRIVER_VERSION).
const driverVersionSuffix = "_DRIVER_VERSION"

// nvidiaVersionFile is where NVIDIA's kernel driver states its version;
// a variable so tests can point it elsewhere.
var nvidiaVersionFile = "/proc/driver/nvidia/version"

// nvidiaModuleVersion finds the version in the file's NVRM line, e.g.
// "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.82.07  Wed ...".
var nvidiaModuleVersion = regexp.MustCompile(`Kernel Module\s+([0-9][0-9.]*)`)

// FindDevices lists the devices a container holds: the values of
// environment variables named with envPrefix (as CDI injects them for
// simulated GPUs) and the files matching glob (e.g. /dev/nvidia[0-9]*).
// Either may be empty.
func FindDevices(environ []string, envPrefix, glob string) (DeviceReport, error) {
	seen := map[string]bool{}
	var devs []string
	if envPrefix != "" {
		for _, kv := range environ {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || !strings.HasPrefix(k, envPrefix) || !isDeviceVar(k[len(envPrefix):]) || v == "" {
				continue
			}
			if !seen[v] {
				seen[v] = true
				devs = append(devs, v)
			}
		}
	}
	if glob != "" {
		matches, err := filepath.Glob(glob)
		if err != nil {
			return DeviceReport{}, fmt.Errorf("device glob %q: %w", glob, err)
		}
		for _, m := range matches {
			if !seen[m] {
				seen[m] = true
				devs = append(devs, m)
			}
		}
	}
	sort.Strings(devs)
	return DeviceReport{Devices: devs, DriverVersions: driverVersions(environ, envPrefix, glob)}, nil
}

// driverVersions reads the driver versions a container can see; see
// DeviceReport.DriverVersions.
func driverVersions(environ []string, envPrefix, glob string) []string {
	seen := map[string]bool{}
	if envPrefix != "" {
		for _, kv := range environ {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || v == "" || !strings.HasPrefix(k, envPrefix) || !strings.HasSuffix(k, driverVersionSuffix) {
				continue
			}
			if isDeviceVar(strings.TrimSuffix(k[len(envPrefix):], driverVersionSuffix)) {
				seen[v] = true
			}
		}
	}
	if glob != "" {
		if data, err := os.ReadFile(nvidiaVersionFile); err == nil {
			if m := nvidiaModuleVersion.FindSubmatch(data); m != nil {
				seen[string(m[1])] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// isDeviceVar accepts the part of a variable name after the prefix that
// names a device (GPU_DEVICE_0, GPU_DEVICE_1, …) and not its settings
// (GPU_DEVICE_0_SHARING_STRATEGY, …).
func isDeviceVar(suffix string) bool {
	if suffix == "" {
		return false
	}
	for _, r := range suffix {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// WriteDeviceReport prints the report as RESULT lines: the count, the
// devices, and the FOUND/MISSING line the official suite's probe prints.
func WriteDeviceReport(w io.Writer, r DeviceReport) error {
	found := "ACCELERATOR_MISSING"
	if len(r.Devices) > 0 {
		found = "ACCELERATOR_FOUND"
	}
	_, err := fmt.Fprintf(w, "%sACCELERATOR_COUNT=%d\n%sDEVICES=%s\n",
		ResultPrefix, len(r.Devices), ResultPrefix, strings.Join(r.Devices, ","))
	if err == nil && len(r.DriverVersions) > 0 {
		_, err = fmt.Fprintf(w, "%sDRIVER_VERSIONS=%s\n", ResultPrefix, strings.Join(r.DriverVersions, ","))
	}
	if err == nil {
		_, err = fmt.Fprintf(w, "%s%s\n", ResultPrefix, found)
	}
	return err
}

// ParseResults reads the RESULT lines of a log into a map; a later line
// with the same key wins.
func ParseResults(log string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(log, "\n") {
		i := strings.Index(line, ResultPrefix)
		if i < 0 {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimSpace(line[i+len(ResultPrefix):]), "=")
		if !ok {
			out[k] = ""
			continue
		}
		out[k] = v
	}
	return out
}

// Args are the arguments of a container that runs the probe image in
// mode with flags: the image's entrypoint is already `kaic probe`, so
// they start with the mode.
func Args(mode string, flags ...string) []string {
	return append([]string{mode}, flags...)
}
