package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNodeRunsNoContainers(t *testing.T) {
	node := func(annotations map[string]string, runtime string) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: annotations},
			Status:     corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{ContainerRuntimeVersion: runtime}},
		}
	}
	for _, tc := range []struct {
		name string
		node *corev1.Node
		want string // part of the reason; "" when the node runs containers
	}{
		{"containerd", node(nil, "containerd://2.1.4"), ""},
		{"kwok annotation", node(map[string]string{KwokNodeAnnotation: "fake"}, "containerd://2.1.4"), "simulated by kwok (annotation kwok.x-k8s.io/node)"},
		{"kwok runtime", node(nil, "kwok-v0.7.0"), `simulated by kwok (container runtime "kwok-v0.7.0")`},
		{"no runtime", node(nil, ""), "reports no container runtime version"},
	} {
		why, none := NodeRunsNoContainers(tc.node)
		if none != (tc.want != "") || !strings.Contains(why, tc.want) {
			t.Errorf("%s: NodeRunsNoContainers = %q, %t", tc.name, why, none)
		}
	}
}

func TestCutShort(t *testing.T) {
	live := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		ctx  context.Context
		err  error
		want bool
	}{
		{live, nil, false},
		{live, errors.New("connection refused"), false},
		{live, errors.New("client rate limiter Wait returned an error: rate: Wait(n=1) would exceed context deadline"), true},
		{live, fmt.Errorf("query: %w", context.DeadlineExceeded), true},
		{done, errors.New("anything"), true},
	} {
		if got := CutShort(tc.ctx, tc.err); got != tc.want {
			t.Errorf("CutShort(%v, %v) = %t, want %t", tc.ctx.Err(), tc.err, got, tc.want)
		}
	}
}
