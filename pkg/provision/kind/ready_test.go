package kind

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestNodeNotReadyReason(t *testing.T) {
	cases := []struct {
		name  string
		conds []corev1.NodeCondition
		want  string
	}{
		{"ready", []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}, ""},
		{"no CNI", []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Message: "cni plugin not initialized"}}, "cni plugin not initialized"},
		{"unknown without message", []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown}}, "Ready is Unknown"},
		{"no Ready condition", []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse}}, "no Ready condition yet"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := &corev1.Node{Status: corev1.NodeStatus{Conditions: c.conds}}
			if got := nodeNotReadyReason(n); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestDescribeNotReady(t *testing.T) {
	got := describeNotReady(map[string]string{"b-worker": "cni plugin not initialized", "a-control-plane": "", "a-worker": "kubelet stopped"}, 4)
	want := "a-worker: kubelet stopped; b-worker: cni plugin not initialized; 3 of 4 nodes registered"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestNodeCLINetwork(t *testing.T) {
	for _, p := range []string{"docker", "podman", "nerdctl"} {
		c, ok := cliFor(p)
		if !ok || c.binary != p {
			t.Fatalf("cliFor(%s) = %+v, %t", p, c, ok)
		}
		t.Setenv(c.networkEnv, "")
		if got := c.network(); got != "kind" {
			t.Errorf("%s: network %q, want kind", p, got)
		}
		t.Setenv(c.networkEnv, "other")
		if got := c.network(); got != "other" {
			t.Errorf("%s: network %q with %s=other", p, got, c.networkEnv)
		}
	}
	if _, ok := cliFor("detected"); ok {
		t.Error("cliFor(detected): a provider kind detected on its own has no known tool")
	}
}
