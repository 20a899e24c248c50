package servicemetrics

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/promtext"
	"github.com/kaic-dev/kaic/pkg/probe"
)

// This file holds the stand-ins of the tests: a node agent that plays the
// kubelet for pods bound to its node (it runs kaic's real probe server in
// this process for each of them, on a non-loopback address of this host
// that it reports as the pod IP) and a minimal Prometheus with
// prometheus-operator's ServiceMonitor and PodMonitor discovery (it scrapes
// the targets that ServiceMonitors and PodMonitors select, the latter in
// every namespace and with relabelings that copy a pod label, and answers
// instant queries of the form
// name{label="value",...} and /api/v1/targets). Neither is the real
// thing: Prometheus and prometheus-operator themselves are exercised by
// the e2e suite on kind.

// agent plays the kubelet of one node.
type agent struct {
	client kubernetes.Interface
	node   string
	ip     string
	// extra is how many inference requests each probe serves before the
	// pod becomes Ready, traffic the check did not send.
	extra atomic.Int32

	mu      sync.Mutex
	servers map[string]*agentPod
}

type agentPod struct {
	probe  *probe.Server
	cancel context.CancelFunc
}

// startAgent registers node (Ready, with address ip) and keeps it and its
// pods' status up to date until ctx ends.
func startAgent(ctx context.Context, client kubernetes.Interface, node, ip string) (*agent, error) {
	a := &agent{client: client, node: node, ip: ip, servers: map[string]*agentPod{}}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{corev1.LabelHostname: node, corev1.LabelOSStable: "linux"}}}
	created, err := client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("registering node %s: %w", node, err)
	}
	// The node lifecycle controller may change the new Node (taints) at
	// the same time: on a conflict, read it again and retry.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		created.Status = corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resourceQ("8"), corev1.ResourceMemory: resourceQ("16Gi"), corev1.ResourcePods: resourceQ("110")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resourceQ("8"), corev1.ResourceMemory: resourceQ("16Gi"), corev1.ResourcePods: resourceQ("110")},
			Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
			NodeInfo:    corev1.NodeSystemInfo{ContainerRuntimeVersion: "kaic-test-agent://1.0", KubeletVersion: "v1.37.2"},
		}
		created.Status.Conditions = readyConditions()
		_, err := client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			if latest, gerr := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); gerr == nil {
				created = latest
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("node %s status: %w", node, err)
	}
	go a.heartbeat(ctx)
	go a.syncLoop(ctx)
	return a, nil
}

func readyConditions() []corev1.NodeCondition {
	now := metav1.Now()
	return []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "AgentReady", LastHeartbeatTime: now, LastTransitionTime: now}}
}

// heartbeat renews the node's Lease and Ready condition, so that the node
// lifecycle controller keeps it Ready.
func (a *agent) heartbeat(ctx context.Context) {
	leases := a.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	for {
		now := metav1.NewMicroTime(time.Now())
		l, err := leases.Get(ctx, a.node, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, _ = leases.Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: a.node},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: &a.node, LeaseDurationSeconds: new(int32(40)), RenewTime: &now},
			}, metav1.CreateOptions{})
		} else if err == nil {
			l.Spec.RenewTime = &now
			_, _ = leases.Update(ctx, l, metav1.UpdateOptions{})
		}
		if n, err := a.client.CoreV1().Nodes().Get(ctx, a.node, metav1.GetOptions{}); err == nil {
			n.Status.Conditions = readyConditions()
			_, _ = a.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// syncLoop starts pods bound to the node and removes deleted ones.
func (a *agent) syncLoop(ctx context.Context) {
	for {
		pods, err := a.client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + a.node})
		if err == nil {
			for i := range pods.Items {
				a.sync(ctx, &pods.Items[i])
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func (a *agent) sync(ctx context.Context, p *corev1.Pod) {
	key := p.Namespace + "/" + p.Name + "/" + string(p.UID)
	a.mu.Lock()
	running, ok := a.servers[key]
	a.mu.Unlock()
	if p.DeletionTimestamp != nil {
		if ok {
			running.cancel()
			a.mu.Lock()
			delete(a.servers, key)
			a.mu.Unlock()
		}
		_ = a.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		return
	}
	if ok || p.Status.Phase == corev1.PodRunning {
		return
	}
	var port int32
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			port = cp.ContainerPort
		}
	}
	srv := probe.NewServer("", p.Name, p.Namespace, a.node)
	for range a.extra.Load() {
		srv.Handler().ServeHTTP(discard{}, mustRequest("/v1/infer"))
	}
	sctx, cancel := context.WithCancel(ctx)
	listening := make(chan error, 1)
	go func() {
		err := srv.Serve(sctx, net.JoinHostPort(a.ip, strconv.Itoa(int(port))), func(net.Addr) { listening <- nil })
		if err != nil {
			listening <- err
		}
	}()
	if err := <-listening; err != nil {
		cancel()
		return
	}
	a.mu.Lock()
	a.servers[key] = &agentPod{probe: srv, cancel: cancel}
	a.mu.Unlock()
	now := metav1.Now()
	p.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    a.ip,
		PodIP:     a.ip,
		PodIPs:    []corev1.PodIP{{IP: a.ip}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	_, _ = a.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
}

type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

func mustRequest(path string) *http.Request {
	r, err := http.NewRequest(http.MethodGet, "http://probe"+path, nil)
	if err != nil {
		panic(err)
	}
	return r
}

// miniPrometheus discovers targets from ServiceMonitors and scrapes them.
type miniPrometheus struct {
	client  kubernetes.Interface
	dynamic dynamic.Interface
	// selector, when set, is the serviceMonitorSelector: only
	// ServiceMonitors with these labels are used.
	selector map[string]string

	mu      sync.Mutex
	targets []*scrapeTarget
	// monitors and configTime are the ServiceMonitors the configuration
	// was last made of and when: a change of the set is a reload, as
	// prometheus-operator's new configuration is to a real Prometheus.
	monitors   string
	configTime time.Time
	// startsAt, when set, is when the server starts answering; before it
	// answers 503 as a starting Prometheus behind the service proxy does.
	startsAt time.Time
}

// waitForMonitor waits until the configuration holds monitor (namespace/name,
// prefixed pod: for a PodMonitor).
func (p *miniPrometheus) waitForMonitor(t *testing.T, monitor string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p.mu.Lock()
		loaded := slices.Contains(strings.Split(p.monitors, ","), monitor)
		p.mu.Unlock()
		if loaded {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stand-in Prometheus did not load %s within 30s", monitor)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startIn makes the server answer only after d.
func (p *miniPrometheus) startIn(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.startsAt = time.Now().Add(d)
}

type scrapeTarget struct {
	Labels     map[string]string `json:"labels"`
	ScrapePool string            `json:"scrapePool"`
	ScrapeURL  string            `json:"scrapeUrl"`
	Health     string            `json:"health"`
	LastError  string            `json:"lastError"`
	samples    []promtext.Sample
}

var (
	serviceMonitorGVR = schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "servicemonitors"}
	podMonitorGVR     = schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "podmonitors"}
)

func (p *miniPrometheus) setSelector(sel map[string]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.selector = sel
	p.targets = nil
}

// loop discovers and scrapes every interval until ctx ends.
func (p *miniPrometheus) loop(ctx context.Context, interval time.Duration) {
	for {
		p.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (p *miniPrometheus) round(ctx context.Context) {
	p.mu.Lock()
	sel := p.selector
	p.mu.Unlock()
	list, err := p.dynamic.Resource(serviceMonitorGVR).Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	var found []*scrapeTarget
	var monitors []string
	for _, sm := range list.Items {
		if sel != nil && !labels.SelectorFromSet(sel).Matches(labels.Set(sm.GetLabels())) {
			continue
		}
		monitors = append(monitors, sm.GetNamespace()+"/"+sm.GetName())
		found = append(found, p.discover(ctx, &sm)...)
	}
	// PodMonitors, where their CRD is served.
	if pms, err := p.dynamic.Resource(podMonitorGVR).Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{}); err == nil {
		for _, pm := range pms.Items {
			if sel != nil && !labels.SelectorFromSet(sel).Matches(labels.Set(pm.GetLabels())) {
				continue
			}
			monitors = append(monitors, "pod:"+pm.GetNamespace()+"/"+pm.GetName())
			found = append(found, p.discoverPods(ctx, &pm)...)
		}
	}
	p.mu.Lock()
	if m := strings.Join(monitors, ","); m != p.monitors || p.configTime.IsZero() {
		p.monitors, p.configTime = m, time.Now()
	}
	p.mu.Unlock()
	for _, tg := range found {
		scrape(ctx, tg)
	}
	p.mu.Lock()
	p.targets = found
	p.mu.Unlock()
}

// discover follows a ServiceMonitor to its Services' endpoints.
func (p *miniPrometheus) discover(ctx context.Context, sm *unstructured.Unstructured) []*scrapeTarget {
	match, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	namespaces, _, _ := unstructured.NestedStringSlice(sm.Object, "spec", "namespaceSelector", "matchNames")
	if len(namespaces) == 0 {
		namespaces = []string{sm.GetNamespace()}
	}
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	var out []*scrapeTarget
	for i, raw := range endpoints {
		port, path, rules := endpoint(raw)
		relabel := map[string]string{}
		for _, r := range rules {
			rule, _ := r.(map[string]any)
			if a, _ := rule["action"].(string); a == "" || a == "replace" {
				target, _ := rule["targetLabel"].(string)
				repl, _ := rule["replacement"].(string)
				relabel[target] = repl
			}
		}
		for _, ns := range namespaces {
			svcs, err := p.client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(match).String()})
			if err != nil {
				continue
			}
			for _, svc := range svcs.Items {
				_, eps, err := promtext.Endpoints(ctx, p.client, promtext.Service{Namespace: ns, Name: svc.Name, Port: port})
				if err != nil {
					continue
				}
				for _, e := range eps {
					if !e.Ready {
						continue
					}
					l := map[string]string{"job": svc.Name, "namespace": ns, "service": svc.Name, "pod": e.Pod, "endpoint": port,
						"instance": net.JoinHostPort(e.Address, strconv.Itoa(int(e.Port)))}
					maps.Copy(l, relabel)
					out = append(out, newTarget(l, fmt.Sprintf("serviceMonitor/%s/%s/%d", sm.GetNamespace(), sm.GetName(), i), path))
				}
			}
		}
	}
	return out
}

// discoverPods follows a PodMonitor of every namespace (the only kind the
// stand-in serves) to the Ready pods its labels select, with relabelings
// that copy one pod label onto the series.
func (p *miniPrometheus) discoverPods(ctx context.Context, pm *unstructured.Unstructured) []*scrapeTarget {
	if all, _, _ := unstructured.NestedBool(pm.Object, "spec", "namespaceSelector", "any"); !all {
		return nil
	}
	match, _, _ := unstructured.NestedStringMap(pm.Object, "spec", "selector", "matchLabels")
	pods, err := p.client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(match).String()})
	if err != nil {
		return nil
	}
	endpoints, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
	var out []*scrapeTarget
	for i, raw := range endpoints {
		port, path, rules := endpoint(raw)
		for _, pod := range pods.Items {
			c := conditionOf(&pod, corev1.PodReady)
			if pod.Status.PodIP == "" || c == nil || c.Status != corev1.ConditionTrue {
				continue
			}
			var number int32
			for _, ct := range pod.Spec.Containers {
				for _, cp := range ct.Ports {
					if cp.Name == port {
						number = cp.ContainerPort
					}
				}
			}
			if number == 0 {
				continue
			}
			l := map[string]string{"job": pm.GetNamespace() + "/" + pm.GetName(), "namespace": pod.Namespace, "pod": pod.Name, "endpoint": port,
				"instance": net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(int(number)))}
			for _, r := range rules {
				rule, _ := r.(map[string]any)
				sources, _ := rule["sourceLabels"].([]any)
				target, _ := rule["targetLabel"].(string)
				const meta = "__meta_kubernetes_pod_label_"
				if len(sources) != 1 || target == "" {
					continue
				}
				src, _ := sources[0].(string)
				for k, v := range pod.Labels {
					if meta+strings.NewReplacer(".", "_", "/", "_", "-", "_").Replace(k) == src && v != "" {
						l[target] = v
					}
				}
			}
			out = append(out, newTarget(l, fmt.Sprintf("podMonitor/%s/%s/%d", pm.GetNamespace(), pm.GetName(), i), path))
		}
	}
	return out
}

// endpoint reads a monitor endpoint's port, path (default /metrics) and
// relabelings.
func endpoint(raw any) (port, path string, rules []any) {
	ep, _ := raw.(map[string]any)
	port, _ = ep["port"].(string)
	path, _ = ep["path"].(string)
	if path == "" {
		path = "/metrics"
	}
	rules, _ = ep["relabelings"].([]any)
	return port, path, rules
}

// newTarget is a target of pool with labels l, not scraped yet, at path
// on its instance.
func newTarget(l map[string]string, pool, path string) *scrapeTarget {
	return &scrapeTarget{Labels: l, ScrapePool: pool, ScrapeURL: "http://" + l["instance"] + path, Health: "unknown"}
}

func conditionOf(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func scrape(ctx context.Context, tg *scrapeTarget) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tg.ScrapeURL, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tg.Health, tg.LastError = "down", err.Error()
		return
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("server returned HTTP status %s", res.Status)
	}
	var samples []promtext.Sample
	if err == nil {
		samples, err = promtext.Parse(body)
	}
	if err != nil {
		tg.Health, tg.LastError = "down", err.Error()
		return
	}
	for i := range samples {
		for k, v := range tg.Labels {
			samples[i].Labels[k] = v
		}
		samples[i].Labels["__name__"] = samples[i].Name
	}
	tg.Health, tg.LastError, tg.samples = "up", "", samples
}

// ServeHTTP answers /api/v1/query, /api/v1/targets and
// /api/v1/status/runtimeinfo (lastConfigTime only).
func (p *miniPrometheus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	targets, startsAt, configTime := p.targets, p.startsAt, p.configTime
	p.mu.Unlock()
	if time.Now().Before(startsAt) {
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
		return
	}
	switch r.URL.Path {
	case "/api/v1/status/runtimeinfo":
		answer(w, map[string]any{"lastConfigTime": configTime.UTC().Format(time.RFC3339Nano), "reloadConfigSuccess": true})
	case "/api/v1/targets":
		if targets == nil {
			targets = []*scrapeTarget{}
		}
		answer(w, map[string]any{"activeTargets": targets, "droppedTargets": []any{}})
	case "/api/v1/query":
		name, match, err := parseSelector(r.URL.Query().Get("query"))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "error", "errorType": "bad_data", "error": err.Error()})
			return
		}
		result := []any{}
		now := float64(time.Now().Unix())
		for _, tg := range targets {
			samples := tg.samples
			up := promtext.Sample{Name: "up", Labels: maps.Clone(tg.Labels), Value: 0}
			up.Labels["__name__"] = "up"
			if tg.Health == "up" {
				up.Value = 1
			}
			for _, s := range append([]promtext.Sample{up}, samples...) {
				if s.Name != name || !labels.SelectorFromSet(match).Matches(labels.Set(s.Labels)) {
					continue
				}
				result = append(result, map[string]any{"metric": s.Labels, "value": []any{now, strconv.FormatFloat(s.Value, 'g', -1, 64)}})
			}
		}
		answer(w, map[string]any{"resultType": "vector", "result": result})
	default:
		http.NotFound(w, r)
	}
}

func answer(w http.ResponseWriter, data any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": data})
}

// parseSelector reads name{k="v",...}, the only queries the stand-in
// understands.
func parseSelector(q string) (string, map[string]string, error) {
	name, rest, hasLabels := strings.Cut(strings.TrimSpace(q), "{")
	match := map[string]string{}
	if name == "" {
		return "", nil, fmt.Errorf("unsupported query %q", q)
	}
	if !hasLabels {
		return name, match, nil
	}
	body, ok := strings.CutSuffix(rest, "}")
	if !ok {
		return "", nil, fmt.Errorf("unsupported query %q", q)
	}
	for _, pair := range strings.Split(body, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return "", nil, fmt.Errorf("unsupported matcher %q", pair)
		}
		uv, err := strconv.Unquote(v)
		if err != nil {
			return "", nil, fmt.Errorf("matcher %q: %w", pair, err)
		}
		match[strings.TrimSpace(k)] = uv
	}
	return name, match, nil
}

// publish serves handler on the host address as the endpoint of
// selector-less Service namespace/name (port web 9090, labelled like
// prometheus-operated), through a Pod object bound to node that carries
// the address.
func publish(ctx context.Context, client kubernetes.Interface, ip, node, namespace, name string, handler http.Handler) (stop func(), err error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	port := int32(l.Addr().(*net.TCPAddr).Port)
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-0", Namespace: namespace},
		Spec: corev1.PodSpec{
			NodeName:    node,
			Containers:  []corev1.Container{{Name: "prometheus", Image: "kaic-probe:test"}},
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		},
	}
	created, err := client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	created.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if _, err := client.CoreV1().Pods(namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return nil, err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{OperatedLabel: "true"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "web", Port: 9090}}},
	}
	if _, err := client.CoreV1().Services(namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: new(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: namespace, Name: pod.Name, UID: created.UID},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: new("web"), Port: new(port), Protocol: new(corev1.ProtocolTCP)}},
	}
	if _, err := client.DiscoveryV1().EndpointSlices(namespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = client.DiscoveryV1().EndpointSlices(namespace).Delete(ctx, name, metav1.DeleteOptions{})
		_ = client.CoreV1().Services(namespace).Delete(ctx, name, metav1.DeleteOptions{})
		_ = client.CoreV1().Pods(namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		_ = srv.Close()
	}, nil
}
