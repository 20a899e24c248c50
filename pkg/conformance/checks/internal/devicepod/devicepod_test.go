package devicepod

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/probe"
	"github.com/kaic-dev/kaic/pkg/profile"
)

func TestOneProblem(t *testing.T) {
	gpu1 := Device{Driver: "gpu.example.com", Pool: "node-a", Name: "gpu-1"}
	for _, tc := range []struct {
		name   string
		r      Report
		byName bool
		want   string // part of the problem; "" for none
	}{
		{"the allocated device", Report{Count: 1, Devices: []string{"gpu-1"}}, true, ""},
		{"another device", Report{Count: 1, Devices: []string{"gpu-0"}}, true, `sees device "gpu-0", want the device allocated to it, "gpu-1"`},
		{"device files are not compared", Report{Count: 1, Devices: []string{"/dev/nvidia0"}}, false, ""},
		{"none", Report{}, true, "sees 0 devices (), want exactly 1"},
		{"two", Report{Count: 2, Devices: []string{"gpu-0", "gpu-1"}}, false, "sees 2 devices (gpu-0,gpu-1), want exactly 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := oneProblem("pod p", tc.r, gpu1, tc.byName)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("oneProblem = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNoneProblem(t *testing.T) {
	if p := noneProblem("pod p", Report{}, "references no claim"); p != "" {
		t.Errorf("no device: %q", p)
	}
	if p := noneProblem("pod p", Report{Count: 1, Devices: []string{"gpu-0"}}, "references no claim"); !strings.Contains(p, "sees 1 devices (gpu-0) although it references no claim") {
		t.Errorf("one device: %q", p)
	}
}

// The probe's own output, parsed the way Read does, gives the report the
// comparisons expect.
func TestProbeOutputComparesWithAllocation(t *testing.T) {
	var out strings.Builder
	if err := probe.WriteDeviceReport(&out, probe.DeviceReport{Devices: []string{"gpu-1"}}); err != nil {
		t.Fatal(err)
	}
	res := probe.ParseResults(out.String())
	r := Report{Count: 1, Devices: strings.Split(res["DEVICES"], ",")}
	if res["ACCELERATOR_COUNT"] != "1" {
		t.Fatalf("results %v", res)
	}
	if p := oneProblem("pod p", r, Device{Name: "gpu-1"}, true); p != "" {
		t.Error(p)
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		acc  profile.Accelerator
		want bool
	}{
		{profile.Accelerator{DeviceEnvPrefix: "GPU_DEVICE_"}, true},
		{profile.Accelerator{DeviceGlob: "/dev/nvidia[0-9]*"}, false},
		{profile.Accelerator{DeviceEnvPrefix: "GPU_DEVICE_", DeviceGlob: "/dev/nvidia[0-9]*"}, false},
	} {
		if got := Names(&conformance.Env{Accelerator: tc.acc}); got != tc.want {
			t.Errorf("Names(%+v) = %t", tc.acc, got)
		}
	}
}

func TestPod(t *testing.T) {
	env := &conformance.Env{ProbeImage: "kaic-probe:test", Accelerator: profile.Accelerator{DeviceEnvPrefix: "GPU_DEVICE_", NodeTaintKey: "nvidia.com/gpu"}}
	pod := Pod(env, Spec{
		Name:       "p",
		Claims:     []corev1.PodResourceClaim{FromTemplate("claim", "tmpl")},
		Containers: []Container{{Name: "authorized", Claims: []string{"claim"}}, {Name: "unauthorized"}},
		PreferNode: "node-a",
	})
	if len(pod.Spec.Containers) != 2 || len(pod.Spec.Containers[0].Resources.Claims) != 1 || len(pod.Spec.Containers[1].Resources.Claims) != 0 {
		t.Errorf("containers %+v", pod.Spec.Containers)
	}
	if args := strings.Join(pod.Spec.Containers[0].Args, " "); args != "devices --hold=1h0m0s --env-prefix=GPU_DEVICE_" {
		t.Errorf("args %q", args)
	}
	if len(pod.Spec.Tolerations) != 1 || pod.Spec.Tolerations[0].Key != "nvidia.com/gpu" {
		t.Errorf("tolerations %+v", pod.Spec.Tolerations)
	}
	if pod.Spec.Affinity == nil || pod.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].Preference.MatchExpressions[0].Values[0] != "node-a" {
		t.Errorf("affinity %+v", pod.Spec.Affinity)
	}
	single := Pod(env, Spec{Name: "q", Claims: []corev1.PodResourceClaim{FromClaim("shared", "c")}})
	if c := single.Spec.Containers; len(c) != 1 || c[0].Name != "probe" || c[0].Resources.Claims[0].Name != "shared" {
		t.Errorf("default container %+v", c)
	}
}

// In device-plugin mode a holder requests one unit of the extended
// resource in its limits and the pod references no claim; what the probe
// sees is never compared by name, since the API names no device.
func TestPodDevicePlugin(t *testing.T) {
	env := &conformance.Env{ProbeImage: "kaic-probe:test", Accelerator: profile.Accelerator{
		Allocation: profile.AllocationDevicePlugin, ResourceName: "nvidia.com/gpu", DeviceEnvPrefix: "GPU_DEVICE_", DeviceClass: "unused"}}
	pod := Pod(env, Spec{
		Name:       "p",
		Claims:     TemplateClaims(env, "claim", "tmpl"),
		Containers: []Container{Holder(env, "authorized", "claim"), {Name: "unauthorized"}},
	})
	if len(pod.Spec.ResourceClaims) != 0 {
		t.Errorf("pod claims %+v in device-plugin mode", pod.Spec.ResourceClaims)
	}
	authorized, unauthorized := pod.Spec.Containers[0].Resources, pod.Spec.Containers[1].Resources
	if q := authorized.Limits["nvidia.com/gpu"]; q.Value() != 1 || len(authorized.Claims) != 0 {
		t.Errorf("authorized container resources %+v, want a limit of 1 nvidia.com/gpu", authorized)
	}
	if len(unauthorized.Limits) != 0 || len(unauthorized.Claims) != 0 {
		t.Errorf("unauthorized container resources %+v, want none", unauthorized)
	}
	if got := Requested(pod, "nvidia.com/gpu"); got != 1 {
		t.Errorf("Requested = %d, want 1", got)
	}
	if Names(env) {
		t.Error("Names is true in device-plugin mode, where the allocation names no device")
	}
	if d := (Device{Driver: "nvidia.com/gpu", Pool: "node-a"}); d.String() != "nvidia.com/gpu on node-a" {
		t.Errorf("a unit shows as %q", d)
	}
	dra := &conformance.Env{Accelerator: profile.Accelerator{DeviceClass: "gpu.example.com", DeviceEnvPrefix: "GPU_DEVICE_"}}
	if c := Holder(dra, "c", "claim"); c.Devices != 0 || len(c.Claims) != 1 {
		t.Errorf("DRA holder %+v, want a claim reference", c)
	}
	if claims := TemplateClaims(dra, "claim", "tmpl"); len(claims) != 1 {
		t.Errorf("DRA pod claims %+v", claims)
	}
}

// Requested counts as the scheduler does: the containers' sum, requests
// where no limit is set, or the largest init container if that is more.
func TestRequested(t *testing.T) {
	const res = corev1.ResourceName("example.com/gpu")
	limit := func(n int64) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{Limits: corev1.ResourceList{res: quantity(n)}}
	}
	request := func(n int64) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{Requests: corev1.ResourceList{res: quantity(n)}}
	}
	for _, tc := range []struct {
		name       string
		containers []corev1.ResourceRequirements
		init       []corev1.ResourceRequirements
		want       int64
	}{
		{"none", []corev1.ResourceRequirements{{}}, nil, 0},
		{"two containers", []corev1.ResourceRequirements{limit(1), request(2)}, nil, 3},
		{"larger init container", []corev1.ResourceRequirements{limit(1)}, []corev1.ResourceRequirements{limit(4)}, 4},
		{"smaller init container", []corev1.ResourceRequirements{limit(2)}, []corev1.ResourceRequirements{limit(1)}, 2},
	} {
		pod := &corev1.Pod{}
		for _, r := range tc.containers {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Resources: r})
		}
		for _, r := range tc.init {
			pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Resources: r})
		}
		if got := Requested(pod, res); got != tc.want {
			t.Errorf("%s: Requested = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// The cluster is busy only when no device is free anywhere and workloads
// kaic did not create hold some; devices held by kaic's own checks alone
// are not a reason (they are released when those checks end).
func TestBusyReason(t *testing.T) {
	for _, tc := range []struct {
		name     string
		holdings map[string]*NodeHolding
		want     string
	}{
		{"a free device", map[string]*NodeHolding{
			"a": {Devices: 2, Free: 1, Others: 1, Holders: []string{"pod x/y"}},
		}, ""},
		{"free on another node", map[string]*NodeHolding{
			"a": {Devices: 2, Others: 2, Holders: []string{"pod x/y (2)"}},
			"b": {Devices: 1, Free: 1},
		}, ""},
		{"only kaic's checks", map[string]*NodeHolding{"a": {Devices: 2, Ours: 2}}, ""},
		{"others and kaic", map[string]*NodeHolding{
			"a": {Devices: 4, Ours: 1, Others: 3, Holders: []string{"pod x/p", "pod x/q", "ResourceClaim x/c"}},
			"b": {Devices: 1, Ours: 1},
		}, "3 of 4 devices on node a are held by other workloads (pod x/p, pod x/q, ResourceClaim x/c) and 1 by kaic's checks"},
		{"many holders", map[string]*NodeHolding{
			"a": {Devices: 7, Others: 7, Holders: []string{"pod 1", "pod 2", "pod 3", "pod 4", "pod 5", "pod 6", "pod 7"}},
		}, "7 of 7 devices on node a are held by other workloads (pod 1, pod 2, pod 3, pod 4, pod 5 and 2 more)"},
	} {
		if got := busyReason(tc.holdings); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestStartTimeline(t *testing.T) {
	created := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	at := func(s int) metav1.Time { return metav1.NewTime(created.Add(time.Duration(s) * time.Second)) }
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(created)},
		Status: corev1.PodStatus{Conditions: []corev1.PodCondition{
			// In the order the kubelet lists them, not the order they happened.
			{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue, LastTransitionTime: at(71)},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: at(71)},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: at(73)},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: at(73)},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: at(2)},
			{Type: corev1.DisruptionTarget, Status: corev1.ConditionFalse, LastTransitionTime: at(90)},
		}},
	}
	took, timeline := StartTimeline(pod)
	if took != 73*time.Second {
		t.Errorf("took %s, want 73s (the last True condition)", took)
	}
	want := "PodScheduled after 2s, PodReadyToStartContainers after 1m11s, Initialized after 1m11s, Ready after 1m13s, ContainersReady after 1m13s"
	if timeline != want {
		t.Errorf("timeline\n %q, want\n %q", timeline, want)
	}
	if took, timeline := StartTimeline(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(created)}}); took != 0 || timeline != "no condition is True" {
		t.Errorf("a pod without conditions: %s, %q", took, timeline)
	}
}
