// Package draapi talks to the Dynamic Resource Allocation API of a cluster
// (resource.k8s.io) at the newest version the cluster serves, in terms of
// the v1 Go types: v1 from Kubernetes 1.34, v1beta2 or v1beta1 on 1.33 and
// on clusters that turn v1 off. Code written against v1 then works on all
// three.
//
// v1beta2 has the shape of v1. v1beta1 differs in two places: a
// DeviceRequest holds the fields of v1's "exactly" itself, and a Device
// holds everything but its name under "basic". Conversion moves those
// fields in the objects' unstructured content and decodes the result into
// the target version's Go type; when writing it decodes strictly, so that
// a field the served version cannot hold is an error instead of being
// dropped.
package draapi

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"

	"github.com/kaic-dev/kaic/pkg/apiversions"
)

// Group is the API group of Dynamic Resource Allocation.
const Group = "resource.k8s.io"

// Version is a version of resource.k8s.io.
type Version string

// The versions kaic can use.
const (
	V1      Version = "v1"
	V1beta2 Version = "v1beta2"
	V1beta1 Version = "v1beta1"
)

// Versions are the versions kaic can use, newest first; on a cluster it
// uses the first of them the cluster serves.
var Versions = []Version{V1, V1beta2, V1beta1}

// GroupVersion is resource.k8s.io at v.
func (v Version) GroupVersion() schema.GroupVersion {
	return schema.GroupVersion{Group: Group, Version: string(v)}
}

// String is the API version as written in manifests, e.g.
// "resource.k8s.io/v1beta2".
func (v Version) String() string { return v.GroupVersion().String() }

// API is what a cluster serves of resource.k8s.io and the version kaic
// uses there. The zero API is one not discovered yet.
type API struct {
	// Version is the newest of Versions the cluster serves, empty when it
	// serves none of them.
	Version Version
	// Served are the versions of the group the cluster serves, in the
	// order discovery lists them (preferred first); not nil once
	// discovered.
	Served []string
}

// Choose returns the API of a cluster that serves the given versions of
// resource.k8s.io.
func Choose(served []string) API {
	api := API{Served: append([]string{}, served...)}
	api.Version, _ = apiversions.Newest(Versions, served)
	return api
}

// Discover asks the cluster which versions of resource.k8s.io it serves
// (the API group list, one discovery request per API root) and chooses the
// one to use.
func Discover(d discovery.ServerGroupsInterface) (API, error) {
	served, err := apiversions.Served(d, Group)
	if err != nil {
		return API{}, err
	}
	return Choose(served), nil
}

// Discovered reports whether a is the result of discovery rather than the
// zero API.
func (a API) Discovered() bool { return a.Served != nil }

// Err is nil when the cluster serves a version kaic can use, and a
// *NotServedError otherwise.
func (a API) Err() error {
	if a.Version != "" {
		return nil
	}
	if !a.Discovered() {
		return errNotDiscovered
	}
	return &NotServedError{Served: a.Served}
}

var errNotDiscovered = errors.New("the versions of " + Group + " the cluster serves were not discovered")

// String says which version is used and, when it is not the newest kaic
// knows, which newer ones the cluster does not serve: "resource.k8s.io/v1",
// "resource.k8s.io/v1beta2 (v1 not served)".
func (a API) String() string {
	if err := a.Err(); err != nil {
		return err.Error()
	}
	var missing []string
	for _, v := range Versions {
		if v == a.Version {
			break
		}
		missing = append(missing, string(v))
	}
	if len(missing) == 0 {
		return a.Version.String()
	}
	return fmt.Sprintf("%s (%s not served)", a.Version, strings.Join(missing, " and "))
}

// ServedList is the served versions for people: "v1beta2, v1beta1", or
// "none".
func (a API) ServedList() string {
	if len(a.Served) == 0 {
		return "none"
	}
	return strings.Join(a.Served, ", ")
}

// NotServedError is the error of a cluster that serves none of the
// versions of resource.k8s.io kaic can use.
type NotServedError struct {
	// Served are the versions it serves (none, or ones kaic cannot use).
	Served []string
}

func (e *NotServedError) Error() string {
	known := make([]string, len(Versions))
	for i, v := range Versions {
		known[i] = string(v)
	}
	served := "none"
	if len(e.Served) > 0 {
		served = strings.Join(e.Served, ", ")
	}
	return fmt.Sprintf("the cluster serves none of the versions of %s kaic can use (%s); it serves: %s",
		Group, strings.Join(known, ", "), served)
}
