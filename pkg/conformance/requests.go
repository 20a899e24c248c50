package conformance

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// requestCounter counts the API requests of one check by verb (get, list,
// watch, create, update, patch, delete), as the check's clients send them,
// and, apart, those sent while the check waits (StartWait) and how long it
// waited.
type requestCounter struct {
	mu     sync.Mutex
	byVerb map[string]int
	// waitRequests are the requests other than watches sent with a
	// waiting context; waiting is the time spent in waits, overlapping
	// waits counted once.
	waitRequests int
	waits        int
	waiting      time.Duration
	openWaits    int
	waitSince    time.Time
}

// counterKey finds a check's requestCounter in its context; waitingKey
// marks a context as a wait's.
type (
	counterKey struct{}
	waitingKey struct{}
)

// StartWait marks ctx as a wait's: what the check sends with the returned
// context is counted as sent while waiting, and the time until done is
// called as waiting time. Checks wrap their waits in it (WaitForPod does),
// so that results show how hard a check polls the API server while it
// waits: a wait on a watch sends nearly nothing.
func StartWait(ctx context.Context) (context.Context, func()) {
	c, _ := ctx.Value(counterKey{}).(*requestCounter)
	if c == nil {
		return ctx, func() {}
	}
	c.mu.Lock()
	if c.openWaits == 0 {
		c.waitSince = time.Now()
	}
	c.openWaits++
	c.waits++
	c.mu.Unlock()
	var once sync.Once
	return context.WithValue(ctx, waitingKey{}, true), func() {
		once.Do(func() {
			c.mu.Lock()
			c.openWaits--
			if c.openWaits == 0 {
				c.waiting += time.Since(c.waitSince)
			}
			c.mu.Unlock()
		})
	}
}

// waitStats returns the waits, the requests sent while waiting and the
// time waited.
func (c *requestCounter) waitStats() (int, int, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.waiting
	if c.openWaits > 0 {
		w += time.Since(c.waitSince)
	}
	return c.waits, c.waitRequests, w
}

func (c *requestCounter) count(r *http.Request) {
	verb := strings.ToLower(r.Method)
	switch r.Method {
	case http.MethodGet:
		switch {
		case r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1":
			verb = "watch"
		case isCollection(r.URL.Path):
			verb = "list"
		}
	case http.MethodPut:
		verb = "update"
	case http.MethodPost:
		verb = "create"
	}
	waiting, _ := r.Context().Value(waitingKey{}).(bool)
	c.mu.Lock()
	if c.byVerb == nil {
		c.byVerb = map[string]int{}
	}
	c.byVerb[verb]++
	if waiting && verb != "watch" {
		c.waitRequests++
	}
	c.mu.Unlock()
}

// snapshot returns the counts so far.
func (c *requestCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.byVerb))
	for k, v := range c.byVerb {
		out[k] = v
	}
	return out
}

// isCollection tells a collection path (/api/v1/namespaces/x/pods) from an
// object's (/api/v1/namespaces/x/pods/y), and subresources.
func isCollection(path string) bool {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	// Strip /api/v1 or /apis/group/version.
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return false
	}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		if len(parts) == 2 {
			return false // the namespace object itself
		}
		parts = parts[2:]
	}
	return len(parts) == 1
}

type countingTransport struct {
	next    http.RoundTripper
	counter *requestCounter
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.counter.count(r)
	return t.next.RoundTrip(r)
}

// withRequestCounting returns a copy of env whose clients count their
// requests in counter; env is returned unchanged when it has no config to
// build clients from.
func withRequestCounting(env *Env, counter *requestCounter) *Env {
	if env.Config == nil {
		return env
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{next: rt, counter: counter} })
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return env
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return env
	}
	c := *env
	c.Config = cfg
	// Clients the env has are replaced by counting ones; an env without
	// a client (no namespace to create) stays without.
	if c.Client != nil {
		c.Client = client
	}
	if c.Dynamic != nil {
		c.Dynamic = dyn
	}
	return &c
}

// APIRequestSummary writes request counts by verb as "12 (get 5, list 4,
// watch 3)", verbs sorted.
func APIRequestSummary(byVerb map[string]int) string {
	total := 0
	verbs := make([]string, 0, len(byVerb))
	for v, n := range byVerb {
		total += n
		verbs = append(verbs, v)
	}
	sort.Strings(verbs)
	parts := make([]string, len(verbs))
	for i, v := range verbs {
		parts[i] = v + " " + strconv.Itoa(byVerb[v])
	}
	if len(parts) == 0 {
		return "0"
	}
	return strconv.Itoa(total) + " (" + strings.Join(parts, ", ") + ")"
}
