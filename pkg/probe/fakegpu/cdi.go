package fakegpu

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/kaic-dev/kaic/pkg/atomicfile"
)

// CDI names of the driver's devices: IDs are <CDIKind>=<claim UID>-<device>,
// so a device is never announced under a name an earlier claim used (a
// container runtime's cached spec could otherwise answer for it).
const (
	CDIVendor = DriverName
	CDIClass  = "gpu"
	CDIKind   = CDIVendor + "/" + CDIClass
	// DefaultCDIDir is where the container runtime looks for specs that
	// change at run time.
	DefaultCDIDir = "/var/run/cdi"
)

// specFilePrefix starts the name of every spec file this driver writes;
// the claim UID follows.
const specFilePrefix = CDIVendor + "-" + CDIClass + "_"

// cdiSpecs keeps one CDI spec file per prepared claim in a directory. The
// files are the driver's record of which claim holds which device.
type cdiSpecs struct {
	dir string
	// stateDir is the node directory holding each device's load directory,
	// mounted into containers at the same path.
	stateDir string
}

// deviceID is the CDI device ID of a device prepared for a claim.
func deviceID(claim types.UID, device string) string {
	return CDIKind + "=" + cdiDeviceName(claim, device)
}

func cdiDeviceName(claim types.UID, device string) string {
	return string(claim) + "-" + device
}

func (c cdiSpecs) path(claim types.UID) string {
	return filepath.Join(c.dir, specFilePrefix+string(claim)+".json")
}

// Spec returns the CDI spec that gives a claim's containers its devices:
// per device the variables GPU_DEVICE_<index>=<name> and
// GPU_DEVICE_<index>_DRIVER_VERSION=<its driverVersion attribute> and a read-write bind
// mount of the device's load directory.
func (c cdiSpecs) Spec(claim types.UID, devices []Device) (*cdispec.Spec, error) {
	spec := &cdispec.Spec{Kind: CDIKind}
	for _, d := range devices {
		dir := filepath.Join(c.stateDir, d.Name)
		spec.Devices = append(spec.Devices, cdispec.Device{
			Name: cdiDeviceName(claim, d.Name),
			ContainerEdits: cdispec.ContainerEdits{
				Env: d.Env(),
				Mounts: []*cdispec.Mount{{
					HostPath:      dir,
					ContainerPath: dir,
					Type:          "bind",
					Options:       []string{"bind", "rw", "nosuid", "nodev", "noexec"},
				}},
			},
		})
	}
	// The lowest version that can express the spec, so that any runtime
	// whose CDI support can read it accepts it.
	v, err := cdispec.MinimumRequiredVersion(spec)
	if err != nil {
		return nil, err
	}
	spec.Version = v
	return spec, nil
}

// Write stores a claim's spec atomically: the runtime watches the
// directory and must never read half a file.
func (c cdiSpecs) Write(claim types.UID, devices []Device) error {
	spec, err := c.Spec(claim, devices)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	// The temporary file's name lacks the .json suffix, so CDI readers
	// ignore it.
	return atomicfile.Write(c.path(claim), append(data, '\n'), 0o644)
}

// Remove deletes a claim's spec; a missing spec is not an error.
func (c cdiSpecs) Remove(claim types.UID) error {
	if err := os.Remove(c.path(claim)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Devices returns the device names of a claim's spec, nil when there is
// none.
func (c cdiSpecs) Devices(claim types.UID) ([]string, error) {
	data, err := os.ReadFile(c.path(claim))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return devicesOfSpec(claim, data)
}

func devicesOfSpec(claim types.UID, data []byte) ([]string, error) {
	var spec cdispec.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("CDI spec of claim %s: %w", claim, err)
	}
	prefix := string(claim) + "-"
	var out []string
	for _, d := range spec.Devices {
		if name, ok := strings.CutPrefix(d.Name, prefix); ok {
			out = append(out, name)
		}
	}
	return out, nil
}

// Holders maps each held device to the claims whose specs name it.
func (c cdiSpecs) Holders() (map[string][]types.UID, error) {
	entries, err := os.ReadDir(c.dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[string][]types.UID{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string][]types.UID{}
	for _, e := range entries {
		name := e.Name()
		uid, ok := strings.CutPrefix(name, specFilePrefix)
		if !ok || !strings.HasSuffix(uid, ".json") {
			continue
		}
		claim := types.UID(strings.TrimSuffix(uid, ".json"))
		devs, err := c.Devices(claim)
		if err != nil {
			return nil, err
		}
		for _, d := range devs {
			out[d] = append(out[d], claim)
		}
	}
	for _, uids := range out {
		sort.Slice(uids, func(i, j int) bool { return uids[i] < uids[j] })
	}
	return out, nil
}
