package kaic

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/draapi"
	"github.com/kaic-dev/kaic/pkg/ownership"
	"github.com/kaic-dev/kaic/pkg/probe"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/provision/existing"
	"github.com/kaic-dev/kaic/pkg/stack"
)

// ClusterUnusableError says why the verify phase cannot use a cluster: it
// does not answer, the credentials may not do what the checks do, or its
// nodes cannot run the probe image. Such a run ends as an error of the run
// (exit 1), before any check runs or any evidence is written: a cluster
// kaic cannot use is never reported as a platform failing its checks.
type ClusterUnusableError struct {
	// Server is the API server's address.
	Server string
	// What failed, and how to fix it.
	Reason, Fix string
	Err         error
}

func (e *ClusterUnusableError) Error() string {
	msg := fmt.Sprintf("the cluster at %s cannot be verified: %s", e.Server, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Fix != "" {
		msg += "; " + e.Fix
	}
	return msg
}

func (e *ClusterUnusableError) Unwrap() error { return e.Err }

// Preflight timeouts; variables so tests can shorten them.
var (
	// preflightAnswerTimeout bounds the first request to the API server.
	preflightAnswerTimeout = 15 * time.Second
	// preflightPullTimeout bounds how long a node may take to start the
	// probe image (pulling it included).
	preflightPullTimeout = 3 * time.Minute
)

// verifyPreflight checks, before any check runs, that the cluster answers, that
// the credentials may do what the checks do, and that the probe image runs
// on one node of each accelerator node pool; on the way it discovers the
// version of the DRA API the checks will use. It returns a summary for the
// run state and the DRA API (not discovered when discovery failed: the
// checks then look again).
func verifyPreflight(ctx context.Context, cfg *rest.Config, p *profile.Profile, image, runID string, steps progress.Steps) (string, draapi.API, error) {
	server := cfg.Host
	quick := rest.CopyConfig(cfg)
	quick.Timeout = preflightAnswerTimeout
	client, err := kubernetes.NewForConfig(quick)
	if err != nil {
		return "", draapi.API{}, err
	}
	step := steps.StartStep("preflight: the API server at " + server + " answers")
	version, err := client.Discovery().ServerVersion()
	if err != nil {
		err = &ClusterUnusableError{Server: server, Reason: "the API server does not answer", Err: err,
			Fix: "check the kubeconfig's server address and that the cluster runs"}
		step.Done(err)
		return "", draapi.API{}, err
	}
	step.Done(nil)

	step = steps.StartStep("preflight: the credentials may do what the checks do")
	missing, err := existing.MissingPermissions(ctx, client, existing.RequiredPermissions)
	if err == nil && len(missing) > 0 {
		names := make([]string, len(missing))
		for i, m := range missing {
			names[i] = m.String()
		}
		err = &ClusterUnusableError{Server: server, Reason: "the credentials may not " + strings.Join(names, ", "),
			Fix: "use credentials bound to a role that allows these (cluster-admin does)"}
	} else if err != nil {
		err = &ClusterUnusableError{Server: server, Reason: "reviewing the credentials' permissions failed", Err: err}
	}
	step.Done(err)
	if err != nil {
		return "", draapi.API{}, err
	}

	full, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", draapi.API{}, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return "", draapi.API{}, err
	}
	// The version of resource.k8s.io every check will use, found once.
	dra, err := draapi.Discover(client.Discovery())
	switch {
	case err != nil:
		steps.Notef("warning: %v; the checks will look again", err)
	case dra.Err() != nil:
		steps.Notef("warning: %v: the DRA checks will fail", dra.Err())
	default:
		steps.Notef("DRA API of the checks: %s (served: %s)", dra, dra.ServedList())
	}

	step = steps.StartStep("preflight: the probe image " + image + " runs on the accelerator nodes")
	nodes, err := probeImageRuns(ctx, full, draapi.NewClient(dyn, dra), p, image, runID)
	setServer(err, server) // before the step prints it
	step.Done(err)
	if err != nil {
		return "", draapi.API{}, err
	}
	summary := fmt.Sprintf("API server %s (%s) answers; permissions reviewed; probe image ran on %s", server, version.GitVersion, strings.Join(nodes, ", "))
	if dra.Discovered() {
		summary += "; DRA API " + dra.String()
	}
	return summary, dra, nil
}

// setServer names server in every ClusterUnusableError err holds, joined
// ones included.
func setServer(err error, server string) {
	switch e := err.(type) {
	case *ClusterUnusableError:
		e.Server = server
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			setServer(inner, server)
		}
	case interface{ Unwrap() error }:
		setServer(e.Unwrap(), server)
	}
}

// acceleratorPools returns one node of each accelerator node pool: nodes
// offering the profile's extended resource in device-plugin mode, nodes
// with the driver's ResourceSlices (read through dra) in DRA mode; pools
// are told apart by instance type and architecture. Without such nodes,
// one schedulable node.
func acceleratorPools(ctx context.Context, client kubernetes.Interface, dra *draapi.Client, p *profile.Profile) ([]corev1.Node, error) {
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	accel := map[string]bool{}
	if name := p.Spec.Accelerator.ResourceName; p.Spec.Accelerator.DevicePlugin() && name != "" {
		for _, n := range nodes.Items {
			if q, ok := n.Status.Allocatable[corev1.ResourceName(name)]; ok && !q.IsZero() {
				accel[n.Name] = true
			}
		}
	}
	if driver := p.Spec.Accelerator.DRADriver; !p.Spec.Accelerator.DevicePlugin() && driver != "" {
		slices, err := dra.ResourceSlices().List(ctx, metav1.ListOptions{FieldSelector: "spec.driver=" + driver})
		if err == nil {
			for _, s := range slices.Items {
				if s.Spec.NodeName != nil {
					accel[*s.Spec.NodeName] = true
				}
			}
		}
	}
	pools := map[string]corev1.Node{}
	for _, n := range nodes.Items {
		if len(accel) > 0 && !accel[n.Name] || len(accel) == 0 && n.Spec.Unschedulable {
			continue
		}
		key := n.Labels[corev1.LabelInstanceTypeStable] + "/" + n.Labels[corev1.LabelArchStable]
		if len(accel) == 0 {
			key = "any"
		}
		if _, seen := pools[key]; !seen {
			pools[key] = n
		}
	}
	out := make([]corev1.Node, 0, len(pools))
	for _, n := range pools {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// probeImageRuns starts one short pod of the probe image on a node of each
// accelerator pool, in a namespace of its own that is deleted afterwards,
// and returns the nodes it ran on. An image that cannot be pulled stops it
// at once with the kubelet's reason.
func probeImageRuns(ctx context.Context, client kubernetes.Interface, dra *draapi.Client, p *profile.Profile, image, runID string) ([]string, error) {
	pools, err := acceleratorPools(ctx, client, dra, p)
	if err != nil {
		return nil, err
	}
	if len(pools) == 0 {
		return nil, &ClusterUnusableError{Reason: "the cluster has no schedulable node to run the probe image on"}
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "kaic-preflight-", Labels: ownership.Labels(runID)}}
	ns, err = client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating the preflight namespace: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = client.CoreV1().Namespaces().Delete(dctx, ns.Name, metav1.DeleteOptions{})
	}()
	if err := conformance.WaitForDefaultServiceAccount(ctx, client, ns.Name); err != nil {
		return nil, &ClusterUnusableError{Reason: "the preflight pod cannot be created", Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, preflightPullTimeout)
	defer cancel()
	errs := make(chan error, len(pools))
	for _, node := range pools {
		go func() { errs <- runProbePod(ctx, client, ns.Name, node.Name, image, runID) }()
	}
	var all []error
	for range pools {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	if len(all) > 0 {
		return nil, errors.Join(all...)
	}
	names := make([]string, len(pools))
	for i, n := range pools {
		names[i] = n.Name
	}
	return names, nil
}

// pullFailures are the waiting reasons that mean the image will not start
// without a change.
var pullFailures = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true,
	"ErrImageNeverPull": true, "CreateContainerConfigError": true,
}

// webhookGrace bounds how long the preflight pod's creation is retried
// while an admission webhook that intercepts pods cannot be reached: a
// component installed moments ago can have a ready endpoint that not
// every node's service proxy routes to yet.
var webhookGrace = time.Minute

// createPastWebhooks creates pod, trying again every few seconds for up to
// webhookGrace while an admission webhook does not answer at all (a
// webhook that answers and denies fails at once).
func createPastWebhooks(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod) error {
	return stack.RetryPastWebhooks(ctx, webhookGrace, 2*time.Second, nil, func() error {
		_, err := client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
}

// runProbePod runs the probe image on node until its container starts.
func runProbePod(ctx context.Context, client kubernetes.Interface, ns, node, image, runID string) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe-" + node, Namespace: ns, Labels: ownership.Labels(runID)},
		Spec: corev1.PodSpec{
			NodeName:      node,
			RestartPolicy: corev1.RestartPolicyNever,
			Tolerations:   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name: "probe", Image: image, Args: probe.Args("sleep", "1s"),
			}},
		},
	}
	if len(pod.Name) > 63 {
		pod.Name = pod.Name[:63]
	}
	if err := createPastWebhooks(ctx, client, pod); err != nil {
		return fmt.Errorf("creating the preflight pod on node %s: %w", node, err)
	}
	selector := fields.OneTermEqualSelector("metadata.name", pod.Name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return client.CoreV1().Pods(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return client.CoreV1().Pods(ns).Watch(ctx, o)
		},
	}
	var last *corev1.Pod
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(ev watch.Event) (bool, error) {
		got, ok := ev.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		last = got
		for _, cs := range got.Status.ContainerStatuses {
			switch {
			case cs.State.Running != nil, cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0:
				return true, nil
			case cs.State.Terminated != nil:
				return false, &ClusterUnusableError{
					Reason: fmt.Sprintf("the probe image %s exited %d on node %s: %s", image, cs.State.Terminated.ExitCode, node, cs.State.Terminated.Message),
					Fix:    "the image is not kaic's probe image, or was built for another architecture"}
			case cs.State.Waiting != nil && pullFailures[cs.State.Waiting.Reason]:
				return false, &ClusterUnusableError{
					Reason: fmt.Sprintf("node %s cannot run the probe image %s: %s: %s", node, image, cs.State.Waiting.Reason, cs.State.Waiting.Message),
					Fix: "push the image where the nodes can pull it (kaic probe image --push REF) and set spec.checks.probeImage to it, " +
						"or give the nodes the image pull secret it needs"}
			}
		}
		return got.Status.Phase == corev1.PodSucceeded, nil
	})
	switch {
	case err == nil:
		return nil
	case errors.As(err, new(*ClusterUnusableError)):
		return err
	case ctx.Err() != nil || errors.Is(err, watchtools.ErrWatchClosed):
		state := "no status"
		if last != nil {
			state = podState(last)
		}
		return &ClusterUnusableError{
			Reason: fmt.Sprintf("the probe image %s did not start on node %s within %s (%s)", image, node, preflightPullTimeout, state),
			Fix:    "check that the node can pull the image (kubectl describe pod shows the kubelet's events)"}
	case apierrors.IsNotFound(err):
		return fmt.Errorf("the preflight pod on node %s was deleted", node)
	}
	return err
}

// podState summarises a pod's phase and containers' states.
func podState(p *corev1.Pod) string {
	parts := []string{"phase " + string(p.Status.Phase)}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			parts = append(parts, "waiting: "+w.Reason+" "+w.Message)
		}
	}
	return strings.Join(parts, ", ")
}
