package fakegpu

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/cel"
	"k8s.io/utils/ptr"
)

var timeSliced = Spec{Node: "node-a", Count: 4, Sharing: Sharing{Strategy: StrategyTimeSlicing, Replicas: 3, Devices: 2}}

// The last devices are shared: they allow multiple allocations, name the
// strategy and bound their holders with shares; the others are published
// as without a strategy.
func TestSharedDevicesPublished(t *testing.T) {
	devs := timeSliced.Devices()
	plain := Spec{Node: "node-a", Count: 4}.Devices()
	for i, d := range devs {
		api := d.APIDevice()
		if i < 2 {
			if d.Shared() || api.AllowMultipleAllocations != nil || len(api.Capacity) != 1 {
				t.Errorf("device %s is shared: %+v", d.Name, api)
			}
			if want := plain[i].APIDevice(); !equality.Semantic.DeepEqual(api, want) {
				t.Errorf("exclusive device %s differs from the device without a strategy", d.Name)
			}
			continue
		}
		if !d.Shared() || !ptr.Deref(api.AllowMultipleAllocations, false) {
			t.Errorf("device %s does not allow multiple allocations", d.Name)
		}
		if s := api.Attributes[AttrSharing].StringValue; s == nil || *s != StrategyTimeSlicing {
			t.Errorf("device %s: sharing attribute %v", d.Name, s)
		}
		shares := api.Capacity[CapacityShares]
		if shares.Value.Value() != 3 || shares.RequestPolicy == nil || shares.RequestPolicy.Default.Value() != 1 ||
			shares.RequestPolicy.ValidRange.Max.Value() != 3 {
			t.Errorf("device %s: shares %+v, want 3 with one per claim by default", d.Name, shares)
		}
		memory := api.Capacity["memory"]
		if memory.Value.Cmp(resource.MustParse("80Gi")) != 0 || memory.RequestPolicy == nil || !memory.RequestPolicy.Default.IsZero() {
			t.Errorf("device %s: memory %+v, want 80Gi of which a claim consumes none by default", d.Name, memory)
		}
	}
	if len(devs) != 4 || devs[0].UUID != plain[0].UUID {
		t.Errorf("a strategy changes the devices: %+v", devs)
	}
}

// The DeviceClass selectors, evaluated as the scheduler evaluates them:
// the exclusive class never admits a shared device, the shared class
// only shared ones.
func TestDeviceClassSelectors(t *testing.T) {
	compiler := cel.GetCompiler(cel.Features{EnableConsumableCapacity: true})
	exclusive := compiler.CompileCELExpression(ExclusiveSelector(DriverName), cel.Options{})
	shared := compiler.CompileCELExpression(SharedSelector(DriverName), cel.Options{})
	for _, r := range []cel.CompilationResult{exclusive, shared} {
		if r.Error != nil {
			t.Fatalf("%s: %v", r.Expression, r.Error)
		}
	}
	for _, d := range timeSliced.Devices() {
		api := d.APIDevice()
		in := cel.Device{Driver: DriverName, AllowMultipleAllocations: api.AllowMultipleAllocations, Attributes: api.Attributes, Capacity: api.Capacity}
		ex, _, err1 := exclusive.DeviceMatches(context.Background(), in)
		sh, _, err2 := shared.DeviceMatches(context.Background(), in)
		if err1 != nil || err2 != nil {
			t.Fatalf("device %s: %v %v", d.Name, err1, err2)
		}
		if ex == d.Shared() || sh != d.Shared() {
			t.Errorf("device %s (shared %t): exclusive class admits it %t, shared class %t", d.Name, d.Shared(), ex, sh)
		}
		other := in
		other.Driver = "other.example.com"
		if ex, _, _ := exclusive.DeviceMatches(context.Background(), other); ex {
			t.Errorf("the exclusive class admits device %s of another driver", d.Name)
		}
	}
}

func shareOf(c *resourceapi.ResourceClaim, share string) *resourceapi.ResourceClaim {
	for i := range c.Status.Allocation.Devices.Results {
		c.Status.Allocation.Devices.Results[i].ShareID = ptr.To(types.UID(share))
	}
	return c
}

// Claims holding shares of one device are all prepared, each seeing that
// device; a claim more than the device takes is refused, and an exclusive
// device is still refused to a second claim.
func TestDriverPreparesShares(t *testing.T) {
	ctx := context.Background()
	cdiDir, stateDir := t.TempDir(), t.TempDir()
	devs := timeSliced.Devices()
	d := NewDriver("node-a", devs, cdiDir, stateDir, nil, nil)
	prepare := func(c *resourceapi.ResourceClaim) error {
		t.Helper()
		res, err := d.PrepareResourceClaims(ctx, []*resourceapi.ResourceClaim{c})
		if err != nil {
			t.Fatal(err)
		}
		return res[c.UID].Err
	}
	for i, uid := range []string{"uid-1", "uid-2", "uid-3"} {
		if err := prepare(shareOf(claimFor(uid, "node-a", "gpu-3"), "share-"+uid)); err != nil {
			t.Fatalf("share %d of gpu-3: %v", i+1, err)
		}
		if i == 0 {
			// The first holder puts load on the device: the next holders
			// must not clear it.
			if _, err := WriteLoad(filepath.Join(stateDir, "gpu-3"), "first", Load{UtilizationPercent: 40}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if l := ReadLoad(filepath.Join(stateDir, "gpu-3"), time.Now()); l.UtilizationPercent != 40 {
		t.Errorf("later holders cleared the first holder's load: %+v", l)
	}
	for _, uid := range []types.UID{"uid-1", "uid-2", "uid-3"} {
		spec, err := cdiSpecs{stateDir: stateDir}.Spec(uid, []Device{devs[3]})
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(cdiDir, specFilePrefix+string(uid)+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if env := spec.Devices[0].ContainerEdits.Env; !strings.Contains(string(data), env[0]) || env[0] != "GPU_DEVICE_3=gpu-3" {
			t.Errorf("claim %s: spec does not give the physical device gpu-3 (%v)", uid, env)
		}
	}
	holders, _ := d.specs.Holders()
	if !slices.Equal(holders["gpu-3"], []types.UID{"uid-1", "uid-2", "uid-3"}) {
		t.Errorf("holders of gpu-3: %v", holders["gpu-3"])
	}
	if err := prepare(shareOf(claimFor("uid-4", "node-a", "gpu-3"), "share-4")); err == nil || !strings.Contains(err.Error(), "already has 3 holders") {
		t.Errorf("a fourth holder of a device of 3 replicas: %v", err)
	}
	if err := prepare(claimFor("uid-5", "node-a", "gpu-0")); err != nil {
		t.Fatal(err)
	}
	if err := prepare(claimFor("uid-6", "node-a", "gpu-0")); err == nil || !strings.Contains(err.Error(), "already prepared for claim uid-5") {
		t.Errorf("a second claim of an exclusive device: %v", err)
	}
	if err := prepare(shareOf(claimFor("uid-7", "node-a", "gpu-1"), "share-7")); err == nil || !strings.Contains(err.Error(), "not shared") {
		t.Errorf("a share of an exclusive device: %v", err)
	}

	// The load stays until the last holder is gone.
	for i, uid := range []types.UID{"uid-1", "uid-2", "uid-3"} {
		if err := d.unprepare(uid); err != nil {
			t.Fatal(err)
		}
		l := ReadLoad(filepath.Join(stateDir, "gpu-3"), time.Now())
		if last := i == 2; (l.UtilizationPercent == 0) != last {
			t.Errorf("after unpreparing %s: load %+v", uid, l)
		}
	}
}
