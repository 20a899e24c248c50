package conformance

import (
	"fmt"
	"slices"
	"sort"
	"sync"
)

// Registry holds the checks kaic can run, at most one per requirement id.
// The zero value is empty and ready to use; it is safe for concurrent use.
type Registry struct {
	mu     sync.RWMutex
	checks map[string]Check
}

// NewRegistry returns a registry holding checks; see Register.
func NewRegistry(checks ...Check) (*Registry, error) {
	r := &Registry{}
	for _, c := range checks {
		if err := r.Register(c); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds a check. Its id must be a requirement of some conformance
// version and not be registered yet.
func (r *Registry) Register(c Check) error {
	id := c.ID()
	if !knownID(id) {
		return fmt.Errorf("registering check %q: no conformance version has this requirement id", id)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.checks == nil {
		r.checks = map[string]Check{}
	}
	if _, dup := r.checks[id]; dup {
		return fmt.Errorf("registering check %q: a check for it is already registered", id)
	}
	r.checks[id] = c
	return nil
}

// Lookup returns the check of a requirement id.
func (r *Registry) Lookup(id string) (Check, bool) {
	if r == nil {
		return nil, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.checks[id]
	return c, ok
}

// IDs lists the registered requirement ids, sorted.
func (r *Registry) IDs() []string {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	ids := make([]string, 0, len(r.checks))
	for id := range r.checks {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// knownID reports whether any conformance version has the requirement id.
func knownID(id string) bool {
	return slices.ContainsFunc(matrix, func(row struct {
		category string
		id       string
		levels   [5]Level
	}) bool {
		return row.id == id
	})
}
