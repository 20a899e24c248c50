// Package robust verifies the robust_controller requirement with an AI
// operator (KubeRay or Kubeflow Trainer): its pods are Ready, its CRDs are
// Established, its validating webhook is configured with rules and a CA
// bundle, an invalid custom resource is denied by that webhook (the API
// server's error names it), and a valid one is reconciled by the
// controller to its finished state with the objects it owns.
//
// The operator is the one the profile names, else the one its stack
// installs, else the one whose CRDs the cluster has (KubeRay first). Its
// namespace is the one the profile names, else found on the cluster: where
// the Deployments and pods with the operator's well-known labels are, else
// where the Service serving its webhook is.
package robust

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kaic-dev/kaic/pkg/conditions"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// ID is the requirement this package verifies.
const ID = "robust_controller"

// Names of the custom resources the check creates in its namespace.
const (
	invalidName = "invalid-cr"
	validName   = "valid-cr"
)

// Time limits of the waits (the official suite's defaults), each within
// the check's own deadline.
const (
	operatorReadyTimeout = 5 * time.Minute
	reconcileTimeout     = 3 * time.Minute
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// config is the check as it runs; tests shorten its waits.
type config struct {
	// operator is the operator's name; empty finds it on the cluster.
	operator string
	// namespace is where the operator's pods run; empty finds it.
	namespace      string
	readyTimeout   time.Duration
	reconcileAfter time.Duration
}

// Check returns the robust_controller check for whichever built-in
// operator the cluster has.
func Check() conformance.Check {
	return CheckFor("")
}

// CheckFor returns the robust_controller check for the built-in operator
// called name (profile.RobustControllerOperators); empty finds it on the
// cluster.
func CheckFor(name string) conformance.Check {
	c := config{operator: name, readyTimeout: operatorReadyTimeout, reconcileAfter: reconcileTimeout}
	return conformance.NewCheck(ID, c.run)
}

// ForProfile returns the check for the operator the profile selects:
// spec.checks.robustController.operator, else the operator of the one
// built-in operator component its stack installs, else whichever the
// cluster has; it looks for the operator's pods in
// spec.checks.robustController.namespace, else finds their namespace.
func ForProfile(p *profile.Profile) conformance.Check {
	return conformance.NewCheck(ID, configFor(p).run)
}

// configFor is the check as the profile p configures it.
func configFor(p *profile.Profile) config {
	c := config{operator: OperatorOf(p), readyTimeout: operatorReadyTimeout, reconcileAfter: reconcileTimeout}
	if p != nil {
		c.namespace = p.Spec.Checks.RobustController.Namespace
	}
	return c
}

// OperatorOf returns the operator p selects, or "" when it leaves the
// choice to the cluster.
func OperatorOf(p *profile.Profile) string {
	if p == nil {
		return ""
	}
	if op := p.Spec.Checks.RobustController.Operator; op != "" {
		return op
	}
	var found []string
	for _, op := range Operators() {
		for _, c := range p.Spec.Stack.Components {
			if c.Name == op.Component && !c.Disabled {
				found = append(found, op.Name)
			}
		}
	}
	if len(found) == 1 {
		return found[0]
	}
	return ""
}

func (c config) run(t *conformance.T, env *conformance.Env) {
	op := c.selectOperator(t, env)
	podsOK := t.Run("OperatorPodsRunning", func(t *conformance.T) { c.podsRunning(t, env, op) })
	if !t.Run("CRDRegistered", func(t *conformance.T) { crdsRegistered(t, env, op) }) {
		return
	}
	t.Run("WebhookOperational", func(t *conformance.T) { webhookOperational(t, env, op) })
	t.Run("WebhookRejectsInvalidCR", func(t *conformance.T) { rejectsInvalid(t, env, op) })
	t.Run("ControllerReconcilesCR", func(t *conformance.T) {
		if !podsOK {
			t.Fatalf("not attempted: %s's pods are not running, so no controller can reconcile a %s", op.Title, op.Kind)
		}
		c.reconciles(t, env, op)
	})
}

// selectOperator returns the operator the check exercises: the configured
// one, else the first built-in one whose main CRD the cluster has. With
// none installed the check fails naming every operator it knows.
func (c config) selectOperator(t *conformance.T, env *conformance.Env) Operator {
	if c.operator != "" {
		op, err := Lookup(c.operator)
		if err != nil {
			t.Fatalf("%v", err)
		}
		t.Step("Verify %s, the AI operator the profile selects (%s)", op.Title, op.Name)
		return op
	}
	t.Step("Find the AI operator: the first of %s whose CRD the cluster has", operatorList())
	for _, op := range Operators() {
		_, err := env.Dynamic.Resource(crdResource).Get(t.Context(), op.CRDs[0], metav1.GetOptions{})
		switch {
		case err == nil:
			t.Observe("AI operator", fmt.Sprintf("%s (CRD %s is installed)", op.Title, op.CRDs[0]))
			return op
		case !apierrors.IsNotFound(err):
			t.Fatalf("looking for CRD %s of %s: %v", op.CRDs[0], op.Title, err)
		}
	}
	t.Fatalf("no AI operator is installed: the cluster has none of the CRDs of %s; install one (stack component %s) or name it in spec.checks.robustController.operator",
		operatorList(), componentList())
	return Operator{}
}

func operatorList() string {
	var s []string
	for _, op := range Operators() {
		s = append(s, fmt.Sprintf("%s (%s)", op.Title, op.CRDs[0]))
	}
	return strings.Join(s, ", ")
}

func componentList() string {
	var s []string
	for _, op := range Operators() {
		s = append(s, op.Component)
	}
	return strings.Join(s, " or ")
}

// podsRunning finds where the operator's pods run and waits until there
// are some and all of them are Ready.
func (c config) podsRunning(t *conformance.T, env *conformance.Env, op Operator) {
	where := c.locate(t, env, op)
	t.Step("Wait up to %s for the pods of %s (namespace %s, selector %s) to be Ready", c.readyTimeout, op.Title, where.namespace, where.selector)
	ctx, cancel := context.WithTimeout(t.Context(), c.readyTimeout)
	defer cancel()
	list, err := waitForPods(ctx, env, where.namespace, where.selector)
	lines := podLines(list)
	if len(list) == 0 {
		lines = []string{"(none)"}
	}
	t.Observe(fmt.Sprintf("pods of %s in %s", op.Title, where.namespace), strings.Join(lines, "\n"))
	switch {
	case len(list) == 0:
		t.Fatalf("%s is not running: namespace %s (%s) has no pod matching %s", op.Title, where.namespace, where.how, where.selector)
	case err != nil:
		t.Fatalf("not every pod of %s became Ready within %s: %v", op.Title, c.readyTimeout, err)
	}
	t.Logf("all %d pod(s) of %s are Ready", len(list), op.Title)
}

// location is where the operator's pods are: their namespace and label
// selector, and how the check knows (for the transcript).
type location struct {
	namespace, selector, how string
}

// locate returns where the operator's pods run: in the namespace the
// profile names, else in the one namespace whose Deployments or pods
// carry the operator's well-known labels (with several, the one of the
// Service serving its webhook), else where that Service's selector points.
// It records where and how it found them, and stops the test when nothing
// leads to them.
func (c config) locate(t *conformance.T, env *conformance.Env, op Operator) location {
	if c.namespace != "" {
		where := location{namespace: c.namespace, selector: op.PodSelector, how: "named by spec.checks.robustController.namespace"}
		t.Observe(op.Title+"'s namespace", where.namespace+", "+where.how)
		return where
	}
	t.Step("Find where %s runs: the Deployments and pods labelled %s in every namespace", op.Title, op.PodSelector)
	found, err := labelledNamespaces(t.Context(), env, op.PodSelector)
	if err != nil {
		t.Fatalf("looking for the pods of %s: %v", op.Title, err)
	}
	var lines []string
	for _, ns := range slices.Sorted(maps.Keys(found)) {
		lines = append(lines, ns+": "+strings.Join(found[ns], ", "))
	}
	if len(lines) > 0 {
		t.Observe("labelled "+op.PodSelector, strings.Join(lines, "\n"))
	}
	var svc *corev1.Service
	if len(found) != 1 {
		if svc, err = webhookService(t.Context(), env, op); err != nil {
			t.Fatalf("looking for the Service of webhook %s of %s: %v", op.Webhook, op.Title, err)
		}
	}
	switch {
	case len(found) == 1:
		ns := slices.Sorted(maps.Keys(found))[0]
		where := location{namespace: ns, selector: op.PodSelector, how: fmt.Sprintf("found by label %s: %s", op.PodSelector, strings.Join(found[ns], ", "))}
		t.Observe(op.Title+"'s namespace", where.namespace+", "+where.how)
		return where
	case len(found) > 1:
		if svc != nil && found[svc.Namespace] != nil {
			where := location{namespace: svc.Namespace, selector: op.PodSelector,
				how: fmt.Sprintf("of the namespaces with pods labelled %s (%s), the one of Service %s/%s, which serves webhook %s",
					op.PodSelector, strings.Join(slices.Sorted(maps.Keys(found)), ", "), svc.Namespace, svc.Name, op.Webhook)}
			t.Observe(op.Title+"'s namespace", where.namespace+", "+where.how)
			return where
		}
		t.Fatalf("%s's labels %s are on Deployments or pods in several namespaces (%s) and no Service of webhook %s tells which one serves the cluster: name it in spec.checks.robustController.namespace",
			op.Title, op.PodSelector, strings.Join(slices.Sorted(maps.Keys(found)), ", "), op.Webhook)
	case svc != nil && len(svc.Spec.Selector) > 0:
		where := location{namespace: svc.Namespace, selector: labels.SelectorFromSet(svc.Spec.Selector).String(),
			how: fmt.Sprintf("no pod is labelled %s; Service %s/%s serves webhook %s and selects these pods", op.PodSelector, svc.Namespace, svc.Name, op.Webhook)}
		t.Observe(op.Title+"'s namespace", where.namespace+", "+where.how)
		return where
	}
	why := fmt.Sprintf("no Service serves a webhook %s", op.Webhook)
	if svc != nil {
		why = fmt.Sprintf("Service %s/%s of webhook %s has no selector", svc.Namespace, svc.Name, op.Webhook)
	}
	t.Fatalf("%s is not running: no Deployment or pod in any namespace is labelled %s, and %s to lead to its pods (stack component %s installs it with these labels)",
		op.Title, op.PodSelector, why, op.Component)
	return location{}
}

// labelledNamespaces lists, per namespace, the Deployments and pods that
// match selector, as "Deployment name" and "pod name".
func labelledNamespaces(ctx context.Context, env *conformance.Env, selector string) (map[string][]string, error) {
	opts := metav1.ListOptions{LabelSelector: selector}
	found := map[string][]string{}
	deployments, err := env.Client.AppsV1().Deployments(metav1.NamespaceAll).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("listing Deployments labelled %s: %w", selector, err)
	}
	for _, d := range deployments.Items {
		found[d.Namespace] = append(found[d.Namespace], "Deployment "+d.Name)
	}
	pods, err := env.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("listing pods labelled %s: %w", selector, err)
	}
	for _, p := range pods.Items {
		found[p.Namespace] = append(found[p.Namespace], "pod "+p.Name)
	}
	return found, nil
}

// webhookService returns the Service that serves the operator's webhook,
// or nil when the webhook is not configured, called by URL or its Service
// does not exist (WebhookOperational says so).
func webhookService(ctx context.Context, env *conformance.Env, op Operator) (*corev1.Service, error) {
	list, err := env.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing ValidatingWebhookConfigurations: %w", err)
	}
	for _, vwc := range list.Items {
		if op.WebhookConfiguration != "" && vwc.Name != op.WebhookConfiguration {
			continue
		}
		for _, w := range vwc.Webhooks {
			ref := w.ClientConfig.Service
			if w.Name != op.Webhook || ref == nil {
				continue
			}
			svc, err := env.Client.CoreV1().Services(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil, nil
			}
			if err != nil {
				return nil, fmt.Errorf("reading Service %s/%s of webhook %s: %w", ref.Namespace, ref.Name, op.Webhook, err)
			}
			return svc, nil
		}
	}
	return nil, nil
}

// waitForPods watches the pods matching selector until there is at least
// one and all are Ready, and returns them as last seen.
func waitForPods(ctx context.Context, env *conformance.Env, namespace, selector string) ([]corev1.Pod, error) {
	podsAPI := env.Client.CoreV1().Pods(namespace)
	lw := conformance.ListWatch(podsAPI.List, podsAPI.Watch, "", selector)
	var seen map[string]*corev1.Pod
	err := conformance.UntilSet(ctx, lw, func(pods map[string]*corev1.Pod) bool {
		seen = pods
		if len(pods) == 0 {
			return false
		}
		for _, p := range pods {
			if p.DeletionTimestamp != nil {
				continue
			}
			if c := conformance.PodCondition(p, corev1.PodReady); c == nil || c.Status != corev1.ConditionTrue {
				return false
			}
		}
		return true
	})
	var out []corev1.Pod
	for _, name := range slices.Sorted(maps.Keys(seen)) {
		out = append(out, *seen[name])
	}
	return out, err
}

func podLines(list []corev1.Pod) []string {
	var lines []string
	for _, p := range list {
		ready := "not Ready"
		if c := conformance.PodCondition(&p, corev1.PodReady); c != nil && c.Status == corev1.ConditionTrue {
			ready = "Ready"
		}
		node := p.Spec.NodeName
		if node == "" {
			node = "(unscheduled)"
		}
		lines = append(lines, fmt.Sprintf("%s: %s, %s, node %s", p.Name, p.Status.Phase, ready, node))
	}
	return lines
}

// crdsRegistered checks that every CRD of the operator is Established.
func crdsRegistered(t *conformance.T, env *conformance.Env, op Operator) {
	t.Step("Check that the CRDs of %s are Established: %s", op.Title, strings.Join(op.CRDs, ", "))
	var lines []string
	for _, name := range op.CRDs {
		crd, err := env.Dynamic.Resource(crdResource).Get(t.Context(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			lines = append(lines, name+": not installed")
			t.Errorf("CRD %s of %s is not installed", name, op.Title)
			continue
		} else if err != nil {
			t.Fatalf("reading CRD %s: %v", name, err)
		}
		established, ok := conditions.Get(crd, "Established")
		switch {
		case !ok:
			lines = append(lines, name+": no Established condition")
			t.Errorf("CRD %s is not Established (no condition yet)", name)
		case !established.IsTrue():
			lines = append(lines, name+": "+established.String())
			t.Errorf("CRD %s is not Established: %s", name, established.Message)
		default:
			lines = append(lines, name+": Established=True")
		}
	}
	t.Observe("CRDs", strings.Join(lines, "\n"))
}

// webhookOperational checks the ValidatingWebhookConfiguration holding the
// operator's webhook: every webhook in it has rules and a CA bundle of
// valid, unexpired certificates, the operator's webhook covers creating
// its custom resource, and a webhook served by a Service has a ready
// endpoint behind it.
func webhookOperational(t *conformance.T, env *conformance.Env, op Operator) {
	vwc := findWebhookConfiguration(t, env, op)
	t.Observe("ValidatingWebhookConfiguration "+vwc.Name, strings.Join(webhookLines(vwc), "\n"))
	for _, w := range vwc.Webhooks {
		if len(w.Rules) == 0 {
			t.Errorf("webhook %s has no rules: it is never called", w.Name)
		}
		if err := checkCABundle(w.ClientConfig.CABundle, time.Now()); err != nil {
			t.Errorf("webhook %s: %v: the API server cannot verify the webhook server", w.Name, err)
		}
		if svc := w.ClientConfig.Service; svc != nil {
			if err := serviceHasReadyEndpoint(t.Context(), env, svc); err != nil {
				t.Errorf("webhook %s: %v", w.Name, err)
			}
		}
	}
	i := slices.IndexFunc(vwc.Webhooks, func(w admissionv1.ValidatingWebhook) bool { return w.Name == op.Webhook })
	if !covers(vwc.Webhooks[i], op.Resource) {
		t.Errorf("webhook %s does not validate creating %s: its rules do not cover it", op.Webhook, op.Resource.GroupResource())
	}
	if fp := vwc.Webhooks[i].FailurePolicy; fp != nil && *fp == admissionv1.Ignore {
		t.Logf("note: webhook %s has failurePolicy Ignore: when it cannot be called, invalid %ss are let through", op.Webhook, op.Kind)
	}
}

// findWebhookConfiguration returns the operator's configuration, found by
// name or, for operators whose installations name it differently, as the
// one holding the operator's webhook. It stops the test when there is none.
func findWebhookConfiguration(t *conformance.T, env *conformance.Env, op Operator) *admissionv1.ValidatingWebhookConfiguration {
	vwcs := env.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if op.WebhookConfiguration != "" {
		t.Step("Read ValidatingWebhookConfiguration %s of %s", op.WebhookConfiguration, op.Title)
		vwc, err := vwcs.Get(t.Context(), op.WebhookConfiguration, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			t.Fatalf("ValidatingWebhookConfiguration %s of %s does not exist: %s's webhook is not installed", op.WebhookConfiguration, op.Title, op.Title)
		} else if err != nil {
			t.Fatalf("reading ValidatingWebhookConfiguration %s: %v", op.WebhookConfiguration, err)
		}
		if !slices.ContainsFunc(vwc.Webhooks, func(w admissionv1.ValidatingWebhook) bool { return w.Name == op.Webhook }) {
			t.Fatalf("ValidatingWebhookConfiguration %s has no webhook %s", vwc.Name, op.Webhook)
		}
		return vwc
	}
	t.Step("Find the ValidatingWebhookConfiguration holding webhook %s of %s", op.Webhook, op.Title)
	list, err := vwcs.List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing ValidatingWebhookConfigurations: %v", err)
	}
	for i := range list.Items {
		if slices.ContainsFunc(list.Items[i].Webhooks, func(w admissionv1.ValidatingWebhook) bool { return w.Name == op.Webhook }) {
			return &list.Items[i]
		}
	}
	if op.WebhookComponent != "" {
		t.Fatalf("no ValidatingWebhookConfiguration has webhook %s: %s's webhook is not enabled (stack component %s enables it: a serving certificate, the webhook Service and the configuration)",
			op.Webhook, op.Title, op.WebhookComponent)
	}
	t.Fatalf("no ValidatingWebhookConfiguration has webhook %s: %s's webhook is not enabled (its %s must run with it, with a serving certificate and the configuration)",
		op.Webhook, op.Title, op.Component)
	return nil
}

func webhookLines(vwc *admissionv1.ValidatingWebhookConfiguration) []string {
	var lines []string
	for _, w := range vwc.Webhooks {
		target := "(no target)"
		switch cc := w.ClientConfig; {
		case cc.Service != nil:
			path := ""
			if cc.Service.Path != nil {
				path = *cc.Service.Path
			}
			target = fmt.Sprintf("service %s/%s%s", cc.Service.Namespace, cc.Service.Name, path)
		case cc.URL != nil:
			target = *cc.URL
		}
		var rules []string
		for _, r := range w.Rules {
			var ops []string
			for _, o := range r.Operations {
				ops = append(ops, string(o))
			}
			rules = append(rules, fmt.Sprintf("%s %s/%s %s", strings.Join(ops, ","), strings.Join(r.APIGroups, ","), strings.Join(r.APIVersions, ","), strings.Join(r.Resources, ",")))
		}
		policy := "Fail"
		if w.FailurePolicy != nil {
			policy = string(*w.FailurePolicy)
		}
		lines = append(lines, fmt.Sprintf("%s: %s; rules [%s]; caBundle %d bytes; failurePolicy %s", w.Name, target, strings.Join(rules, "; "), len(w.ClientConfig.CABundle), policy))
	}
	return lines
}

// checkCABundle checks that bundle holds PEM certificates valid at now.
func checkCABundle(bundle []byte, now time.Time) error {
	if len(bundle) == 0 {
		return errors.New("its caBundle is empty")
	}
	rest, n := bundle, 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("its caBundle holds a certificate that does not parse: %v", err)
		}
		if now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
			return fmt.Errorf("its caBundle's certificate %q is valid only from %s to %s", cert.Subject.CommonName, cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
		}
		n++
	}
	if n == 0 {
		return errors.New("its caBundle holds no PEM certificate")
	}
	return nil
}

// covers reports whether a webhook's rules include creating resources of
// gvr.
func covers(w admissionv1.ValidatingWebhook, gvr schema.GroupVersionResource) bool {
	match := func(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }
	for _, r := range w.Rules {
		creates := slices.ContainsFunc(r.Operations, func(o admissionv1.OperationType) bool {
			return o == admissionv1.Create || o == admissionv1.OperationAll
		})
		if creates && match(r.APIGroups, gvr.Group) && match(r.APIVersions, gvr.Version) && match(r.Resources, gvr.Resource) {
			return true
		}
	}
	return false
}

// serviceHasReadyEndpoint checks that a webhook's Service exists and has a
// ready endpoint: something serves the webhook.
func serviceHasReadyEndpoint(ctx context.Context, env *conformance.Env, ref *admissionv1.ServiceReference) error {
	if _, err := env.Client.CoreV1().Services(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("its service %s/%s does not exist", ref.Namespace, ref.Name)
		}
		return fmt.Errorf("reading its service %s/%s: %v", ref.Namespace, ref.Name, err)
	}
	eps, err := env.Client.DiscoveryV1().EndpointSlices(ref.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + ref.Name,
	})
	if err != nil {
		return fmt.Errorf("listing the endpoints of service %s/%s: %v", ref.Namespace, ref.Name, err)
	}
	for _, s := range eps.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				return nil
			}
		}
	}
	return fmt.Errorf("its service %s/%s has no ready endpoint: no pod serves the webhook", ref.Namespace, ref.Name)
}

// rejectsInvalid creates a custom resource the schema accepts and the
// operator's webhook must deny, and checks that the API server's error
// says that webhook denied it.
func rejectsInvalid(t *conformance.T, env *conformance.Env, op Operator) {
	t.Step("Create %s %s, which is invalid because %s: webhook %s must deny it", op.Kind, invalidName, op.InvalidWhy, op.Webhook)
	_, err := t.TryApply(object(op, invalidName, env.Namespace, op.Invalid(invalidName)))
	if err == nil {
		t.Cleanup(func(ctx context.Context) {
			_ = env.Dynamic.Resource(op.Resource).Namespace(env.Namespace).Delete(ctx, invalidName, metav1.DeleteOptions{})
		})
		t.Fatalf("the invalid %s %s was accepted: webhook %s did not deny it", op.Kind, invalidName, op.Webhook)
	}
	t.Observe("API server's answer", err.Error())
	verdict := judgeRejection(err, op.Webhook)
	if verdict != nil {
		t.Fatalf("%v", verdict)
	}
	t.Logf("webhook %s denied the invalid %s", op.Webhook, op.Kind)
	t.Shown("%s's webhook denied an invalid %s", op.Title, op.Kind)
}

// judgeRejection returns nil if err is the API server's report that the
// webhook denied a request, else what it is instead.
func judgeRejection(err error, webhook string) error {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return fmt.Errorf("the request failed without an answer from the API server: %v", err)
	}
	msg := status.Status().Message
	denied := fmt.Sprintf("admission webhook %q denied the request", webhook)
	switch {
	case strings.Contains(msg, denied):
		return nil
	case strings.Contains(msg, fmt.Sprintf("failed calling webhook %q", webhook)):
		return fmt.Errorf("the API server could not call webhook %s, so nothing judged the custom resource: the operator's webhook server is not serving, or the caBundle does not match its certificate: %s", webhook, msg)
	case strings.Contains(msg, "admission webhook") && strings.Contains(msg, "denied the request"):
		return fmt.Errorf("a webhook other than %s denied the request: %s", webhook, msg)
	}
	return fmt.Errorf("the request was rejected (%s), but not by webhook %s: %s", status.Status().Reason, webhook, msg)
}

// reconciles creates a valid custom resource and waits until the
// controller has brought it to its finished state with the objects it
// owns.
func (c config) reconciles(t *conformance.T, env *conformance.Env, op Operator) {
	t.Step("Create %s %s, %s, and wait up to %s for %s", op.Kind, validName, op.ValidWhat, c.reconcileAfter, op.Finished)
	valid := object(op, validName, env.Namespace, op.Valid(validName, env.ProbeImage))
	valid.SetAnnotations(op.ValidAnnotations)
	created, err := t.TryApply(valid)
	if err != nil {
		if verdict := judgeRejection(err, op.Webhook); verdict == nil {
			t.Fatalf("webhook %s denied the valid %s: %v", op.Webhook, op.Kind, err)
		}
		t.Fatalf("the valid %s was not created: %v", op.Kind, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), c.reconcileAfter)
	defer cancel()
	cr, err := waitForObject(ctx, env, op.Resource, env.Namespace, validName, op.Reconciled)
	if cr != nil {
		t.Observe(op.Kind+" "+validName+" status", statusSummary(cr))
	}
	if err != nil {
		if cr == nil || cr.Object["status"] == nil {
			t.Fatalf("%s %s was not reconciled within %s: no controller of %s gave it a status (%v)", op.Kind, validName, c.reconcileAfter, op.Title, err)
		}
		t.Fatalf("%s %s did not reach %s within %s: %v", op.Kind, validName, op.Finished, c.reconcileAfter, err)
	}
	t.Logf("%s %s reached %s", op.Kind, validName, op.Finished)
	t.Shown("%s reconciled a valid %s to %s", op.Title, op.Kind, op.Finished)

	t.Step("Check the objects %s created for %s %s", op.Title, op.Kind, validName)
	var nodes []string
	for _, child := range op.Children {
		objs, problem := children(t.Context(), env, child, created)
		var lines []string
		for _, o := range objs {
			line := o.GetName()
			if child.Resource == pods {
				node, _, _ := unstructured.NestedString(o.Object, "spec", "nodeName")
				phase, _, _ := unstructured.NestedString(o.Object, "status", "phase")
				line += fmt.Sprintf(" (%s, node %s)", phase, node)
				if node != "" && !slices.Contains(nodes, node) {
					nodes = append(nodes, node)
				}
			}
			lines = append(lines, line)
		}
		if len(lines) == 0 {
			lines = []string{"(none)"}
		}
		t.Observe(child.What+"(s)", strings.Join(lines, "\n"))
		if problem != "" {
			t.Errorf("%s %s: %s", op.Kind, validName, problem)
		}
	}
	for _, name := range nodes {
		node, err := env.Client.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			continue
		}
		if why, none := conformance.NodeRunsNoContainers(node); none {
			t.Logf("not observed: %s, so %s; what the check verified is the controller's side: admission, reconciliation, the objects it owns and their status", why, op.Unobservable)
		}
	}
}

// children lists the objects of one kind the controller made for cr and
// says what is wrong with them, if anything.
func children(ctx context.Context, env *conformance.Env, child Child, cr *unstructured.Unstructured) ([]unstructured.Unstructured, string) {
	opts := metav1.ListOptions{}
	if child.Selector != "" {
		opts.LabelSelector = fmt.Sprintf(child.Selector, cr.GetName())
	}
	list, err := env.Dynamic.Resource(child.Resource).Namespace(cr.GetNamespace()).List(ctx, opts)
	if err != nil {
		return nil, fmt.Sprintf("listing its %ss: %v", child.What, err)
	}
	var objs []unstructured.Unstructured
	for _, o := range list.Items {
		if child.ControlledBy && !controlledBy(&o, cr) {
			continue
		}
		objs = append(objs, o)
	}
	if len(objs) < child.Min {
		return objs, fmt.Sprintf("has %d %s(s) (want at least %d)", len(objs), child.What, child.Min)
	}
	if child.Ready != nil {
		for _, o := range objs {
			if !child.Ready(&o) {
				return objs, fmt.Sprintf("its %s %s is not ready", child.What, o.GetName())
			}
		}
	}
	return objs, ""
}

func controlledBy(o, owner *unstructured.Unstructured) bool {
	ref := metav1.GetControllerOf(o)
	return ref != nil && ref.UID == owner.GetUID()
}

// waitForObject watches namespace/name of gvr until done says it is done
// (or fails), and returns it as last seen.
func waitForObject(ctx context.Context, env *conformance.Env, gvr schema.GroupVersionResource, namespace, name string, done func(*unstructured.Unstructured) (bool, error)) (*unstructured.Unstructured, error) {
	res := env.Dynamic.Resource(gvr).Namespace(namespace)
	lw := conformance.ListWatch(res.List, res.Watch, conformance.NameSelector(name), "")
	var last *unstructured.Unstructured
	_, err := conformance.UntilWithSync(ctx, lw, &unstructured.Unstructured{}, nil, func(event watch.Event) (bool, error) {
		u, ok := event.Object.(*unstructured.Unstructured)
		if !ok {
			return false, nil
		}
		last = u
		if event.Type == watch.Deleted {
			return false, fmt.Errorf("%s %s was deleted", u.GetKind(), name)
		}
		return done(u)
	})
	return last, err
}

// statusSummary is the custom resource's state and conditions, for the
// transcript.
func statusSummary(cr *unstructured.Unstructured) string {
	var lines []string
	if state, ok, _ := unstructured.NestedString(cr.Object, "status", "state"); ok {
		lines = append(lines, "state: "+state)
	}
	lines = append(lines, conditions.Strings(conditions.Of(cr))...)
	if len(lines) == 0 {
		return "(no status)"
	}
	return strings.Join(lines, "\n")
}

// object is a custom resource of the operator's kind.
func object(op Operator, name, namespace string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(op.Resource.GroupVersion().WithKind(op.Kind))
	u.SetName(name)
	u.SetNamespace(namespace)
	return u
}
