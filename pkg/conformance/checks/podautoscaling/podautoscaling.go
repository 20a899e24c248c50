// Package podautoscaling verifies the pod_autoscaling requirement: a
// HorizontalPodAutoscaler (autoscaling/v2) scales a workload whose pods
// hold accelerators on a custom metric served by the cluster's metrics
// adapter. The check runs a Deployment of probe pods that each hold one
// device through a ResourceClaimTemplate (in device-plugin mode, by
// requesting one of the model's extended resource), raises the probe's
// load gauge in the pod (PUT /load through the API server's pod proxy),
// waits until the custom metrics API reports it, then sets an HPA on that
// metric and expects one more replica whose pod gets a device of its own;
// it then lowers the gauge in every pod and expects the Deployment back at
// one replica.
//
// The waits are those of the HPA controller, not of the check: the HPA is
// created only once the metric it reads is high, so its first sync (at
// once on creation) scales up; scaling down is disabled until the gauge is
// low everywhere and then enabled with a stabilization window of 0, a
// change to the HPA's spec, which a 1.37+ controller (HPAGeneration)
// reconciles at once rather than at its next sync period.
//
// Where kaic's stack installed its PodMonitor for probe pods
// (kaic-probe-monitor), the pods carry its labels and Prometheus scrapes
// them once its pod discovery sees them. Otherwise the check creates a
// PodMonitor of its own, and before the first metric Prometheus must read
// its scrape configuration, which the kubelet hands the Prometheus pod at
// its next periodic sync, up to about 90 s later, and
// prometheus-config-reloader reloads it when it sees the file change (with
// prometheus-operator before v0.91.0, only at its re-read every 3 minutes
// after the first change: see servicemetrics). The check does not touch
// the Prometheus pod.
package podautoscaling

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kaic-dev/kaic/pkg/conditions"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/probemonitor"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/promtext"
	"github.com/kaic-dev/kaic/pkg/probe"
)

// ID is the requirement this package verifies.
const ID = "pod_autoscaling"

// MetricsGroup is the API group metrics adapters serve custom metrics in.
const MetricsGroup = "custom.metrics.k8s.io"

// Names of the objects the check creates.
const (
	name      = "autoscaled-probe"
	template  = "autoscaled-accelerator"
	podClaim  = "accelerator"
	probePort = 8080
	instance  = "app.kubernetes.io/instance"
)

// The load levels: the HPA targets an average of target per pod; raising
// every pod to high asks for two replicas, lowering them to low for one.
const (
	target = 50
	high   = 100
	low    = 0
)

// Behaviour the check sets on its HPA: scale up and, once enabled, down
// at once instead of after the default five-minute stabilization window,
// one pod at a time.
const (
	scaleUpWindow   = 0
	scaleDownWindow = 0
	policyPeriod    = 15
)

// Defaults of Options.
const (
	// DefaultScaleTimeout bounds each of the waits for the HPA to scale
	// up and down, which include its sync period, the stabilization
	// window and a new pod's start.
	DefaultScaleTimeout = 4 * time.Minute
	// DefaultMetricTimeout bounds the wait for a metrics pipeline to
	// pick up a new pod: the PodMonitor's configuration reaching
	// Prometheus (the kubelet's next sync of its Secret volume, up to
	// about 90 s; then prometheus-config-reloader, which reloads when it
	// sees the file change, or with prometheus-operator before v0.91.0
	// at its re-read every 3 minutes), then the scrape interval and the
	// adapter's relist.
	DefaultMetricTimeout = 5 * time.Minute
	// loadTimeout bounds setting the gauge in one pod.
	loadTimeout = 30 * time.Second
	poll        = 2 * time.Second
)

// Options configure the check.
type Options struct {
	// Metric is the custom metric the adapter serves for pods from the
	// probe's gauge (default probe.MetricLoad).
	Metric string
	// ScaleTimeout bounds each wait for scaling (default
	// DefaultScaleTimeout).
	ScaleTimeout time.Duration
	// MetricTimeout bounds the wait for the adapter to report the metric
	// of the first pod (default DefaultMetricTimeout).
	MetricTimeout time.Duration
}

// Check returns the pod_autoscaling check with default options.
func Check() conformance.Check { return New(Options{}) }

// New returns the pod_autoscaling check configured by o.
func New(o Options) conformance.Check {
	if o.Metric == "" {
		o.Metric = probe.MetricLoad
	}
	if o.ScaleTimeout <= 0 {
		o.ScaleTimeout = DefaultScaleTimeout
	}
	if o.MetricTimeout <= 0 {
		o.MetricTimeout = DefaultMetricTimeout
	}
	return conformance.WithNeeds(conformance.NewCheck(ID, func(t *conformance.T, env *conformance.Env) { run(t, env, o) }), devicepod.Needs)
}

func run(t *conformance.T, env *conformance.Env, o Options) {
	inventory := devicepod.Preflight(t, env)
	if n := countDevices(inventory); n < 2 {
		// Too few devices is the cluster's size, not a failure of the
		// platform: the requirement is reported not verified, with why.
		t.Skipf("%d device(s) of %s on Ready nodes: scaling to two pods that each hold one needs at least 2, so autoscaling cannot be shown on this cluster", n, devicepod.Source(env))
	}
	version := metricsAPI(t, env)
	sc := scrape(t, env)

	t.Step("Run Deployment %s of 1 probe pod serving gauge %s, each pod's container %s", name, probe.MetricLoad, devicepod.Asking(env))
	devicepod.ApplyTemplate(t, env, template)
	t.Apply(deployment(env, sc.podLabels))
	t.Cleanup(func(ctx context.Context) { release(ctx, t, env) })
	pods := waitPods(t, env, 1, o.ScaleTimeout)
	first := pods[0]
	firstDev := devicepod.Holds(t, env, &first, podClaim)
	waitMetric(t, env, version, o, sc, pods, -1)

	created := false
	defer func() {
		if created {
			recordHPA(t, env)
		}
	}()
	up := t.Run("ScaleUp", func(t *conformance.T) {
		t.Step("Raise %s to %d in pod %s and wait until the custom metrics API reports it", probe.MetricLoad, high, first.Name)
		setLoad(t, env, pods, high)
		waitMetric(t, env, version, o, sc, pods, high)
		t.Step("Create HorizontalPodAutoscaler %s: Pods metric %s, target average %d, 1 to 2 replicas, scale-up stabilization %ds, scale-down disabled until the load is lowered", name, o.Metric, target, scaleUpWindow)
		t.Apply(hpa(o.Metric, false))
		created = true
		pods := waitScaled(t, env, version, o, 2, "raising")
		t.Step("Check that the new pod holds a device of its own")
		for i := range pods {
			if pods[i].UID == first.UID {
				continue
			}
			dev := devicepod.Holds(t, env, &pods[i], podClaim)
			switch {
			case devicepod.DevicePlugin(env):
				// The API records a count, not which device.
				t.Logf("the new pod %s holds one %s on %s; which device, the device plugin does not say through the API", pods[i].Name, env.Accelerator.ResourceName, pods[i].Spec.NodeName)
			case dev == firstDev:
				t.Errorf("the new pod %s holds device %s, which pod %s already holds", pods[i].Name, dev, first.Name)
			}
		}
		if !t.Failed() {
			t.Shown("a HorizontalPodAutoscaler on the pods' custom metric %s scaled an accelerator Deployment to 2 replicas, the new pod with a device of its own", probe.MetricLoad)
		}
	})
	if !up {
		t.Logf("the HPA did not scale up, so scaling down was not tested")
		return
	}
	t.Run("ScaleDown", func(t *conformance.T) {
		pods := listPods(t, env)
		t.Step("Lower %s to %d in every pod and wait until the custom metrics API reports it", probe.MetricLoad, low)
		setLoad(t, env, pods, low)
		waitMetric(t, env, version, o, sc, pods, low)
		t.Step("Enable scaling down on HPA %s (scaleDown.selectPolicy Max, stabilization %ds): it should scale %s back to 1 replica; "+
			"a controller with HPAGeneration (Kubernetes 1.37+) reconciles the spec change at once, an older one at its next sync", name, scaleDownWindow, name)
		t.Apply(hpa(o.Metric, true))
		waitScaled(t, env, version, o, 1, "lowering")
		if !t.Failed() {
			t.Shown("and back to 1 when the metric fell")
		}
	})
}

// metricsAPI checks that the custom metrics API is served and returns its
// preferred version; without it no adapter can feed the HPA.
func metricsAPI(t *conformance.T, env *conformance.Env) string {
	t.Step("Check that the custom metrics API (%s) is served by a metrics adapter", MetricsGroup)
	groups, err := env.Client.Discovery().ServerGroups()
	if err != nil && groups == nil {
		t.Fatalf("listing the API groups: %v", err)
	}
	var version string
	for _, g := range groups.Groups {
		if g.Name == MetricsGroup {
			version = g.PreferredVersion.Version
		}
	}
	if version == "" {
		registered := apiServices(t, env)
		if len(registered) == 0 {
			t.Fatalf("the custom metrics API %s is not served and no APIService registers it: no metrics adapter is installed (such as prometheus-adapter or KEDA), so no HPA can scale on a custom metric", MetricsGroup)
		}
		t.Fatalf("the custom metrics API %s is registered but not served: the metrics adapter is installed but not available; APIServices: %s", MetricsGroup, strings.Join(registered, "; "))
	}
	if _, err := env.Client.Discovery().ServerResourcesForGroupVersion(MetricsGroup + "/" + version); err != nil {
		t.Fatalf("the custom metrics API %s/%s is registered but does not answer: the metrics adapter is not working: %v; APIServices: %s", MetricsGroup, version, err, strings.Join(apiServices(t, env), "; "))
	}
	t.Observe("custom metrics API", MetricsGroup+"/"+version)
	return version
}

// apiServices describes the APIServices of the custom metrics API with
// their availability, for a failure.
func apiServices(t *conformance.T, env *conformance.Env) []string {
	gvr := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	list, err := env.Dynamic.Resource(gvr).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Logf("listing APIServices: %v", err)
		return nil
	}
	var found []string
	for _, as := range list.Items {
		if !strings.HasSuffix(as.GetName(), "."+MetricsGroup) {
			continue
		}
		state := "no status"
		if c, ok := conditions.Get(&as, "Available"); ok {
			state = c.String()
		}
		found = append(found, as.GetName()+": "+state)
	}
	return found
}

// The scrape configuration API of prometheus-operator.
const (
	monitoringGroupVersion = "monitoring.coreos.com/v1"
	podMonitors            = "podmonitors"
)

// scraping is how the probe pods are scraped: the labels their template
// carries beyond labelsOf, and the PodMonitor and scrape pool to report on
// when the metric does not come.
type scraping struct {
	podLabels map[string]string
	monitor   string
	pool      string
}

// scrape has the cluster's Prometheus scrape the probe pods, when
// prometheus-operator's PodMonitor is served, so that a Prometheus-backed
// metrics adapter (prometheus-adapter, kaic-metrics-adapter) finds their
// gauge labelled with namespace and pod. Where kaic's stack installed its
// PodMonitor for probe pods (kaic-probe-monitor), the pods carry its labels
// and are scraped as soon as Prometheus discovers them; otherwise the check
// creates a PodMonitor of its own, which reaches Prometheus with the
// kubelet's next sync of its pod. Adapters that read the pods another way
// need no scraping, so the API's absence is only noted.
func scrape(t *conformance.T, env *conformance.Env) scraping {
	served, err := conformance.ServedResources(t, env, monitoringGroupVersion)
	if err != nil || !slices.Contains(served, podMonitors) {
		t.Logf("%s PodMonitor is not served: the metrics adapter must read the probe pods' gauge without Prometheus scraping them", monitoringGroupVersion)
		return scraping{}
	}
	m, why, err := probemonitor.Find(t.Context(), env.Dynamic)
	if err != nil {
		why = err.Error()
	}
	if m != nil {
		interval := m.Interval
		if interval == "" {
			interval = "Prometheus' global interval"
		}
		t.Step("Have the monitoring system scrape the probe pods through PodMonitor %s, which kaic's stack installed for probe pods of every namespace (every %s, port %s): "+
			"the pods carry its labels %s, so no new scrape configuration has to reach Prometheus first", m, interval, probemonitor.Port, labels.Set(m.PodLabels))
		return scraping{podLabels: m.PodLabels, monitor: m.String(), pool: m.ScrapePool()}
	}
	t.Logf("no PodMonitor of kaic's stack to scrape the probe pods: %s", why)
	t.Step("Have the monitoring system scrape the probe pods every 5s (PodMonitor %s, port http)", name)
	t.Apply(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": monitoringGroupVersion,
		"kind":       "PodMonitor",
		"metadata":   map[string]any{"name": name, "labels": toAny(labelsOf())},
		"spec": map[string]any{
			"selector":            map[string]any{"matchLabels": toAny(labelsOf())},
			"podMetricsEndpoints": []any{map[string]any{"port": "http", "path": "/metrics", "interval": "5s"}},
		},
	}})
	return scraping{monitor: env.Namespace + "/" + name, pool: "podMonitor/" + env.Namespace + "/" + name + "/"}
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func labelsOf() map[string]string {
	return map[string]string{"app.kubernetes.io/name": "kaic-probe", instance: name}
}

// podLabels are the pods' labels: labelsOf and extra.
func podLabels(extra map[string]string) map[string]string {
	out := labelsOf()
	maps.Copy(out, extra)
	return out
}

// deployment runs the probe's HTTP mode; every pod holds one device, is
// Ready once the probe answers and carries extra labels beyond those the
// Deployment selects.
func deployment(env *conformance.Env, extra map[string]string) *appsv1.Deployment {
	acc := env.Accelerator
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	pod := corev1.PodSpec{
		ResourceClaims:                devicepod.TemplateClaims(env, podClaim, template),
		TerminationGracePeriodSeconds: new(int64),
		Containers: []corev1.Container{{
			Name:  "probe",
			Image: env.ProbeImage,
			Args:  probe.Args("serve", "--addr=:"+strconv.Itoa(probePort)),
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: probePort}},
			Env: []corev1.EnvVar{
				fieldEnv("POD_NAME", "metadata.name"),
				fieldEnv("POD_NAMESPACE", "metadata.namespace"),
				fieldEnv("NODE_NAME", "spec.nodeName"),
			},
			ReadinessProbe: &corev1.Probe{
				ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(probePort)}},
				PeriodSeconds: 2,
			},
			Resources: devicepod.Resources(env, devicepod.Holder(env, "probe", podClaim)),
		}},
	}
	if acc.NodeTaintKey != "" {
		pod.Tolerations = []corev1.Toleration{{Key: acc.NodeTaintKey, Operator: corev1.TolerationOpExists}}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labelsOf()},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: labelsOf()},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: podLabels(extra)}, Spec: pod},
		},
	}
}

// hpa scales the Deployment between 1 and 2 replicas on the per-pod
// average of metric; it scales down only when down is set.
func hpa(metric string, down bool) *autoscalingv2.HorizontalPodAutoscaler {
	policies := []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 1, PeriodSeconds: policyPeriod}}
	downPolicy := autoscalingv2.DisabledPolicySelect
	if down {
		downPolicy = autoscalingv2.MaxChangePolicySelect
	}
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name},
			MinReplicas:    new(int32(1)),
			MaxReplicas:    2,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.PodsMetricSourceType,
				Pods: &autoscalingv2.PodsMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: metric},
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(target, resource.DecimalSI)},
				},
			}},
			Behavior: &autoscalingv2.HorizontalPodAutoscalerBehavior{
				ScaleUp:   &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: new(int32(scaleUpWindow)), Policies: policies},
				ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: new(int32(scaleDownWindow)), SelectPolicy: &downPolicy, Policies: policies},
			},
		},
	}
}

// listPods returns the Deployment's pods that are not being deleted,
// sorted by name.
func listPods(t *conformance.T, env *conformance.Env) []corev1.Pod {
	pods, err := tryListPods(t.Context(), env)
	if err != nil {
		t.Fatalf("listing the pods of Deployment %s: %v", name, err)
	}
	return pods
}

func tryListPods(ctx context.Context, env *conformance.Env) ([]corev1.Pod, error) {
	list, err := env.Client.CoreV1().Pods(env.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labelsOf()).String()})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func ready(p *corev1.Pod) bool {
	c := conformance.PodCondition(p, corev1.PodReady)
	return p.Spec.NodeName != "" && p.Status.Phase == corev1.PodRunning && c != nil && c.Status == corev1.ConditionTrue
}

// waitPods waits until the Deployment has exactly n pods, all Ready, and
// returns them.
func waitPods(t *conformance.T, env *conformance.Env, n int, timeout time.Duration) []corev1.Pod {
	var pods []corev1.Pod
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	err := conformance.PollUntilContextCancel(ctx, poll, true, func(ctx context.Context) (bool, error) {
		var err error
		if pods, err = tryListPods(ctx, env); err != nil {
			return false, nil
		}
		return len(pods) == n && !slices.ContainsFunc(pods, func(p corev1.Pod) bool { return !ready(&p) }), nil
	})
	if err != nil {
		for _, p := range pods {
			devicepod.Describe(t, env, p.Name)
		}
		t.Fatalf("Deployment %s did not get %d Ready pod(s) within %s: %s", name, n, timeout, podStates(pods))
	}
	for _, p := range pods {
		t.Observe("pod "+p.Name, devicepod.Summary(&p))
	}
	return pods
}

func podStates(pods []corev1.Pod) string {
	if len(pods) == 0 {
		return "no pods"
	}
	var s []string
	for _, p := range pods {
		s = append(s, fmt.Sprintf("%s %s on %q ready=%v", p.Name, p.Status.Phase, p.Spec.NodeName, ready(&p)))
	}
	return strings.Join(s, "; ")
}

// setLoad sets the probe's gauge in every pod through the API server's
// pod proxy, as an operator would reach a pod, and checks the probe's
// answer.
func setLoad(t *conformance.T, env *conformance.Env, pods []corev1.Pod, value float64) {
	v := strconv.FormatFloat(value, 'g', -1, 64)
	for _, p := range pods {
		answer, err := putLoad(t.Context(), env, p.Name, v)
		if err != nil {
			t.Fatalf("setting %s=%s in pod %s through the pod proxy (PUT /load): %v", probe.MetricLoad, v, p.Name, err)
		}
		t.Observe(fmt.Sprintf("PUT /load?value=%s on pod %s", v, p.Name), strings.TrimSpace(answer))
	}
}

// putLoad sends PUT /load?value=v to the probe in pod, retrying while the
// pod proxy cannot reach it yet, and checks that the probe confirmed it.
func putLoad(ctx context.Context, env *conformance.Env, pod, v string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	var answer string
	var lastErr error
	err := conformance.PollUntilContextCancel(ctx, poll, true, func(ctx context.Context) (bool, error) {
		raw, err := env.Client.CoreV1().RESTClient().Put().
			Namespace(env.Namespace).Resource("pods").Name(pod+":"+strconv.Itoa(probePort)).
			SubResource("proxy").Suffix("load").Param("value", v).DoRaw(ctx)
		if err != nil {
			lastErr = keep(lastErr, err)
			return false, nil
		}
		answer = string(raw)
		return true, nil
	})
	if err != nil {
		return "", fmt.Errorf("no answer within %s: %v", loadTimeout, lastErr)
	}
	if want := probe.ResultPrefix + "LOAD=" + v; !strings.Contains(answer, want) {
		return answer, fmt.Errorf("the probe answered %q, not %q", strings.TrimSpace(answer), want)
	}
	return answer, nil
}

func metricPath(env *conformance.Env, version, metric string) string {
	return fmt.Sprintf("/apis/%s/%s/namespaces/%s/pods/*/%s", MetricsGroup, version, env.Namespace, metric)
}

// getMetric asks the custom metrics API for the metric of the
// Deployment's pods, as the HPA does.
func getMetric(ctx context.Context, env *conformance.Env, version, metric string) ([]byte, error) {
	return env.Client.CoreV1().RESTClient().Get().AbsPath(metricPath(env, version, metric)).
		Param("labelSelector", labels.SelectorFromSet(labelsOf()).String()).DoRaw(ctx)
}

// metricList is what the check reads of a MetricValueList.
type metricList struct {
	Items []metricItem `json:"items"`
}

type metricItem struct {
	DescribedObject struct {
		Name string `json:"name"`
	} `json:"describedObject"`
	Value string `json:"value"`
}

// waitMetric waits until the custom metrics API reports the metric for
// every pod, with the value want unless want is negative, and records the
// answer. An adapter without a rule for the metric, or a pipeline that
// never scrapes the probe, fails here rather than as an HPA that does not
// scale; so does one that does not follow the gauge.
func waitMetric(t *conformance.T, env *conformance.Env, version string, o Options, sc scraping, pods []corev1.Pod, want float64) {
	what := "report " + o.Metric
	if want >= 0 {
		what = fmt.Sprintf("report %s=%g", o.Metric, want)
		t.Logf("waiting for the custom metrics API to %s for pod(s) %s", what, strings.Join(podNames(pods), ", "))
	} else {
		t.Step("Wait for the custom metrics API to %s for pod(s) %s", what, strings.Join(podNames(pods), ", "))
	}
	ctx, cancel := context.WithTimeout(t.Context(), o.MetricTimeout)
	defer cancel()
	var last []byte
	var lastErr error
	err := conformance.PollUntilContextCancel(ctx, poll, true, func(ctx context.Context) (bool, error) {
		raw, err := getMetric(ctx, env, version, o.Metric)
		if err != nil {
			lastErr = keep(lastErr, err)
			return false, nil
		}
		last, lastErr = raw, nil
		var list metricList
		if err := json.Unmarshal(raw, &list); err != nil {
			lastErr = fmt.Errorf("decoding the answer: %w", err)
			return false, nil
		}
		for _, p := range pods {
			i := slices.IndexFunc(list.Items, func(i metricItem) bool { return i.DescribedObject.Name == p.Name })
			if i < 0 {
				return false, nil
			}
			if want < 0 {
				continue
			}
			q, err := resource.ParseQuantity(list.Items[i].Value)
			if err != nil || q.AsApproximateFloat64() != want {
				return false, nil
			}
		}
		return true, nil
	})
	path := metricPath(env, version, o.Metric)
	if err != nil {
		why := "its answer names not every pod: " + strings.TrimSpace(string(last))
		switch {
		case lastErr != nil:
			why = lastErr.Error()
		case want >= 0:
			why = "its last answer: " + strings.TrimSpace(string(last))
		}
		t.Fatalf("the metrics adapter does not %s for pod(s) %s within %s (GET %s): %s; the adapter needs a rule exposing the probe's gauge for pods, and a pipeline that follows it%s",
			what, strings.Join(podNames(pods), ", "), o.MetricTimeout, path, why, scrapeState(t, env, sc))
	}
	t.Observe("GET "+path, string(last))
}

// scrapeState says, for a failure, what each Prometheus that
// prometheus-operator runs does with the PodMonitor's scrape pool: without
// a target there, it never loaded the PodMonitor or never discovered the
// pods; with one, whether its scrapes succeed. It is empty when no such
// Prometheus runs or no PodMonitor scrapes the pods.
func scrapeState(t *conformance.T, env *conformance.Env, sc scraping) string {
	if sc.pool == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
	defer cancel()
	proms, err := promtext.OperatedServices(ctx, env.Client)
	if err != nil || len(proms) == 0 {
		return ""
	}
	var states []string
	for _, prom := range proms {
		states = append(states, promtext.PoolTargets(ctx, env.Client, prom, sc.pool))
	}
	t.Observe("Prometheus scrape pools of PodMonitor "+sc.monitor, states)
	return "; " + strings.Join(states, "; ")
}

// sawMetric records what the custom metrics API reports for the pods,
// the value the HPA reads.
func sawMetric(t *conformance.T, env *conformance.Env, version, metric string) {
	path := metricPath(env, version, metric)
	raw, err := getMetric(t.Context(), env, version, metric)
	if err != nil {
		t.Logf("GET %s: %v", path, err)
		return
	}
	t.Observe("GET "+path, string(raw))
}

// waitScaled waits until the HPA has scaled the Deployment to want
// replicas, all of them Ready, and returns the pods. On timeout it fails
// with the HPA's status.
func waitScaled(t *conformance.T, env *conformance.Env, version string, o Options, want int32, doing string) []corev1.Pod {
	ctx, cancel := context.WithTimeout(t.Context(), o.ScaleTimeout)
	defer cancel()
	var pods []corev1.Pod
	var replicas int32 = -1
	err := conformance.PollUntilContextCancel(ctx, poll, true, func(ctx context.Context) (bool, error) {
		d, err := env.Client.AppsV1().Deployments(env.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil || d.Spec.Replicas == nil {
			return false, nil
		}
		replicas = *d.Spec.Replicas
		if replicas != want {
			return false, nil
		}
		if pods, err = tryListPods(ctx, env); err != nil {
			return false, nil
		}
		return int32(len(pods)) == want && !slices.ContainsFunc(pods, func(p corev1.Pod) bool { return !ready(&p) }), nil
	})
	if err != nil {
		sawMetric(t, env, version, o.Metric)
		status := hpaStatus(t, env)
		if replicas != want {
			t.Fatalf("replicas stayed at %d within %s after %s %s in every pod (target average %d, want %d replicas); the HPA reports: %s",
				replicas, o.ScaleTimeout, doing, probe.MetricLoad, target, want, status)
		}
		for _, p := range pods {
			devicepod.Describe(t, env, p.Name)
		}
		t.Fatalf("the HPA set %d replicas but the Deployment's pods did not all become Ready within %s: %s; the HPA reports: %s",
			want, o.ScaleTimeout, podStates(pods), status)
	}
	t.Observe(fmt.Sprintf("Deployment %s replicas", name), map[string]any{"replicas": want, "pods": podNames(pods), "hpa": hpaStatus(t, env)})
	return pods
}

func podNames(pods []corev1.Pod) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = p.Name
	}
	return out
}

// hpaStatus summarizes the HPA's status on one line.
func hpaStatus(t *conformance.T, env *conformance.Env) string {
	h, err := env.Client.AutoscalingV2().HorizontalPodAutoscalers(env.Namespace).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("(getting HPA %s: %v)", name, err)
	}
	s := h.Status
	parts := []string{fmt.Sprintf("currentReplicas=%d desiredReplicas=%d", s.CurrentReplicas, s.DesiredReplicas)}
	for _, m := range s.CurrentMetrics {
		if m.Pods != nil && m.Pods.Current.AverageValue != nil {
			parts = append(parts, fmt.Sprintf("current %s average=%s", m.Pods.Metric.Name, m.Pods.Current.AverageValue))
		}
	}
	if len(s.CurrentMetrics) == 0 {
		parts = append(parts, "no current metric")
	}
	for _, c := range s.Conditions {
		parts = append(parts, fmt.Sprintf("%s=%s (%s: %s)", c.Type, c.Status, c.Reason, c.Message))
	}
	return strings.Join(parts, "; ")
}

// recordHPA records the HPA's status and events for the transcript.
func recordHPA(t *conformance.T, env *conformance.Env) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 10*time.Second)
	defer cancel()
	h, err := env.Client.AutoscalingV2().HorizontalPodAutoscalers(env.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Logf("getting HPA %s: %v", name, err)
		return
	}
	t.Observe("status of HorizontalPodAutoscaler "+name, h.Status)
	events, err := env.Client.CoreV1().Events(env.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.AndSelectors(
			fields.OneTermEqualSelector("involvedObject.kind", "HorizontalPodAutoscaler"),
			fields.OneTermEqualSelector("involvedObject.name", name),
		).String(),
	})
	if err != nil {
		t.Logf("listing the events of HPA %s: %v", name, err)
		return
	}
	lines := []string{"(none)"}
	if len(events.Items) > 0 {
		lines = lines[:0]
	}
	for _, e := range events.Items {
		lines = append(lines, fmt.Sprintf("%s %s (x%d): %s", e.Type, e.Reason, max(e.Count, 1), strings.TrimSpace(e.Message)))
	}
	t.Observe("events of HorizontalPodAutoscaler "+name, strings.Join(lines, "\n"))
}

// release deletes the HPA and the Deployment and waits until the pods
// are gone and their devices free.
func release(ctx context.Context, t *conformance.T, env *conformance.Env) {
	err := env.Client.AutoscalingV2().HorizontalPodAutoscalers(env.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Logf("cleanup: deleting HPA %s: %v", name, err)
	}
	pods, _ := tryListPods(ctx, env)
	fg := metav1.DeletePropagationForeground
	if err := env.Client.AppsV1().Deployments(env.Namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil && !apierrors.IsNotFound(err) {
		t.Logf("cleanup: deleting Deployment %s: %v", name, err)
	}
	if err := devicepod.Release(ctx, env, podNames(pods)...); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// keep returns the error worth reporting after a poll: the server's
// answer rather than the client giving up at the deadline.
func keep(last, err error) error {
	if _, ok := err.(apierrors.APIStatus); ok || last == nil {
		return err
	}
	if _, ok := last.(apierrors.APIStatus); ok {
		return last
	}
	return err
}

func countDevices(inv map[string][]devicepod.Device) int {
	n := 0
	for _, d := range inv {
		n += len(d)
	}
	return n
}
