package inference

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kaic-dev/kaic/pkg/conditions"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
	"github.com/kaic-dev/kaic/pkg/probe"
)

// Gateway API group, version and resources the checks use.
const (
	GatewayGroup        = "gateway.networking.k8s.io"
	GatewayGroupVersion = GatewayGroup + "/v1"
)

var (
	gatewayClassesGVR = schema.GroupVersionResource{Group: GatewayGroup, Version: "v1", Resource: "gatewayclasses"}
	gatewaysGVR       = schema.GroupVersionResource{Group: GatewayGroup, Version: "v1", Resource: "gateways"}
	httpRoutesGVR     = schema.GroupVersionResource{Group: GatewayGroup, Version: "v1", Resource: "httproutes"}
)

// gatewayResources are the resources the checks create or read.
var gatewayResources = []string{"gatewayclasses", "gateways", "httproutes"}

// Labels by which implementations mark the Service in front of a Gateway:
// Envoy Gateway's owning-gateway pair, and the label the Gateway API
// recommends for generated infrastructure (Istio and others).
const (
	envoyOwningGatewayName      = "gateway.envoyproxy.io/owning-gateway-name"
	envoyOwningGatewayNamespace = "gateway.envoyproxy.io/owning-gateway-namespace"
	gatewayNameLabel            = "gateway.networking.k8s.io/gateway-name"
)

const (
	listenerPort = 80
	backendPort  = 8080
	// instanceLabel tells the checks' backends apart.
	instanceLabel = "kaic.dev/backend"
)

// gatewayAPIServed fails the test unless the API server serves the
// Gateway API resources the checks need.
func gatewayAPIServed(t *conformance.T, env *conformance.Env) {
	t.Step("Discover the resources of %s", GatewayGroupVersion)
	served, err := conformance.ServedResources(t, env, GatewayGroupVersion)
	if err != nil {
		t.Fatalf("the API server does not serve %s (%v): the Gateway API CRDs are not installed", GatewayGroupVersion, err)
	}
	var missing []string
	for _, r := range gatewayResources {
		if !slices.Contains(served, r) {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%s does not serve %s: the Gateway API CRDs are incomplete", GatewayGroupVersion, strings.Join(missing, ", "))
	}
}

// gatewayClass is the class the checks' Gateways use.
type gatewayClass struct {
	Name, Controller string
}

// findGatewayClass returns the class named by want, or else the first
// Accepted one by name; it fails the test naming what it found when none
// fits.
func findGatewayClass(t *conformance.T, env *conformance.Env, want string) gatewayClass {
	if want != "" {
		t.Step("Check that GatewayClass %s is Accepted by its controller", want)
	} else {
		t.Step("Find a GatewayClass Accepted by its controller")
	}
	list, err := env.Dynamic.Resource(gatewayClassesGVR).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing GatewayClasses: %v", err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].GetName() < list.Items[j].GetName() })
	var seen []string
	for i := range list.Items {
		gc := &list.Items[i]
		controller, _, _ := unstructured.NestedString(gc.Object, "spec", "controllerName")
		accepted := findCondition(conditions.Of(gc), "Accepted")
		seen = append(seen, fmt.Sprintf("%s (controller %s, %s)", gc.GetName(), controller, accepted))
		if want != "" && gc.GetName() != want {
			continue
		}
		if accepted.Status == "True" {
			t.Observe("GatewayClass "+gc.GetName(), map[string]any{"controllerName": controller, "accepted": accepted.String()})
			return gatewayClass{Name: gc.GetName(), Controller: controller}
		}
		if want != "" {
			t.Fatalf("GatewayClass %s (controller %s) is not Accepted: %s; no Gateway API controller runs for it", want, controller, accepted)
		}
	}
	t.Observe("GatewayClasses", seen)
	if want != "" {
		t.Fatalf("GatewayClass %s does not exist (GatewayClasses: %s)", want, listOrNone(seen))
	}
	t.Fatalf("no GatewayClass is Accepted (GatewayClasses: %s): no Gateway API implementation runs, or none was given a GatewayClass", listOrNone(seen))
	return gatewayClass{}
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "; ")
}

// gatewayObject is a Gateway of class with one HTTP listener on port 80
// accepting routes from its own namespace.
func gatewayObject(name, class string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": GatewayGroupVersion,
		"kind":       "Gateway",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"gatewayClassName": class,
			"listeners": []any{map[string]any{
				"name":          "http",
				"protocol":      "HTTP",
				"port":          int64(listenerPort),
				"allowedRoutes": map[string]any{"namespaces": map[string]any{"from": "Same"}},
			}},
		},
	}}
}

// createGateway applies a Gateway of class and waits until it is
// Programmed; it fails the test naming the Gateway and its conditions
// when it is not within timeout.
func createGateway(t *conformance.T, env *conformance.Env, name string, class gatewayClass, timeout time.Duration) *unstructured.Unstructured {
	t.Step("Create Gateway %s of class %s with an HTTP listener on port %d and wait until it is Programmed", name, class.Name, listenerPort)
	t.Apply(gatewayObject(name, class.Name))
	gw, err := waitObject(t.Context(), env, gatewaysGVR, env.Namespace, name, timeout, func(u *unstructured.Unstructured) bool {
		return current(u, findCondition(conditions.Of(u), "Programmed")) == "True"
	})
	if err != nil {
		t.Fatalf("Gateway %s of class %s was not Programmed within %s: conditions %s", name, class.Name, timeout, describeConditions(gw, "status"))
	}
	t.Observe("Gateway "+name, map[string]any{"conditions": conditions.Strings(conditions.Of(gw)), "addresses": gatewayAddresses(gw)})
	return gw
}

// waitObject watches one object of gvr until done holds or timeout passes,
// and returns it as last seen (nil if never seen).
func waitObject(ctx context.Context, env *conformance.Env, gvr schema.GroupVersionResource, ns, name string, timeout time.Duration, done func(*unstructured.Unstructured) bool) (*unstructured.Unstructured, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := env.Dynamic.Resource(gvr).Namespace(ns)
	lw := conformance.ListWatch(res.List, res.Watch, conformance.NameSelector(name), "")
	var last *unstructured.Unstructured
	_, err := conformance.UntilWithSync(ctx, lw, &unstructured.Unstructured{}, nil, func(ev watch.Event) (bool, error) {
		u, ok := ev.Object.(*unstructured.Unstructured)
		if !ok {
			return false, nil
		}
		if ev.Type == watch.Deleted {
			return false, fmt.Errorf("%s %s/%s was deleted", u.GetKind(), ns, name)
		}
		last = u
		return done(u), nil
	})
	return last, err
}

// findCondition returns the condition of type ct, the zero one if there
// is none.
func findCondition(conds []conditions.Condition, ct string) conditions.Condition {
	c, _ := conditions.Find(conds, ct)
	return c
}

// current returns the condition's status if it describes the object's
// current generation (or says nothing of generations), else "".
func current(u *unstructured.Unstructured, c conditions.Condition) string {
	if c.ObservedGeneration != 0 && c.ObservedGeneration < u.GetGeneration() {
		return ""
	}
	return c.Status
}

func describeConditions(u *unstructured.Unstructured, path ...string) string {
	if u == nil {
		return "(object not seen)"
	}
	conds := conditions.Strings(conditions.In(u.Object, path...))
	if len(conds) == 0 {
		return "none (no controller has written its status)"
	}
	return strings.Join(conds, ", ")
}

// parentStatus returns the conditions a route or InferencePool reports for
// the Gateway gw, or nil.
func parentStatus(u *unstructured.Unstructured, gw string) []conditions.Condition {
	parents, _, _ := unstructured.NestedSlice(u.Object, "status", "parents")
	for _, p := range parents {
		m, ok := p.(map[string]any)
		if !ok {
			continue
		}
		name, _, _ := unstructured.NestedString(m, "parentRef", "name")
		kind, found, _ := unstructured.NestedString(m, "parentRef", "kind")
		if name == gw && (!found || kind == "Gateway") {
			return conditions.In(m)
		}
	}
	return nil
}

func describeParents(u *unstructured.Unstructured, gw string) string {
	if u == nil {
		return "(object not seen)"
	}
	conds := parentStatus(u, gw)
	if len(conds) == 0 {
		return "no status for Gateway " + gw + " (no controller has evaluated it)"
	}
	return strings.Join(conditions.Strings(conds), ", ")
}

// routeObject is an HTTPRoute on gw for host with the given rules.
func routeObject(name, gw, host string, rules ...map[string]any) *unstructured.Unstructured {
	rs := make([]any, len(rules))
	for i, r := range rules {
		rs[i] = r
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": GatewayGroupVersion,
		"kind":       "HTTPRoute",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"parentRefs": []any{map[string]any{"name": gw}},
			"hostnames":  []any{host},
			"rules":      rs,
		},
	}}
}

// serviceRef is a weighted backendRef to a Service's backend port.
func serviceRef(name string, weight int) map[string]any {
	return map[string]any{"name": name, "port": int64(backendPort), "weight": int64(weight)}
}

// waitRouteResolved waits until the route's status for gw says Accepted
// and ResolvedRefs; it fails the test with the status seen otherwise.
func waitRouteResolved(t *conformance.T, env *conformance.Env, gvr schema.GroupVersionResource, name, gw string, timeout time.Duration) {
	u, err := waitObject(t.Context(), env, gvr, env.Namespace, name, timeout, func(u *unstructured.Unstructured) bool {
		conds := parentStatus(u, gw)
		return current(u, findCondition(conds, "Accepted")) == "True" && current(u, findCondition(conds, "ResolvedRefs")) == "True"
	})
	if err != nil {
		t.Fatalf("%s %s is not Accepted with ResolvedRefs by Gateway %s within %s: %s", kindOf(u, "HTTPRoute"), name, gw, timeout, describeParents(u, gw))
	}
	t.Observe(fmt.Sprintf("status of %s %s for Gateway %s", u.GetKind(), name, gw), strings.Join(conditions.Strings(parentStatus(u, gw)), ", "))
}

// waitRouteUnresolved waits until the route's status for gw says
// ResolvedRefs=False and returns that condition; it fails the test if the
// controller resolves the route or never says.
func waitRouteUnresolved(t *conformance.T, env *conformance.Env, name, gw string, timeout time.Duration) conditions.Condition {
	u, err := waitObject(t.Context(), env, httpRoutesGVR, env.Namespace, name, timeout, func(u *unstructured.Unstructured) bool {
		return current(u, findCondition(parentStatus(u, gw), "ResolvedRefs")) != ""
	})
	if err != nil {
		t.Fatalf("HTTPRoute %s got no ResolvedRefs condition from Gateway %s within %s: %s; the controller does not evaluate its backends", name, gw, timeout, describeParents(u, gw))
	}
	resolved := findCondition(parentStatus(u, gw), "ResolvedRefs")
	t.Observe(fmt.Sprintf("status of HTTPRoute %s for Gateway %s", name, gw), strings.Join(conditions.Strings(parentStatus(u, gw)), ", "))
	if resolved.Status != "False" {
		t.Fatalf("HTTPRoute %s references a backend that does not exist, yet Gateway %s reports %s", name, gw, resolved)
	}
	return resolved
}

func kindOf(u *unstructured.Unstructured, def string) string {
	if u == nil || u.GetKind() == "" {
		return def
	}
	return u.GetKind()
}

// backendLabels select the pods of one backend.
func backendLabels(name string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "kaic-probe", instanceLabel: name}
}

// backend is a Deployment of replicas probe pods answering as identity
// (their pod name when empty) and, unless noService, a Service in front.
type backend struct {
	Name, Identity string
	Replicas       int32
	Labels         map[string]string
	NoService      bool
	// Args are more arguments of kaic probe serve.
	Args []string
}

func (b backend) labels() map[string]string {
	if b.Labels != nil {
		return b.Labels
	}
	return backendLabels(b.Name)
}

// startBackend applies the backend's Deployment and Service.
func startBackend(t *conformance.T, env *conformance.Env, b backend) {
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	args := probe.Args("serve", "--addr=:"+strconv.Itoa(backendPort))
	if b.Identity != "" {
		args = append(args, "--backend="+b.Identity)
	}
	args = append(args, b.Args...)
	replicas := max(b.Replicas, 1)
	t.Apply(&appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: b.Name, Labels: b.labels()},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: b.labels()},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: b.labels()},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: new(int64),
					Containers: []corev1.Container{{
						Name:  "probe",
						Image: env.ProbeImage,
						Args:  args,
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: backendPort}},
						Env: []corev1.EnvVar{
							fieldEnv("POD_NAME", "metadata.name"),
							fieldEnv("POD_NAMESPACE", "metadata.namespace"),
							fieldEnv("NODE_NAME", "spec.nodeName"),
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(backendPort)}},
							PeriodSeconds: 2,
						},
					}},
				},
			},
		},
	})
	if b.NoService {
		return
	}
	t.Apply(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: b.Name, Labels: b.labels()},
		Spec: corev1.ServiceSpec{
			Selector: b.labels(),
			Ports:    []corev1.ServicePort{{Name: "http", Port: backendPort, TargetPort: intstr.FromInt32(backendPort)}},
		},
	})
}

// waitBackends waits until every named Deployment has all its replicas
// available.
func waitBackends(t *conformance.T, env *conformance.Env, timeout time.Duration, names ...string) {
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	for _, name := range names {
		var last *appsv1.Deployment
		err := conformance.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
			d, err := env.Client.AppsV1().Deployments(env.Namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			last = d
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			return d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas == want, nil
		})
		if err != nil {
			state := "(not seen)"
			if last != nil {
				state = fmt.Sprintf("%d of %d replicas available", last.Status.AvailableReplicas, ptrOr(last.Spec.Replicas, 1))
			}
			t.Fatalf("backend Deployment %s is not available within %s: %s", name, timeout, state)
		}
	}
	t.Logf("backends %s are available", strings.Join(names, ", "))
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// gatewayAddresses lists the addresses in the Gateway's status.
func gatewayAddresses(gw *unstructured.Unstructured) []string {
	raw, _, _ := unstructured.NestedSlice(gw.Object, "status", "addresses")
	out := []string{}
	for _, r := range raw {
		if m, ok := r.(map[string]any); ok {
			if v, ok := m["value"].(string); ok && v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

// gatewayURL finds where pods reach the Gateway: the implementation's
// Service for it (by Envoy Gateway's owning-gateway labels or the Gateway
// API's gateway-name label), else the first address in its status.
func gatewayURL(t *conformance.T, env *conformance.Env, gw *unstructured.Unstructured) string {
	selectors := []struct{ ns, selector string }{
		{metav1.NamespaceAll, envoyOwningGatewayName + "=" + gw.GetName() + "," + envoyOwningGatewayNamespace + "=" + gw.GetNamespace()},
		{gw.GetNamespace(), gatewayNameLabel + "=" + gw.GetName()},
	}
	for _, s := range selectors {
		svcs, err := env.Client.CoreV1().Services(s.ns).List(t.Context(), metav1.ListOptions{LabelSelector: s.selector})
		if err != nil {
			t.Fatalf("listing the Services of Gateway %s (%s): %v", gw.GetName(), s.selector, err)
		}
		for _, svc := range svcs.Items {
			port := int32(0)
			for _, p := range svc.Spec.Ports {
				if p.Port == listenerPort || port == 0 {
					port = p.Port
				}
			}
			if port == 0 {
				continue
			}
			u := fmt.Sprintf("http://%s.%s.svc:%d/", svc.Name, svc.Namespace, port)
			t.Observe("Service of Gateway "+gw.GetName(), fmt.Sprintf("%s/%s (labels %s): %s", svc.Namespace, svc.Name, s.selector, u))
			return u
		}
	}
	if addrs := gatewayAddresses(gw); len(addrs) > 0 {
		host := addrs[0]
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		u := fmt.Sprintf("http://%s:%d/", host, listenerPort)
		t.Observe("address of Gateway "+gw.GetName(), u)
		return u
	}
	t.Fatalf("Gateway %s has no address in its status and no Service labelled %s or %s: nothing to send requests to", gw.GetName(), envoyOwningGatewayName, gatewayNameLabel)
	return ""
}

// requestPod is a pod that sends count requests to url with headers and
// prints the probe's report; with a model, the requests are OpenAI-style
// completions naming it.
func requestPod(env *conformance.Env, name, url string, count int, model string, warmUp time.Duration, headers []string) *corev1.Pod {
	args := probe.Args("request", "--url="+url, "--count="+strconv.Itoa(count))
	if model != "" {
		args = append(args, "--completion-model="+model)
	}
	if warmUp > 0 {
		args = append(args, "--warm-up="+warmUp.String())
	}
	for _, h := range headers {
		args = append(args, "--header="+h)
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": "kaic-probe"}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: new(int64),
			Containers:                    []corev1.Container{{Name: "probe", Image: env.ProbeImage, Args: args}},
		},
	}
}

// sendRequests runs a request pod and returns its report. It skips the
// test when the pod lands on a node that runs no containers (kwok), whose
// requests are never sent.
func sendRequests(t *conformance.T, env *conformance.Env, name, url string, count int, timeout time.Duration, headers ...string) probe.RequestReport {
	return startRequests(t, env, name, url, "", count, 0, headers...).report(t, timeout)
}

// sendCompletions is sendRequests with OpenAI-style completion requests
// whose JSON bodies name model, each with a prompt of its own, after a
// warm-up of up to warmUp (a third of timeout at most): requests until
// the first is answered, reported apart and not counted.
func sendCompletions(t *conformance.T, env *conformance.Env, name, url, model string, count int, warmUp, timeout time.Duration, headers ...string) probe.RequestReport {
	return startRequests(t, env, name, url, model, count, min(warmUp, timeout/3), headers...).report(t, timeout)
}

// startRequests starts a request pod like sendRequests (or, with a model,
// like sendCompletions); its report is waited for later, so that pods whose
// requests do not depend on each other run at once.
func startRequests(t *conformance.T, env *conformance.Env, name, url, model string, count int, warmUp time.Duration, headers ...string) requestRun {
	what := fmt.Sprintf("%d requests", count)
	if model != "" {
		what = fmt.Sprintf("%d completion requests for model %s", count, model)
	}
	if warmUp > 0 {
		what = fmt.Sprintf("%s, after requests until one is answered (for up to %s, not counted)", what, warmUp)
	}
	t.Step("Run pod %s: %s to %s with headers %v", name, what, url, headers)
	t.Apply(requestPod(env, name, url, count, model, warmUp, headers))
	return requestRun{env: env, name: name}
}

// requestRun is a request pod that was started.
type requestRun struct {
	env  *conformance.Env
	name string
}

// report waits for the pod to finish and returns the report it printed.
func (r requestRun) report(t *conformance.T, timeout time.Duration) probe.RequestReport {
	env, name := r.env, r.name
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	pod, err := conformance.WaitForPod(ctx, env.Client, env.Namespace, name, func(p *corev1.Pod) (bool, error) {
		return p.Spec.NodeName != "", nil
	})
	if err != nil {
		devicepod.Describe(t, env, name)
		t.Fatalf("request pod %s was not scheduled: %v", name, err)
	}
	node, err := env.Client.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting node %s of request pod %s: %v", pod.Spec.NodeName, name, err)
	}
	if why, none := conformance.NodeRunsNoContainers(node); none {
		t.Skipf("request pod %s runs on %s: %s, so its requests are never sent", name, node.Name, why)
	}
	pod, err = conformance.WaitForPod(ctx, env.Client, env.Namespace, name, func(p *corev1.Pod) (bool, error) {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, nil
	})
	if err != nil {
		devicepod.Describe(t, env, name)
		t.Fatalf("request pod %s did not finish within %s: %v", name, timeout, err)
	}
	raw, err := env.Client.CoreV1().Pods(env.Namespace).GetLogs(name, &corev1.PodLogOptions{Container: "probe"}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("reading the log of request pod %s: %v", name, err)
	}
	rep, ok, err := probe.ParseRequestReport(string(raw))
	if err != nil || !ok {
		t.Fatalf("request pod %s (%s) printed no request report (%v): %s", name, pod.Status.Phase, err, strings.TrimSpace(string(raw)))
	}
	t.Observe("requests of pod "+name, rep.String())
	return rep
}
