package main

import (
	"math/rand/v2"
	"net/http"
	"strings"
)

// Backend kinds a rule forwards to.
const (
	kindService       = "Service"
	kindInferencePool = "InferencePool"
)

// backend is one backendRef of a rule.
type backend struct {
	Kind      string // kindService or kindInferencePool
	Namespace string
	Name      string
	Port      int // a Service's port; unused for a pool
	Weight    int
}

// match is one HTTPRouteMatch: a path (PathPrefix or Exact) and exact
// header values.
type match struct {
	PathType  string // "PathPrefix" (default) or "Exact"
	PathValue string
	Headers   map[string]string
}

// rule is one HTTPRoute rule.
type rule struct {
	Matches  []match // none: every request
	Backends []backend
}

// route is an accepted HTTPRoute of this gateway's class.
type route struct {
	Namespace, Name string
	Hostnames       []string // none: every host
	Rules           []rule
}

// pool is an InferencePool as the proxy needs it.
type pool struct {
	Namespace, Name string
	Selector        map[string]string
	TargetPort      int
	// Picker is host:port of the endpoint picker's Service.
	Picker   string
	FailOpen bool
}

// table is what the proxy routes by; the controller replaces it whole.
type table struct {
	Routes []route
	Pools  map[string]pool // namespace/name
}

// lookup returns the first rule, in route then rule order, whose route
// accepts host and whose matches accept r. (The Gateway API orders
// competing rules by precedence; the lab's routes do not compete.)
func (t *table) lookup(r *http.Request) (route, rule, bool) {
	host := r.Host
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	for _, rt := range t.Routes {
		if !hostMatches(rt.Hostnames, host) {
			continue
		}
		for _, ru := range rt.Rules {
			if len(ru.Matches) == 0 {
				return rt, ru, true
			}
			for _, m := range ru.Matches {
				if m.accepts(r) {
					return rt, ru, true
				}
			}
		}
	}
	return route{}, rule{}, false
}

func hostMatches(hostnames []string, host string) bool {
	if len(hostnames) == 0 {
		return true
	}
	for _, h := range hostnames {
		if suffix, ok := strings.CutPrefix(h, "*."); ok {
			if strings.HasSuffix(host, "."+suffix) {
				return true
			}
			continue
		}
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

func (m match) accepts(r *http.Request) bool {
	p := r.URL.Path
	switch m.PathType {
	case "Exact":
		if p != m.PathValue {
			return false
		}
	default:
		v := strings.TrimSuffix(m.PathValue, "/")
		if v != "" && p != v && !strings.HasPrefix(p, v+"/") {
			return false
		}
	}
	for k, v := range m.Headers {
		if r.Header.Get(k) != v {
			return false
		}
	}
	return true
}

// pick chooses a backend by weight; ok is false when every weight is 0.
func pick(backends []backend, rnd func(int) int) (backend, bool) {
	if rnd == nil {
		rnd = rand.IntN
	}
	total := 0
	for _, b := range backends {
		total += b.Weight
	}
	if total == 0 {
		return backend{}, false
	}
	n := rnd(total)
	for _, b := range backends {
		if n < b.Weight {
			return b, true
		}
		n -= b.Weight
	}
	return backend{}, false
}
