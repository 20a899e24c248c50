package stack

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pullFailure waits pullGrace for transient pull failures, not for
// permanent ones, and looks only at containers running the release's
// images.
func TestPullFailure(t *testing.T) {
	now := time.Now()
	pod := func(image, reason string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p"},
			Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: image}}},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "c",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "m"}}}}},
		}
	}
	images := map[string]bool{"ours:1": true}
	since := map[string]time.Time{}
	if e := pullFailure(pod("ours:1", "ErrImagePull"), images, since, now); e != nil {
		t.Errorf("a first pull failure ended the wait: %v", e)
	}
	if e := pullFailure(pod("ours:1", "ImagePullBackOff"), images, since, now.Add(pullGrace)); e == nil || e.Node != "n1" || e.For != pullGrace {
		t.Errorf("a failure lasting pullGrace: %v", e)
	}
	if e := pullFailure(pod("ours:1", "InvalidImageName"), images, map[string]time.Time{}, now); e == nil {
		t.Error("a permanent failure did not end the wait at once")
	}
	if e := pullFailure(pod("theirs:1", "InvalidImageName"), images, map[string]time.Time{}, now); e != nil {
		t.Errorf("another release's image ended the wait: %v", e)
	}
	since = map[string]time.Time{}
	_ = pullFailure(pod("ours:1", "ErrImagePull"), images, since, now)
	_ = pullFailure(pod("ours:1", "ContainerCreating"), images, since, now.Add(time.Second))
	if e := pullFailure(pod("ours:1", "ErrImagePull"), images, since, now.Add(pullGrace)); e != nil {
		t.Errorf("a failure that recovered in between kept its first time: %v", e)
	}
}
