package accelmetrics

import (
	"os"
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/promtext"
)

// The identities in testdata/dcgm-mig.prom.
const (
	dcgmNode    = "kwok-gpu-0"
	wholeUUID   = "GPU-5b0f3c42-1d6e-4a8b-9c3f-0e2d7a614b11"
	migParent   = "GPU-c7a9e2d4-3f81-4b6c-a05e-9d1f2b3c4e56"
	migSeries   = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
	dcgmFixture = "testdata/dcgm-mig.prom"
)

// dcgmScrape is testdata/dcgm-mig.prom as served by the exporter on
// dcgmNode.
func dcgmScrape(t *testing.T) *scrape {
	t.Helper()
	body, err := os.ReadFile(dcgmFixture)
	if err != nil {
		t.Fatal(err)
	}
	samples, err := promtext.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	sc := &scrape{}
	for _, s := range samples {
		sc.samples = append(sc.samples, series{Sample: s, node: dcgmNode})
	}
	return sc
}

// mig is a MIG device as the NVIDIA DRA driver publishes it.
func mig(name, uuid, profile string, allocated bool) device {
	return device{node: dcgmNode, pool: dcgmNode, name: name, uuid: uuid, parentUUID: migParent, profile: profile, allocated: allocated}
}

// A MIG device is matched to the GPU instance of its parent and profile;
// where one parent has several instances of a profile, each device gets
// an instance of its own, allocated devices first, and a placement left
// over gets none.
func TestIdentifyMIGInstances(t *testing.T) {
	inv := []device{
		{node: dcgmNode, pool: dcgmNode, name: "gpu-0", uuid: wholeUUID},
		mig("gpu-1-mig-19-0-1", "MIG-0a1b", "1g.5gb", false),
		mig("gpu-1-mig-19-1-1", "MIG-2c3d", "1g.5gb", true),
		mig("gpu-1-mig-19-2-1", "MIG-4e5f", "1g.5gb", false),
		mig("gpu-1-mig-9-4-4", "MIG-6a7b", "3g.20gb", true),
	}
	got, rows, notes := identify(dcgmScrape(t), inv)
	want := map[string]string{"gpu-0": "", "gpu-1-mig-9-4-4": "2", "gpu-1-mig-19-1-1": "9", "gpu-1-mig-19-0-1": "10", "gpu-1-mig-19-2-1": ""}
	for _, d := range got {
		if d.instance != want[d.name] {
			t.Errorf("%s: instance %q, want %q", d.name, d.instance, want[d.name])
		}
	}
	if len(rows) != 4 || !strings.Contains(strings.Join(rows, "\n"), "gpu-1-mig-9-4-4 (uuid MIG-6a7b, profile 3g.20gb, allocated=true) -> UUID="+migParent+" GPU_I_ID=2") {
		t.Errorf("rows:\n%s", strings.Join(rows, "\n"))
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "3 partitions of profile 1g.5gb") || !strings.Contains(notes[0], "paired in order") {
		t.Errorf("notes %q, want one about pairing the 1g.5gb instances", notes)
	}
	if inv[1].instance != "" {
		t.Error("identify changed the inventory it was given")
	}

	// Each device's series are its instance's, not its parent's nor a
	// sibling's.
	sc := dcgmScrape(t)
	byName := map[string]device{}
	for _, d := range got {
		byName[d.name] = d
	}
	for name, wantValue := range map[string]float64{"gpu-0": 0.361, "gpu-1-mig-9-4-4": 0.82, "gpu-1-mig-19-1-1": 0, "gpu-1-mig-19-0-1": 0.12} {
		own := ownSeries(sc.named(migSeries), byName[name], "gpu")
		if len(own) != 1 || own[0].Value != wantValue {
			t.Errorf("%s: %s series %v, want one of value %g", name, migSeries, own, wantValue)
		}
	}
	if own := ownSeries(sc.named(migSeries), byName["gpu-1-mig-19-2-1"], "gpu"); len(own) != 0 {
		t.Errorf("the placement without an instance has series %v", own)
	}
	// DCGM serves no GPU_UTIL for MIG instances.
	if own := ownSeries(sc.named("DCGM_FI_DEV_GPU_UTIL"), byName["gpu-1-mig-9-4-4"], "gpu"); len(own) != 0 {
		t.Errorf("a MIG instance has GPU_UTIL series %v", own)
	}
}

// A whole GPU is not matched by the series of MIG instances that carry
// its UUID as their parent's, nor a MIG device by its index: the index a
// driver gives a MIG device is not its parent's gpu label.
func TestWholeGPUIsNotItsInstances(t *testing.T) {
	sc := dcgmScrape(t)
	parent := device{node: dcgmNode, pool: dcgmNode, name: "gpu-1", uuid: migParent}
	used := ownSeries(sc.named("DCGM_FI_DEV_FB_USED"), parent, "gpu")
	if len(used) != 1 || used[0].Labels[instanceLabel] != "" || used[0].Value != 6411 {
		t.Errorf("the MIG-enabled GPU's FB_USED series: %v, want its own (6411), not its instances'", used)
	}
	if own := ownSeries(sc.named(migSeries), parent, "gpu"); len(own) != 0 {
		t.Errorf("the MIG-enabled GPU took its instances' %s series: %v", migSeries, own)
	}
	byIndex := mig("gpu-1-mig-9-4-4", "MIG-6a7b", "3g.20gb", true)
	byIndex.index = "1"
	if own := ownSeries(sc.named("DCGM_FI_DEV_FB_USED"), byIndex, "gpu"); len(own) != 0 {
		t.Errorf("a MIG device without an instance matched by index: %v", own)
	}
}

// A partition whose exporter labels series with the partition's own uuid
// is matched by it, as whole devices are.
func TestPartitionMatchedByItsOwnUUID(t *testing.T) {
	d := mig("gpu-1-mig-9-4-4", "MIG-6a7b", "3g.20gb", true)
	s := series{Sample: promtext.Sample{Name: "util", Labels: map[string]string{"uuid": "MIG-6a7b"}}}
	if !matches(s, d, "") {
		t.Error("not matched by its own uuid")
	}
	s.Labels["uuid"] = "MIG-ffff"
	if matches(s, d, "") {
		t.Error("matched by another partition's uuid")
	}
}
