package inference

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
	"github.com/kaic-dev/kaic/pkg/probe"
)

// pickerQueueMetric is the endpoint picker's gauge of the queue depth it
// last read from each model server of its pool (label model_server_pod).
const pickerQueueMetric = "inference_pool_per_pod_queue_size"

func (o Options) ingressClass() string {
	if o.IngressGatewayClass != "" {
		return o.IngressGatewayClass
	}
	return o.GatewayClass
}

func modelServerLabels(name string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "kaic-probe", instanceLabel: name, poolLabel: poolName}
}

// startModelServer runs one probe pod that passes for a vLLM model server
// of the pool, reporting load.
func startModelServer(t *conformance.T, env *conformance.Env, name string, load probe.ModelLoad) {
	startBackend(t, env, backend{Name: name, Labels: modelServerLabels(name), NoService: true, Args: []string{
		"--waiting=" + strconv.Itoa(load.Waiting), "--running=" + strconv.Itoa(load.Running),
		"--kv-cache=" + strconv.FormatFloat(load.KVCache, 'g', -1, 64),
	}})
}

// startEndpointPicker runs the pool's endpoint picker the way the
// Inference Extension's inferencepool chart does: its gRPC ext_proc port
// (TLS, self-signed), its gRPC health port for the probes, its metrics
// (without authentication, so the check can read what it sees), and a
// Role to read the pool, its pods and the alpha objectives.
func startEndpointPicker(t *conformance.T, env *conformance.Env, image string) {
	lbls := map[string]string{"app.kubernetes.io/name": "kaic-endpoint-picker", instanceLabel: endpointPicker}
	t.Apply(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: endpointPicker, Labels: lbls}})
	t.Apply(&rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: endpointPicker, Labels: lbls},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{InferenceGroup}, Resources: []string{"inferencepools"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"inference.networking.x-k8s.io"}, Resources: []string{"inferenceobjectives", "inferencemodelrewrites"}, Verbs: []string{"get", "list", "watch"}},
		},
	})
	t.Apply(&rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: endpointPicker, Labels: lbls},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: endpointPicker},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: endpointPicker, Namespace: env.Namespace}},
	})
	one := int32(1)
	grpcProbe := func(period int32) *corev1.Probe {
		svc := "inference-extension"
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: endpointPickerHealth, Service: &svc}}, PeriodSeconds: period}
	}
	liveness := grpcProbe(10)
	liveness.InitialDelaySeconds = 5
	t.Apply(&appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: endpointPicker, Labels: lbls},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbls},
				Spec: corev1.PodSpec{
					ServiceAccountName:            endpointPicker,
					TerminationGracePeriodSeconds: new(int64),
					Containers: []corev1.Container{{
						Name:  "epp",
						Image: image,
						Args: []string{
							"--pool-name=" + poolName, "--pool-namespace=" + env.Namespace, "--pool-group=" + InferenceGroup,
							"--grpc-port=" + strconv.Itoa(endpointPickerPort), "--grpc-health-port=" + strconv.Itoa(endpointPickerHealth),
							"--metrics-port=" + strconv.Itoa(endpointPickerMetrics), "--metrics-endpoint-auth=false", "--tracing=false",
						},
						Env: []corev1.EnvVar{
							{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
							{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
						},
						Ports: []corev1.ContainerPort{
							{Name: "grpc", ContainerPort: endpointPickerPort},
							{Name: "grpc-health", ContainerPort: endpointPickerHealth},
							{Name: "metrics", ContainerPort: endpointPickerMetrics},
						},
						ReadinessProbe: grpcProbe(2),
						LivenessProbe:  liveness,
					}},
				},
			},
		},
	})
	t.Apply(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: endpointPicker, Labels: lbls},
		Spec: corev1.ServiceSpec{
			Selector: lbls,
			Ports: []corev1.ServicePort{
				{Name: endpointPickerPortName, Port: endpointPickerPort, TargetPort: intstr.FromInt32(endpointPickerPort), AppProtocol: new("http2")},
				{Name: "http-metrics", Port: endpointPickerMetrics, TargetPort: intstr.FromInt32(endpointPickerMetrics)},
			},
		},
	})
}

// onePod returns the running pod of a one-replica workload selected by
// instanceLabel=name.
func onePod(t *conformance.T, env *conformance.Env, name string) *corev1.Pod {
	pods, err := env.Client.CoreV1().Pods(env.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: labels.SelectorFromSet(map[string]string{instanceLabel: name}).String()})
	if err != nil {
		t.Fatalf("listing the pods of %s: %v", name, err)
	}
	for i := range pods.Items {
		if p := &pods.Items[i]; p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			return p
		}
	}
	t.Fatalf("%s has no running pod", name)
	return nil
}

func modelServerPod(t *conformance.T, env *conformance.Env, name string) *corev1.Pod {
	return onePod(t, env, name)
}

// skipWithoutContainers skips t when pod's node runs no containers
// (kwok): nothing it serves can be reached.
func skipWithoutContainers(t *conformance.T, env *conformance.Env, pod *corev1.Pod) {
	node, err := env.Client.CoreV1().Nodes().Get(t.Context(), pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting node %s of pod %s: %v", pod.Spec.NodeName, pod.Name, err)
	}
	if why, none := conformance.NodeRunsNoContainers(node); none {
		t.Skipf("model server %s runs on %s: %s, so it serves no load and no requests", pod.Name, node.Name, why)
	}
}

// waitDeployment waits until the Deployment has all its replicas
// available.
func waitDeployment(t *conformance.T, env *conformance.Env, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var state string
	err := conformance.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		d, err := env.Client.AppsV1().Deployments(env.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			state = err.Error()
			return false, nil
		}
		state = fmt.Sprintf("%d of %d replicas available", d.Status.AvailableReplicas, ptrOr(d.Spec.Replicas, 1))
		return d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas == ptrOr(d.Spec.Replicas, 1), nil
	})
	if err != nil {
		return fmt.Errorf("%s", state)
	}
	return nil
}

// describePicker records the picker pods' state and events.
func describePicker(t *conformance.T, env *conformance.Env) {
	pods, err := env.Client.CoreV1().Pods(env.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: instanceLabel + "=" + endpointPicker})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		devicepod.Describe(t, env, p.Name)
	}
}

// setModelLoad tells a model server pod, through the API server's pod
// proxy, which load to report.
func setModelLoad(t *conformance.T, env *conformance.Env, pod string, load probe.ModelLoad) {
	req := env.Client.CoreV1().RESTClient().Put().Namespace(env.Namespace).Resource("pods").
		Name(pod + ":" + strconv.Itoa(backendPort)).SubResource("proxy").Suffix("model-load")
	for _, kv := range strings.Split(load.Query(), "&") {
		k, v, _ := strings.Cut(kv, "=")
		req = req.Param(k, v)
	}
	if _, err := req.DoRaw(t.Context()); err != nil {
		t.Fatalf("setting the load of model server %s through the pod proxy: %v", pod, err)
	}
}

// pickerQueues reads the queue depth the picker last read from each model
// server, from its metrics through the API server's pod proxy.
func pickerQueues(ctx context.Context, env *conformance.Env, pod string) (map[string]int, error) {
	raw, err := env.Client.CoreV1().RESTClient().Get().Namespace(env.Namespace).Resource("pods").
		Name(pod + ":" + strconv.Itoa(endpointPickerMetrics)).SubResource("proxy").Suffix("metrics").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	return parsePickerQueues(raw)
}

func parsePickerQueues(raw []byte) (map[string]int, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, m := range families[pickerQueueMetric].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "model_server_pod" {
				// The deepest queue among a pod's ranks is the pod's.
				pod := rankSuffix.ReplaceAllString(l.GetValue(), "")
				out[pod] = max(out[pod], int(m.GetGauge().GetValue()))
			}
		}
	}
	return out, nil
}

// rankSuffix ends the name the picker gives each endpoint of a pod: since
// v1.5 one endpoint per data-parallel rank, "<pod>-rank-<n>".
var rankSuffix = regexp.MustCompile(`-rank-[0-9]+$`)

// waitPickerSees waits until the picker reports the queue depths want
// (pod → depth) and records what it saw.
func waitPickerSees(t *conformance.T, env *conformance.Env, picker string, want map[string]int, timeout time.Duration) bool {
	t.Step("Wait until endpoint picker %s reports the queue depths %v in %s", picker, want, pickerQueueMetric)
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	var last map[string]int
	var lastErr error
	err := conformance.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		seen, err := pickerQueues(ctx, env, picker)
		if lastErr = err; err != nil {
			return false, nil
		}
		last = seen
		for pod, depth := range want {
			if got, ok := last[pod]; !ok || got != depth {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Observe("queue depths endpoint picker "+picker+" reports", fmt.Sprintf("%v (last error: %v)", last, lastErr))
		return false
	}
	t.Observe("queue depths endpoint picker "+picker+" reports", last)
	return true
}

// waitPickerServed waits until the picker's Service has pod, the picker
// pod the check reads, as a ready endpoint on its gRPC port. A gateway
// reaches the picker through that Service (its ClusterIP, or its
// EndpointSlices directly): until the endpoint is ready a gateway that
// fails closed answers every request with an error, which would be read
// as the gateway not routing, when the picker was only not yet reachable.
func waitPickerServed(t *conformance.T, env *conformance.Env, pod *corev1.Pod, timeout time.Duration) {
	t.Step("Wait until Service %s has picker pod %s (%s) as a ready endpoint on port %s", endpointPicker, pod.Name, pod.Status.PodIP, endpointPickerPortName)
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	start := time.Now()
	state := "no EndpointSlice"
	err := conformance.UntilServiceSlices(ctx, env.Client, env.Namespace, endpointPicker, func(seen map[string]*discoveryv1.EndpointSlice) bool {
		served, why := servesPicker(seen, pod)
		state = why
		return served
	})
	if err != nil {
		msg := fmt.Sprintf("Service %s has no ready endpoint for picker pod %s on port %s within %s (%s)", endpointPicker, pod.Name, endpointPickerPortName, timeout, state)
		if !conformance.CutShort(ctx, err) {
			msg += fmt.Sprintf(" (%v)", err)
		}
		describePicker(t, env)
		t.Unverifiedf("%s: no gateway can reach the endpoint picker, so the routing it decides cannot be shown", msg)
	}
	t.Logf("Service %s serves picker pod %s on port %s after %s", endpointPicker, pod.Name, endpointPickerPortName, time.Since(start).Round(100*time.Millisecond))
}

// servesPicker tells whether the slices, all of the picker's Service,
// have pod as a ready endpoint on the port named endpointPickerPortName,
// and otherwise what they hold.
func servesPicker(eps map[string]*discoveryv1.EndpointSlice, pod *corev1.Pod) (bool, string) {
	var held []string
	for _, s := range eps {
		port := false
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == endpointPickerPortName && p.Port != nil && *p.Port == endpointPickerPort {
				port = true
			}
		}
		for _, e := range s.Endpoints {
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			mine := e.TargetRef != nil && e.TargetRef.Kind == "Pod" && e.TargetRef.Name == pod.Name && e.TargetRef.UID == pod.UID
			if port && ready && mine {
				return true, ""
			}
			who := strings.Join(e.Addresses, ",")
			if e.TargetRef != nil {
				who = e.TargetRef.Name + " " + who
			}
			held = append(held, fmt.Sprintf("%s ready=%t on port %s=%t", who, ready, endpointPickerPortName, port))
		}
	}
	if len(held) == 0 {
		return false, fmt.Sprintf("%d EndpointSlices, no endpoint", len(eps))
	}
	sort.Strings(held)
	return false, fmt.Sprintf("%d EndpointSlices: %s", len(eps), strings.Join(held, "; "))
}
