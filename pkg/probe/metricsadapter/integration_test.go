package metricsadapter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/probe/metricsadapter"
)

// The aggregator finds the adapter through the Service's endpoints rather
// than its cluster IP, which nothing routes here.
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.WithAPIServerArgs("--enable-aggregator-routing=true"))
}

// standInPrometheus answers sum by (pod) queries from fixed per-pod values
// of the metric kaic_probe_load, for the pods the query's matcher selects
// in namespace "demo", as Prometheus would evaluate it.
type standInPrometheus struct {
	mu      sync.Mutex
	values  map[string]string
	queries []string
}

var queryShape = regexp.MustCompile(`^sum by \(pod\) \(kaic_probe_load\{namespace="demo",pod=~("(?:[^"\\]|\\.)*")\}\)$`)

func (p *standInPrometheus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.FormValue("query")
	p.mu.Lock()
	p.queries = append(p.queries, q)
	p.mu.Unlock()
	m := queryShape.FindStringSubmatch(q)
	var re *regexp.Regexp
	if m != nil {
		var lit string
		if _, err := fmt.Sscanf(m[1], "%q", &lit); err == nil {
			re, _ = regexp.Compile("^(?:" + lit + ")$")
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if re == nil {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"status":"error","errorType":"bad_data","error":"unexpected query %q"}`, q)
		return
	}
	var result []string
	for pod, v := range p.values {
		if re.MatchString(pod) {
			result = append(result, fmt.Sprintf(`{"metric":{"pod":%q},"value":[%d,%q]}`, pod, time.Now().Unix(), v))
		}
	}
	fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[%s]}}`, strings.Join(result, ","))
}

var apiServicesGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// TestAdapterThroughAPIServer runs the adapter in this process on an
// address the API server's proxies accept, registers it as the chart does
// (a Service, its endpoints and the APIServices), and reads pod metrics
// through the real API server and aggregator from a stand-in Prometheus.
func TestAdapterThroughAPIServer(t *testing.T) {
	env := testenv.Shared(t)
	ctx := t.Context()
	cs := env.Clientset()

	prom := &standInPrometheus{values: map[string]string{"web-1": "2.5", "web-2": "0.25"}}
	ps := httptest.NewServer(prom)
	t.Cleanup(ps.Close)

	ip, err := testenv.ProxyableHostIP()
	if err != nil {
		t.Skip(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	// The test control plane's aggregator has no front-proxy client
	// certificate to authenticate with.
	b, err := metricsadapter.NewAdapter(metricsadapter.Options{
		PrometheusURL: ps.URL, Kubeconfig: env.KubeconfigPath, Listener: l, NoDelegatedAuth: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Logf("adapter: %v", err)
		}
	})

	const adapterNS = "monitoring"
	mustCreate(t, func() error {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: adapterNS}}, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, func() error {
		_, err := cs.CoreV1().Services(adapterNS).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "kaic-metrics-adapter"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(int32(port))}}},
		}, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, func() error {
		_, err := cs.DiscoveryV1().EndpointSlices(adapterNS).Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "kaic-metrics-adapter", Labels: map[string]string{discoveryv1.LabelServiceName: "kaic-metrics-adapter"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}, metav1.CreateOptions{})
		return err
	})
	apis := env.Dynamic().Resource(apiServicesGVR)
	for _, v := range []string{"v1beta1", "v1beta2"} {
		name := v + ".custom.metrics.k8s.io"
		mustCreate(t, func() error {
			_, err := apis.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
				"metadata": map[string]any{"name": name},
				"spec": map[string]any{
					"group": "custom.metrics.k8s.io", "version": v, "groupPriorityMinimum": int64(100), "versionPriority": int64(100),
					"insecureSkipTLSVerify": true,
					"service":               map[string]any{"namespace": adapterNS, "name": "kaic-metrics-adapter", "port": int64(443)},
				},
			}}, metav1.CreateOptions{})
			return err
		})
		t.Cleanup(func() {
			if err := apis.Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("deleting APIService %s: %v", name, err)
			}
		})
	}
	var last string
	err = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, v := range []string{"v1beta1", "v1beta2"} {
			as, err := apis.Get(ctx, v+".custom.metrics.k8s.io", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(as.Object, "status", "conditions")
			last = fmt.Sprint(conds)
			if !strings.Contains(last, "status:True type:Available") {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the APIServices did not become Available: %v (last conditions %s)", err, last)
	}

	mustCreate(t, func() error {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{})
		return err
	})
	// No controller manager runs to create the namespace's service account.
	mustCreate(t, func() error {
		_, err := cs.CoreV1().ServiceAccounts("demo").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
		return err
	})
	// web10 would match an unescaped or unanchored web.1 pattern.
	for name, app := range map[string]string{"web-1": "web", "web-2": "web", "web-3": "web", "web10": "other"} {
		mustCreate(t, func() error {
			_, err := cs.CoreV1().Pods("demo").Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": app}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "kaic.dev/probe:test"}}},
			}, metav1.CreateOptions{})
			return err
		})
	}

	rc := cs.RESTClient()
	get := func(path string) ([]byte, error) {
		return rc.Get().AbsPath(path).DoRaw(ctx)
	}

	// Discovery lists the configured metric.
	disc, err := get("/apis/custom.metrics.k8s.io/v1beta1")
	if err != nil || !strings.Contains(string(disc), `"pods/kaic_probe_load"`) {
		t.Errorf("discovery: %s, %v", disc, err)
	}

	// All pods, v1beta2: web-3 and web10 have no series and are left out.
	raw, err := get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/pods/*/kaic_probe_load")
	if err != nil {
		t.Fatalf("by selector: %v", err)
	}
	var list struct {
		Kind  string `json:"kind"`
		Items []struct {
			DescribedObject struct{ Kind, Name, Namespace string } `json:"describedObject"`
			Metric          struct{ Name string }                  `json:"metric"`
			Value           string                                 `json:"value"`
		} `json:"items"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	got := map[string]string{}
	for _, it := range list.Items {
		if it.DescribedObject.Kind != "Pod" || it.DescribedObject.Namespace != "demo" || it.Metric.Name != "kaic_probe_load" {
			t.Errorf("item %+v", it)
		}
		got[it.DescribedObject.Name] = it.Value
	}
	if list.Kind != "MetricValueList" || fmt.Sprint(got) != fmt.Sprint(map[string]string{"web-1": "2500m", "web-2": "250m"}) {
		t.Errorf("by selector: %s", raw)
	}

	// By label selector, v1beta1.
	raw, err = rc.Get().AbsPath("/apis/custom.metrics.k8s.io/v1beta1/namespaces/demo/pods/*/kaic_probe_load").Param("labelSelector", "app=web").DoRaw(ctx)
	if err != nil || !strings.Contains(string(raw), `"name":"web-1"`) {
		t.Errorf("v1beta1 by label selector: %s, %v", raw, err)
	}

	// By name; a pod without a series has no value.
	raw, err = get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/pods/web-2/kaic_probe_load")
	if err != nil || !strings.Contains(string(raw), `"value":"250m"`) {
		t.Errorf("web-2 by name: %s, %v", raw, err)
	}
	if _, err := get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/demo/pods/web-3/kaic_probe_load"); !apierrors.IsNotFound(err) {
		t.Errorf("web-3 without a series: %v, want not found", err)
	}

	prom.mu.Lock()
	queries := slices.Clone(prom.queries)
	prom.mu.Unlock()
	want := `sum by (pod) (kaic_probe_load{namespace="demo",pod=~"web-1|web-2|web-3|web10"})`
	if !slices.Contains(queries, want) {
		t.Errorf("queries %q lack %s", queries, want)
	}
	if want := `sum by (pod) (kaic_probe_load{namespace="demo",pod=~"web-1|web-2|web-3"})`; !slices.Contains(queries, want) {
		t.Errorf("queries %q lack %s", queries, want)
	}
}

func mustCreate(t *testing.T, create func() error) {
	t.Helper()
	if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}
