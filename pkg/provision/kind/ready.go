package kind

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/kaic-dev/kaic/pkg/progress"
)

// WaitNodesReady waits until want nodes are registered and Ready. On timeout
// the error names every node that is not Ready with its kubelet's reason
// (e.g. no CNI configuration when the default CNI is disabled).
func WaitNodesReady(ctx context.Context, kubeconfig string, want int, timeout time.Duration, r progress.Steps) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("reading %s: %w", kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	step := r.StartStep(fmt.Sprintf("waiting for %d node(s) Ready", want))
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	notReady := map[string]string{} // node name -> why, "" when Ready
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return client.CoreV1().Nodes().List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return client.CoreV1().Nodes().Watch(ctx, o)
		},
	}
	_, err = watchtools.UntilWithSync(wctx, lw, &corev1.Node{}, nil, func(ev watch.Event) (bool, error) {
		n, ok := ev.Object.(*corev1.Node)
		if !ok {
			return false, nil
		}
		if ev.Type == watch.Deleted {
			delete(notReady, n.Name)
		} else {
			notReady[n.Name] = nodeNotReadyReason(n)
		}
		ready := 0
		for _, why := range notReady {
			if why == "" {
				ready++
			}
		}
		return len(notReady) >= want && ready >= want, nil
	})
	if err != nil && wctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("nodes not Ready after %s: %s", timeout, describeNotReady(notReady, want))
	}
	step.Done(err)
	return err
}

// nodeNotReadyReason is "" for a Ready node, else what its Ready condition says.
func nodeNotReadyReason(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status == corev1.ConditionTrue {
			return ""
		}
		if c.Message != "" {
			return c.Message
		}
		return "Ready is " + string(c.Status)
	}
	return "no Ready condition yet"
}

func describeNotReady(notReady map[string]string, want int) string {
	var parts []string
	for name, why := range notReady {
		if why != "" {
			parts = append(parts, name+": "+why)
		}
	}
	slices.Sort(parts)
	if len(notReady) < want {
		parts = append(parts, fmt.Sprintf("%d of %d nodes registered", len(notReady), want))
	}
	return strings.Join(parts, "; ")
}
