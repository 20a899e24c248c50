package fakegpu

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	oci "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/utils/ptr"
	cdiapi "tags.cncf.io/container-device-interface/pkg/cdi"
)

func TestDevices(t *testing.T) {
	devs := Spec{Node: "node-a", Count: 3}.Devices()
	if len(devs) != 3 {
		t.Fatalf("got %d devices, want 3", len(devs))
	}
	uuidShape := regexp.MustCompile(`^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for i, d := range devs {
		if want := "gpu-" + string(rune('0'+i)); d.Name != want || d.Index != i {
			t.Errorf("device %d: name %q index %d, want %q %d", i, d.Name, d.Index, want, i)
		}
		if !uuidShape.MatchString(d.UUID) || seen[d.UUID] {
			t.Errorf("device %d: uuid %q is not a fresh GPU-style UUID", i, d.UUID)
		}
		seen[d.UUID] = true
		if d.Model != DefaultModel || d.DriverVersion != DefaultDriverVersion || d.Memory != 80<<30 {
			t.Errorf("device %d: defaults not applied: %+v", i, d)
		}
		if d.EnvName() != "GPU_DEVICE_"+string(rune('0'+i)) {
			t.Errorf("device %d: env %s", i, d.EnvName())
		}
	}
	// Stable across restarts, distinct across nodes.
	if again := (Spec{Node: "node-a", Count: 3}).Devices(); again[1].UUID != devs[1].UUID {
		t.Errorf("uuid changed between runs: %s vs %s", again[1].UUID, devs[1].UUID)
	}
	if other := (Spec{Node: "node-b", Count: 3}).Devices(); other[1].UUID == devs[1].UUID {
		t.Errorf("two nodes share uuid %s", devs[1].UUID)
	}
	custom := Spec{Node: "n", Count: 1, Model: "m", DriverVersion: "2.1.0", Memory: resource.MustParse("16Gi")}.Devices()[0]
	if custom.Model != "m" || custom.DriverVersion != "2.1.0" || custom.Memory != 16<<30 {
		t.Errorf("custom spec not applied: %+v", custom)
	}
}

func TestResources(t *testing.T) {
	res := Resources("node-a", Spec{Node: "node-a", Count: 2}.Devices())
	pool, ok := res.Pools["node-a"]
	if !ok || len(res.Pools) != 1 || len(pool.Slices) != 1 {
		t.Fatalf("want one pool node-a with one slice, got %+v", res)
	}
	devs := pool.Slices[0].Devices
	if len(devs) != 2 {
		t.Fatalf("got %d devices", len(devs))
	}
	d := devs[1]
	a := d.Attributes
	if d.Name != "gpu-1" || *a["index"].IntValue != 1 || *a["model"].StringValue != DefaultModel ||
		*a["driverVersion"].VersionValue != DefaultDriverVersion || a["uuid"].StringValue == nil {
		t.Errorf("attributes: %+v", a)
	}
	if m := d.Capacity["memory"].Value; m.Cmp(resource.MustParse("80Gi")) != 0 {
		t.Errorf("memory capacity %s, want 80Gi", m.String())
	}
}

// TestCDISpec checks the spec with the CDI library container runtimes use:
// it must load, and injecting a device into an OCI spec must add exactly
// the device's variable and its load directory mount.
func TestCDISpec(t *testing.T) {
	cdiDir, stateDir := t.TempDir(), "/var/run/kaic-fake-gpu"
	specs := cdiSpecs{dir: cdiDir, stateDir: stateDir}
	devs := Spec{Node: "n", Count: 4}.Devices()
	claim := types.UID("0d5c3a9e-1111-4222-8333-944455556666")
	if err := specs.Write(claim, []Device{devs[1], devs[3]}); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(cdiDir, "*"))
	if len(files) != 1 || filepath.Base(files[0]) != "gpu.example.com-gpu_"+string(claim)+".json" {
		t.Fatalf("spec files: %v", files)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(data) {
		t.Fatalf("not JSON:\n%s", data)
	}
	raw, err := cdiapi.ParseSpec(data)
	if err != nil {
		t.Fatalf("CDI parser rejects the spec: %v\n%s", err, data)
	}
	if raw.Version != "0.5.0" || raw.Kind != "gpu.example.com/gpu" {
		t.Errorf("version %s kind %s", raw.Version, raw.Kind)
	}

	cache, err := cdiapi.NewCache(cdiapi.WithSpecDirs(cdiDir), cdiapi.WithAutoRefresh(false))
	if err != nil {
		t.Fatal(err)
	}
	if errs := cache.GetErrors(); len(errs) > 0 {
		t.Fatalf("CDI cache errors: %v", errs)
	}
	want := []string{deviceID(claim, "gpu-1"), deviceID(claim, "gpu-3")}
	if got := cache.ListDevices(); !slices.Equal(got, want) {
		t.Fatalf("CDI devices %v, want %v", got, want)
	}
	ctr := &oci.Spec{Process: &oci.Process{Env: []string{"PATH=/"}}, Linux: &oci.Linux{}}
	if unresolved, err := cache.InjectDevices(ctr, deviceID(claim, "gpu-3")); err != nil {
		t.Fatalf("inject: %v (unresolved %v)", err, unresolved)
	}
	if !slices.Contains(ctr.Process.Env, "GPU_DEVICE_3=gpu-3") || slices.Contains(ctr.Process.Env, "GPU_DEVICE_1=gpu-1") ||
		!slices.Contains(ctr.Process.Env, "GPU_DEVICE_3_DRIVER_VERSION="+DefaultDriverVersion) {
		t.Errorf("env after injecting gpu-3: %v", ctr.Process.Env)
	}
	if len(ctr.Mounts) != 1 || ctr.Mounts[0].Source != stateDir+"/gpu-3" || ctr.Mounts[0].Destination != stateDir+"/gpu-3" ||
		!slices.Contains(ctr.Mounts[0].Options, "rw") || !slices.Contains(ctr.Mounts[0].Options, "bind") {
		t.Errorf("mounts after injecting gpu-3: %+v", ctr.Mounts)
	}

	got, err := specs.Devices(claim)
	if err != nil || !slices.Equal(got, []string{"gpu-1", "gpu-3"}) {
		t.Errorf("devices read back: %v %v", got, err)
	}
	holders, err := specs.Holders()
	if err != nil || len(holders) != 2 || holders["gpu-3"][0] != claim {
		t.Errorf("holders: %v %v", holders, err)
	}
	if err := specs.Remove(claim); err != nil {
		t.Fatal(err)
	}
	if err := specs.Remove(claim); err != nil {
		t.Errorf("removing twice: %v", err)
	}
	if holders, _ := specs.Holders(); len(holders) != 0 {
		t.Errorf("holders after removal: %v", holders)
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if l := ReadLoad(filepath.Join(dir, "missing"), now); l != (Load{}) {
		t.Errorf("missing dir: %+v", l)
	}
	if _, err := WriteLoad(dir, "a", Load{UtilizationPercent: 70, MemoryBytes: 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteLoad(dir, "b/../x", Load{UtilizationPercent: 50, MemoryBytes: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteLoad(dir, "old", Load{UtilizationPercent: 90, Expires: now.Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "load-garbage.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteLoad(dir, "bad", Load{UtilizationPercent: 101}); err == nil {
		t.Error("utilization above 100 accepted")
	}
	got := ReadLoad(dir, now)
	if got.UtilizationPercent != 100 || got.MemoryBytes != 15 {
		t.Errorf("sum of loads: %+v, want utilization capped at 100 and 15 bytes", got)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "/") || strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("unexpected file %s", e.Name())
		}
	}
}

func TestPutLoad(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := PutLoad(dir, nil, "w", Load{UtilizationPercent: 10}); err == nil || !strings.Contains(err.Error(), "holds no device") {
		t.Errorf("no device held: %v", err)
	}
	for _, d := range []string{"gpu-2", "gpu-5"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := PutLoad(dir, []string{"gpu-0"}, "w", Load{}); err == nil || !strings.Contains(err.Error(), "gpu-2,gpu-5") {
		t.Errorf("device not held: %v", err)
	}
	devs, files, err := PutLoad(dir, nil, "w", Load{UtilizationPercent: 40, MemoryBytes: 1 << 30})
	if err != nil || !slices.Equal(devs, []string{"gpu-2", "gpu-5"}) || len(files) != 2 {
		t.Fatalf("PutLoad: %v %v %v", devs, files, err)
	}
	if l := ReadLoad(filepath.Join(dir, "gpu-5"), time.Now()); l.UtilizationPercent != 40 || l.MemoryBytes != 1<<30 {
		t.Errorf("load on gpu-5: %+v", l)
	}
}

// claimFor returns an allocated claim of the given devices of the node.
func claimFor(uid, node string, devices ...string) *resourceapi.ResourceClaim {
	c := &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "claim-" + uid, Namespace: "ns", UID: types.UID(uid)},
		Status:     resourceapi.ResourceClaimStatus{Allocation: &resourceapi.AllocationResult{}},
	}
	for _, d := range devices {
		c.Status.Allocation.Devices.Results = append(c.Status.Allocation.Devices.Results, resourceapi.DeviceRequestAllocationResult{
			Request: "gpu", Driver: DriverName, Pool: node, Device: d,
		})
	}
	return c
}

// TestDriverAndMetrics prepares and unprepares claims with the driver
// directly and watches the metrics follow holders and load.
func TestDriverAndMetrics(t *testing.T) {
	ctx := context.Background()
	cdiDir, stateDir := t.TempDir(), t.TempDir()
	devs := Spec{Node: "node-a", Count: 2}.Devices()
	d := NewDriver("node-a", devs, cdiDir, stateDir, nil, nil)
	reg := prometheus.NewPedanticRegistry()
	col := newCollector("node-a", devs, d.specs, d.logger)
	reg.MustRegister(col)
	metric := func(name, device string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == "device" && lp.GetValue() == device {
						return m.GetGauge().GetValue()
					}
				}
			}
		}
		t.Fatalf("no %s{device=%q}", name, device)
		return 0
	}
	if n := testutil.CollectAndCount(col); n != 12 {
		t.Errorf("%d series, want 6 metrics × 2 devices", n)
	}
	// Idle: nothing held.
	if metric(MetricUtilization, "gpu-0") != 0 || metric(MetricAllocated, "gpu-0") != 0 ||
		metric(MetricMemoryTotal, "gpu-0") != float64(80<<30) || metric(MetricTemperature, "gpu-0") != idleCelsius || metric(MetricPower, "gpu-0") != idleWatts {
		t.Error("idle device does not report idle values")
	}

	claim := claimFor("uid-1", "node-a", "gpu-1")
	res, err := d.PrepareResourceClaims(ctx, []*resourceapi.ResourceClaim{claim})
	if err != nil || res[claim.UID].Err != nil {
		t.Fatalf("prepare: %v %v", err, res[claim.UID].Err)
	}
	got := res[claim.UID].Devices
	if len(got) != 1 || got[0].DeviceName != "gpu-1" || got[0].PoolName != "node-a" || !slices.Equal(got[0].Requests, []string{"gpu"}) ||
		!slices.Equal(got[0].CDIDeviceIDs, []string{"gpu.example.com/gpu=uid-1-gpu-1"}) {
		t.Errorf("prepared devices: %+v", got)
	}
	loadDir := filepath.Join(stateDir, "gpu-1")
	if st, err := os.Stat(loadDir); err != nil || st.Mode().Perm() != 0o777 {
		t.Fatalf("load directory: %v %v", st, err)
	}
	if metric(MetricAllocated, "gpu-1") != 1 || metric(MetricUtilization, "gpu-1") != 0 {
		t.Error("held device without load")
	}

	// The holder puts load on its device; only that device moves.
	if _, err := WriteLoad(loadDir, "pod", Load{UtilizationPercent: 80, MemoryBytes: 40 << 30}); err != nil {
		t.Fatal(err)
	}
	if u, m := metric(MetricUtilization, "gpu-1"), metric(MetricMemoryUsed, "gpu-1"); u != 80 || m != float64(40<<30) {
		t.Errorf("loaded device: utilization %g memory %g", u, m)
	}
	if temp, p := metric(MetricTemperature, "gpu-1"), metric(MetricPower, "gpu-1"); temp <= idleCelsius || p <= idleWatts {
		t.Errorf("temperature %g and power %g do not follow the load", temp, p)
	}
	if metric(MetricUtilization, "gpu-0") != 0 {
		t.Error("the other device moved")
	}
	// Memory use cannot exceed the device.
	if _, err := WriteLoad(loadDir, "pod2", Load{MemoryBytes: 60 << 30}); err != nil {
		t.Fatal(err)
	}
	if m := metric(MetricMemoryUsed, "gpu-1"); m != float64(80<<30) {
		t.Errorf("memory used %g, want capped at 80Gi", m)
	}

	// Preparing again (a kubelet restart) keeps the load; another claim
	// for the same device is refused.
	if res, _ := d.PrepareResourceClaims(ctx, []*resourceapi.ResourceClaim{claim}); res[claim.UID].Err != nil {
		t.Fatalf("prepare again: %v", res[claim.UID].Err)
	}
	if metric(MetricUtilization, "gpu-1") != 80 {
		t.Error("re-preparing the claim reset its load")
	}
	thief := claimFor("uid-2", "node-a", "gpu-1")
	if res, _ := d.PrepareResourceClaims(ctx, []*resourceapi.ResourceClaim{thief}); res[thief.UID].Err == nil {
		t.Error("a second claim got a device already prepared for another")
	}
	for _, bad := range []*resourceapi.ResourceClaim{claimFor("uid-3", "node-b", "gpu-0"), claimFor("uid-4", "node-a", "gpu-9"), {ObjectMeta: metav1.ObjectMeta{UID: "uid-5"}}} {
		if res, _ := d.PrepareResourceClaims(ctx, []*resourceapi.ResourceClaim{bad}); res[bad.UID].Err == nil {
			t.Errorf("claim %s prepared", bad.UID)
		}
	}
	// Admin access may share a device.
	admin := claimFor("uid-6", "node-a", "gpu-1")
	admin.Status.Allocation.Devices.Results[0].AdminAccess = ptr.To(true)
	if res, _ := d.PrepareResourceClaims(ctx, []*resourceapi.ResourceClaim{admin}); res[admin.UID].Err != nil {
		t.Errorf("admin access: %v", res[admin.UID].Err)
	}
	if res, _ := d.UnprepareResourceClaims(ctx, []kubeletplugin.NamespacedObject{{UID: admin.UID}}); res[admin.UID] != nil {
		t.Fatal(res[admin.UID])
	}
	if metric(MetricUtilization, "gpu-1") != 80 {
		t.Error("unpreparing the admin claim cleared the holder's load")
	}

	// The holder goes: the device is idle, even before its load expires.
	for range 2 { // idempotent
		res, err := d.UnprepareResourceClaims(ctx, []kubeletplugin.NamespacedObject{{UID: claim.UID}})
		if err != nil || res[claim.UID] != nil {
			t.Fatalf("unprepare: %v %v", err, res[claim.UID])
		}
	}
	if metric(MetricAllocated, "gpu-1") != 0 || metric(MetricUtilization, "gpu-1") != 0 || metric(MetricMemoryUsed, "gpu-1") != 0 {
		t.Error("device still loaded after its claim was unprepared")
	}
	if files, _ := filepath.Glob(filepath.Join(cdiDir, "*.json")); len(files) != 0 {
		t.Errorf("CDI specs left: %v", files)
	}
	// A new holder starts from an empty load directory.
	if res, _ := d.PrepareResourceClaims(ctx, []*resourceapi.ResourceClaim{thief}); res[thief.UID].Err != nil {
		t.Fatalf("prepare for the next holder: %v", res[thief.UID].Err)
	}
	if metric(MetricUtilization, "gpu-1") != 0 {
		t.Error("the next holder inherited load")
	}
}

func TestHandleError(t *testing.T) {
	var got error
	d := NewDriver("n", nil, t.TempDir(), t.TempDir(), nil, func(err error) { got = err })
	d.HandleError(context.Background(), os.ErrPermission, "publishing")
	if got == nil || !strings.Contains(got.Error(), "publishing") {
		t.Errorf("fatal error did not shut down: %v", got)
	}
}
