package kaic

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/draapi"
	"github.com/kaic-dev/kaic/pkg/ownership"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
)

// TestVerifyPreflight runs the preflight against a real API server. No
// kubelet runs here, so for the probe pod the test plays the kubelet: it
// writes the container states a kubelet reports when an image cannot be
// pulled, or when it starts. The node is a bare Node object for the same
// reason.
func TestVerifyPreflight(t *testing.T) {
	env := testenv.Shared(t)
	ctx := t.Context()
	client := env.Clientset()
	p := &profile.Profile{}
	steps := progress.ForPhase(progress.Discard, "verify")
	const image = "registry.invalid/kaic/probe:test"

	t.Run("no node", func(t *testing.T) {
		_, _, err := verifyPreflight(ctx, env.Config, p, image, "20261203-00000000", steps)
		var unusable *ClusterUnusableError
		if !errors.As(err, &unusable) {
			t.Fatalf("err = %v, want a ClusterUnusableError", err)
		}
		if unusable.Server != env.Config.Host || !strings.Contains(err.Error(), "the cluster at "+env.Config.Host+" ") {
			t.Errorf("the error does not name the server %s: %v", env.Config.Host, err)
		}
		if !strings.Contains(err.Error(), "no schedulable node") {
			t.Errorf("err = %v, want the missing node named", err)
		}
	})

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "preflight-node"}}
	if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.CoreV1().Nodes().Delete(context.Background(), node.Name, metav1.DeleteOptions{})
	})

	t.Run("image cannot be pulled", func(t *testing.T) {
		const runID = "20261203-0000fa11"
		go playKubelet(ctx, t, client, runID, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
			Reason: "ErrImagePull", Message: "failed to resolve reference \"" + image + "\": no such host"}})
		began := time.Now()
		_, _, err := verifyPreflight(ctx, env.Config, p, image, runID, steps)
		var unusable *ClusterUnusableError
		if !errors.As(err, &unusable) {
			t.Fatalf("err = %v, want a ClusterUnusableError", err)
		}
		for _, want := range []string{"preflight-node", "ErrImagePull", "no such host", "kaic probe image --push", "the cluster at " + env.Config.Host} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want it to contain %q", err, want)
			}
		}
		// Fail fast: the pull failure stops the preflight, not its timeout.
		if elapsed := time.Since(began); elapsed >= preflightPullTimeout {
			t.Errorf("the preflight waited %s, its whole timeout, for an image that cannot be pulled", elapsed)
		}
		assertNamespacesGone(t, client, runID)
	})

	t.Run("image runs", func(t *testing.T) {
		const runID = "20261203-00000001"
		go playKubelet(ctx, t, client, runID, corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}})
		summary, dra, err := verifyPreflight(ctx, env.Config, p, image, runID, steps)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(summary, "probe image ran on preflight-node") {
			t.Errorf("summary = %q, want the node the image ran on", summary)
		}
		// The version every check will use is found here, once.
		if dra.Version != draapi.V1 || !strings.Contains(summary, "DRA API resource.k8s.io/v1") {
			t.Errorf("DRA API %+v, summary %q: want resource.k8s.io/v1 found and named", dra, summary)
		}
		assertNamespacesGone(t, client, runID)
	})
}

// playKubelet waits for the preflight pod of runID and reports its
// container in state, as a kubelet would.
func playKubelet(ctx context.Context, t *testing.T, client kubernetes.Interface, runID string, state corev1.ContainerState) {
	sel := labels.SelectorFromSet(ownership.Labels(runID)).String()
	for ctx.Err() == nil {
		pods, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err == nil && len(pods.Items) > 0 {
			pod := pods.Items[0]
			pod.Status.Phase = corev1.PodPending
			pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "probe", Image: pod.Spec.Containers[0].Image, State: state}}
			if _, err := client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, &pod, metav1.UpdateOptions{}); err != nil {
				t.Errorf("writing the pod's status: %v", err)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// assertNamespacesGone checks that the preflight deleted its namespace.
func assertNamespacesGone(t *testing.T, client kubernetes.Interface, runID string) {
	t.Helper()
	nss, err := client.CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{LabelSelector: labels.SelectorFromSet(ownership.Labels(runID)).String()})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nss.Items {
		if ns.DeletionTimestamp == nil {
			t.Errorf("preflight namespace %s left behind", ns.Name)
		}
	}
}

// On a cluster without resource.k8s.io/v1 (as 1.33), the accelerator
// nodes are still found from the driver's ResourceSlices, read through
// v1beta2 from a real API server.
func TestAcceleratorPoolsWithoutDRAV1(t *testing.T) {
	env := testenv.New(t, testenv.WithResourceAPIVersions("v1beta2", "v1beta1"))
	ctx := t.Context()
	client := env.Clientset()
	for _, name := range []string{"cpu-node", "gpu-node"} {
		if _, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dra := env.DRA()
	if dra.Version() != draapi.V1beta2 {
		t.Fatalf("the environment's DRA API is %s, want v1beta2", dra.API())
	}
	if _, err := dra.ResourceSlices().Create(ctx, testenv.FakeGPUSlice("gpu-node", "gpu.example.com", 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := &profile.Profile{Spec: profile.Spec{Accelerator: profile.Accelerator{DRADriver: "gpu.example.com"}}}
	pools, err := acceleratorPools(ctx, client, dra, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(pools) != 1 || pools[0].Name != "gpu-node" {
		t.Errorf("accelerator pools %v, want gpu-node alone", pools)
	}
}

// The preflight starts the probe image on the nodes that carry the
// profile's accelerators as its allocation finds them: allocatable of the
// extended resource in device-plugin mode, the driver's ResourceSlices in
// DRA mode, never the other mode's.
func TestAcceleratorPoolsFollowAllocation(t *testing.T) {
	env := testenv.New(t)
	ctx := t.Context()
	client := env.Clientset()
	for _, n := range []struct {
		name, instance string
		gpus           int64
	}{{"cpu-0", "m5", 0}, {"plugin-0", "g5", 1}, {"plugin-1", "g5", 1}, {"plugin-2", "p4", 8}, {"dra-0", "g6", 0}} {
		node, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name,
			Labels: map[string]string{corev1.LabelInstanceTypeStable: n.instance}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n.gpus > 0 {
			node.Status.Allocatable = corev1.ResourceList{"nvidia.com/gpu": *resource.NewQuantity(n.gpus, resource.DecimalSI)}
			if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	dra := env.DRA()
	if _, err := dra.ResourceSlices().Create(ctx, testenv.FakeGPUSlice("dra-0", "gpu.nvidia.com", 1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		allocation string
		want       []string
	}{
		{profile.AllocationDevicePlugin, []string{"plugin-0", "plugin-2"}}, // one per instance type
		{profile.AllocationDRA, []string{"dra-0"}},
	} {
		p := &profile.Profile{Spec: profile.Spec{Accelerator: profile.Accelerator{
			Allocation: tc.allocation, ResourceName: "nvidia.com/gpu", DRADriver: "gpu.nvidia.com"}}}
		pools, err := acceleratorPools(ctx, client, dra, p)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, n := range pools {
			got = append(got, n.Name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: pools %v, want %v", tc.allocation, got, tc.want)
		}
	}
}

// A webhook that intercepts pods but cannot be reached yet (as one
// installed moments ago) delays the preflight pod instead of failing the
// run; one that stays unreachable fails it with the webhook named. The
// webhook here calls a closed port of a real API server's host.
func TestPreflightPodWaitsForAnUnreachableWebhook(t *testing.T) {
	env := testenv.Shared(t)
	ctx := t.Context()
	client := env.Clientset()
	defer func(old time.Duration) { webhookGrace = old }(webhookGrace)
	webhookGrace = 20 * time.Second

	const label = "kaic.dev/webhook-test"
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "webhook-test-"}}
	ns, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{}) })
	deaf := func(name string) *admissionregistrationv1.MutatingWebhookConfiguration {
		url := "https://127.0.0.1:1/mutate"
		fail, none := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone
		return &admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name:                    name,
				ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url},
				Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
				ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{label: name}},
				FailurePolicy:           &fail,
				SideEffects:             &none,
				AdmissionReviewVersions: []string{"v1"},
			}},
		}
	}
	hooks := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns.Name, Labels: map[string]string{label: name + ".kaic.dev"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/none"}}},
		}
	}

	// The API server calls a webhook only once its own watch has seen the
	// configuration: a pod created right after it would pass unintercepted.
	// Dry-run creations (which call webhooks without side effects) show
	// when it is in effect.
	intercepting := func(t *testing.T, name string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := client.CoreV1().Pods(ns.Name).Create(ctx, pod(name), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil && strings.Contains(err.Error(), name+".kaic.dev") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("webhook %s.kaic.dev still not called 30s after its creation (last dry run: %v)", name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	t.Run("answers later", func(t *testing.T) {
		hook := deaf("later.kaic.dev")
		if _, err := hooks.Create(ctx, hook, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		intercepting(t, "later")
		// The webhook "starts answering" (goes away) after a few seconds.
		time.AfterFunc(4*time.Second, func() { _ = hooks.Delete(context.Background(), hook.Name, metav1.DeleteOptions{}) })
		began := time.Now()
		if err := createPastWebhooks(ctx, client, pod("later")); err != nil {
			t.Fatalf("the pod was not created once the webhook was gone: %v", err)
		}
		if waited := time.Since(began); waited < 3*time.Second {
			t.Errorf("created after %s, before the webhook went away: the webhook did not intercept it", waited)
		}
	})

	t.Run("never answers", func(t *testing.T) {
		hook := deaf("never.kaic.dev")
		if _, err := hooks.Create(ctx, hook, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = hooks.Delete(context.Background(), hook.Name, metav1.DeleteOptions{}) })
		intercepting(t, "never")
		err := createPastWebhooks(ctx, client, pod("never"))
		if err == nil || !regexp.MustCompile(`admission webhook never\.kaic\.dev did not answer for 1[89]s \(of the 20s allowed\)`).MatchString(err.Error()) {
			t.Fatalf("err = %v, want the unreachable webhook named with the time waited", err)
		}
	})
}
