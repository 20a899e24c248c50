package fakegpu

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kaic-dev/kaic/pkg/atomicfile"
)

// Load is the work one process puts on a device: what `kaic probe load`
// writes into the device's load directory and the driver's metrics read.
type Load struct {
	// UtilizationPercent is 0–100.
	UtilizationPercent float64 `json:"utilizationPercent"`
	// MemoryBytes is the device memory in use.
	MemoryBytes int64 `json:"memoryBytes"`
	// Expires ends the load even when its writer could not remove the
	// file (it was killed); zero means the load lasts until removed.
	Expires time.Time `json:"expires,omitzero"`
}

// loadFileSuffix ends every load file; temporary files do not.
const (
	loadFilePrefix = "load-"
	loadFileSuffix = ".json"
)

// Validate rejects loads outside what a device can do.
func (l Load) Validate() error {
	if l.UtilizationPercent < 0 || l.UtilizationPercent > 100 {
		return fmt.Errorf("utilization %g%% is not between 0 and 100", l.UtilizationPercent)
	}
	if l.MemoryBytes < 0 {
		return fmt.Errorf("memory %d is negative", l.MemoryBytes)
	}
	return nil
}

// HeldDevices lists the devices whose load directories are present under
// dir: in a container, the devices the container holds.
func HeldDevices(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// WriteLoad puts l on the device whose load directory is deviceDir under
// the writer's name (one file per writer, so pods sharing a device add up)
// and returns the file written.
func WriteLoad(deviceDir, writer string, l Load) (string, error) {
	if err := l.Validate(); err != nil {
		return "", err
	}
	data, err := json.Marshal(l)
	if err != nil {
		return "", err
	}
	path := filepath.Join(deviceDir, loadFilePrefix+safeName(writer)+loadFileSuffix)
	// The temporary file's name starts with a dot: readers, which look
	// for loadFilePrefix, never see a partial one.
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// safeName keeps a writer name usable as part of a file name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

// ReadLoad sums the unexpired loads of a device directory at time now:
// utilization capped at 100%, memory as written (the caller caps it at
// the device's size). A missing directory is no load; an unreadable or
// malformed file is skipped (it may be mid-replacement).
func ReadLoad(deviceDir string, now time.Time) Load {
	entries, err := os.ReadDir(deviceDir)
	if err != nil {
		return Load{}
	}
	var sum Load
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasPrefix(name, loadFilePrefix) || !strings.HasSuffix(name, loadFileSuffix) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(deviceDir, name))
		if err != nil {
			continue
		}
		var l Load
		if json.Unmarshal(data, &l) != nil || l.Validate() != nil {
			continue
		}
		if !l.Expires.IsZero() && !now.Before(l.Expires) {
			continue
		}
		sum.UtilizationPercent += l.UtilizationPercent
		sum.MemoryBytes += l.MemoryBytes
	}
	sum.UtilizationPercent = min(sum.UtilizationPercent, 100)
	return sum
}

// resetLoadDir makes a device's load directory exist, empty and writable by
// any container user (probe containers do not run as root).
func resetLoadDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	return os.Chmod(dir, 0o777)
}

// PutLoad writes l, under the writer's name, on the devices whose load
// directories are mounted under dir: all of them, or those named in only.
// It returns the devices loaded and the files written (which the writer
// removes when its load ends).
func PutLoad(dir string, only []string, writer string, l Load) (devices, files []string, err error) {
	held, err := HeldDevices(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, want := range only {
		if !slices.Contains(held, want) {
			return nil, nil, fmt.Errorf("device %s is not held by this container (held: %s)", want, listOrNone(held))
		}
	}
	if len(only) > 0 {
		held = only
	}
	if len(held) == 0 {
		return nil, nil, fmt.Errorf("no kaic-fake-gpu device is mounted under %s: the container holds no device of %s", dir, DriverName)
	}
	for _, dev := range held {
		f, err := WriteLoad(filepath.Join(dir, dev), writer, l)
		if err != nil {
			for _, w := range files {
				os.Remove(w)
			}
			return nil, nil, fmt.Errorf("device %s: %w", dev, err)
		}
		files = append(files, f)
	}
	return held, files, nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}
