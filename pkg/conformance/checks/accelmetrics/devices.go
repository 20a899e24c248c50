package accelmetrics

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
)

// The labels by which DCGM tells the GPU instances of a MIG-partitioned
// GPU apart: a MIG instance's series carry its parent GPU's UUID (and gpu
// index), plus the instance's id and profile.
const (
	instanceLabel        = "GPU_I_ID"
	instanceProfileLabel = "GPU_I_PROFILE"
)

// device is one device the driver publishes on a Ready node, with the
// attributes series are matched by.
type device struct {
	node, pool, name string
	uuid, index      string
	// parentUUID and profile are those of a partition of a device (an
	// NVIDIA MIG instance: attributes parentUUID and profile).
	parentUUID, profile string
	// instance is the partition's instance id in the exporter's series
	// (DCGM's GPU_I_ID), set by identify; "" when none is the
	// partition's.
	instance string
	// memory is the memory capacity the slice publishes, if any.
	memory string
	// allocated: a ResourceClaim holds the device.
	allocated bool
}

func (d device) String() string { return d.node + "/" + d.name }

// partition reports whether the device is a partition of another.
func (d device) partition() bool { return d.parentUUID != "" }

// required reports whether the device must have series. A partition the
// driver publishes may exist only once allocated (a driver that creates
// MIG instances when it allocates them publishes every placement), so an
// unallocated partition needs none; whole devices always exist.
func (d device) required() bool { return !d.partition() || d.allocated }

// inventory lists the devices the model's driver publishes in
// ResourceSlices for Ready nodes, marking those a ResourceClaim holds.
func inventory(t *conformance.T, env *conformance.Env) []device {
	driver := env.Accelerator.DRADriver
	if driver == "" {
		t.Fatalf("the accelerator model %q names no DRA driver (spec.accelerator.draDriver), so its devices cannot be listed", env.Accelerator.Model)
	}
	list, err := env.DRA().ResourceSlices().List(t.Context(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorDriver, driver).String(),
	})
	if err != nil {
		t.Fatalf("listing ResourceSlices: %v", err)
	}
	nodes, err := env.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing nodes: %v", err)
	}
	ready := map[string]bool{}
	for i := range nodes.Items {
		ready[nodes.Items[i].Name] = devicepod.NodeReady(&nodes.Items[i])
	}
	held := heldDevices(t, env)
	var out []device
	for _, s := range list.Items {
		if s.Spec.NodeName == nil || !ready[*s.Spec.NodeName] {
			continue
		}
		for _, d := range s.Spec.Devices {
			dev := device{node: *s.Spec.NodeName, pool: s.Spec.Pool.Name, name: d.Name, allocated: held[s.Spec.Pool.Name+"/"+d.Name]}
			for k, a := range d.Attributes {
				switch name := attrName(k); {
				case strings.EqualFold(name, "uuid") && a.StringValue != nil:
					dev.uuid = *a.StringValue
				case strings.EqualFold(name, "index") && a.IntValue != nil:
					dev.index = strconv.FormatInt(*a.IntValue, 10)
				case strings.EqualFold(name, "parentUUID") && a.StringValue != nil:
					dev.parentUUID = *a.StringValue
				case strings.EqualFold(name, "profile") && a.StringValue != nil:
					dev.profile = *a.StringValue
				}
			}
			if m, ok := d.Capacity["memory"]; ok {
				dev.memory = m.Value.String()
			}
			out = append(out, dev)
		}
	}
	slices.SortFunc(out, func(a, b device) int { return strings.Compare(a.String(), b.String()) })
	var rows []string
	for _, d := range out {
		row := fmt.Sprintf("%s uuid=%s index=%s", d, orNone(d.uuid), orNone(d.index))
		if d.partition() {
			row += fmt.Sprintf(" parentUUID=%s profile=%s allocated=%t", d.parentUUID, orNone(d.profile), d.allocated)
		}
		rows = append(rows, row)
	}
	t.Observe("devices of "+driver+" on Ready nodes", strings.Join(rows, "\n"))
	if len(out) == 0 {
		t.Fatalf("driver %s publishes no devices in ResourceSlices for any Ready node", driver)
	}
	return out
}

// attrName drops a qualified attribute name's domain.
func attrName(q resourcev1.QualifiedName) string {
	s := string(q)
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// uuidOf returns the value of the series' uuid label (UUID or uuid).
func uuidOf(s series) (string, bool) {
	for k, v := range s.Labels {
		if strings.EqualFold(k, "uuid") {
			return v, true
		}
	}
	return "", false
}

// identify gives each partition the exporter's instance that is its own:
// the instances are those of series carrying the partition's parent UUID
// and an instance id, of the partition's profile (any profile when the
// driver publishes none). A driver publishes no instance id for a
// partition, so when a parent has several instances of one profile they
// go to its partitions of that profile in order (allocated ones first,
// since only they must exist), each partition getting an instance of its
// own, and identify says so in a note. It returns inv with instance set,
// one row per partition saying what it was matched to, and the notes.
func identify(sc *scrape, inv []device) (out []device, rows, notes []string) {
	type instance struct{ parent, profile, id string }
	var instances []instance
	for _, s := range sc.samples {
		id := s.Labels[instanceLabel]
		parent, ok := uuidOf(s)
		if id == "" || !ok {
			continue
		}
		in := instance{strings.ToUpper(parent), s.Labels[instanceProfileLabel], id}
		if !slices.Contains(instances, in) {
			instances = append(instances, in)
		}
	}
	slices.SortFunc(instances, func(a, b instance) int { return compareNumeric(a.id, b.id) })

	type group struct{ parent, profile string }
	members := map[group][]int{}
	for i, d := range inv {
		if d.partition() {
			g := group{strings.ToUpper(d.parentUUID), d.profile}
			members[g] = append(members[g], i)
		}
	}
	groups := slices.SortedFunc(maps.Keys(members), func(a, b group) int {
		// Partitions without a profile take what the others leave.
		return cmp.Or(falseFirst(a.profile == "", b.profile == ""), strings.Compare(a.parent, b.parent), strings.Compare(a.profile, b.profile))
	})
	out = slices.Clone(inv)
	taken := map[instance]bool{}
	for _, g := range groups {
		idx := members[g]
		slices.SortFunc(idx, func(a, b int) int {
			x, y := out[a], out[b]
			return cmp.Or(falseFirst(!x.allocated, !y.allocated), compareNumeric(x.index, y.index), strings.Compare(x.name, y.name))
		})
		var ids []instance
		for _, in := range instances {
			if in.parent == g.parent && (g.profile == "" || in.profile == g.profile) && !taken[in] {
				ids = append(ids, in)
			}
		}
		for k, i := range idx {
			if k < len(ids) {
				out[i].instance = ids[k].id
				taken[ids[k]] = true
			}
		}
		if len(idx) > 1 && len(ids) > 1 {
			notes = append(notes, fmt.Sprintf("%d partitions of profile %s on %s and %d %s instances of it: the driver publishes no instance id, so they are paired in order (allocated first), each partition with an instance of its own",
				len(idx), orNone(g.profile), out[idx[0]].parentUUID, len(ids), instanceLabel))
		}
	}
	for _, d := range out {
		if !d.partition() {
			continue
		}
		match := "no instance of that parent and profile in the exporter's series"
		if d.instance != "" {
			match = fmt.Sprintf("UUID=%s %s=%s", d.parentUUID, instanceLabel, d.instance)
		}
		rows = append(rows, fmt.Sprintf("%s (uuid %s, profile %s, allocated=%t) -> %s", d, orNone(d.uuid), orNone(d.profile), d.allocated, match))
	}
	slices.Sort(rows)
	return out, rows, notes
}

// falseFirst orders false before true.
func falseFirst(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// compareNumeric orders numbers by value and puts them before other
// strings, which it orders as strings.
func compareNumeric(a, b string) int {
	x, errA := strconv.Atoi(a)
	y, errB := strconv.Atoi(b)
	switch {
	case errA == nil && errB == nil:
		return cmp.Compare(x, y)
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return strings.Compare(a, b)
}

// deviceLabel returns the value of the series' device label: the model's,
// or the first of DeviceLabels present.
func deviceLabel(s series, label string) (string, bool) {
	if label != "" {
		v, ok := s.Labels[label]
		return v, ok && v != ""
	}
	for _, l := range DeviceLabels {
		if v := s.Labels[l]; v != "" {
			return v, true
		}
	}
	return "", false
}

// matches reports whether the series is the device's. A partition's is
// one carrying its own uuid, or its parent's UUID and the instance id
// identify gave it. A whole device's is one carrying its uuid and no
// instance id (a MIG instance's series carry its parent GPU's UUID). A
// device or series without a uuid is matched by the device label naming
// the device or its index on the device's node.
func matches(s series, d device, label string) bool {
	u, hasUUID := uuidOf(s)
	if d.partition() {
		if hasUUID && d.uuid != "" && strings.EqualFold(u, d.uuid) {
			return true
		}
		return d.instance != "" && hasUUID && strings.EqualFold(u, d.parentUUID) && s.Labels[instanceLabel] == d.instance
	}
	if d.uuid != "" && hasUUID {
		return strings.EqualFold(u, d.uuid) && s.Labels[instanceLabel] == ""
	}
	v, ok := deviceLabel(s, label)
	if !ok || (v != d.name && (d.index == "" || v != d.index)) {
		return false
	}
	node := s.nodeName()
	return node == "" || node == d.node
}

// heldDevices lists the devices of the driver some ResourceClaim holds,
// as pool/name.
func heldDevices(t *conformance.T, env *conformance.Env) map[string]bool {
	claims, err := env.DRA().ResourceClaims(metav1.NamespaceAll).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing ResourceClaims: %v", err)
	}
	out := map[string]bool{}
	for i := range claims.Items {
		for _, d := range devicepod.Allocated(&claims.Items[i]) {
			if d.Driver == env.Accelerator.DRADriver {
				out[d.Pool+"/"+d.Name] = true
			}
		}
	}
	return out
}
