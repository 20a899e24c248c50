package accelmetrics

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
	"github.com/kaic-dev/kaic/pkg/probe/fakegpu"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// What is real in these tests and what stands in:
//
// Real: the API server and its pod and service proxies, which forward to
// the exporters over the network; the scheduler and the DRA controllers;
// kaic-fake-gpu's driver (one per kwok node, in this process) publishing
// its devices in ResourceSlices and serving its metrics handler; the
// check's code.
//
// Stands in: the exporter's DaemonSet. Each driver's metrics handler
// listens on a non-loopback address of this host (the proxies refuse
// loopback), and a Pod object per exporter, bound to node exporterHost
// that no kubelet runs, carries that address as its pod IP; a
// selector-less Service with one EndpointSlice per exporter pod points at
// them, as the endpoint controller would. kwok pods run no containers, so
// the workload-driven subtest skips here; the e2e suite runs it on kind.
//
// For device-plugin mode the kwok nodes also advertise their devices as
// the extended resource fakegpu.ResourceName, as kaic-fake-gpu's device
// plugin makes the kubelet do; no kubelet runs here, so the node status
// stands in for it.

const (
	exporterNS   = "kaic-fake-gpu"
	exporterSvc  = "kaic-fake-gpu-metrics"
	exporterHost = "exporter-host"
	devices      = 2
)

var kwokNodes = []string{"kwok-gpu-0", "kwok-gpu-1"}

func TestMain(m *testing.M) {
	nodes := make([]testenv.Node, len(kwokNodes))
	for i, n := range kwokNodes {
		nodes[i] = testenv.Node{Name: n, Allocatable: corev1.ResourceList{fakegpu.ResourceName: *resource.NewQuantity(devices, resource.DecimalSI)}}
	}
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithNodes(nodes...))
}

// model is the example accelerator model reading kaic-fake-gpu's series.
func model() profile.Accelerator {
	acc := checktest.ExampleModel(fakegpu.DriverName, fakegpu.DriverName)
	acc.NodeTaintKey = ""
	acc.Metrics = &profile.AcceleratorMetrics{
		Endpoint:    exporterNS + "/" + exporterSvc + ":9400",
		DeviceLabel: "device",
		Utilization: fakegpu.MetricUtilization,
		MemoryUsed:  fakegpu.MetricMemoryUsed,
		MemoryTotal: fakegpu.MetricMemoryTotal,
		Temperature: fakegpu.MetricTemperature,
		Power:       fakegpu.MetricPower,
	}
	return acc
}

// fixture is what every test shares: the drivers of the kwok nodes and
// the exporter namespace and node.
type fixture struct {
	env     *testenv.Env
	drivers map[string]*fakegpu.Plugin
	hostIP  string
}

var (
	setupOnce sync.Once
	shared    *fixture
	setupErr  error
)

func setup(t *testing.T) *fixture {
	t.Helper()
	env := testenv.Shared(t)
	setupOnce.Do(func() { shared, setupErr = start(env) })
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	return shared
}

// start runs one kaic-fake-gpu driver per kwok node for the rest of the
// test binary and creates the exporter's namespace and node.
func start(env *testenv.Env) (*fixture, error) {
	ctx := context.Background()
	cs := env.Clientset()
	ip, err := testenv.ProxyableHostIP()
	if err != nil {
		return nil, err
	}
	f := &fixture{env: env, drivers: map[string]*fakegpu.Plugin{}, hostIP: ip}
	for _, node := range kwokNodes {
		plugin, err := os.MkdirTemp("", "accelmetrics-")
		if err != nil {
			return nil, err
		}
		state, err := os.MkdirTemp("", "accelmetrics-state-")
		if err != nil {
			return nil, err
		}
		p, err := fakegpu.Start(ctx, fakegpu.Options{
			Devices:   fakegpu.Spec{Node: node, Count: devices},
			Client:    cs,
			CDIDir:    state + "/cdi",
			StateDir:  state + "/load",
			PluginDir: plugin,
			Logger:    slog.New(slog.DiscardHandler),
			Plugin:    []kubeletplugin.Option{kubeletplugin.RegistrationService(false)},
		})
		if err != nil {
			return nil, fmt.Errorf("starting the driver of %s: %w", node, err)
		}
		f.drivers[node] = p
	}
	if _, err := cs.ResourceV1().DeviceClasses().Create(ctx, testenv.DeviceClassFor(fakegpu.DriverName, fakegpu.DriverName), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: exporterNS}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: exporterHost}, Spec: corev1.NodeSpec{Unschedulable: true}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	// Wait for every driver's slice, so that the check sees all devices.
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := cs.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{FieldSelector: "spec.driver=" + fakegpu.DriverName})
		return err == nil && len(list.Items) == len(kwokNodes), nil
	})
	if err != nil {
		return nil, fmt.Errorf("the drivers' ResourceSlices were not published: %w", err)
	}
	return f, nil
}

// exporter serves handler on the host address like one pod of the
// exporter DaemonSet on node: a Pod object carrying the address and an
// EndpointSlice of Service svc naming it.
func (f *fixture) exporter(t *testing.T, svc, pod, node string, handler http.Handler) {
	t.Helper()
	port := f.serve(t, handler)
	f.cleanupExporter(t, svc, pod)
	if err := f.publish(t.Context(), svc, pod, node, port); err != nil {
		t.Fatal(err)
	}
	if err := f.createService(t.Context(), svc, nil); err != nil {
		t.Fatal(err)
	}
}

// serve serves handler on a host address the API server's proxies reach
// until the test ends, and returns its port.
func (f *fixture) serve(t *testing.T, handler http.Handler) int32 {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(f.hostIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// publish makes the server on port one ready pod of the exporter on node:
// a Pod object carrying the host address and an EndpointSlice of Service
// svc naming it, as the endpoint controller would. It returns errors
// rather than failing a test, so that it can run while a check does;
// cleanupExporter removes what it and createService create.
func (f *fixture) publish(ctx context.Context, svc, pod, node string, port int32) error {
	cs := f.env.Clientset()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: exporterNS, Labels: map[string]string{"app": svc}},
		Spec: corev1.PodSpec{
			NodeName:    exporterHost,
			Containers:  []corev1.Container{{Name: "exporter", Image: "kaic-probe:test", Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: port}}}},
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		},
	}
	created, err := cs.CoreV1().Pods(exporterNS).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	created.Status = corev1.PodStatus{
		Phase:  corev1.PodRunning,
		PodIP:  f.hostIP,
		PodIPs: []corev1.PodIP{{IP: f.hostIP}},
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue},
		},
	}
	if _, err := cs.CoreV1().Pods(exporterNS).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return err
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: pod, Namespace: exporterNS, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{f.hostIP},
			Conditions: discoveryv1.EndpointConditions{Ready: new(true)},
			NodeName:   new(node),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: exporterNS, Name: pod, UID: created.UID},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: new("metrics"), Port: new(port), Protocol: new(corev1.ProtocolTCP)}},
	}
	_, err = cs.DiscoveryV1().EndpointSlices(exporterNS).Create(ctx, slice, metav1.CreateOptions{})
	return err
}

// createService creates the selector-less Service svc (port metrics
// 9400, labelled labels) unless it exists.
func (f *fixture) createService(ctx context.Context, svc string, labels map[string]string) error {
	_, err := f.env.Clientset().CoreV1().Services(exporterNS).Create(ctx, exporterService(svc, labels), metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// cleanupExporter removes, when the test ends, what publish and
// createService create.
func (f *fixture) cleanupExporter(t *testing.T, svc, pod string) {
	cs := f.env.Clientset()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = cs.DiscoveryV1().EndpointSlices(exporterNS).Delete(ctx, pod, metav1.DeleteOptions{})
		_ = cs.CoreV1().Pods(exporterNS).Delete(ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
		_ = cs.CoreV1().Services(exporterNS).Delete(ctx, svc, metav1.DeleteOptions{})
	})
}

// exporterService is the selector-less Service svc (port metrics 9400).
func exporterService(svc string, labels map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: svc, Namespace: exporterNS, Labels: labels},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "metrics", Port: 9400, TargetPort: intstr.FromString("metrics")}}},
	}
}

// ensureService creates the selector-less Service svc (port metrics
// 9400) unless it exists, and deletes it when the test ends.
func ensureService(t *testing.T, cs kubernetes.Interface, svc string) {
	t.Helper()
	_, err := cs.CoreV1().Services(exporterNS).Create(t.Context(), exporterService(svc, nil), metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = cs.CoreV1().Services(exporterNS).Delete(ctx, svc, metav1.DeleteOptions{})
	})
}

func runCheck(t *testing.T, check conformance.Check, acc profile.Accelerator) conformance.Result {
	t.Helper()
	return checktest.RunWith(t, testenv.Shared(t), check, checktest.Options{
		Version: "1.37", Category: "observability", Level: conformance.Must, Timeout: 3 * time.Minute, Accelerator: &acc,
	})
}

// expectFailure fails t unless the subtest failed saying every one of
// wants.
func expectFailure(t *testing.T, res conformance.Result, subtest string, wants ...string) {
	t.Helper()
	if res.Status != conformance.Failed {
		t.Errorf("check status %s, want failed", res.Status)
	}
	tr := checktest.Subtest(res, subtest)
	if tr == nil || tr.Status != conformance.Failed {
		t.Fatalf("subtest %s: %+v, want failed", subtest, tr)
	}
	out := strings.Join(tr.Output, "\n")
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("subtest %s does not say %q:\n%s", subtest, w, out)
		}
	}
}

// TestExporterCoversEveryDevice: both nodes' exporters serve their
// devices' series through the proxies, so the check passes; the
// workload-driven subtest skips on kwok.
func TestExporterCoversEveryDevice(t *testing.T) {
	f := setup(t)
	for i, node := range kwokNodes {
		f.exporter(t, exporterSvc, fmt.Sprintf("%s-%d", exporterSvc, i), node, f.drivers[node].Handler())
	}
	res := runCheck(t, Check(), model())
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"MetricsEndpointReachable":        conformance.Passed,
		"PerAcceleratorUtilizationMetric": conformance.Passed,
		"PerAcceleratorMemoryMetric":      conformance.Passed,
		"OptionalMetrics":                 conformance.Passed,
	})
	checktest.ExpectSkippedOnKwok(t, res, "UtilizationFollowsWorkload")
	if res.Status != conformance.Passed {
		t.Errorf("check status %s, want passed: %v", res.Status, res.Reason)
	}
	tr := checktest.Transcript(res)
	for _, node := range kwokNodes {
		for _, d := range (fakegpu.Spec{Node: node, Count: devices}).Devices() {
			if !strings.Contains(tr, d.UUID) {
				t.Errorf("the transcript does not show device %s/%s (uuid %s)", node, d.Name, d.UUID)
			}
		}
	}
	checktest.ExpectCleanedUp(t, f.env, res)
}

// TestExporterNeverAppears: no Service behind the endpoint, nor any the
// selectors find, fails once the configured bound has passed, naming what
// it waited for and the profile fields to set.
func TestExporterNeverAppears(t *testing.T) {
	setup(t)
	acc := model()
	acc.Metrics.ServiceSelectors = []string{"app.kubernetes.io/name=absent-exporter"}
	const bound = 4 * time.Second
	start := time.Now()
	res := runCheck(t, New(Options{Endpoint: exporterNS + "/absent-exporter:9400", ExporterTimeout: bound}), acc)
	took := time.Since(start)
	expectFailure(t, res, "MetricsEndpointReachable",
		"waited 4s (spec.checks.acceleratorMetrics.exporterTimeout is 4s) for the metrics exporter's Service kaic-fake-gpu/absent-exporter (spec.accelerator.metrics.endpoint)",
		"or a Service labelled app.kubernetes.io/name=absent-exporter (spec.accelerator.metrics.serviceSelectors) in any namespace; none appeared",
		"set spec.accelerator.metrics.endpoint to namespace/service:port")
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{"PerAcceleratorUtilizationMetric": ""})
	if took < bound || took > bound+time.Minute {
		t.Errorf("the check took %s, want the bound %s and not much more", took, bound)
	}
}

// TestExporterAppearsLate: the exporter's Service and its ready endpoint
// appear only after the check has started (as the GPU operator deploys
// the DCGM exporter after it counts as ready); the check waits for them
// and passes.
func TestExporterAppearsLate(t *testing.T) {
	f := setup(t)
	const svc = "late-exporter"
	ports := make([]int32, len(kwokNodes))
	for i, node := range kwokNodes {
		ports[i] = f.serve(t, f.drivers[node].Handler())
		f.cleanupExporter(t, svc, fmt.Sprintf("%s-%d", svc, i))
	}
	published := make(chan error, 1)
	go func() {
		// Once the check has started (its namespace exists) and had time
		// to look: the exporter pods, then their Service.
		err := waitForCheckNamespace(t.Context(), f.env.Clientset())
		time.Sleep(2 * time.Second)
		for i, node := range kwokNodes {
			if err == nil {
				err = f.publish(t.Context(), svc, fmt.Sprintf("%s-%d", svc, i), node, ports[i])
			}
		}
		if err == nil {
			err = f.createService(t.Context(), svc, nil)
		}
		published <- err
	}()
	res := runCheck(t, New(Options{Endpoint: exporterNS + "/" + svc + ":9400", ExporterTimeout: 2 * time.Minute}), model())
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"MetricsEndpointReachable":        conformance.Passed,
		"PerAcceleratorUtilizationMetric": conformance.Passed,
		"PerAcceleratorMemoryMetric":      conformance.Passed,
	})
	if res.Status != conformance.Passed {
		t.Errorf("check status %s, want passed: %v", res.Status, res.Reason)
	}
	checktest.ExpectTranscript(t, res, "Wait up to 2m0s (spec.checks.acceleratorMetrics.exporterTimeout) for the metrics exporter's Service kaic-fake-gpu/late-exporter",
		"Service kaic-fake-gpu/late-exporter appeared after")
}

// waitForCheckNamespace returns once a namespace of a running check
// exists.
func waitForCheckNamespace(ctx context.Context, cs kubernetes.Interface) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, ns := range list.Items {
			if strings.Contains(ns.Name, "accelerator-metrics") && ns.DeletionTimestamp == nil {
				return true, nil
			}
		}
		return false, nil
	})
}

// TestExporterFoundByLabels: the configured Service does not exist, but
// one the model's selectors find in another namespace serves the
// exporter; the check uses it and says so.
func TestExporterFoundByLabels(t *testing.T) {
	f := setup(t)
	const svc = "labelled-exporter"
	for i, node := range kwokNodes {
		pod := fmt.Sprintf("%s-%d", svc, i)
		port := f.serve(t, f.drivers[node].Handler())
		f.cleanupExporter(t, svc, pod)
		if err := f.publish(t.Context(), svc, pod, node, port); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.createService(t.Context(), svc, map[string]string{"app.kubernetes.io/name": "test-exporter"}); err != nil {
		t.Fatal(err)
	}
	acc := model()
	acc.Metrics.ServiceSelectors = []string{"app=other-exporter", "app.kubernetes.io/name=test-exporter"}
	res := runCheck(t, New(Options{Endpoint: "gpu-operator/nvidia-dcgm-exporter:9400", ExporterTimeout: time.Minute}), acc)
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"MetricsEndpointReachable":        conformance.Passed,
		"PerAcceleratorUtilizationMetric": conformance.Passed,
	})
	checktest.ExpectTranscript(t, res,
		"Service gpu-operator/nvidia-dcgm-exporter (spec.accelerator.metrics.endpoint) does not exist; using Service kaic-fake-gpu/labelled-exporter, labelled app.kubernetes.io/name=test-exporter, port 9400",
		"Set spec.accelerator.metrics.endpoint to kaic-fake-gpu/labelled-exporter:9400")
}

// TestDeviceWithoutSeries: only the first node's exporter is behind the
// Service, so the second node's devices have no series.
func TestDeviceWithoutSeries(t *testing.T) {
	f := setup(t)
	const svc = "partial-exporter"
	f.exporter(t, svc, svc+"-0", kwokNodes[0], f.drivers[kwokNodes[0]].Handler())
	res := runCheck(t, New(Options{Endpoint: exporterNS + "/" + svc + ":metrics"}), model())
	missing := (fakegpu.Spec{Node: kwokNodes[1], Count: devices}).Devices()
	expectFailure(t, res, "PerAcceleratorUtilizationMetric", "2 of 4 devices published by gpu.example.com on Ready nodes have no "+fakegpu.MetricUtilization,
		kwokNodes[1]+"/gpu-0 (uuid "+missing[0].UUID+")", kwokNodes[1]+"/gpu-1")
	expectFailure(t, res, "PerAcceleratorMemoryMetric", "have no "+fakegpu.MetricMemoryUsed)
}

// TestSeriesWithoutDeviceLabel: an exporter whose series carry no device
// label fails, whatever else they carry.
func TestSeriesWithoutDeviceLabel(t *testing.T) {
	f := setup(t)
	const svc = "unlabelled-exporter"
	for i, node := range kwokNodes {
		var b strings.Builder
		for slot := range devices {
			fmt.Fprintf(&b, "%s{node=%q,slot=\"%d\"} 0\n%s{node=%q,slot=\"%d\"} 0\n", fakegpu.MetricUtilization, node, slot, fakegpu.MetricMemoryUsed, node, slot)
		}
		body := b.String()
		f.exporter(t, svc, fmt.Sprintf("%s-%d", svc, i), node, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(body))
		}))
	}
	res := runCheck(t, New(Options{Endpoint: exporterNS + "/" + svc + ":9400"}), model())
	expectFailure(t, res, "PerAcceleratorUtilizationMetric", "lack device label device", "have no "+fakegpu.MetricUtilization)
	expectFailure(t, res, "PerAcceleratorMemoryMetric", "lack device label device")
}

// TestNoExporterPod: a Service without ready endpoints fails once the
// bound has passed, saying no exporter pod runs.
func TestNoExporterPod(t *testing.T) {
	f := setup(t)
	const svc = "idle-exporter"
	ensureService(t, f.env.Clientset(), svc)
	res := runCheck(t, New(Options{Endpoint: exporterNS + "/" + svc + ":9400", ExporterTimeout: 3 * time.Second}), model())
	expectFailure(t, res, "MetricsEndpointReachable", "waited 3s (spec.checks.acceleratorMetrics.exporterTimeout is 3s) for a ready endpoint of Service kaic-fake-gpu/idle-exporter:9400",
		"has no ready endpoint", "no exporter pod is running")
}

// TestMemoryInUseAboveCapacity: an exporter whose devices report more
// memory in use than their capacity fails the memory subtest, naming the
// device; utilization is unaffected.
func TestMemoryInUseAboveCapacity(t *testing.T) {
	f := setup(t)
	const svc = "overfull-exporter"
	for i, node := range kwokNodes {
		var b strings.Builder
		for _, d := range (fakegpu.Spec{Node: node, Count: devices}).Devices() {
			for metric, v := range map[string]string{fakegpu.MetricUtilization: "0", fakegpu.MetricMemoryUsed: "9e+10", fakegpu.MetricMemoryTotal: "8e+10"} {
				fmt.Fprintf(&b, "%s{device=%q,uuid=%q,node=%q} %s\n", metric, d.Name, d.UUID, node, v)
			}
		}
		body := b.String()
		f.exporter(t, svc, fmt.Sprintf("%s-%d", svc, i), node, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(body))
		}))
	}
	res := runCheck(t, New(Options{Endpoint: exporterNS + "/" + svc + ":9400"}), model())
	expectFailure(t, res, "PerAcceleratorMemoryMetric", "device "+kwokNodes[0]+"/gpu-0 reports 9e+10 memory in use ("+fakegpu.MetricMemoryUsed+"), more than its capacity 8e+10 ("+fakegpu.MetricMemoryTotal+")")
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{"PerAcceleratorUtilizationMetric": conformance.Passed})
}

// devicePluginModel is model() allocated by kaic-fake-gpu's device plugin.
func devicePluginModel() profile.Accelerator {
	acc := model()
	acc.DRADriver, acc.DeviceClass = "", ""
	acc.Allocation, acc.ResourceName = profile.AllocationDevicePlugin, fakegpu.ResourceName
	return acc
}

// In device-plugin mode the nodes' allocatable is the inventory: both
// nodes' exporters serve a series for each of their two units, so the
// check passes without reading a ResourceSlice.
func TestDevicePluginExporterCoversEveryNode(t *testing.T) {
	f := setup(t)
	for i, node := range kwokNodes {
		f.exporter(t, exporterSvc, fmt.Sprintf("%s-%d", exporterSvc, i), node, f.drivers[node].Handler())
	}
	res := runCheck(t, Check(), devicePluginModel())
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"MetricsEndpointReachable":        conformance.Passed,
		"PerAcceleratorUtilizationMetric": conformance.Passed,
		"PerAcceleratorMemoryMetric":      conformance.Passed,
		"OptionalMetrics":                 conformance.Passed,
	})
	checktest.ExpectSkippedOnKwok(t, res, "UtilizationFollowsWorkload")
	if res.Status != conformance.Passed {
		t.Errorf("check status %s, want passed: %v", res.Status, res.Reason)
	}
	checktest.ExpectTranscript(t, res,
		"allocatable example.com/gpu of Ready nodes",
		"kwok-gpu-0: 2",
		"every node advertising example.com/gpu has a "+fakegpu.MetricUtilization+" series for each of its units",
		"every node advertising example.com/gpu has a "+fakegpu.MetricMemoryUsed+" series for each of its units",
		"Run pod metrics-load whose container requests one example.com/gpu",
		"requested: 1 example.com/gpu",
	)
	if tr := checktest.Transcript(res); strings.Contains(tr, "ResourceSlices") || strings.Contains(tr, "ResourceClaim") {
		t.Errorf("device-plugin mode went through DRA:\n%s", tr)
	}
	checktest.ExpectCleanedUp(t, f.env, res)
}

// A node that advertises the resource but whose exporter is not behind
// the Service has no series: a failure naming the node.
func TestDevicePluginNodeWithoutSeries(t *testing.T) {
	f := setup(t)
	const svc = "partial-exporter"
	f.exporter(t, svc, svc+"-0", kwokNodes[0], f.drivers[kwokNodes[0]].Handler())
	res := runCheck(t, New(Options{Endpoint: exporterNS + "/" + svc + ":metrics"}), devicePluginModel())
	expectFailure(t, res, "PerAcceleratorUtilizationMetric", "1 of 2 nodes advertising example.com/gpu have no "+fakegpu.MetricUtilization+" series: kwok-gpu-1 (2 example.com/gpu)")
	expectFailure(t, res, "PerAcceleratorMemoryMetric", "have no "+fakegpu.MetricMemoryUsed)
}

// Series for fewer devices than a node advertises units could be a
// missing series or time-sliced units: not verified, never a pass.
func TestDevicePluginFewerSeriesThanUnits(t *testing.T) {
	f := setup(t)
	const svc = "one-device-exporter"
	for i, node := range kwokNodes {
		body := fmt.Sprintf("%s{device=\"gpu-0\",node=%q} 0\n%s{device=\"gpu-0\",node=%q} 0\n", fakegpu.MetricUtilization, node, fakegpu.MetricMemoryUsed, node)
		f.exporter(t, svc, fmt.Sprintf("%s-%d", svc, i), node, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(body))
		}))
	}
	res := runCheck(t, New(Options{Endpoint: exporterNS + "/" + svc + ":9400"}), devicePluginModel())
	if res.Status != conformance.Skipped || !strings.Contains(res.Reason, "not verified: per-accelerator series: kwok-gpu-0 advertises 2 example.com/gpu, "+fakegpu.MetricUtilization+" has series for 1 device(s) there (gpu-0)") {
		t.Fatalf("status %s, reason %q; want not verified", res.Status, res.Reason)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"PerAcceleratorUtilizationMetric": conformance.Skipped,
		"PerAcceleratorMemoryMetric":      conformance.Skipped,
	})
	if len(res.Shown) > 0 {
		t.Errorf("a not verified check claims it showed %q", res.Shown)
	}
}
