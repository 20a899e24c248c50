package inference

import (
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/pkg/probe"
)

func TestSplitVerdict(t *testing.T) {
	for _, tc := range []struct {
		got, n, w, total int
		sigmas           float64
		ok               bool
		allowed          string
	}{
		{got: 80, n: 100, w: 80, total: 100, sigmas: 3, ok: true, allowed: "68..92"},
		{got: 68, n: 100, w: 80, total: 100, sigmas: 3, ok: true, allowed: "68..92"},
		{got: 92, n: 100, w: 80, total: 100, sigmas: 3, ok: true, allowed: "68..92"},
		{got: 67, n: 100, w: 80, total: 100, sigmas: 3, ok: false, allowed: "68..92"},
		{got: 100, n: 100, w: 80, total: 100, sigmas: 3, ok: false, allowed: "68..92"}, // no split at all
		{got: 50, n: 100, w: 80, total: 100, sigmas: 3, ok: false, allowed: "68..92"},  // round robin ignores weights
		{got: 50, n: 100, w: 50, total: 100, sigmas: 3, ok: true, allowed: "35..65"},
		{got: 9, n: 10, w: 90, total: 100, sigmas: 3, ok: true, allowed: "7..10"},
		{got: 80, n: 100, w: 80, total: 100, sigmas: 0.5, ok: true, allowed: "78..82"},
	} {
		ok, why := splitVerdict(tc.got, tc.n, tc.w, tc.total, tc.sigmas)
		if ok != tc.ok || !strings.Contains(why, "allowed "+tc.allowed) {
			t.Errorf("splitVerdict(%d of %d, weight %d/%d, %.1f sigmas) = %v, %q; want %v, allowed %s", tc.got, tc.n, tc.w, tc.total, tc.sigmas, ok, why, tc.ok, tc.allowed)
		}
	}
}

func TestTrafficProblem(t *testing.T) {
	good := probe.RequestReport{Requests: 10, Backends: map[string]int{"a": 8, "b": 2}, Statuses: map[string]int{"200": 10}}
	if p := trafficProblem(good, "a", "b"); p != "" {
		t.Errorf("good report: %q", p)
	}
	if p := trafficProblem(good, "b"); !strings.Contains(p, "8 answers came from a, not from b") {
		t.Errorf("answers from another backend: %q", p)
	}
	failing := probe.RequestReport{Requests: 10, Backends: map[string]int{"a": 7}, Statuses: map[string]int{"200": 7, "503": 1}, Errors: map[string]int{"timeout": 2},
		Answers: map[string]string{"503": "the endpoint picker did not answer"}}
	if p := trafficProblem(failing, "a"); !strings.Contains(p, "3 of 10 requests got no 2xx answer") || !strings.Contains(p, "the endpoint picker did not answer") {
		t.Errorf("failed requests: %q", p)
	}
}
