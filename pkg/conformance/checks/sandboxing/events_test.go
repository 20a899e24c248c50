package sandboxing

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func sandboxEvent(reason, msg string, count int32, at time.Time) corev1.Event {
	return corev1.Event{Reason: reason, Message: msg, Count: count, LastTimestamp: metav1.NewTime(at)}
}

// The kubelet's FailedCreatePodSandBox events end the wait once they add
// up to three, with the latest message; fewer, or other reasons, do not.
func TestRepeatedSandboxFailure(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	oom := "failed to create containerd task: failed to set OOM Score on shim: write /proc/42/oom_score_adj: permission denied"
	for _, tc := range []struct {
		name   string
		events []corev1.Event
		want   string
	}{
		{"none", nil, ""},
		{"twice", []corev1.Event{sandboxEvent(failedSandbox, oom, 2, t0)}, ""},
		{"three times in one event", []corev1.Event{sandboxEvent(failedSandbox, oom, 3, t0)}, oom},
		{"three events, latest message", []corev1.Event{
			sandboxEvent(failedSandbox, "older", 1, t0),
			sandboxEvent(failedSandbox, oom, 1, t0.Add(time.Minute)),
			sandboxEvent(failedSandbox, "middle", 1, t0.Add(30*time.Second)),
		}, oom},
		{"other reasons do not count", []corev1.Event{
			sandboxEvent("Scheduled", "assigned", 5, t0),
			sandboxEvent(failedSandbox, oom, 2, t0),
		}, ""},
		{"a series counts its repeats", []corev1.Event{{Reason: failedSandbox, Message: oom, Series: &corev1.EventSeries{Count: 4, LastObservedTime: metav1.NewMicroTime(t0)}}}, oom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RepeatedSandboxFailure(tc.events); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
