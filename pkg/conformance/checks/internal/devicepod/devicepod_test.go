package devicepod

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

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
	if p := noneProblem("pod p", Report{}); p != "" {
		t.Errorf("no device: %q", p)
	}
	if p := noneProblem("pod p", Report{Count: 1, Devices: []string{"gpu-0"}}); !strings.Contains(p, "sees 1 devices (gpu-0) although it references no claim") {
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
