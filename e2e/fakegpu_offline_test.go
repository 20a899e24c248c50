//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/pkg/probe"
	"github.com/kaic-dev/kaic/pkg/probe/fakegpu"
)

// fakeGPUProfile writes the offline overlay with kaic-fake-gpu alone (two
// devices per node, no dependency on the monitoring stack; every other
// component disabled, so the test spends no time installing them) and
// returns its path.
func fakeGPUProfile(t *testing.T, o *offline) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(o.root, offlineProfile))
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := yaml.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	p["metadata"].(map[string]any)["name"] = "kind-dra-offline-fakegpu"
	comps := p["spec"].(map[string]any)["stack"].(map[string]any)["components"].([]any)
	found := false
	for i, c := range comps {
		name := c.(map[string]any)["name"]
		if name == "kaic-fake-gpu" {
			comps[i] = map[string]any{"name": "kaic-fake-gpu", "dependsOn": []any{}, "values": map[string]any{"devicesPerNode": 2}}
			found = true
			continue
		}
		c.(map[string]any)["disabled"] = true
	}
	if !found {
		comps = append(comps, map[string]any{"name": "kaic-fake-gpu", "dependsOn": []any{}, "values": map[string]any{"devicesPerNode": 2}})
		p["spec"].(map[string]any)["stack"].(map[string]any)["components"] = comps
	}
	out, err := yaml.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(o.out, "kind-dra-offline-fakegpu.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestOfflineFakeGPU installs kaic-fake-gpu into the offline kind cluster
// and proves the whole path on real nodes: the driver registers with the
// kubelet and publishes its devices, a pod with a ResourceClaimTemplate
// sees exactly the device the scheduler allocated (through CDI), and the
// driver's metrics follow the load that `kaic probe load` puts on it.
func TestOfflineFakeGPU(t *testing.T) {
	o := setupOffline(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()

	profilePath := fakeGPUProfile(t, o)
	probeRef := o.probeImage(t, ctx, profilePath)
	dir := o.runDir(t, "fakegpu")
	o.downOnFailure(t, dir)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if r := run(t, ctx, o.root, o.kaic, "down", dir); r.code != 0 {
			t.Errorf("kaic down: exit %d\n%s", r.code, r.output())
		}
	})

	if r := run(t, ctx, o.root, o.kaic, "provision", "-p", profilePath, "--out", dir); r.code != 0 {
		t.Fatalf("kaic provision: exit %d\n%s", r.code, r.output())
	}
	_, rec := readState(t, dir).phase(t, "provision")
	client := clientFor(t, rec["kubeconfig"])
	if r := run(t, ctx, o.root, o.kaic, "install", "-p", profilePath, "--out", dir); r.code != 0 {
		t.Fatalf("kaic install: exit %d\n%s", r.code, r.output())
	}

	// The driver runs from the probe image kaic passed to its chart and
	// publishes two devices for each node it runs on.
	driverPods, err := client.CoreV1().Pods("kaic-fake-gpu").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=kaic-fake-gpu"})
	if err != nil || len(driverPods.Items) == 0 {
		t.Fatalf("no driver pods: %v", err)
	}
	driverOn := map[string]string{}
	for _, p := range driverPods.Items {
		if img := p.Spec.Containers[0].Image; img != probeRef {
			t.Errorf("driver pod %s runs %s, want the probe image %s", p.Name, img, probeRef)
		}
		driverOn[p.Spec.NodeName] = p.Name
	}
	var published *resourceapi.ResourceSliceList
	err = wait.PollUntilContextTimeout(ctx, 2*time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		published, err = client.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{FieldSelector: "spec.driver=" + fakegpu.DriverName})
		return err == nil && len(published.Items) == len(driverOn), nil
	})
	if err != nil {
		t.Fatalf("ResourceSlices of %s for nodes %v: %v", fakegpu.DriverName, driverOn, err)
	}
	for _, s := range published.Items {
		if len(s.Spec.Devices) != 2 {
			t.Errorf("slice %s has %d devices, want 2", s.Name, len(s.Spec.Devices))
		}
	}

	// A pod whose two containers share a claim from a template: one
	// reports the devices it sees, the other puts load on them.
	ns := "kaic-e2e-fakegpu"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tmpl := &resourceapi.ResourceClaimTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "one-gpu", Namespace: ns},
		Spec: resourceapi.ResourceClaimTemplateSpec{Spec: resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{
			Requests: []resourceapi.DeviceRequest{{Name: "gpu", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: fakegpu.DriverName}}},
		}}},
	}
	if _, err := client.ResourceV1().ResourceClaimTemplates(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	claimRef := []corev1.ResourceClaim{{Name: "gpu"}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "holder", Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy:  corev1.RestartPolicyNever,
			ResourceClaims: []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimTemplateName: &tmpl.Name}},
			Containers: []corev1.Container{
				{Name: "report", Image: probeRef, ImagePullPolicy: corev1.PullNever, Resources: corev1.ResourceRequirements{Claims: claimRef},
					Args: []string{"devices", "--env-prefix", fakegpu.EnvPrefix, "--hold", "1h"}},
				{Name: "load", Image: probeRef, ImagePullPolicy: corev1.PullNever, Resources: corev1.ResourceRequirements{Claims: claimRef},
					Args: []string{"load", "--utilization", "80", "--memory", "40Gi", "--for", "45s", "--hold", "1h"}},
			},
		},
	}
	if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 2*time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		pod, err = client.CoreV1().Pods(ns).Get(ctx, "holder", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
			return false, fmt.Errorf("pod ended: %s", pod.Status.Phase)
		}
		return pod.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		status, _ := json.MarshalIndent(pod.Status, "", "  ")
		t.Fatalf("pod holder not running: %v\n%s", err, status)
	}
	claim, err := client.ResourceV1().ResourceClaims(ns).Get(ctx, *pod.Status.ResourceClaimStatuses[0].ResourceClaimName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	device := claim.Status.Allocation.Devices.Results[0].Device
	node := pod.Spec.NodeName
	t.Logf("claim %s got %s on %s", claim.Name, device, node)

	logOf := func(container string) map[string]string {
		var res map[string]string
		_ = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
			data, err := client.CoreV1().Pods(ns).GetLogs("holder", &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
			res = probe.ParseResults(string(data))
			return err == nil && len(res) > 0, nil
		})
		return res
	}
	t.Run("the container sees exactly its device", func(t *testing.T) {
		res := logOf("report")
		if res["ACCELERATOR_COUNT"] != "1" || res["DEVICES"] != device {
			t.Errorf("probe reports %v, want exactly %s", res, device)
		}
	})

	metric := func(name string) float64 {
		t.Helper()
		data, err := client.CoreV1().Pods("kaic-fake-gpu").ProxyGet("http", driverOn[node], "9400", "/metrics", nil).DoRaw(ctx)
		if err != nil {
			t.Fatalf("driver metrics on %s: %v", node, err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, name+"{") && strings.Contains(l, `device="`+device+`"`) {
				v, err := strconv.ParseFloat(l[strings.LastIndex(l, " ")+1:], 64)
				if err != nil {
					t.Fatalf("%s: %v", l, err)
				}
				return v
			}
		}
		t.Fatalf("no %s for %s in\n%s", name, device, data)
		return 0
	}
	waitMetric := func(name string, want float64, within time.Duration) {
		t.Helper()
		var got float64
		deadline := time.Now().Add(within)
		for {
			if got = metric(name); got == want || time.Now().After(deadline) {
				break
			}
			time.Sleep(2 * time.Second)
		}
		if got != want {
			t.Errorf("%s{device=%q} = %g, want %g", name, device, got, want)
		}
	}
	t.Run("metrics follow the load", func(t *testing.T) {
		if res := logOf("load"); res["LOAD_DEVICES"] != device {
			t.Errorf("load container loaded %q, want %s", res["LOAD_DEVICES"], device)
		}
		waitMetric(fakegpu.MetricAllocated, 1, 10*time.Second)
		waitMetric(fakegpu.MetricUtilization, 80, 10*time.Second)
		waitMetric(fakegpu.MetricMemoryUsed, 40<<30, 5*time.Second)
		waitMetric(fakegpu.MetricMemoryTotal, 80<<30, 5*time.Second)
		if temp := metric(fakegpu.MetricTemperature); temp <= 40 {
			t.Errorf("temperature %g does not follow 80%% utilization", temp)
		}
		// The load ends after 45s; the device stays held but idle.
		waitMetric(fakegpu.MetricUtilization, 0, 90*time.Second)
		waitMetric(fakegpu.MetricAllocated, 1, 5*time.Second)
	})

	t.Run("the device is released with its pod", func(t *testing.T) {
		if err := client.CoreV1().Pods(ns).Delete(ctx, "holder", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		waitMetric(fakegpu.MetricAllocated, 0, 2*time.Minute)
	})
}
