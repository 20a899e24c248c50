package stack

import (
	"fmt"
	"strings"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling/engine"
	"github.com/fluxcd/cli-utils/pkg/kstatus/polling/statusreaders"
	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"helm.sh/helm/v4/pkg/kube"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Custom resources and kstatus.
//
// kstatus judges an object it has no rule for by the Kubernetes status
// conventions: an integer status.observedGeneration, a list of conditions,
// Ready/Reconciling/Stalled. Many operators' custom resources do not follow
// them (an observedGeneration that is a string, conditions that are a map):
// kstatus then cannot compute a status, reports Unknown, and a wait for the
// release hangs until its timeout although nothing is wrong. Helm's legacy
// waiter never waited for custom resources at all.
//
// kaic keeps kstatus for everything it understands and ignores only what it
// cannot read: a custom resource whose status kstatus cannot compute counts
// as ready. A custom resource with a standard status (e.g. a Ready
// condition that is False) is still waited for, and workloads keep their
// dedicated rules. This applies to Helm's wait (through its kstatus status
// readers) and to kaic's own wait for manifests alike.

// nonStandardMessage is the status message of a custom resource kaic does
// not wait for.
const nonStandardMessage = "custom resource without a standard status, not waited for"

// builtinGroups are the API groups with a dot that Kubernetes itself
// serves. Every group a CRD defines has a dot (the API server requires it),
// so a group without a dot is built in too.
var builtinGroups = map[string]bool{
	"admissionregistration.k8s.io": true,
	"apiextensions.k8s.io":         true,
	"apiregistration.k8s.io":       true,
	"authentication.k8s.io":        true,
	"authorization.k8s.io":         true,
	"certificates.k8s.io":          true,
	"coordination.k8s.io":          true,
	"discovery.k8s.io":             true,
	"events.k8s.io":                true,
	"flowcontrol.apiserver.k8s.io": true,
	"internal.apiserver.k8s.io":    true,
	"networking.k8s.io":            true,
	"node.k8s.io":                  true,
	"rbac.authorization.k8s.io":    true,
	"resource.k8s.io":              true,
	"scheduling.k8s.io":            true,
	"storage.k8s.io":               true,
	"storagemigration.k8s.io":      true,
	"metrics.k8s.io":               true,
	"apiserverinternal.k8s.io":     true,
	"imagepolicy.k8s.io":           true,
	"admission.k8s.io":             true,
	"auditregistration.k8s.io":     true,
	"settings.k8s.io":              true,
}

// isCustomGroup reports whether objects of group come from a CRD (or an
// aggregated API), i.e. are not built into Kubernetes.
func isCustomGroup(group string) bool {
	if !strings.Contains(group, ".") {
		return false
	}
	return !builtinGroups[group]
}

// computeStatus is kstatus' status of u, except that a custom resource
// whose status kstatus cannot compute counts as current.
func computeStatus(u *unstructured.Unstructured) (*status.Result, error) {
	res, err := status.Compute(u)
	if !isCustomGroup(u.GroupVersionKind().Group) {
		return res, err
	}
	if err != nil {
		return &status.Result{Status: status.CurrentStatus, Message: fmt.Sprintf("%s (kstatus: %v)", nonStandardMessage, err)}, nil
	}
	if res.Status == status.UnknownStatus {
		return &status.Result{Status: status.CurrentStatus, Message: nonStandardMessage + " (kstatus: " + res.Message + ")"}, nil
	}
	return res, nil
}

// customResourceReader is a kstatus status reader for custom resources
// only, computing their status with computeStatus. Helm puts the readers
// it is given before its defaults, so this one decides for custom
// resources and the defaults for everything else.
type customResourceReader struct {
	engine.StatusReader
}

func (customResourceReader) Supports(gk schema.GroupKind) bool { return isCustomGroup(gk.Group) }

// waitOptions are the options of every Helm wait kaic starts.
func waitOptions(mapper meta.RESTMapper) []kube.WaitOption {
	return []kube.WaitOption{
		kube.WithKStatusReaders(customResourceReader{statusreaders.NewGenericStatusReader(mapper, computeStatus)}),
	}
}
