package conformance

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// ListWatch restricts a client's List and Watch (typed or dynamic) to the
// objects matching fieldSelector and labelSelector (either may be ""), for
// watchtools.UntilWithSync and informers.
func ListWatch[L k8sruntime.Object](list func(context.Context, metav1.ListOptions) (L, error), watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error), fieldSelector, labelSelector string) *cache.ListWatch {
	set := func(opts *metav1.ListOptions) {
		opts.FieldSelector, opts.LabelSelector = fieldSelector, labelSelector
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (k8sruntime.Object, error) {
			set(&opts)
			return list(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			set(&opts)
			return watchFn(ctx, opts)
		},
	}
}

// NameSelector is the field selector of the object called name.
func NameSelector(name string) string {
	return fields.OneTermEqualSelector("metadata.name", name).String()
}

// ServedResources lists the resources (without subresources) the API
// server serves for groupVersion, sorted, and records them in the
// transcript.
func ServedResources(t *T, env *Env, groupVersion string) ([]string, error) {
	list, err := env.Client.Discovery().ServerResourcesForGroupVersion(groupVersion)
	if err != nil {
		return nil, err
	}
	var served []string
	for _, r := range list.APIResources {
		if !strings.Contains(r.Name, "/") {
			served = append(served, r.Name)
		}
	}
	sort.Strings(served)
	t.Observe("resources served by "+groupVersion, strings.Join(served, ", "))
	return served, nil
}

// DefaultServiceAccountTimeout bounds WaitForDefaultServiceAccount.
const DefaultServiceAccountTimeout = time.Minute

// WaitForDefaultServiceAccount waits until the service account "default"
// exists in namespace. The service account controller creates it shortly
// after the namespace, and until then the API server refuses pods that do
// not name another service account.
func WaitForDefaultServiceAccount(ctx context.Context, client kubernetes.Interface, namespace string) error {
	ctx, endWait := StartWait(ctx)
	defer endWait()
	ctx, cancel := context.WithTimeout(ctx, DefaultServiceAccountTimeout)
	defer cancel()
	sas := client.CoreV1().ServiceAccounts(namespace)
	lw := ListWatch(sas.List, sas.Watch, NameSelector("default"), "")
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.ServiceAccount{}, nil, func(event watch.Event) (bool, error) {
		return event.Type != watch.Deleted, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the service account default in namespace %s (the cluster's service account controller creates it): %w", namespace, err)
	}
	return nil
}

// WaitForPod watches the pod namespace/name until done returns true (or
// an error) and returns the pod as last seen, also on error. A deleted pod
// is an error.
func WaitForPod(ctx context.Context, client kubernetes.Interface, namespace, name string, done func(*corev1.Pod) (bool, error)) (*corev1.Pod, error) {
	ctx, endWait := StartWait(ctx)
	defer endWait()
	pods := client.CoreV1().Pods(namespace)
	lw := ListWatch(pods.List, pods.Watch, NameSelector(name), "")
	var last *corev1.Pod
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
		return last, fmt.Errorf("waiting for pod %s/%s: %w", namespace, name, err)
	}
	return last, nil
}

// PodRunning is a WaitForPod condition: the pod is bound and Running (or
// has already Succeeded). A failed pod is an error.
func PodRunning(pod *corev1.Pod) (bool, error) {
	switch pod.Status.Phase {
	case corev1.PodRunning, corev1.PodSucceeded:
		return pod.Spec.NodeName != "", nil
	case corev1.PodFailed:
		return false, fmt.Errorf("pod %s/%s failed: %s %s", pod.Namespace, pod.Name, pod.Status.Reason, pod.Status.Message)
	}
	return false, nil
}

// PodUnschedulable is a WaitForPod condition: the scheduler marked the pod
// PodScheduled=False with reason Unschedulable. A bound pod is an error.
func PodUnschedulable(pod *corev1.Pod) (bool, error) {
	if pod.Spec.NodeName != "" {
		return false, fmt.Errorf("pod %s/%s was bound to node %s", pod.Namespace, pod.Name, pod.Spec.NodeName)
	}
	c := PodCondition(pod, corev1.PodScheduled)
	return c != nil && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable, nil
}

// PodCondition returns the pod's condition of type ct, or nil.
func PodCondition(pod *corev1.Pod, ct corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == ct {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// KwokNodeAnnotation marks the nodes kwok simulates.
const KwokNodeAnnotation = "kwok.x-k8s.io/node"

// NodeRunsNoContainers reports whether node cannot run containers, and
// why: kwok simulates it (its annotation, or the kwok-<version> runtime it
// reports), or it reports no container runtime at all. Pods bound to such
// a node are scheduled, get their claims allocated and are marked Running,
// but no container starts, so there are no logs to read.
func NodeRunsNoContainers(node *corev1.Node) (string, bool) {
	runtime := node.Status.NodeInfo.ContainerRuntimeVersion
	_, kwok := node.Annotations[KwokNodeAnnotation]
	switch {
	case kwok:
		return fmt.Sprintf("node %s is simulated by kwok (annotation %s) and runs no containers", node.Name, KwokNodeAnnotation), true
	case strings.HasPrefix(runtime, "kwok-"):
		return fmt.Sprintf("node %s is simulated by kwok (container runtime %q) and runs no containers", node.Name, runtime), true
	case runtime == "":
		return fmt.Sprintf("node %s reports no container runtime version, so it runs no containers", node.Name), true
	}
	return "", false
}

// CutShort reports whether err only says that ctx's time ran out (or was
// about to: client-go's rate limiter refuses to wait past a deadline
// before it passes), so it says nothing about what was asked.
func CutShort(ctx context.Context, err error) bool {
	if err == nil {
		return false
	}
	return ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		strings.Contains(err.Error(), "would exceed context deadline")
}

// PollUntilContextCancel is wait.PollUntilContextCancel counted as a wait
// of the check (StartWait).
func PollUntilContextCancel(ctx context.Context, interval time.Duration, immediate bool, condition wait.ConditionWithContextFunc) error {
	ctx, endWait := StartWait(ctx)
	defer endWait()
	return wait.PollUntilContextCancel(ctx, interval, immediate, condition)
}

// PollUntilContextTimeout is wait.PollUntilContextTimeout counted as a
// wait of the check (StartWait).
func PollUntilContextTimeout(ctx context.Context, interval, timeout time.Duration, immediate bool, condition wait.ConditionWithContextFunc) error {
	ctx, endWait := StartWait(ctx)
	defer endWait()
	return wait.PollUntilContextTimeout(ctx, interval, timeout, immediate, condition)
}

// UntilWithSync is watchtools.UntilWithSync counted as a wait of the check
// (StartWait).
func UntilWithSync(ctx context.Context, lw cache.ListerWatcher, objType k8sruntime.Object, precondition watchtools.PreconditionFunc, conditions ...watchtools.ConditionFunc) (*watch.Event, error) {
	ctx, endWait := StartWait(ctx)
	defer endWait()
	return watchtools.UntilWithSync(ctx, lw, objType, precondition, conditions...)
}

// UntilSet watches what lw lists until done, given every object there is
// at that moment by name, reports true. It is UntilWithSync (a wait of the
// check) that keeps the set of objects, since each event carries one.
func UntilSet[T any, P interface {
	*T
	k8sruntime.Object
	GetName() string
}](ctx context.Context, lw cache.ListerWatcher, done func(map[string]P) bool) error {
	seen := map[string]P{}
	_, err := UntilWithSync(ctx, lw, P(new(T)), nil, func(event watch.Event) (bool, error) {
		obj, ok := event.Object.(P)
		if !ok {
			return false, nil
		}
		if event.Type == watch.Deleted {
			delete(seen, obj.GetName())
		} else {
			seen[obj.GetName()] = obj
		}
		return done(seen), nil
	})
	return err
}

// UntilServiceSlices watches the EndpointSlices of Service name in
// namespace until done, given every slice the Service has at that moment
// by slice name, reports true.
func UntilServiceSlices(ctx context.Context, client kubernetes.Interface, namespace, name string, done func(map[string]*discoveryv1.EndpointSlice) bool) error {
	slices := client.DiscoveryV1().EndpointSlices(namespace)
	lw := ListWatch(slices.List, slices.Watch, "", labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name}).String())
	return UntilSet(ctx, lw, done)
}
