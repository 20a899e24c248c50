// Package apiversions tells which versions of an API group a cluster
// serves, for code that speaks the newest of several it knows.
package apiversions

import (
	"fmt"
	"slices"

	"k8s.io/client-go/discovery"
)

// Served returns the versions of group the cluster serves, as its API
// group list gives them (one discovery request per API root), or none
// when it does not serve the group.
func Served(d discovery.ServerGroupsInterface, group string) ([]string, error) {
	groups, err := d.ServerGroups()
	if err != nil {
		return nil, fmt.Errorf("discovering the versions of %s: %w", group, err)
	}
	var served []string
	for _, g := range groups.Groups {
		if g.Name != group {
			continue
		}
		for _, v := range g.Versions {
			served = append(served, v.Version)
		}
	}
	return served, nil
}

// Newest returns the first of known, in order of preference, that served
// contains, and false when it contains none.
func Newest[V ~string](known []V, served []string) (V, bool) {
	for _, v := range known {
		if slices.Contains(served, string(v)) {
			return v, true
		}
	}
	var zero V
	return zero, false
}
