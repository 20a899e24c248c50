package podautoscaling

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	basecmd "sigs.k8s.io/custom-metrics-apiserver/pkg/cmd"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
	"github.com/kaic-dev/kaic/pkg/probe"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// Two kwok nodes with one fake device each. The HPA controller keeps its
// default 15 s sync period, as on a cluster: the check must not depend on
// a cluster tuned for it.
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithGPUNodes(2, 1))
}

// What is real in these tests and what stands in:
//
// Real: the API server, its aggregation layer and discovery; the HPA
// controller in kube-controller-manager reading the custom metrics API
// through the aggregator; the Deployment and ReplicaSet controllers; the
// scheduler allocating devices; a custom metrics adapter built on
// sigs.k8s.io/custom-metrics-apiserver, running in this process on
// loopback and registered with APIServices; the probe's HTTP handler and
// its gauge; the check's code, which sends PUT /load through client-go
// exactly as against a cluster.
//
// Stands in: kwok pods run no containers, so the last hop of the pod
// proxy (API server to pod) cannot happen. The check's client transport is
// wrapped so that requests for .../pods/<pod>:<port>/proxy/load are served
// by a probe.Server kept for that pod in this process instead of being
// forwarded; every other request goes to the API server. The adapter reads
// each pod's gauge from that probe's /metrics, as prometheus-adapter
// would through Prometheus.

// fleet holds the probe server of each pod the check reached.
type fleet struct {
	mu      sync.Mutex
	servers map[types.NamespacedName]*probe.Server
	puts    []string // "<pod> <value>" of every PUT served
}

func (f *fleet) server(pod types.NamespacedName) *probe.Server {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.servers[pod]
	if !ok {
		s = probe.NewServer("", pod.Name, pod.Namespace, "")
		f.servers[pod] = s
	}
	return s
}

// load scrapes the pod's probe the way a metrics pipeline would.
func (f *fleet) load(pod types.NamespacedName) float64 {
	rec := httptest.NewRecorder()
	f.server(pod).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), probe.MetricLoad+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return 0
}

var loadPath = regexp.MustCompile(`^/api/v1/namespaces/([^/]+)/pods/([^/:]+):(\d+)/proxy(/load)$`)

// podProxy serves the pod proxy's last hop for /load from the fleet; it
// answers only for pods the API server has, Running, as the proxy would.
type podProxy struct {
	next   http.RoundTripper
	fleet  *fleet
	client kubernetes.Interface
}

func (p *podProxy) RoundTrip(r *http.Request) (*http.Response, error) {
	m := loadPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		return p.next.RoundTrip(r)
	}
	pod := types.NamespacedName{Namespace: m[1], Name: m[2]}
	rec := httptest.NewRecorder()
	got, err := p.client.CoreV1().Pods(pod.Namespace).Get(r.Context(), pod.Name, metav1.GetOptions{})
	switch {
	case err != nil:
		http.Error(rec, err.Error(), http.StatusNotFound)
	case got.Status.Phase != corev1.PodRunning || m[3] != strconv.Itoa(probePort):
		http.Error(rec, "pod not running or port not served", http.StatusServiceUnavailable)
	default:
		inner := r.Clone(r.Context())
		inner.URL.Path = m[4]
		inner.RequestURI = ""
		p.fleet.server(pod).Handler().ServeHTTP(rec, inner)
		if rec.Code == http.StatusOK {
			p.fleet.mu.Lock()
			p.fleet.puts = append(p.fleet.puts, pod.Name+" "+r.URL.Query().Get("value"))
			p.fleet.mu.Unlock()
		}
	}
	res := rec.Result()
	res.Request = r
	return res, nil
}

// metricsProvider serves the probes' gauges as a Pods custom metric; when
// frozen it reports 0 whatever the probes hold, when hidden it has no
// such metric (an adapter without a rule for it).
type metricsProvider struct {
	fleet          *fleet
	client         kubernetes.Interface
	frozen, hidden atomic.Bool
}

func (p *metricsProvider) value(pod types.NamespacedName) resource.Quantity {
	v := 0.0
	if !p.frozen.Load() {
		v = p.fleet.load(pod)
	}
	return *resource.NewMilliQuantity(int64(v*1000), resource.DecimalSI)
}

func (p *metricsProvider) metricValue(pod *corev1.Pod, metric string) custom_metrics.MetricValue {
	return custom_metrics.MetricValue{
		DescribedObject: custom_metrics.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Metric:          custom_metrics.MetricIdentifier{Name: metric},
		Timestamp:       metav1.Now(),
		Value:           p.value(types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}),
	}
}

func (p *metricsProvider) GetMetricByName(ctx context.Context, name types.NamespacedName, info provider.CustomMetricInfo, _ labels.Selector) (*custom_metrics.MetricValue, error) {
	if info.GroupResource.Resource != "pods" || info.Metric != probe.MetricLoad || p.hidden.Load() {
		return nil, provider.NewMetricNotFoundForError(info.GroupResource, info.Metric, name.Name)
	}
	pod, err := p.client.CoreV1().Pods(name.Namespace).Get(ctx, name.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	v := p.metricValue(pod, info.Metric)
	return &v, nil
}

func (p *metricsProvider) GetMetricBySelector(ctx context.Context, namespace string, selector labels.Selector, info provider.CustomMetricInfo, _ labels.Selector) (*custom_metrics.MetricValueList, error) {
	if info.GroupResource.Resource != "pods" || info.Metric != probe.MetricLoad || p.hidden.Load() {
		return nil, provider.NewMetricNotFoundError(info.GroupResource, info.Metric)
	}
	pods, err := p.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return nil, err
	}
	out := &custom_metrics.MetricValueList{}
	for i := range pods.Items {
		out.Items = append(out.Items, p.metricValue(&pods.Items[i], info.Metric))
	}
	return out, nil
}

func (p *metricsProvider) ListAllMetrics() []provider.CustomMetricInfo {
	return []provider.CustomMetricInfo{{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: probe.MetricLoad}}
}

var (
	adapterOnce sync.Once
	adapter     struct {
		port     int
		fleet    *fleet
		provider *metricsProvider
		err      error
	}
)

// startAdapter starts the custom metrics adapter once for the package, on
// loopback; it serves until the test binary exits.
func startAdapter(t *testing.T, env *testenv.Env) {
	t.Helper()
	adapterOnce.Do(func() {
		client := env.Clientset()
		f := &fleet{servers: map[types.NamespacedName]*probe.Server{}}
		prov := &metricsProvider{fleet: f, client: client}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			adapter.err = err
			return
		}
		b := &basecmd.AdapterBase{Name: "kaic-test-metrics-adapter", FlagSet: pflag.NewFlagSet("adapter", pflag.ContinueOnError)}
		b.InstallFlags()
		o := b.CustomMetricsAdapterServerOptions
		// The aggregator reaches the adapter without client certificates
		// here, so it authenticates and authorizes nobody.
		o.Authentication, o.Authorization = nil, nil
		o.EnableMetrics = false
		o.SecureServing.Listener = l
		o.SecureServing.BindPort = l.Addr().(*net.TCPAddr).Port
		// A self-signed serving certificate kept in memory; the APIService
		// skips verifying it.
		o.SecureServing.ServerCert.CertDirectory = ""
		b.RemoteKubeConfigFile = env.KubeconfigPath
		b.WithCustomMetrics(prov)
		if _, err := b.Server(); err != nil {
			adapter.err = err
			return
		}
		go func() {
			if err := b.Run(context.Background()); err != nil {
				println("metrics adapter stopped:", err.Error())
			}
		}()
		adapter.port, adapter.fleet, adapter.provider = o.SecureServing.BindPort, f, prov
	})
	if adapter.err != nil {
		t.Fatalf("starting the metrics adapter: %v", adapter.err)
	}
}

var apiServicesGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// registerAdapter makes the API server serve custom.metrics.k8s.io from
// the adapter (an ExternalName Service leads the aggregator to loopback)
// until the test ends.
func registerAdapter(t *testing.T, env *testenv.Env) {
	t.Helper()
	startAdapter(t, env)
	registerAPIServices(t, env, "adapter", adapter.port)
	err := wait.PollUntilContextTimeout(t.Context(), time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, v := range metricsVersions {
			as, err := env.Dynamic().Resource(apiServicesGVR).Get(ctx, v+"."+MetricsGroup, metav1.GetOptions{})
			if err != nil || availability(as) != "True" {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the metrics adapter's APIServices did not become Available: %v", err)
	}
}

var metricsVersions = []string{"v1beta1", "v1beta2"}

// registerAPIServices registers custom.metrics.k8s.io with the aggregator
// for a server on loopback port, behind Service service, until the test
// ends.
func registerAPIServices(t *testing.T, env *testenv.Env, service string, port int) {
	t.Helper()
	ctx := t.Context()
	const ns = "kaic-metrics-adapter"
	cs := env.Clientset()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: service},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost",
			Ports: []corev1.ServicePort{{Port: int32(port)}}},
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	apis := env.Dynamic().Resource(apiServicesGVR)
	for i, v := range metricsVersions {
		as := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
			"metadata": map[string]any{"name": v + "." + MetricsGroup},
			"spec": map[string]any{
				"group": MetricsGroup, "version": v, "groupPriorityMinimum": int64(100), "versionPriority": int64(100 + i),
				"insecureSkipTLSVerify": true,
				"service":               map[string]any{"namespace": ns, "name": service, "port": int64(port)},
			},
		}}
		if _, err := apis.Create(ctx, as, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { unregisterAdapter(t, env, metricsVersions) })
}

// availability is the status of the APIService's Available condition,
// or "" before the aggregator has set it.
func availability(as *unstructured.Unstructured) string {
	conds, _, _ := unstructured.NestedSlice(as.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Available" {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}

func unregisterAdapter(t *testing.T, env *testenv.Env, versions []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, v := range versions {
		if err := env.Dynamic().Resource(apiServicesGVR).Delete(ctx, v+"."+MetricsGroup, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting APIService %s.%s: %v", v, MetricsGroup, err)
		}
	}
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(context.Context) (bool, error) {
		groups, err := env.Clientset().Discovery().ServerGroups()
		if err != nil {
			return false, nil
		}
		for _, g := range groups.Groups {
			if g.Name == MetricsGroup {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Errorf("%s still served after its APIServices were deleted", MetricsGroup)
	}
}

// runCheck runs the check with its client's pod proxy hop for /load
// served by the adapter's fleet (see above).
func runCheck(t *testing.T, env *testenv.Env, o Options) conformance.Result {
	t.Helper()
	checktest.EnsureDeviceClass(t, env, "gpu.example.com", testenv.DefaultDRADriver)
	return runModel(t, env, o, checktest.ExampleModel(testenv.DefaultDRADriver, "gpu.example.com"))
}

// runModel is runCheck with the accelerator model acc.
func runModel(t *testing.T, env *testenv.Env, o Options, acc profile.Accelerator) conformance.Result {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	f := adapter.fleet
	if f == nil {
		f = &fleet{servers: map[types.NamespacedName]*probe.Server{}}
	}
	client := env.Clientset()
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &podProxy{next: rt, fleet: f, client: client} })
	// checktest.Run reads only the Config of the environment it is given.
	return checktest.Run(t, &testenv.Env{Config: cfg}, New(o), conformance.Must, acc)
}

func TestPodAutoscalingPasses(t *testing.T) {
	env := testenv.Shared(t)
	registerAdapter(t, env)
	adapter.provider.frozen.Store(false)
	res := runCheck(t, env, Options{})
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	if res.TestName != "TestPodAutoscaling" {
		t.Errorf("test name %q", res.TestName)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{"ScaleUp": conformance.Passed, "ScaleDown": conformance.Passed})
	all := checktest.Transcript(res)
	for _, want := range []string{
		"custom metrics API: custom.metrics.k8s.io/v1beta2",
		`"name":"kaic_probe_load"`,
		"PUT /load?value=100 on pod autoscaled-probe-",
		"RESULT: LOAD=100",
		"PUT /load?value=0 on pod autoscaled-probe-",
		"allocation of ResourceClaim",
		"stabilizationWindowSeconds: 0",
		"selectPolicy: Disabled",
		"selectPolicy: Max",
		"status of HorizontalPodAutoscaler autoscaled-probe",
		"events of HorizontalPodAutoscaler autoscaled-probe",
		"SuccessfulRescale",
		"New size: 2",
		"New size: 1",
		"deleted namespace " + res.Namespace,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	f := adapter.fleet
	f.mu.Lock()
	t.Logf("PUTs served: %q", f.puts)
	f.mu.Unlock()
	checktest.ExpectCleanedUp(t, env, res)
}

// TestPodAutoscalingUsesStackMonitor: where kaic's stack installed its
// PodMonitor for probe pods (as its chart renders it), the Deployment's
// pods carry its labels and the check creates no PodMonitor of its own.
// The adapter here reads the probes directly, so only what the check asks
// of the cluster is shown, not a Prometheus scraping the pods (the e2e
// suite on kind runs the real one).
func TestPodAutoscalingUsesStackMonitor(t *testing.T) {
	env := testenv.Shared(t)
	registerAdapter(t, env)
	adapter.provider.frozen.Store(false)
	checktest.InstallStackProbeMonitor(t, env)
	res := runCheck(t, env, Options{})
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	all := checktest.Transcript(res)
	for _, want := range []string{
		"through PodMonitor monitoring/kaic-probe, which kaic's stack installed for probe pods of every namespace (every 2s, port http)",
		"kaic.dev/scrape: probe",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("transcript lacks %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "PodMonitor "+res.Namespace) {
		t.Errorf("the check created a PodMonitor of its own beside the stack's:\n%s", all)
	}
	checktest.ExpectCleanedUp(t, env, res)
}

func TestPodAutoscalingFailsWithoutAdapter(t *testing.T) {
	env := testenv.Shared(t)
	res := runCheck(t, env, Options{})
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "custom metrics API custom.metrics.k8s.io is not served and no APIService registers it: no metrics adapter is installed") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	if tr := checktest.Subtest(res, "ScaleUp"); tr != nil {
		t.Errorf("the check went on without a metrics adapter: %+v", tr)
	}
	checktest.ExpectCleanedUp(t, env, res)
}

// The adapter reports 0 whatever the probes hold: the check sees that
// the metric does not follow the gauge and says so, without creating an
// HPA that could only keep one replica.
func TestPodAutoscalingFailsWhenMetricNeverMoves(t *testing.T) {
	env := testenv.Shared(t)
	registerAdapter(t, env)
	adapter.provider.frozen.Store(true)
	t.Cleanup(func() { adapter.provider.frozen.Store(false) })
	res := runCheck(t, env, Options{MetricTimeout: 15 * time.Second})
	if res.Status != conformance.Failed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	for _, want := range []string{"the metrics adapter does not report kaic_probe_load=100 for pod(s) autoscaled-probe-", "within 15s", `its last answer: {`, `"value":"0"`, "a pipeline that follows it"} {
		if !strings.Contains(res.Reason, want) {
			t.Errorf("reason lacks %q: %q", want, res.Reason)
		}
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{"ScaleUp": conformance.Failed})
	if tr := checktest.Subtest(res, "ScaleDown"); tr != nil {
		t.Errorf("the check scaled down although it never scaled up: %+v", tr)
	}
	if all := checktest.Transcript(res); strings.Contains(all, "HorizontalPodAutoscaler autoscaled-probe") {
		t.Errorf("the check created an HPA although the metric did not follow the gauge")
	}
	checktest.ExpectCleanedUp(t, env, res)
}

// The APIServices are registered but nothing listens behind them: an
// adapter that is installed and broken.
func TestPodAutoscalingFailsWhenAdapterDoesNotAnswer(t *testing.T) {
	env := testenv.Shared(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	registerAPIServices(t, env, "dead-adapter", port)
	err = wait.PollUntilContextTimeout(t.Context(), time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		as, err := env.Dynamic().Resource(apiServicesGVR).Get(ctx, "v1beta2."+MetricsGroup, metav1.GetOptions{})
		return err == nil && availability(as) == "False", nil
	})
	if err != nil {
		t.Fatalf("the APIService did not become unavailable: %v", err)
	}
	// An unavailable APIService keeps namespaces from being deleted (the
	// namespace controller cannot discover every resource); the broken
	// adapter is removed once the check's cleanup starts, as an operator
	// would.
	go unregisterWhenCleaning(t, env)
	res := runCheck(t, env, Options{})
	if res.Status != conformance.Failed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	for _, want := range []string{"custom metrics API custom.metrics.k8s.io is registered but not served: the metrics adapter is installed but not available", "v1beta2.custom.metrics.k8s.io: Available=False (FailedDiscoveryCheck"} {
		if !strings.Contains(res.Reason, want) {
			t.Errorf("reason lacks %q: %q", want, res.Reason)
		}
	}
	if tr := checktest.Subtest(res, "ScaleUp"); tr != nil {
		t.Errorf("the check went on without a working metrics adapter: %+v", tr)
	}
	checktest.ExpectCleanedUp(t, env, res)
}

// unregisterWhenCleaning deletes the custom metrics APIServices once a
// namespace of the check is being deleted.
func unregisterWhenCleaning(t *testing.T, env *testenv.Env) {
	_ = wait.PollUntilContextCancel(t.Context(), time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := env.Clientset().CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, ns := range list.Items {
			if strings.HasPrefix(ns.Name, "kaic-pod-autoscaling-") && ns.DeletionTimestamp != nil {
				for _, v := range metricsVersions {
					_ = env.Dynamic().Resource(apiServicesGVR).Delete(ctx, v+"."+MetricsGroup, metav1.DeleteOptions{})
				}
				return true, nil
			}
		}
		return false, nil
	})
}

// The adapter is up but has no kaic_probe_load for pods (no rule for it):
// the check says so before raising any load.
func TestPodAutoscalingFailsWhenAdapterLacksMetric(t *testing.T) {
	env := testenv.Shared(t)
	registerAdapter(t, env)
	adapter.provider.hidden.Store(true)
	t.Cleanup(func() { adapter.provider.hidden.Store(false) })
	res := runCheck(t, env, Options{MetricTimeout: 10 * time.Second})
	if res.Status != conformance.Failed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	for _, want := range []string{"the metrics adapter does not report kaic_probe_load for pod(s) autoscaled-probe-", "within 10s", "could not find", "the adapter needs a rule exposing the probe's gauge for pods"} {
		if !strings.Contains(res.Reason, want) {
			t.Errorf("reason lacks %q: %q", want, res.Reason)
		}
	}
	if tr := checktest.Subtest(res, "ScaleUp"); tr != nil {
		t.Errorf("the check raised the load although the metric is not served: %+v", tr)
	}
	checktest.ExpectCleanedUp(t, env, res)
}

// One device in the cluster cannot show two pods each holding one: the
// requirement is not verified, with the reason, and nothing is started.
func TestPodAutoscalingSkipsWithOneDevice(t *testing.T) {
	env := testenv.Shared(t)
	const driver = "gpu.single.example.com"
	checktest.PublishSlice(t, env, testenv.FakeGPUSlice("kwok-gpu-0", driver, 1))
	checktest.EnsureDeviceClass(t, env, driver, driver)
	res := checktest.Run(t, env, New(Options{}), conformance.Must, checktest.ExampleModel(driver, driver))
	if res.Status != conformance.Skipped || !strings.Contains(res.Reason, "1 device(s) of driver gpu.single.example.com on Ready nodes: scaling to two pods") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	if tr := checktest.Subtest(res, "ScaleUp"); tr != nil {
		t.Errorf("the check went on with one device: %+v", tr)
	}
	checktest.ExpectCleanedUp(t, env, res)
}

// Device-plugin mode: the Deployment's pods request nvidia.com/gpu, which
// the kwok nodes advertise (one each) as a device plugin would, and the
// HPA scales them up and down as in DRA mode.
func TestPodAutoscalingPassesWithDevicePlugin(t *testing.T) {
	env := testenv.Shared(t)
	registerAdapter(t, env)
	adapter.provider.frozen.Store(false)
	res := runModel(t, env, Options{}, checktest.DevicePluginModel(string(testenv.GPUResourceName)))
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{"ScaleUp": conformance.Passed, "ScaleDown": conformance.Passed})
	checktest.ExpectTranscript(t, res,
		"allocatable nvidia.com/gpu of Ready nodes",
		"each pod's container requests one nvidia.com/gpu",
		"nvidia.com/gpu: \"1\"", // in the Deployment's pod template
		"requested: 1 nvidia.com/gpu",
		"New size: 2",
		"New size: 1",
	)
	if tr := checktest.Transcript(res); strings.Contains(tr, "ResourceClaim") {
		t.Errorf("device-plugin mode went through DRA:\n%s", tr)
	}
	checktest.ExpectCleanedUp(t, env, res)
}

// One unit of the resource in the cluster: not verified, with the
// reason, and nothing is started.
func TestPodAutoscalingSkipsWithDevicePluginAndOneDevice(t *testing.T) {
	env := testenv.Shared(t)
	const single = "example.com/single-gpu"
	checktest.AddNode(t, env, testenv.Node{Name: "kwok-single-0", Allocatable: corev1.ResourceList{single: resource.MustParse("1")}})
	res := checktest.Run(t, env, New(Options{}), conformance.Must, checktest.DevicePluginModel(single))
	if res.Status != conformance.Skipped || !strings.Contains(res.Reason, "1 device(s) of extended resource example.com/single-gpu on Ready nodes: scaling to two pods") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	if tr := checktest.Subtest(res, "ScaleUp"); tr != nil {
		t.Errorf("the check went on with one device: %+v", tr)
	}
	checktest.ExpectCleanedUp(t, env, res)
}
