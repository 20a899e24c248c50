// Package driverruntime verifies the driver_runtime_management
// requirement as far as the platform makes it verifiable: every device of
// the accelerator model's DRA driver advertises its driver version as a
// device attribute, the nodes that carry those devices report their
// container runtime and its version, and a pod granted one device runs
// with the runtime having handed it exactly that device. In device-plugin
// mode the nodes advertise the driver version (deviceplugin.go), and a
// cluster whose nodes state none is reported not verified.
package driverruntime

import (
	"fmt"
	"sort"
	"strings"

	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
)

// ID is the requirement this package verifies.
const ID = "driver_runtime_management"

// versionAttribute is the device attribute that carries the driver
// version, with or without a domain prefix.
const versionAttribute = "driverVersion"

// Names of the objects the check creates.
const (
	template = "driver-check-template"
	podClaim = "accelerator"
	checkPod = "driver-check"
)

// listed bounds how many offending devices a failure names.
const listed = 10

// Check returns the driver_runtime_management check.
func Check() conformance.Check {
	return conformance.WithNeeds(conformance.NewCheck(ID, run), devicepod.Needs)
}

func run(t *conformance.T, env *conformance.Env) {
	inventory := devicepod.Preflight(t, env)
	var versions map[devicepod.Device]string
	var notVerified string
	t.Run("VerifiableMechanismExposed", func(t *conformance.T) {
		if devicepod.DevicePlugin(env) {
			if versions, notVerified = nodeVersions(t, env, inventory); notVerified != "" {
				t.Skipf("not verified: %s", notVerified)
			}
			return
		}
		versions = driverVersions(t, env)
	})
	t.Run("ContainerRuntimeReported", func(t *conformance.T) { runtimes(t, env, inventory) })
	t.Run("DriverAndRuntimeCompatibility", func(t *conformance.T) { compatibility(t, env, versions) })
	if notVerified != "" && !t.Failed() {
		t.Skipf("not verified: %s", notVerified)
	}
}

// driverVersions reads the driver version every published device
// advertises.
func driverVersions(t *conformance.T, env *conformance.Env) map[devicepod.Device]string {
	driver := env.Accelerator.DRADriver
	t.Step("Read the %s attribute of every device driver %s publishes", versionAttribute, driver)
	list, err := env.DRA().ResourceSlices().List(t.Context(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorDriver, driver).String(),
	})
	if err != nil {
		t.Fatalf("listing ResourceSlices: %v", err)
	}
	versions := map[devicepod.Device]string{}
	byVersion := map[string][]string{}
	var missing []string
	total := 0
	for _, s := range list.Items {
		where := s.Spec.Pool.Name
		if s.Spec.NodeName != nil {
			where = *s.Spec.NodeName
		}
		for _, d := range s.Spec.Devices {
			total++
			id := devicepod.Device{Driver: driver, Pool: s.Spec.Pool.Name, Name: d.Name}
			v, ok := version(d.Attributes)
			if !ok {
				missing = append(missing, where+"/"+d.Name)
				continue
			}
			versions[id] = v
			byVersion[v] = append(byVersion[v], where+"/"+d.Name)
		}
	}
	if total == 0 {
		t.Fatalf("driver %s publishes no devices in ResourceSlices", driver)
	}
	rows := []string{}
	for v, devs := range byVersion {
		rows = append(rows, fmt.Sprintf("%s: %d devices (%s)", v, len(devs), abbreviate(devs)))
	}
	sort.Strings(rows)
	t.Observe(fmt.Sprintf("%s of the %d devices of %s", versionAttribute, total, driver), rows)
	if len(missing) > 0 {
		t.Errorf("%d of the %d devices of driver %s advertise no %s attribute: %s", len(missing), total, driver, versionAttribute, abbreviate(missing))
	}
	return versions
}

// version returns the driver version among a device's attributes.
func version(attrs map[resourcev1.QualifiedName]resourcev1.DeviceAttribute) (string, bool) {
	for name, a := range attrs {
		n := string(name)
		if i := strings.LastIndexByte(n, '/'); i >= 0 {
			n = n[i+1:]
		}
		if !strings.EqualFold(n, versionAttribute) {
			continue
		}
		switch {
		case a.VersionValue != nil && *a.VersionValue != "":
			return *a.VersionValue, true
		case a.StringValue != nil && *a.StringValue != "":
			return *a.StringValue, true
		}
	}
	return "", false
}

func abbreviate(items []string) string {
	sort.Strings(items)
	if len(items) <= listed {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:listed], ", "), len(items)-listed)
}

// runtimes checks that the nodes with devices report a container runtime
// as <name>://<version>.
func runtimes(t *conformance.T, env *conformance.Env, inventory map[string][]devicepod.Device) {
	t.Step("Read the container runtime the nodes with devices of %s report", devicepod.Source(env))
	// One list of the nodes, however many there are; nodes without devices
	// are not looked at.
	nodes, err := env.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing nodes: %v", err)
	}
	byRuntime := map[string][]string{}
	var simulated []string
	checked := 0
	for i := range nodes.Items {
		node := &nodes.Items[i]
		if _, has := inventory[node.Name]; !has {
			continue
		}
		rt := node.Status.NodeInfo.ContainerRuntimeVersion
		byRuntime[rt] = append(byRuntime[rt], node.Name)
		if strings.Contains(rt, "://") {
			checked++
			continue
		}
		if why, none := conformance.NodeRunsNoContainers(node); none {
			simulated = append(simulated, why)
			continue
		}
		checked++
		t.Errorf("node %s reports container runtime %q, not <runtime>://<version>", node.Name, rt)
	}
	t.Observe("container runtime of the nodes with devices", runtimeRows(byRuntime))
	if checked == 0 {
		t.Skipf("no node with devices runs containers: %s", summarizeReasons(simulated))
	}
	if len(simulated) > 0 {
		t.Logf("not checked: %s", summarizeReasons(simulated))
	}
}

// runtimeRows is one row per runtime version with its node count and the
// first few nodes, so a transcript stays short on a large cluster.
func runtimeRows(byRuntime map[string][]string) []string {
	const shown = 3
	runtimes := make([]string, 0, len(byRuntime))
	for rt := range byRuntime {
		runtimes = append(runtimes, rt)
	}
	sort.Strings(runtimes)
	rows := make([]string, 0, len(runtimes))
	for _, rt := range runtimes {
		names := byRuntime[rt]
		sort.Strings(names)
		row := fmt.Sprintf("%q: %d node(s): %s", rt, len(names), strings.Join(names[:min(shown, len(names))], ", "))
		if len(names) > shown {
			row += fmt.Sprintf(" and %d more", len(names)-shown)
		}
		rows = append(rows, row)
	}
	return rows
}

// summarizeReasons gives the first reason and how many more nodes gave
// one, so that a message stays short on a large simulated cluster.
func summarizeReasons(reasons []string) string {
	if len(reasons) <= 1 {
		return strings.Join(reasons, "")
	}
	return fmt.Sprintf("%s, and %d more node(s) like it", reasons[0], len(reasons)-1)
}

// compatibility runs a pod granted one device and reads what the probe in
// it sees, next to the driver version advertised for that device.
func compatibility(t *conformance.T, env *conformance.Env, versions map[devicepod.Device]string) {
	t.Step("Run pod %s whose container %s", checkPod, devicepod.Asking(env))
	devicepod.ApplyTemplate(t, env, template)
	devicepod.Start(t, env, devicepod.OneDevicePod(env, checkPod, template, podClaim))
	defer devicepod.ReleaseNow(t, env, checkPod)
	pod := devicepod.WaitRunning(t, env, checkPod)
	dev := devicepod.Holds(t, env, pod, podClaim)
	node, err := env.Client.CoreV1().Nodes().Get(t.Context(), pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting node %s: %v", pod.Spec.NodeName, err)
	}
	advertised, ok := versions[dev]
	if !ok {
		advertised = "(none advertised)"
	}
	where := "through the DRA API"
	if devicepod.DevicePlugin(env) {
		where = "on node " + node.Name
	}
	t.Observe("what the platform advertises for the allocated device", map[string]string{
		"device":           dev.String(),
		"driverVersion":    advertised,
		"node":             node.Name,
		"containerRuntime": node.Status.NodeInfo.ContainerRuntimeVersion,
		"kubelet":          node.Status.NodeInfo.KubeletVersion,
	})
	devicepod.SkipWithoutContainers(t, env, pod)
	t.Step("Read what the probe in pod %s sees", checkPod)
	report := devicepod.Read(t, env, checkPod, "probe")
	devicepod.ExpectOne(t, env, "pod "+checkPod, report, dev)
	if !ok && devicepod.DevicePlugin(env) {
		// Not verifiable, as VerifiableMechanismExposed said: nothing to
		// compare what the container reads with.
		t.Logf("the container reads driver version(s) %q; node %s advertises none", strings.Join(report.DriverVersions, ","), node.Name)
		return
	}
	if err := sameDriverVersion(advertised, report.DriverVersions); err != nil {
		t.Errorf("device %s: %v", dev, err)
	}
	if t.Failed() {
		return
	}
	if len(report.DriverVersions) == 0 {
		t.Logf("the runtime on %s handed the container device %s; the driver exposes no version inside containers, so only the advertised %s is known", node.Name, strings.Join(report.Devices, ","), advertised)
		return
	}
	t.Logf("the runtime on %s handed the container device %s, and the driver version the container reads (%s) is the advertised one", node.Name, strings.Join(report.Devices, ","), advertised)
	t.Shown("the driver version %s is advertised %s and is the one a container reads", advertised, where)
}

// sameDriverVersion compares the version a device advertises with the
// versions the container holding it reads from its driver: each read
// version must equal the advertised one, compared as dotted numbers (a
// leading "v" and leading zeros aside: NVIDIA's driver reads 580.95.05
// where its DRA driver advertises the semantic version 580.95.5). A
// driver that exposes no version inside containers is not a mismatch.
func sameDriverVersion(advertised string, read []string) error {
	var differing []string
	for _, v := range read {
		if normalVersion(v) != normalVersion(advertised) {
			differing = append(differing, v)
		}
	}
	if len(differing) > 0 {
		return fmt.Errorf("advertises driver version %s but the container reads %s from the driver", advertised, strings.Join(differing, ", "))
	}
	return nil
}

// normalVersion drops a leading "v" and the leading zeros of each dotted
// numeric part.
func normalVersion(v string) string {
	parts := strings.Split(strings.TrimPrefix(v, "v"), ".")
	for i, p := range parts {
		if t := strings.TrimLeft(p, "0"); t != p && t != "" && strings.Trim(t, "0123456789") == "" {
			parts[i] = t
		} else if t == "" && p != "" {
			parts[i] = "0"
		}
	}
	return strings.Join(parts, ".")
}
