package stack

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"helm.sh/helm/v4/pkg/action"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Image pull failures end a readiness wait early: an image that cannot be
// pulled after the kubelet's first back-offs will not be pulled before the
// timeout either, and waiting the whole timeout only hides the reason.
var (
	// pullGrace is how long a container may stay in ErrImagePull or
	// ImagePullBackOff (the kubelet's back-offs are 10s, 20s, 40s…)
	// before the wait ends.
	pullGrace = 45 * time.Second
	// pullPoll is how often the pods are looked at.
	pullPoll = 2 * time.Second
)

// pullFailures are the waiting reasons of a container whose image will not
// start; the permanent ones end the wait at once.
var pullFailures = map[string]bool{
	"ErrImagePull": false, "ImagePullBackOff": false,
	"InvalidImageName": true, "ErrImageNeverPull": true,
}

// ImagePullError is why a component's wait ended early: a container of one
// of its pods cannot get its image.
type ImagePullError struct {
	Pod, Container, Image, Node string
	Reason, Message             string
	// For is how long the container had been failing.
	For time.Duration
}

func (e *ImagePullError) Error() string {
	node := e.Node
	if node == "" {
		node = "its node"
	}
	return fmt.Sprintf("image %s of container %s in pod %s cannot be pulled on %s: %s (for %s): %s",
		e.Image, e.Container, e.Pod, node, e.Reason, e.For.Round(time.Second), e.Message)
}

// imageLine finds the images a rendered manifest names.
var imageLine = regexp.MustCompile(`(?m)^\s*-?\s*image:\s*["']?([^"'\s]+)["']?\s*$`)

// watchPulls ends ctx (through cancel, with an *ImagePullError as cause)
// when a pod in ns running one of the images of release name's manifest
// cannot pull it. It returns when ctx ends.
func watchPulls(ctx context.Context, cancel context.CancelCauseFunc, client kubernetes.Interface, cfg *action.Configuration, name, ns string) {
	images := map[string]bool{}
	since := map[string]time.Time{} // pod/container → first seen failing
	tick := time.NewTicker(pullPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if len(images) == 0 {
			// The pending release holds the rendered manifest once Helm
			// has stored it.
			if rel, err := lastRelease(cfg, name); err == nil && rel != nil {
				for _, m := range imageLine.FindAllStringSubmatch(rel.Manifest, -1) {
					images[m[1]] = true
				}
			}
			if len(images) == 0 {
				continue
			}
		}
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		now := time.Now()
		for i := range pods.Items {
			if e := pullFailure(&pods.Items[i], images, since, now); e != nil {
				cancel(e)
				return
			}
		}
	}
}

// pullFailure returns the failure of a container of pod that runs one of
// images and has failed to pull it for longer than pullGrace (at once for a
// permanent reason).
func pullFailure(pod *corev1.Pod, images map[string]bool, since map[string]time.Time, now time.Time) *ImagePullError {
	specImage := map[string]string{}
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		specImage[c.Name] = c.Image
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		key := pod.Name + "/" + cs.Name
		w := cs.State.Waiting
		permanent, failing := false, false
		if w != nil {
			permanent, failing = pullFailures[w.Reason]
		}
		if !failing || !images[specImage[cs.Name]] {
			delete(since, key)
			continue
		}
		first, seen := since[key]
		if !seen {
			since[key], first = now, now
		}
		if permanent || now.Sub(first) >= pullGrace {
			return &ImagePullError{Pod: pod.Name, Container: cs.Name, Image: specImage[cs.Name], Node: pod.Spec.NodeName,
				Reason: w.Reason, Message: w.Message, For: now.Sub(first)}
		}
	}
	return nil
}
