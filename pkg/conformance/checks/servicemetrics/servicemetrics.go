// Package servicemetrics verifies the ai_service_metrics requirement: the
// cluster's monitoring system collects the metrics an AI service exposes
// in the Prometheus format, and what it collects matches the traffic the
// service received.
//
// The check finds the Prometheus that prometheus-operator runs (or the
// one Options name) and makes sure its query API answers before creating
// anything; it then runs kaic's probe as an inference-like service (a
// request counter, a latency histogram and a gauge standing for queue
// depth), has it scraped with a per-run label on every series, sends
// exactly N requests and sets the gauge through the
// API server's service proxy, and waits for Prometheus to report the
// counter and the histogram's count at N and the gauge at the value set.
// When the series never appear it says whether Prometheus discovered the
// target at all and what its last scrape said.
//
// Where kaic's stack installed its PodMonitor for probe pods
// (kaic-probe-monitor), the pod carries that monitor's labels and the run
// label kaic.dev/run, which the monitor copies onto the series; Prometheus
// has that configuration before the check starts and scrapes the pod as
// soon as its pod discovery sees it. Otherwise the check creates a
// ServiceMonitor whose relabeling adds the run label. Prometheus reads
// that ServiceMonitor's scrape configuration when the kubelet next syncs its
// pod, up to about 90 s later, and prometheus-config-reloader reloads it
// when it sees the file change. Before prometheus-operator v0.91.0 the
// reloader watched the file itself, a watch that the kubelet's atomic
// update ends after the first change; later changes then wait for its
// re-read every 3 minutes, so a cluster with an older operator can take
// four and a half minutes (the collection timeout allows five).
package servicemetrics

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/probemonitor"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/promtext"
	"github.com/kaic-dev/kaic/pkg/probe"
)

// ID is the requirement this package verifies.
const ID = "ai_service_metrics"

// The scrape configuration API of prometheus-operator.
const (
	MonitoringGroupVersion = "monitoring.coreos.com/v1"
	serviceMonitors        = "servicemonitors"
)

// OperatedLabel marks the Service prometheus-operator creates for every
// Prometheus it runs.
const OperatedLabel = promtext.OperatedLabel

// RunLabel is the label the ServiceMonitor adds to every series of this
// run's workload, so that series of earlier runs never count.
const RunLabel = "kaic_run"

// Names of the objects the check creates.
const (
	name     = "ai-metrics-probe"
	portName = "http"
	instance = "app.kubernetes.io/instance"
)

// Defaults of Options.
const (
	DefaultRequests = 10
	DefaultPort     = 8080
	// DefaultCollectionTimeout bounds the wait for Prometheus to report
	// the workload's values: discovery, the first scrapes and rule
	// evaluation included.
	DefaultCollectionTimeout = 5 * time.Minute
	// DefaultScrapeInterval is the ServiceMonitor's scrape interval.
	DefaultScrapeInterval = "10s"
	// queueDepth is what the check sets the gauge to.
	queueDepth = 7

	readyTimeout = 3 * time.Minute
	proxyTimeout = time.Minute
	poll         = 3 * time.Second
)

// Options configure the check.
type Options struct {
	// Prometheus is the monitoring system's query API as
	// namespace/service:port; empty finds the Service prometheus-operator
	// labels operated-prometheus=true and uses its port web.
	Prometheus string
	// ScrapeLabels are set on the ServiceMonitor so that the Prometheus's
	// serviceMonitorSelector picks it up, e.g. release=kube-prometheus-stack.
	ScrapeLabels map[string]string
	// Requests is how many inference requests are sent (default
	// DefaultRequests).
	Requests int
	// Port is the workload's container port (default DefaultPort).
	Port int32
	// ScrapeInterval is the ServiceMonitor's interval (default
	// DefaultScrapeInterval).
	ScrapeInterval string
	// CollectionTimeout bounds the wait for the values (default
	// DefaultCollectionTimeout).
	CollectionTimeout time.Duration
	// AnswerTimeout bounds the wait for the query API to answer at all: a
	// Prometheus installed moments before is still starting (default
	// DefaultAnswerTimeout).
	AnswerTimeout time.Duration
}

// DefaultAnswerTimeout is the default of Options.AnswerTimeout.
const DefaultAnswerTimeout = 2 * time.Minute

// Check returns the ai_service_metrics check with default options.
func Check() conformance.Check { return New(Options{}) }

// New returns the ai_service_metrics check configured by o.
func New(o Options) conformance.Check {
	if o.Requests <= 0 {
		o.Requests = DefaultRequests
	}
	if o.Port <= 0 {
		o.Port = DefaultPort
	}
	if o.ScrapeInterval == "" {
		o.ScrapeInterval = DefaultScrapeInterval
	}
	if o.CollectionTimeout <= 0 {
		o.CollectionTimeout = DefaultCollectionTimeout
	}
	if o.AnswerTimeout <= 0 {
		o.AnswerTimeout = DefaultAnswerTimeout
	}
	return conformance.NewCheck(ID, func(t *conformance.T, env *conformance.Env) { run(t, env, o) })
}

func run(t *conformance.T, env *conformance.Env, o Options) {
	prom := findPrometheus(t, env, o)
	t.Step("Check that Prometheus at %s answers queries (waiting up to %s while it starts)", prom, o.AnswerTimeout)
	var lastErr error
	err := conformance.PollUntilContextTimeout(t.Context(), 2*time.Second, o.AnswerTimeout, true, func(ctx context.Context) (bool, error) {
		_, lastErr = query(ctx, env, prom, "up")
		return lastErr == nil, nil
	})
	if err != nil {
		if lastErr == nil {
			lastErr = err
		}
		t.Fatalf("the monitoring system's query API at %s does not answer within %s: %v", prom, o.AnswerTimeout, lastErr)
	}
	runID := newRunID()
	t.Observe("run label", RunLabel+"="+runID)
	sc := stackMonitor(t, env, runID)
	if sc == nil {
		t.Step("Check that the scrape configuration API %s is served", MonitoringGroupVersion)
		served, err := conformance.ServedResources(t, env, MonitoringGroupVersion)
		if err != nil || !slices.Contains(served, serviceMonitors) {
			t.Fatalf("%s ServiceMonitor is not served (%v): prometheus-operator (monitoring.coreos.com) is not installed, so no scraping can be configured", MonitoringGroupVersion, errOrNone(err))
		}
		t.Step("Run probe pod %s serving %s, %s and %s; Service %s and ServiceMonitor %s scrape it every %s", name, probe.MetricRequests, probe.MetricLatency, probe.MetricLoad, name, name, o.ScrapeInterval)
		t.Apply(pod(env, o, nil))
		t.Apply(service(o))
		monitor := t.Apply(serviceMonitor(env, o, runID))
		sc = &scraping{
			monitor: "ServiceMonitor " + env.Namespace + "/" + name,
			pool:    "serviceMonitor/" + env.Namespace + "/" + name + "/",
			created: monitor.GetCreationTimestamp().Time,
		}
	} else {
		t.Step("Run probe pod %s serving %s, %s and %s, labelled for %s; Service %s", name, probe.MetricRequests, probe.MetricLatency, probe.MetricLoad, sc.monitor, name)
		created := t.Apply(pod(env, o, sc.podLabels))
		t.Apply(service(o))
		sc.created = created.GetCreationTimestamp().Time
	}
	p := waitReady(t, env)
	node, err := env.Client.CoreV1().Nodes().Get(t.Context(), p.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting node %s of pod %s: %v", p.Spec.NodeName, name, err)
	}
	if why, none := conformance.NodeRunsNoContainers(node); none {
		t.Skipf("pod %s runs on %s: %s, so it serves no requests and exposes no metrics there", name, node.Name, why)
	}

	svc := promtext.Service{Namespace: env.Namespace, Name: name, Port: portName}
	t.Step("Send exactly %d inference requests (GET /v1/infer) through the API server's service proxy to %s and set %s to %d", o.Requests, svc, probe.MetricLoad, queueDepth)
	waitProxy(t, env, svc)
	for i := range o.Requests {
		if _, err := promtext.Get(t.Context(), env.Client, svc, "/v1/infer", nil); err != nil {
			t.Fatalf("request %d of %d: %v", i+1, o.Requests, err)
		}
	}
	answer, err := put(t.Context(), env, svc, "/load", strconv.Itoa(queueDepth))
	if err != nil {
		t.Fatalf("setting %s through the service proxy: %v", probe.MetricLoad, err)
	}
	t.Observe("PUT /load?value="+strconv.Itoa(queueDepth), strings.TrimSpace(answer))

	collect(t, env, o, prom, runID, sc)
}

// scraping is how the workload is scraped: the labels its pod carries
// beyond workloadLabels, the monitor and its scrape pool, and when the
// scrape configuration or, with kaic's stack monitor, the pod was created.
type scraping struct {
	podLabels map[string]string
	monitor   string
	pool      string
	created   time.Time
	stack     bool
}

// stackMonitor returns how the pod is scraped through the PodMonitor
// kaic's stack installs for probe pods (kaic-probe-monitor), when the
// cluster has a usable one that copies the run label onto the series; nil
// otherwise, and the check creates a ServiceMonitor of its own. A monitor
// of the stack is in Prometheus' configuration before the check starts, so
// the pod is scraped once Prometheus' pod discovery sees it; the check's
// own reaches Prometheus with the kubelet's next sync of its pod.
func stackMonitor(t *conformance.T, env *conformance.Env, runID string) *scraping {
	m, why, err := probemonitor.Find(t.Context(), env.Dynamic)
	switch {
	case err != nil:
		why = err.Error()
	case m != nil && !m.RunLabel:
		why = fmt.Sprintf("PodMonitor %s does not copy the pod label %s onto the series as %s", m, probemonitor.RunPodLabel, RunLabel)
		m = nil
	}
	if m == nil {
		t.Logf("no PodMonitor of kaic's stack to scrape the workload: %s", why)
		return nil
	}
	interval := m.Interval
	if interval == "" {
		interval = "Prometheus' global interval"
	}
	t.Observe("scraped by", fmt.Sprintf("PodMonitor %s, installed with kaic's stack for probe pods of every namespace, every %s: the pod carries its labels %s and %s=%s, which it copies onto every series as %s",
		m, interval, labels.Set(m.PodLabels), probemonitor.RunPodLabel, runID, RunLabel))
	podLabels := maps.Clone(m.PodLabels)
	podLabels[probemonitor.RunPodLabel] = runID
	return &scraping{podLabels: podLabels, monitor: "PodMonitor " + m.String(), pool: m.ScrapePool(), stack: true}
}

func errOrNone(err error) string {
	if err == nil {
		return "the group has no " + serviceMonitors
	}
	return err.Error()
}

// newRunID is a short random id that tells this run's series apart.
func newRunID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "run-" + hex.EncodeToString(b)
}

// findPrometheus returns the Prometheus Service: the one Options name, or
// the one prometheus-operator labels.
func findPrometheus(t *conformance.T, env *conformance.Env, o Options) promtext.Service {
	if o.Prometheus != "" {
		svc, err := promtext.ParseService(o.Prometheus)
		if err != nil {
			t.Fatalf("option Prometheus: %v", err)
		}
		return svc
	}
	t.Step("Find the Prometheus that prometheus-operator runs (Service labelled %s=true)", OperatedLabel)
	list, err := promtext.OperatedServices(t.Context(), env.Client)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if len(list) == 0 {
		t.Fatalf("no Prometheus found: no Service is labelled %s=true (prometheus-operator creates prometheus-operated for every Prometheus); install a Prometheus (such as kube-prometheus-stack) or name its query API with the check's Prometheus option", OperatedLabel)
	}
	svc := list[0]
	if len(list) > 1 {
		t.Logf("%d Services are labelled %s=true; using the first, %s", len(list), OperatedLabel, svc)
	}
	t.Observe("Prometheus", svc.String())
	return svc
}

func workloadLabels() map[string]string {
	return map[string]string{"app.kubernetes.io/name": "kaic-probe", instance: name}
}

// pod runs the probe's HTTP mode under the restricted Pod Security
// Standard, labelled with extra beyond workloadLabels; it is Ready once
// the probe answers.
func pod(env *conformance.Env, o Options, extra map[string]string) *corev1.Pod {
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	lbls := workloadLabels()
	maps.Copy(lbls, extra)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(int64),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   new(true),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:  "probe",
				Image: env.ProbeImage,
				Args:  probe.Args("serve", "--addr=:"+strconv.Itoa(int(o.Port))),
				Ports: []corev1.ContainerPort{{Name: portName, ContainerPort: o.Port}},
				Env: []corev1.EnvVar{
					fieldEnv("POD_NAME", "metadata.name"),
					fieldEnv("POD_NAMESPACE", "metadata.namespace"),
					fieldEnv("NODE_NAME", "spec.nodeName"),
				},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString(portName)}},
					PeriodSeconds: 2,
				},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: new(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}

func service(o Options) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: workloadLabels()},
		Spec: corev1.ServiceSpec{
			Selector: workloadLabels(),
			Ports:    []corev1.ServicePort{{Name: portName, Port: o.Port, TargetPort: intstr.FromString(portName)}},
		},
	}
}

// serviceMonitor scrapes the Service's port http and labels every series
// with the run's id.
func serviceMonitor(env *conformance.Env, o Options, runID string) *unstructured.Unstructured {
	lbls := map[string]any{}
	for k, v := range workloadLabels() {
		lbls[k] = v
	}
	for k, v := range o.ScrapeLabels {
		lbls[k] = v
	}
	match := map[string]any{}
	for k, v := range workloadLabels() {
		match[k] = v
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": MonitoringGroupVersion,
		"kind":       "ServiceMonitor",
		"metadata":   map[string]any{"name": name, "labels": lbls},
		"spec": map[string]any{
			"selector":          map[string]any{"matchLabels": match},
			"namespaceSelector": map[string]any{"matchNames": []any{env.Namespace}},
			"endpoints": []any{map[string]any{
				"port":     portName,
				"path":     "/metrics",
				"interval": o.ScrapeInterval,
				"relabelings": []any{map[string]any{
					"action":      "replace",
					"targetLabel": RunLabel,
					"replacement": runID,
				}},
			}},
		},
	}}
}

// waitReady waits until the workload pod is Running and Ready.
func waitReady(t *conformance.T, env *conformance.Env) *corev1.Pod {
	ctx, cancel := context.WithTimeout(t.Context(), readyTimeout)
	defer cancel()
	p, err := conformance.WaitForPod(ctx, env.Client, env.Namespace, name, func(p *corev1.Pod) (bool, error) {
		if running, err := conformance.PodRunning(p); !running || err != nil {
			return false, err
		}
		c := conformance.PodCondition(p, corev1.PodReady)
		return c != nil && c.Status == corev1.ConditionTrue, nil
	})
	if err != nil {
		state := "not seen"
		if p != nil {
			state = fmt.Sprintf("phase %s on node %q", p.Status.Phase, p.Spec.NodeName)
		}
		t.Fatalf("pod %s did not become Ready within %s (%s): %v", name, readyTimeout, state, err)
	}
	t.Observe("pod "+name, map[string]any{"node": p.Spec.NodeName, "phase": string(p.Status.Phase), "podIP": p.Status.PodIP})
	return p
}

// waitProxy waits until the service proxy reaches the probe (GET
// /healthz, which no metric counts).
func waitProxy(t *conformance.T, env *conformance.Env, svc promtext.Service) {
	ctx, cancel := context.WithTimeout(t.Context(), proxyTimeout)
	defer cancel()
	var lastErr error
	err := conformance.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		_, lastErr = promtext.Get(ctx, env.Client, svc, "/healthz", nil)
		return lastErr == nil, nil
	})
	if err != nil {
		t.Fatalf("the service proxy did not reach the probe within %s: %v", proxyTimeout, lastErr)
	}
}

func put(ctx context.Context, env *conformance.Env, s promtext.Service, path, value string) (string, error) {
	raw, err := env.Client.CoreV1().RESTClient().Put().Namespace(s.Namespace).Resource("services").
		Name(s.Name+":"+s.Port).SubResource("proxy").Suffix(strings.TrimPrefix(path, "/")).Param("value", value).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("PUT %s?value=%s through the service proxy of %s: %w", path, value, s, err)
	}
	if want := probe.ResultPrefix + "LOAD=" + value; !strings.Contains(string(raw), want) {
		return string(raw), fmt.Errorf("the probe answered %q, not %q", strings.TrimSpace(string(raw)), want)
	}
	return string(raw), nil
}

// expectation is one query and the value Prometheus must report.
type expectation struct {
	what, query string
	want        float64
}

// collect waits until Prometheus reports the expected values and says
// which stage never happened when it does not, and when Prometheus loaded
// its configuration.
func collect(t *conformance.T, env *conformance.Env, o Options, prom promtext.Service, runID string, sc *scraping) {
	sel := fmt.Sprintf("{%s=%q}", RunLabel, runID)
	wants := []expectation{
		{"request counter", probe.MetricRequests + sel, float64(o.Requests)},
		{"latency histogram count", probe.MetricLatency + "_count" + sel, float64(o.Requests)},
		{"queue depth gauge", probe.MetricLoad + sel, queueDepth},
	}
	t.Step("Wait up to %s for Prometheus to report %s = %d, %s_count = %d and %s = %d for %s=%s",
		o.CollectionTimeout, probe.MetricRequests, o.Requests, probe.MetricLatency, o.Requests, probe.MetricLoad, queueDepth, RunLabel, runID)
	ctx, cancel := context.WithTimeout(t.Context(), o.CollectionTimeout)
	defer cancel()
	got := make([][]promtext.Sample, len(wants))
	var lastErr error
	var tooMany string
	err := conformance.PollUntilContextCancel(ctx, poll, true, func(ctx context.Context) (bool, error) {
		all := true
		for i, w := range wants {
			samples, err := query(ctx, env, prom, w.query)
			if err != nil {
				if !conformance.CutShort(ctx, err) {
					lastErr = err
				}
				return false, nil
			}
			got[i] = samples
			if len(samples) == 0 || slices.ContainsFunc(samples, func(s promtext.Sample) bool { return s.Value != w.want }) {
				all = false
			}
			// A counter never goes down: above N, more requests were
			// counted than sent, and waiting will not fix that.
			if i < 2 && slices.ContainsFunc(samples, func(s promtext.Sample) bool { return s.Value > w.want }) {
				tooMany = w.what
				return true, nil
			}
		}
		lastErr = nil
		return all, nil
	})
	rows := map[string]string{}
	for i, w := range wants {
		rows[w.query] = values(got[i])
	}
	t.Observe("Prometheus reports", rows)
	configLoadedAfter(t, env, prom, sc)
	switch {
	case tooMany != "":
		t.Fatalf("Prometheus counts more than the %d requests sent: %s", o.Requests, mismatches(wants, got))
	case err == nil:
		t.Logf("Prometheus reports exactly the %d requests sent, their %d latencies and the queue depth %d", o.Requests, o.Requests, queueDepth)
		t.Shown("Prometheus discovered an inference workload's metrics endpoint and reported exactly the %d requests sent, their latencies and its queue depth", o.Requests)
		return
	case lastErr != nil:
		t.Fatalf("the query API at %s stopped answering: %v", prom, lastErr)
	}
	if !slices.ContainsFunc(got, func(s []promtext.Sample) bool { return len(s) > 0 }) {
		t.Fatalf("the workload's series never appeared in Prometheus within %s (no %s with %s): %s",
			o.CollectionTimeout, probe.MetricRequests, sel, targetStatus(t, env, prom, runID, sc))
	}
	t.Fatalf("Prometheus does not report what the workload served within %s: %s", o.CollectionTimeout, mismatches(wants, got))
}

// configLoadedAfter says how long after the ServiceMonitor's creation
// Prometheus loaded the configuration that scrapes it: prometheus-operator
// writes the configuration to a Secret, which reaches Prometheus when the
// kubelet next syncs its pod (up to its syncFrequency, a minute by
// default), and most of the collection wait is usually that. With kaic's
// stack monitor it says that the configuration was loaded before the pod
// was created. Both times are the cluster's clocks. A Prometheus that does
// not say is only noted.
func configLoadedAfter(t *conformance.T, env *conformance.Env, prom promtext.Service, sc *scraping) {
	created, what := sc.created, "the ServiceMonitor"
	if sc.stack {
		what = "pod " + name
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
	defer cancel()
	raw, err := promtext.API(ctx, env.Client, prom, "/api/v1/status/runtimeinfo", nil)
	var info struct {
		LastConfigTime time.Time `json:"lastConfigTime"`
	}
	if err == nil {
		err = json.Unmarshal(raw, &info)
	}
	switch {
	case err != nil:
		t.Logf("when Prometheus loaded its configuration is unknown: %v", err)
	case info.LastConfigTime.Before(created):
		t.Logf("Prometheus last loaded its configuration at %s, before %s was created at %s", info.LastConfigTime.UTC().Format(time.RFC3339), what, created.UTC().Format(time.RFC3339))
	default:
		t.Observe("Prometheus configuration loaded after "+what+" was created", info.LastConfigTime.Sub(created).Round(time.Second).String())
	}
}

func values(samples []promtext.Sample) string {
	if len(samples) == 0 {
		return "(no series)"
	}
	var out []string
	for _, s := range samples {
		out = append(out, strconv.FormatFloat(s.Value, 'g', -1, 64))
	}
	return strings.Join(out, ", ")
}

func mismatches(wants []expectation, got [][]promtext.Sample) string {
	var out []string
	for i, w := range wants {
		out = append(out, fmt.Sprintf("%s %s reads %s, want %g", w.what, w.query, values(got[i]), w.want))
	}
	return strings.Join(out, "; ")
}

// queryData is the data of an instant query.
type queryData struct {
	ResultType string `json:"resultType"`
	Result     []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	} `json:"result"`
}

// query runs an instant query and returns the vector it answers.
func query(ctx context.Context, env *conformance.Env, prom promtext.Service, q string) ([]promtext.Sample, error) {
	raw, err := promtext.API(ctx, env.Client, prom, "/api/v1/query", url.Values{"query": {q}})
	if err != nil {
		return nil, err
	}
	var d queryData
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("query %s: %w", q, err)
	}
	if d.ResultType != "vector" {
		return nil, fmt.Errorf("query %s answered a %s, want a vector", q, d.ResultType)
	}
	var out []promtext.Sample
	for _, r := range d.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v: %w", q, r.Value[1], err)
		}
		out = append(out, promtext.Sample{Name: r.Metric["__name__"], Labels: r.Metric, Value: v})
	}
	return out, nil
}

// targetStatus says whether Prometheus discovered the workload's target
// and how its scrapes went, for a failure.
func targetStatus(t *conformance.T, env *conformance.Env, prom promtext.Service, runID string, sc *scraping) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
	defer cancel()
	active, err := promtext.ActiveTargets(ctx, env.Client, prom)
	if err != nil {
		return "the target status is unknown: " + err.Error()
	}
	var ours []promtext.Target
	for _, tg := range active {
		// The stack's monitor scrapes other checks' pods too: only this
		// namespace's count.
		mine := !sc.stack || tg.Labels["namespace"] == env.Namespace
		if tg.Labels[RunLabel] == runID || strings.HasPrefix(tg.ScrapePool, sc.pool) && mine {
			ours = append(ours, tg)
		}
	}
	if len(ours) == 0 {
		t.Observe("Prometheus targets of "+sc.monitor, "(none)")
		why := "its serviceMonitorSelector or serviceMonitorNamespaceSelector does not select the ServiceMonitor, whose labels the check's ScrapeLabels option sets, or prometheus-operator did not reconcile it"
		if sc.stack {
			why = "its podMonitorSelector or podMonitorNamespaceSelector does not select the PodMonitor, or prometheus-operator did not reconcile it, or its pod discovery did not see the pod"
		}
		return fmt.Sprintf("Prometheus has no target for %s among its %d active targets: it never discovered the workload (%s)", sc.monitor, len(active), why)
	}
	t.Observe("Prometheus targets of "+sc.monitor, ours)
	var states []string
	for _, tg := range ours {
		states = append(states, tg.String())
	}
	return "Prometheus discovered the workload but collected no series: " + strings.Join(states, "; ")
}
