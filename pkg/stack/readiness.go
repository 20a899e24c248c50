package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/kaic-dev/kaic/pkg/conditions"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// NotReadyError is a component that did not become ready: what Helm or
// the declared conditions reported, the objects that were not ready with
// their last events, and what was done about it.
type NotReadyError struct {
	// What names the operation, e.g. "install of release kueue (chart
	// kueue 0.20.0)".
	What    string
	Timeout time.Duration
	Err     error
	// Unready describes each unready object, with its last events.
	Unready []string
	// RolledBack says how the release was rolled back, if it was.
	RolledBack string
}

func (e *NotReadyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s did not become ready within %s: %v", e.What, e.Timeout, e.Err)
	for _, u := range e.Unready {
		b.WriteString("\n  ")
		b.WriteString(strings.ReplaceAll(u, "\n", "\n  "))
	}
	if e.RolledBack != "" {
		fmt.Fprintf(&b, "\n  rolled back: %s", e.RolledBack)
	}
	return b.String()
}

func (e *NotReadyError) Unwrap() error { return e.Err }

// notReady builds a NotReadyError, describing the unready objects among
// objs and those the declared conditions named.
func (in *Installer) notReady(ctx context.Context, what string, timeout time.Duration, err error, objs []ObjectRef, rolledBack string) *NotReadyError {
	var unmet *unmetError
	if errors.As(err, &unmet) {
		objs = append(objs, unmet.objects...)
	}
	// The component's deadline may have passed: give the diagnosis its own.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	return &NotReadyError{What: what, Timeout: timeout, Err: err, Unready: in.describeUnready(dctx, objs), RolledBack: rolledBack}
}

// manifestObjects lists the objects of a rendered manifest.
func manifestObjects(manifest, defaultNS string) []ObjectRef {
	objs, err := decodeObjects([]byte(manifest))
	if err != nil {
		return nil
	}
	refs := make([]ObjectRef, 0, len(objs))
	for _, o := range objs {
		refs = append(refs, ObjectRef{APIVersion: o.GetAPIVersion(), Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName()})
	}
	for i := range refs {
		if refs[i].Namespace == "" && namespacedGuess(refs[i].Kind) {
			refs[i].Namespace = defaultNS
		}
	}
	return refs
}

// namespacedGuess tells cluster-scoped kinds that charts commonly carry
// from namespaced ones, for objects whose manifest omits the namespace.
func namespacedGuess(kind string) bool {
	switch kind {
	case "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "APIService",
		"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "PriorityClass", "StorageClass",
		"DeviceClass", "IngressClass", "RuntimeClass", "GatewayClass", "PersistentVolume":
		return false
	}
	return true
}

// decodeObjects splits a multi-document YAML or JSON stream into objects,
// flattening lists and dropping empty documents.
func decodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		if len(raw) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: raw}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return out, err
			}
			for i := range list.Items {
				out = append(out, &list.Items[i])
			}
			continue
		}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return out, fmt.Errorf("document without apiVersion and kind: %.80q", fmt.Sprint(raw))
		}
		out = append(out, u)
	}
}

// resourceFor finds an object's resource, namespaced to ns when the kind
// is namespaced.
func (c *cluster) resourceFor(gvk schema.GroupVersionKind, ns string) (*meta.RESTMapping, error) {
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		c.resetMapper()
		m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	return m, err
}

func (c *cluster) get(ctx context.Context, ref ObjectRef) (*unstructured.Unstructured, error) {
	gvk := schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind)
	m, err := c.resourceFor(gvk, ref.Namespace)
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return c.dynamic.Resource(m.Resource).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	}
	return c.dynamic.Resource(m.Resource).Get(ctx, ref.Name, metav1.GetOptions{})
}

// describeUnready returns, for each object that is not ready, its kstatus
// status and last events, and for workloads those of their unready pods.
func (in *Installer) describeUnready(ctx context.Context, objs []ObjectRef) []string {
	cl, err := in.target()
	if err != nil {
		return nil
	}
	seen := map[ObjectRef]bool{}
	var out []string
	for _, ref := range objs {
		if seen[ref] {
			continue
		}
		seen[ref] = true
		live, err := cl.get(ctx, ref)
		if apierrors.IsNotFound(err) {
			out = append(out, ref.String()+": not found")
			continue
		}
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", ref, err))
			continue
		}
		res, err := computeStatus(live)
		if err == nil && res.Status == status.CurrentStatus {
			continue
		}
		line := ref.String()
		if err != nil {
			line += ": " + err.Error()
		} else {
			line += fmt.Sprintf(": %s", res.Status)
			if res.Message != "" {
				line += ": " + res.Message
			}
		}
		for _, ev := range in.lastEvents(ctx, ref.Namespace, ref.Kind, ref.Name, 3) {
			line += "\n  event " + ev
		}
		line += in.describePods(ctx, live)
		out = append(out, line)
	}
	return out
}

// describePods describes up to three unready pods of a workload.
func (in *Installer) describePods(ctx context.Context, workload *unstructured.Unstructured) string {
	switch workload.GetKind() {
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
	default:
		return ""
	}
	raw, found, err := unstructured.NestedMap(workload.Object, "spec", "selector")
	if err != nil || !found {
		return ""
	}
	var ls metav1.LabelSelector
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &ls); err != nil {
		return ""
	}
	sel, err := metav1.LabelSelectorAsSelector(&ls)
	if err != nil {
		return ""
	}
	cl, _ := in.target()
	pods, err := cl.clientset.CoreV1().Pods(workload.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return ""
	}
	if len(pods.Items) == 0 {
		return "\n  no pods"
	}
	var b strings.Builder
	shown := 0
	for _, p := range pods.Items {
		if podReady(&p) || shown == 3 {
			continue
		}
		shown++
		fmt.Fprintf(&b, "\n  pod %s: %s", p.Name, p.Status.Phase)
		for _, c := range p.Status.Conditions {
			if c.Status != corev1.ConditionTrue && c.Message != "" {
				fmt.Fprintf(&b, "; %s: %s", c.Type, c.Message)
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				fmt.Fprintf(&b, "; container %s waiting: %s %s", cs.Name, w.Reason, w.Message)
			}
		}
		for _, ev := range in.lastEvents(ctx, p.Namespace, "Pod", p.Name, 3) {
			b.WriteString("\n    event " + ev)
		}
	}
	return b.String()
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// lastEvents returns the last n events of an object, oldest first, as
// "Type Reason: message".
func (in *Installer) lastEvents(ctx context.Context, ns, kind, name string, n int) []string {
	cl, err := in.target()
	if err != nil {
		return nil
	}
	sel := fields.Set{"involvedObject.kind": kind, "involvedObject.name": name}.AsSelector().String()
	list, err := cl.clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return nil
	}
	evs := list.Items
	when := func(e *corev1.Event) time.Time {
		switch {
		case !e.EventTime.IsZero():
			return e.EventTime.Time
		case !e.LastTimestamp.IsZero():
			return e.LastTimestamp.Time
		}
		return e.CreationTimestamp.Time
	}
	sort.SliceStable(evs, func(i, j int) bool { return when(&evs[i]).Before(when(&evs[j])) })
	if len(evs) > n {
		evs = evs[len(evs)-n:]
	}
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		s := fmt.Sprintf("%s %s: %s", e.Type, e.Reason, strings.TrimSpace(e.Message))
		if e.Count > 1 {
			s += fmt.Sprintf(" (x%d)", e.Count)
		}
		out = append(out, s)
	}
	return out
}

// unmetError lists the declared readiness conditions that did not hold.
type unmetError struct {
	unmet   []string
	objects []ObjectRef
}

func (e *unmetError) Error() string {
	return "readiness conditions not met: " + strings.Join(e.unmet, "; ")
}

var (
	crdRef        = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	apiServiceRef = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
)

// waitDeclared waits until the component's declared readiness conditions
// hold or ctx ends.
func (in *Installer) waitDeclared(ctx context.Context, c profile.Component, ns string) error {
	r := c.Readiness
	if r == nil || len(r.CRDs)+len(r.Deployments)+len(r.DaemonSets)+len(r.APIServices)+len(r.Webhooks)+len(r.Pods) == 0 {
		return nil
	}
	cl, err := in.target()
	if err != nil {
		return err
	}
	var last *unmetError
	err = wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		last = in.checkDeclared(ctx, cl, r, ns)
		return last == nil, nil
	})
	if err != nil && last != nil {
		return last
	}
	return err
}

func splitName(ref, ns string) (string, string) {
	if before, after, ok := strings.Cut(ref, "/"); ok {
		return before, after
	}
	return ns, ref
}

func conditionTrue(u *unstructured.Unstructured, typ string) (bool, string) {
	c, ok := conditions.Get(u, typ)
	if !ok {
		return false, "no " + typ + " condition yet"
	}
	return c.IsTrue(), strings.TrimSpace(c.Reason + " " + c.Message)
}

// checkDeclared returns the conditions that do not hold, nil if all do.
func (in *Installer) checkDeclared(ctx context.Context, cl *cluster, r *profile.Readiness, ns string) *unmetError {
	e := &unmetError{}
	miss := func(ref ObjectRef, format string, args ...any) {
		e.unmet = append(e.unmet, ref.String()+": "+fmt.Sprintf(format, args...))
		e.objects = append(e.objects, ref)
	}
	for _, name := range r.CRDs {
		ref := ObjectRef{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition", Name: name}
		u, err := cl.dynamic.Resource(crdRef).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			miss(ref, "%v", err)
			continue
		}
		if ok, why := conditionTrue(u, "Established"); !ok {
			miss(ref, "not Established: %s", why)
		}
	}
	for _, n := range r.Deployments {
		dns, name := splitName(n, ns)
		ref := ObjectRef{APIVersion: "apps/v1", Kind: "Deployment", Namespace: dns, Name: name}
		d, err := cl.clientset.AppsV1().Deployments(dns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			miss(ref, "%v", err)
			continue
		}
		available := false
		why := "no Available condition yet"
		for _, c := range d.Status.Conditions {
			if c.Type == "Available" {
				available, why = c.Status == corev1.ConditionTrue, strings.TrimSpace(c.Reason+" "+c.Message)
			}
		}
		if d.Status.ObservedGeneration < d.Generation {
			miss(ref, "controller has not observed generation %d yet", d.Generation)
		} else if !available {
			miss(ref, "not Available: %s", why)
		}
	}
	for _, n := range r.DaemonSets {
		dns, name := splitName(n, ns)
		ref := ObjectRef{APIVersion: "apps/v1", Kind: "DaemonSet", Namespace: dns, Name: name}
		d, err := cl.clientset.AppsV1().DaemonSets(dns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			miss(ref, "%v", err)
			continue
		}
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.NumberReady < s.DesiredNumberScheduled || s.UpdatedNumberScheduled < s.DesiredNumberScheduled {
			miss(ref, "%d of %d pods ready, %d updated", s.NumberReady, s.DesiredNumberScheduled, s.UpdatedNumberScheduled)
		}
	}
	for _, name := range r.APIServices {
		ref := ObjectRef{APIVersion: "apiregistration.k8s.io/v1", Kind: "APIService", Name: name}
		u, err := cl.dynamic.Resource(apiServiceRef).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			miss(ref, "%v", err)
			continue
		}
		if ok, why := conditionTrue(u, "Available"); !ok {
			miss(ref, "not Available: %s", why)
		}
	}
	for _, name := range r.Webhooks {
		in.checkWebhook(ctx, cl, name, miss)
	}
	for _, p := range r.Pods {
		checkPods(ctx, cl, p, ns, e)
	}
	if len(e.unmet) == 0 {
		return nil
	}
	return e
}

// checkWebhook requires every service a webhook configuration calls to
// have a ready endpoint.
func (in *Installer) checkWebhook(ctx context.Context, cl *cluster, name string, miss func(ObjectRef, string, ...any)) {
	type svc struct{ ns, name string }
	var services []svc
	ref := ObjectRef{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration", Name: name}
	v, err := cl.clientset.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		for _, w := range v.Webhooks {
			if s := w.ClientConfig.Service; s != nil {
				services = append(services, svc{s.Namespace, s.Name})
			}
		}
	case apierrors.IsNotFound(err):
		ref.Kind = "MutatingWebhookConfiguration"
		m, err := cl.clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			miss(ref, "neither a validating nor a mutating webhook configuration: %v", err)
			return
		}
		for _, w := range m.Webhooks {
			if s := w.ClientConfig.Service; s != nil {
				services = append(services, svc{s.Namespace, s.Name})
			}
		}
	default:
		miss(ref, "%v", err)
		return
	}
	for _, s := range services {
		slices, err := cl.clientset.DiscoveryV1().EndpointSlices(s.ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + s.name})
		if err != nil {
			miss(ref, "service %s/%s: %v", s.ns, s.name, err)
			continue
		}
		ready := false
		for _, es := range slices.Items {
			for _, ep := range es.Endpoints {
				if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
					ready = true
				}
			}
		}
		if !ready {
			miss(ObjectRef{APIVersion: "v1", Kind: "Service", Namespace: s.ns, Name: s.name}, "no ready endpoint for webhook %s", name)
		}
	}
}

// checkPods requires p.Want() ready pods among those p selects. The pods
// that are not ready are named, so a failure describes them and their
// events.
func checkPods(ctx context.Context, cl *cluster, p profile.PodReadiness, ns string, e *unmetError) {
	pns := p.Namespace
	if pns == "" {
		pns = ns
	}
	what := fmt.Sprintf("pods %s in namespace %s", p.Selector, pns)
	pods, err := cl.clientset.CoreV1().Pods(pns).List(ctx, metav1.ListOptions{LabelSelector: p.Selector})
	if err != nil {
		e.unmet = append(e.unmet, fmt.Sprintf("%s: %v", what, err))
		return
	}
	ready := 0
	var unready []ObjectRef
	for i := range pods.Items {
		pod := &pods.Items[i]
		if pod.DeletionTimestamp == nil && podReady(pod) {
			ready++
			continue
		}
		unready = append(unready, ObjectRef{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name})
	}
	if ready >= p.Want() {
		return
	}
	if len(pods.Items) == 0 {
		e.unmet = append(e.unmet, fmt.Sprintf("%s: none exists yet, want %d ready", what, p.Want()))
		return
	}
	e.unmet = append(e.unmet, fmt.Sprintf("%s: %d of %d ready, want %d", what, ready, len(pods.Items), p.Want()))
	e.objects = append(e.objects, unready...)
}
