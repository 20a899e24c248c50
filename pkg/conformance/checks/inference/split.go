package inference

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/probe"
)

// splitRange is the range of answers from a backend of weight w out of
// total that a split within sigmas standard deviations of the binomial
// distribution allows: with 100 requests, 80/20 and 3 sigmas, 80±12.
func splitRange(n, w, total int, sigmas float64) (lo, hi int) {
	if total <= 0 || n <= 0 {
		return 0, 0
	}
	p := float64(w) / float64(total)
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	lo = int(math.Ceil(mean - sigmas*sd))
	hi = int(math.Floor(mean + sigmas*sd))
	return max(lo, 0), min(hi, n)
}

// splitVerdict decides whether got answers out of n from a backend of
// weight w (of total) follow the weights, and says why.
func splitVerdict(got, n, w, total int, sigmas float64) (bool, string) {
	lo, hi := splitRange(n, w, total, sigmas)
	mean := float64(n) * float64(w) / float64(total)
	ok := got >= lo && got <= hi
	word := "within"
	if !ok {
		word = "outside"
	}
	return ok, fmt.Sprintf("%d of %d answers, %s the allowed %d..%d (expected %.0f for weight %d of %d, ±%.1f standard deviations)", got, n, word, lo, hi, mean, w, total, sigmas)
}

// trafficProblem says what is wrong with a report whose every request
// should have been answered by one of backends, or "" if nothing is.
func trafficProblem(rep probe.RequestReport, backends ...string) string {
	var problems []string
	if rep.Failed() > 0 {
		p := fmt.Sprintf("%d of %d requests got no 2xx answer (statuses %v, errors %v)", rep.Failed(), rep.Requests, rep.Statuses, rep.Errors)
		if len(rep.Answers) > 0 {
			p += fmt.Sprintf("; the first answer of each failing status: %q", rep.Answers)
		}
		problems = append(problems, p)
	}
	for b, n := range rep.Backends {
		if !slices.Contains(backends, b) {
			problems = append(problems, fmt.Sprintf("%d answers came from %s, not from %s", n, b, strings.Join(backends, " or ")))
		}
	}
	sort.Strings(problems)
	return strings.Join(problems, "; ")
}

// expectOnly fails the test unless every request was answered by one of
// backends.
func expectOnly(t *conformance.T, rep probe.RequestReport, backends ...string) {
	if p := trafficProblem(rep, backends...); p != "" {
		t.Fatalf("%s", p)
	}
}

// expectAll fails the test unless every request was answered by backend.
func expectAll(t *conformance.T, rep probe.RequestReport, backend, what string) {
	if p := trafficProblem(rep, backend); p != "" {
		t.Fatalf("requests %s: %s", what, p)
	}
	t.Logf("requests %s: all %d answered by %s", what, rep.Requests, backend)
}
