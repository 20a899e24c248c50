package gang

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"

	"github.com/kaic-dev/kaic/pkg/apiversions"
)

// Group is Kueue's API group.
const Group = "kueue.x-k8s.io"

// Versions are the versions of Group the check can drive, preferred first.
// The check uses ResourceFlavor, ClusterQueue, LocalQueue and Workload,
// and only fields both versions have under the same names (Kueue's
// v1beta2 renamed others, e.g. ClusterQueue's cohort to cohortName):
// ClusterQueue's namespaceSelector, queueingStrategy and resourceGroups
// (coveredResources, flavors, nominalQuota), LocalQueue's clusterQueue,
// and a Workload's status.admission (clusterQueue, podSetAssignments with
// name, count and flavors) and its Admitted and QuotaReserved conditions.
var Versions = []string{"v1beta2", "v1beta1"}

// API is the version of Kueue's API the check talks to.
type API struct {
	// GroupVersion is the chosen version; empty when the cluster serves
	// none the check can drive.
	GroupVersion schema.GroupVersion
	// Served lists the versions of Group the cluster serves, as it
	// ordered them; empty when it does not serve the group.
	Served []string
}

// ChooseAPI returns the API for a cluster that serves the given versions
// of Group: the first of Versions among them.
func ChooseAPI(served []string) API {
	api := API{Served: slices.Clone(served)}
	if v, ok := apiversions.Newest(Versions, served); ok {
		api.GroupVersion = schema.GroupVersion{Group: Group, Version: v}
	}
	return api
}

// DiscoverAPI asks the cluster which versions of Group it serves (the API
// group list) and chooses the one to use.
func DiscoverAPI(d discovery.ServerGroupsInterface) (API, error) {
	served, err := apiversions.Served(d, Group)
	if err != nil {
		return API{}, err
	}
	return ChooseAPI(served), nil
}

// Usable reports whether the cluster serves a version the check can drive.
func (a API) Usable() bool { return a.GroupVersion.Version != "" }

// String names the version used and, when it is not the preferred one,
// that the preferred one is not served: "kueue.x-k8s.io/v1beta2",
// "kueue.x-k8s.io/v1beta1 (v1beta2 not served)".
func (a API) String() string {
	if !a.Usable() {
		return fmt.Sprintf("none of %s/%s", Group, strings.Join(Versions, ", "))
	}
	var missing []string
	for _, v := range Versions {
		if v == a.GroupVersion.Version {
			break
		}
		missing = append(missing, v)
	}
	if len(missing) == 0 {
		return a.GroupVersion.String()
	}
	return fmt.Sprintf("%s (%s not served)", a.GroupVersion, strings.Join(missing, ", "))
}

// Resource is Kueue's resource of the given name at the chosen version.
func (a API) Resource(name string) schema.GroupVersionResource {
	return a.GroupVersion.WithResource(name)
}

// Object is a Kueue object of kind at the chosen version, with the given
// spec.
func (a API) Object(kind, name, namespace string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(a.GroupVersion.WithKind(kind))
	u.SetName(name)
	u.SetNamespace(namespace)
	return u
}
