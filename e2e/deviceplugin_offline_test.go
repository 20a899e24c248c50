//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/pkg/probe/fakegpu"
)

// devicePluginProfile is the offline profile whose accelerators a kubelet
// device plugin allocates (kaic-fake-gpu --mode device-plugin).
const devicePluginProfile = "e2e/testdata/kind-device-plugin-offline.yaml"

// devicePluginMust are the MUST requirements the device-plugin profile
// selects, and devicePluginShould the SHOULDs kaic-fake-gpu's device plugin
// makes verifiable (its time-sliced devices); each must pass on real pods.
// devicePluginNotVerified are its SHOULDs that the device plugin cannot
// make verifiable: it labels no node with a driver version.
var (
	devicePluginMust        = []string{"secure_accelerator_access", "pod_autoscaling", "accelerator_metrics"}
	devicePluginShould      = []string{"gpu_sharing"}
	devicePluginNotVerified = []string{"driver_runtime_management"}
)

// TestOfflineDevicePlugin runs kaic up on the offline kind cluster with
// kaic-fake-gpu as a kubelet device plugin: the real kubelet registers it
// and advertises example.com/gpu, pods request the resource, the probe in
// each container sees exactly what Allocate gave it, the metrics follow
// the load through the kubelet's pod resources API, and no DRA object is
// involved. kaic down leaves nothing behind.
// devicesPerNode is what the profile's kaic-fake-gpu advertises on each
// node as whole devices: as many as in DRA mode, so that the checks running
// at once (each holding a device or two) do not wait for each other's
// devices. sharedDevices more are time-sliced, replicas units each, under
// the shared resource.
const (
	devicesPerNode = 8
	sharedDevices  = 2
	replicas       = 4
)

func TestOfflineDevicePlugin(t *testing.T) {
	o := setupOfflineProfile(t, devicePluginProfile)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	o.probeImage(t, ctx, devicePluginProfile)
	networkBefore := networkExists(t, o.network)
	dir := o.runDir(t, "device-plugin")
	o.downOnFailure(t, dir)

	up := run(t, ctx, o.root, o.kaic, "up", "-p", devicePluginProfile, "--out", dir, "--checklist-dir", o.checklists)
	if err := os.WriteFile(filepath.Join(o.out, "device-plugin-up.log"), []byte(up.output()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("kaic up took %s (exit %d)", up.took.Round(time.Second), up.code)
	state := readState(t, dir)
	status, rec := state.phase(t, "provision")
	if status != "succeeded" {
		t.Fatalf("provision phase %s (kaic up exit %d)\n%s", status, up.code, up.output())
	}
	_, verifyOut := state.phase(t, "verify")
	ev := verifyOut["evidence"]
	results := map[string]checkResult{}
	for _, r := range readResults(t, verifyOut["results"]) {
		results[r.ID] = r
	}
	for _, id := range append(slices.Clone(devicePluginMust), devicePluginShould...) {
		if r := results[id]; r.Status != "pass" {
			t.Errorf("%s is %q with a device plugin (see %s)", id, r.Status, filepath.Join(ev, "tests", r.TestName, "output.md"))
		}
	}
	for _, id := range devicePluginNotVerified {
		if r := results[id]; r.Status != "skip" {
			t.Errorf("%s is %q, want not verified (skip): nothing on this cluster advertises what it needs (see %s)", id, r.Status, filepath.Join(ev, "tests", r.TestName, "output.md"))
		}
	}
	if up.code != 0 && !t.Failed() {
		t.Errorf("kaic up exit %d with every selected MUST passed\n%s", up.code, up.output())
	}

	client := clientFor(t, rec["kubeconfig"])
	t.Run("the kubelet advertises the device plugin's resource, and no DRA object exists", func(t *testing.T) {
		ds, err := client.AppsV1().DaemonSets("kaic-fake-gpu").Get(ctx, "kaic-fake-gpu", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if args := ds.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--mode=device-plugin") {
			t.Errorf("the driver runs with %v, not in device-plugin mode", args)
		}
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		advertising := 0
		for _, n := range nodes.Items {
			q, ok := n.Status.Allocatable[corev1.ResourceName(fakegpu.ResourceName)]
			if ok && q.Value() == devicesPerNode {
				advertising++
			}
			t.Logf("node %s: allocatable %s = %s", n.Name, fakegpu.ResourceName, q.String())
		}
		if advertising == 0 {
			t.Errorf("no node advertises %d %s", devicesPerNode, fakegpu.ResourceName)
		}
		// The time-sliced devices: their units under the shared resource,
		// declared in the node's labels as GPU feature discovery declares them.
		shared := fakegpu.SharedResourceName(fakegpu.ResourceName)
		declared := 0
		for _, n := range nodes.Items {
			q := n.Status.Allocatable[corev1.ResourceName(shared)]
			labels := fakegpu.Sharing{Strategy: fakegpu.StrategyTimeSlicing, Replicas: replicas, Devices: sharedDevices}.NodeLabels(fakegpu.ResourceName)
			matching := true
			for k, v := range labels {
				matching = matching && n.Labels[k] == v
			}
			if q.Value() == sharedDevices*replicas && matching {
				declared++
			}
			t.Logf("node %s: allocatable %s = %s, labels %v", n.Name, shared, q.String(), labels)
		}
		if declared == 0 {
			t.Errorf("no node advertises %d %s and declares them in its labels", sharedDevices*replicas, shared)
		}
		published, err := client.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{FieldSelector: "spec.driver=" + fakegpu.DriverName})
		if err != nil {
			t.Fatal(err)
		}
		if len(published.Items) > 0 {
			t.Errorf("%d ResourceSlices of %s in device-plugin mode", len(published.Items), fakegpu.DriverName)
		}
		if _, err := client.ResourceV1().DeviceClasses().Get(ctx, fakegpu.DriverName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("DeviceClass %s in device-plugin mode: %v", fakegpu.DriverName, err)
		}
	})

	// What the transcripts prove happened in real containers.
	transcript := func(test string) string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(ev, "tests", test, "output.md"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	t.Run("containers saw exactly what the device plugin allocated", func(t *testing.T) {
		out := transcript("TestSecureAcceleratorAccess")
		for _, want := range []string{
			"device plugin, extended resource `example.com/gpu`",
			"RESULT: ACCELERATOR_COUNT=1", // the positive pod and the authorized container
			"RESULT: ACCELERATOR_COUNT=0", // the pinned negative pod and the unauthorized container
			"a pod's container saw exactly the device allocated to it",
			"two pods claiming a device each at once were given distinct devices",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("TestSecureAcceleratorAccess transcript lacks %q", want)
			}
		}
		if strings.Contains(out, "simulated by kwok") || strings.Contains(out, "ResourceClaim") {
			t.Errorf("the transcript shows a skipped probe or a claim:\n%s", out)
		}
	})
	t.Run("more pods than devices held the time-sliced devices and saw them", func(t *testing.T) {
		out := transcript("TestGPUSharing")
		for _, want := range []string{
			"each requesting one example.com/gpu.shared",
			"ran at once on node",
			"RESULT: ACCELERATOR_COUNT=1",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("TestGPUSharing transcript lacks %q", want)
			}
		}
		if strings.Contains(out, "simulated by kwok") {
			t.Errorf("the transcript shows a skipped probe:\n%s", out)
		}
	})
	t.Run("the metrics followed the load on the allocated device", func(t *testing.T) {
		out := transcript("TestAcceleratorPerformanceMetrics")
		for _, want := range []string{"LOAD_DEVICES=gpu-", "under load, device", "a device's series followed the load a pod put on it"} {
			if !strings.Contains(out, want) {
				t.Errorf("TestAcceleratorPerformanceMetrics transcript lacks %q", want)
			}
		}
	})

	volumes := clusterVolumes(t, o.cluster)
	o.downLeavesNothing(t, ctx, dir, volumes, networkBefore)
}
