package testenv

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/kaic-dev/kaic/pkg/conditions"
)

// CRDResource is the resource of CustomResourceDefinitions.
var CRDResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// WaitForCRDEstablished watches the CustomResourceDefinition name until its
// Established condition is True, so custom resources of it can be created.
// It fails early if the API server reports NamesAccepted=False.
func WaitForCRDEstablished(ctx context.Context, client dynamic.Interface, name string) error {
	crds := client.Resource(CRDResource)
	lw := singleObjectListWatch(name, crds.List, crds.Watch)
	_, err := watchtools.UntilWithSync(ctx, lw, &unstructured.Unstructured{}, nil, func(event watch.Event) (bool, error) {
		if event.Type == watch.Deleted {
			return false, fmt.Errorf("CustomResourceDefinition %s was deleted", name)
		}
		crd, ok := event.Object.(*unstructured.Unstructured)
		if !ok {
			return false, nil
		}
		if names, ok := conditions.Get(crd, "NamesAccepted"); ok && names.Status == "False" {
			return false, fmt.Errorf("CustomResourceDefinition %s: names not accepted: %s", name, names.Message)
		}
		return conditions.IsTrue(crd, "Established"), nil
	})
	if err != nil {
		return fmt.Errorf("wait for CustomResourceDefinition %s to be established: %w", name, err)
	}
	return nil
}

// WaitForPod watches the pod namespace/name until done returns true and
// returns the pod as last seen. It fails if the pod is deleted.
func WaitForPod(ctx context.Context, client kubernetes.Interface, namespace, name string, done func(*corev1.Pod) (bool, error)) (*corev1.Pod, error) {
	pods := client.CoreV1().Pods(namespace)
	var last *corev1.Pod
	lw := singleObjectListWatch(name, pods.List, pods.Watch)
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(event watch.Event) (bool, error) {
		pod, ok := event.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		last = pod
		if event.Type == watch.Deleted {
			return false, fmt.Errorf("pod %s/%s was deleted", namespace, name)
		}
		return done(pod)
	})
	if err != nil {
		return last, fmt.Errorf("wait for pod %s/%s: %w", namespace, name, err)
	}
	return last, nil
}

// PodRunning is a [WaitForPod] condition: the pod is bound and Running.
func PodRunning(pod *corev1.Pod) (bool, error) {
	switch pod.Status.Phase {
	case corev1.PodRunning:
		return pod.Spec.NodeName != "", nil
	case corev1.PodFailed, corev1.PodSucceeded:
		return false, fmt.Errorf("pod %s/%s is %s, not Running", pod.Namespace, pod.Name, pod.Status.Phase)
	}
	return false, nil
}

// PodUnschedulable is a [WaitForPod] condition: the scheduler has marked the
// pod PodScheduled=False with reason Unschedulable.
func PodUnschedulable(pod *corev1.Pod) (bool, error) {
	if pod.Spec.NodeName != "" {
		return false, fmt.Errorf("pod %s/%s was bound to %s", pod.Namespace, pod.Name, pod.Spec.NodeName)
	}
	condition := PodCondition(pod, corev1.PodScheduled)
	return condition != nil && condition.Status == corev1.ConditionFalse && condition.Reason == corev1.PodReasonUnschedulable, nil
}

// PodCondition returns the pod's condition of type t, or nil.
func PodCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// waitForNodesSchedulable watches nodes until every one of names is Ready
// and untainted. The controller manager taints a new node not-ready until
// it sees the Ready condition kwok sets; until it lifts the taint the
// scheduler refuses the node.
func waitForNodesSchedulable(ctx context.Context, client kubernetes.Interface, names []string) error {
	pending := make(map[string]bool, len(names))
	for _, name := range names {
		pending[name] = true
	}
	nodes := client.CoreV1().Nodes()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return nodes.List(ctx, opts)
		},
		WatchFuncWithContext: nodes.Watch,
	}
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Node{}, nil, func(event watch.Event) (bool, error) {
		if node, ok := event.Object.(*corev1.Node); ok && nodeReady(node) && len(node.Spec.Taints) == 0 {
			delete(pending, node.Name)
		}
		return len(pending) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("wait for nodes to be Ready and untainted (still waiting for %v): %w", keys(pending), err)
	}
	return nil
}

func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitForServiceAccount watches namespace until its service account name
// exists; the controller manager creates "default" shortly after the
// namespace, and pods cannot be admitted before it.
func waitForServiceAccount(ctx context.Context, client kubernetes.Interface, namespace, name string) error {
	accounts := client.CoreV1().ServiceAccounts(namespace)
	lw := singleObjectListWatch(name, accounts.List, accounts.Watch)
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.ServiceAccount{}, nil, func(event watch.Event) (bool, error) {
		return event.Type != watch.Deleted, nil
	})
	if err != nil {
		return fmt.Errorf("wait for service account %s/%s: %w", namespace, name, err)
	}
	return nil
}

// singleObjectListWatch lists and watches the object called name through
// a metadata.name field selector.
func singleObjectListWatch[L runtime.Object](name string,
	list func(context.Context, metav1.ListOptions) (L, error),
	watchFunc func(context.Context, metav1.ListOptions) (watch.Interface, error),
) *cache.ListWatch {
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = selector
			return list(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = selector
			return watchFunc(ctx, opts)
		},
	}
}

func keys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	return out
}
