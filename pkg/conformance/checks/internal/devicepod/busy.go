package devicepod

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/ownership"
)

// On a shared cluster the devices a check needs may all be held by
// workloads kaic did not create. The check cannot exercise the
// requirement then, which is not a failure of the platform: a pod that
// waited out ScheduleTimeout for such devices is reported not verified,
// naming who holds them. Devices held by the run's own checks are released
// when those end, so waiting for them is not; neither is a pod that stays
// unschedulable while devices are free.

// NodeHolding is who holds the devices of the model on one Ready node.
type NodeHolding struct {
	// Devices is how many the node has; Free how many nobody holds.
	Devices, Free int
	// Ours is how many the run's checks hold.
	Ours int
	// Others is how many workloads kaic did not create hold, and Holders
	// names them: "pod ns/name", or "ResourceClaim ns/name" for a claim
	// allocated but reserved for no pod.
	Others  int
	Holders []string
}

// Holdings says, per Ready node, who holds the model's devices: in DRA
// mode (counting the devices of the driver its DeviceClass admits) the
// allocated ResourceClaims, in device-plugin mode the pods bound
// to the node that request the extended resource. What the run's checks
// hold is told apart from what other workloads hold by the namespace:
// the checks' namespaces carry kaic's labels (package ownership).
func Holdings(t *conformance.T, env *conformance.Env) map[string]*NodeHolding {
	// In DRA mode the devices pods of the model can get: those of the
	// driver that its DeviceClass admits, when the class can be evaluated.
	var inv map[string][]Device
	if !DevicePlugin(env) {
		if admitted, why := classAdmitted(t, env); why == "" {
			inv = admitted
		}
	}
	if inv == nil {
		inv = Inventory(t, env)
	}
	own := checkNamespaces(t, env)
	out := map[string]*NodeHolding{}
	for node, devs := range inv {
		out[node] = &NodeHolding{Devices: len(devs), Free: len(devs)}
	}
	hold := func(node string, n int, namespace, holder string) {
		h := out[node]
		if h == nil || n <= 0 {
			return
		}
		n = min(n, h.Free)
		h.Free -= n
		if own[namespace] {
			h.Ours += n
			return
		}
		h.Others += n
		if n > 1 {
			holder = fmt.Sprintf("%s (%d)", holder, n)
		}
		h.Holders = append(h.Holders, holder)
	}
	if DevicePlugin(env) {
		pods, err := env.Client.CoreV1().Pods(metav1.NamespaceAll).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatalf("listing pods: %v", err)
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue
			}
			hold(p.Spec.NodeName, int(Requested(p, Resource(env))), p.Namespace, "pod "+p.Namespace+"/"+p.Name)
		}
		return out
	}
	nodeOf := map[Device]string{}
	for node, devs := range inv {
		for _, d := range devs {
			nodeOf[d] = node
		}
	}
	claims, err := env.DRA().ResourceClaims(metav1.NamespaceAll).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing ResourceClaims: %v", err)
	}
	for i := range claims.Items {
		c := &claims.Items[i]
		perNode := map[string]int{}
		for _, d := range Allocated(c) {
			if node, ok := nodeOf[d]; ok {
				perNode[node]++
			}
		}
		holder := "ResourceClaim " + c.Namespace + "/" + c.Name
		var pods []string
		for _, r := range c.Status.ReservedFor {
			if r.Resource == "pods" {
				pods = append(pods, "pod "+c.Namespace+"/"+r.Name)
			}
		}
		if len(pods) > 0 {
			holder = strings.Join(pods, ", ")
		}
		for node, n := range perNode {
			hold(node, n, c.Namespace, holder)
		}
	}
	return out
}

// heldScope names the devices Holdings counts: in DRA mode those of the
// driver that the model's DeviceClass admits, in device-plugin mode the
// units of the extended resource.
func heldScope(env *conformance.Env) string {
	if DevicePlugin(env) {
		return Source(env)
	}
	return Source(env) + " that DeviceClass " + env.Accelerator.DeviceClass + " admits"
}

// checkNamespaces returns the namespaces of the run's checks: those
// labelled managed by kaic with a check's name, and of this run when the
// run has an id.
func checkNamespaces(t *conformance.T, env *conformance.Env) map[string]bool {
	list, err := env.Client.CoreV1().Namespaces().List(t.Context(), metav1.ListOptions{LabelSelector: conformance.LabelCheck})
	if err != nil {
		t.Fatalf("listing the checks' namespaces: %v", err)
	}
	own := map[string]bool{env.Namespace: true}
	for _, ns := range list.Items {
		l := ns.Labels
		if l[ownership.ManagedByLabel] == ownership.ManagedBy && (env.RunID == "" || l[ownership.RunIDLabel] == env.RunID) {
			own[ns.Name] = true
		}
	}
	return own
}

// busyReason says, when no device is free and workloads kaic did not
// create hold some of them, how many of each node's devices they hold and
// who they are; "" otherwise.
func busyReason(holdings map[string]*NodeHolding) string {
	var parts []string
	for _, node := range slices.Sorted(maps.Keys(holdings)) {
		h := holdings[node]
		if h.Free > 0 {
			return ""
		}
		if h.Others == 0 {
			continue
		}
		part := fmt.Sprintf("%d of %d devices on node %s are held by other workloads (%s)", h.Others, h.Devices, node, abbreviate(h.Holders, 5))
		if h.Ours > 0 {
			part += fmt.Sprintf(" and %d by kaic's checks", h.Ours)
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, "; ")
}

// holdingRows are the holdings for the transcript, one line per node.
func holdingRows(holdings map[string]*NodeHolding) string {
	var rows []string
	for _, node := range slices.Sorted(maps.Keys(holdings)) {
		h := holdings[node]
		row := fmt.Sprintf("%s: %d devices, %d free, %d held by kaic's checks, %d by other workloads", node, h.Devices, h.Free, h.Ours, h.Others)
		if len(h.Holders) > 0 {
			row += " (" + strings.Join(h.Holders, ", ") + ")"
		}
		rows = append(rows, row)
	}
	return strings.Join(rows, "\n")
}

// abbreviate joins the first n items and says how many more there are.
func abbreviate(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}
