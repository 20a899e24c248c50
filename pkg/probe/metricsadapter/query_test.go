package metricsadapter_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/kaic-dev/kaic/pkg/probe/metricsadapter"
)

func TestPodsQuery(t *testing.T) {
	for _, tc := range []struct {
		name, metric, ns string
		pods             []string
		want, err        string
	}{
		{name: "one pod", metric: "kaic_probe_load", ns: "demo", pods: []string{"web-0"},
			want: `sum by (pod) (kaic_probe_load{namespace="demo",pod=~"web-0"})`},
		{name: "dots are literal", metric: "kaic_probe_load", ns: "demo", pods: []string{"a.b", "c"},
			want: `sum by (pod) (kaic_probe_load{namespace="demo",pod=~"a\\.b|c"})`},
		{name: "quotes and meta characters", metric: "m:rate_5m", ns: `x"y`, pods: []string{`p(1)*`, `q\`},
			want: `sum by (pod) (m:rate_5m{namespace="x\"y",pod=~"p\\(1\\)\\*|q\\\\"})`},
		{name: "injection in the metric name", metric: `up{} or vector(1)`, ns: "demo", pods: []string{"a"}, err: "not a Prometheus metric name"},
		{name: "no pods", metric: "m", ns: "demo", err: "no pods"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := metricsadapter.PodsQuery(tc.metric, tc.ns, tc.pods)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %s, %v\nwant %s", got, err, tc.want)
			}
		})
	}
}

// TestPodsQueryRegexMatchesOnlyNamedPods decodes the pod matcher as
// Prometheus would (a Go string literal, then an anchored RE2) and checks
// it matches exactly the pods named.
func TestPodsQueryRegexMatchesOnlyNamedPods(t *testing.T) {
	q, err := metricsadapter.PodsQuery("m", "ns", []string{"web.1", "api-2"})
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`pod=~("(?:[^"\\]|\\.)*")`).FindStringSubmatch(q)
	if m == nil {
		t.Fatalf("no pod matcher in %s", q)
	}
	var lit string
	if _, err := fmt.Sscanf(m[1], "%q", &lit); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("^(?:" + lit + ")$")
	for pod, want := range map[string]bool{"web.1": true, "api-2": true, "webx1": false, "web.10": false, "api": false} {
		if re.MatchString(pod) != want {
			t.Errorf("%s matched %v, want %v", pod, !want, want)
		}
	}
}

// prometheus is a stand-in Prometheus answering /api/v1/query with answer
// and recording the queries.
func prometheus(t *testing.T, status int, answer string) (*httptest.Server, *[]string) {
	t.Helper()
	var queries []string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		queries = append(queries, r.FormValue("query"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, answer)
	}))
	t.Cleanup(s.Close)
	return s, &queries
}

func TestPrometheusQuery(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		status       int
		want         map[string]float64
		err          string
	}{
		{name: "vector", status: 200,
			answer: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[1764330000.5,"2.5"]},{"metric":{"pod":"b"},"value":[1764330000.5,"0"]}]}}`,
			want:   map[string]float64{"a": 2.5, "b": 0}},
		{name: "empty vector", status: 200, answer: `{"status":"success","data":{"resultType":"vector","result":[]}}`, want: map[string]float64{}},
		{name: "error", status: 400, answer: `{"status":"error","errorType":"bad_data","error":"parse error at char 3"}`, err: "400: bad_data: parse error at char 3"},
		{name: "scalar", status: 200, answer: `{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}`, err: "a scalar, not a vector"},
		{name: "not the API", status: 502, answer: `<html>bad gateway</html>`, err: "502 with no API response"},
		{name: "bad value", status: 200, answer: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[1,"x"]}]}}`, err: "invalid syntax"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, queries := prometheus(t, tc.status, tc.answer)
			p := &metricsadapter.Prometheus{URL: s.URL + "/"}
			got, err := p.Query(t.Context(), `sum by (pod) (m{namespace="n"})`)
			if len(*queries) != 1 || (*queries)[0] != `sum by (pod) (m{namespace="n"})` {
				t.Errorf("queries sent %q", *queries)
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			byPod := map[string]float64{}
			for _, s := range got {
				byPod[s.Labels["pod"]] = s.Value
				if s.Time.Unix() != 1764330000 || s.Time.Nanosecond() != 5e8 {
					t.Errorf("time %v", s.Time)
				}
			}
			if fmt.Sprint(byPod) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", byPod, tc.want)
			}
		})
	}
}

func pod(name string, l map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo", Labels: l, UID: types.UID("uid-" + name)}}
}

var loadInfo = provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: "kaic_probe_load"}

func TestProvider(t *testing.T) {
	s, queries := prometheus(t, 200, `{"status":"success","data":{"resultType":"vector","result":[
		{"metric":{"pod":"web-1"},"value":[1764330000,"3.25"]},
		{"metric":{"pod":"web-2"},"value":[1764330000,"NaN"]}]}}`)
	client := fake.NewClientset(pod("web-1", map[string]string{"app": "web"}), pod("web-2", map[string]string{"app": "web"}),
		pod("web-3", map[string]string{"app": "web"}), pod("db-0", map[string]string{"app": "db"}))
	p := &metricsadapter.Provider{Prometheus: &metricsadapter.Prometheus{URL: s.URL}, Client: client, Metrics: []string{"kaic_probe_load"}}
	ctx := t.Context()

	list, err := p.GetMetricBySelector(ctx, "demo", labels.SelectorFromSet(labels.Set{"app": "web"}), loadInfo, labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].DescribedObject.Name != "web-1" || list.Items[0].Value.MilliValue() != 3250 ||
		list.Items[0].DescribedObject.UID != "uid-web-1" || list.Items[0].Metric.Name != "kaic_probe_load" {
		t.Errorf("by selector: %+v", list.Items)
	}
	if want := `sum by (pod) (kaic_probe_load{namespace="demo",pod=~"web-1|web-2|web-3"})`; (*queries)[0] != want {
		t.Errorf("query %s, want %s", (*queries)[0], want)
	}

	v, err := p.GetMetricByName(ctx, types.NamespacedName{Namespace: "demo", Name: "web-1"}, loadInfo, labels.Everything())
	if err != nil || v.Value.MilliValue() != 3250 {
		t.Errorf("by name: %+v, %v", v, err)
	}
	// A pod with no (or a NaN) series has no value.
	if _, err := p.GetMetricByName(ctx, types.NamespacedName{Namespace: "demo", Name: "web-2"}, loadInfo, labels.Everything()); !apierrors.IsNotFound(err) {
		t.Errorf("pod with a NaN series: %v, want not found", err)
	}
	if _, err := p.GetMetricByName(ctx, types.NamespacedName{Namespace: "demo", Name: "gone"}, loadInfo, labels.Everything()); !apierrors.IsNotFound(err) {
		t.Errorf("missing pod: %v, want not found", err)
	}
	if _, err := p.GetMetricBySelector(ctx, "demo", labels.SelectorFromSet(labels.Set{"app": "db"}), loadInfo, labels.Everything()); !apierrors.IsNotFound(err) {
		t.Errorf("selector without series: %v, want not found", err)
	}
	empty, err := p.GetMetricBySelector(ctx, "demo", labels.SelectorFromSet(labels.Set{"app": "none"}), loadInfo, labels.Everything())
	if err != nil || len(empty.Items) != 0 {
		t.Errorf("selector without pods: %+v, %v", empty, err)
	}

	nodes := provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "nodes"}, Metric: "kaic_probe_load"}
	if _, err := p.GetMetricByName(ctx, types.NamespacedName{Name: "n"}, nodes, labels.Everything()); !apierrors.IsBadRequest(err) {
		t.Errorf("nodes: %v, want bad request", err)
	}
	bad := loadInfo
	bad.Metric = "up or vector(1)"
	if _, err := p.GetMetricBySelector(ctx, "demo", labels.Everything(), bad, labels.Everything()); !apierrors.IsBadRequest(err) {
		t.Errorf("bad metric name: %v, want bad request", err)
	}
	sel := labels.SelectorFromSet(labels.Set{"code": "200"})
	if _, err := p.GetMetricBySelector(ctx, "demo", labels.Everything(), loadInfo, sel); !apierrors.IsBadRequest(err) {
		t.Errorf("metric selector: %v, want bad request", err)
	}
	if got := p.ListAllMetrics(); len(got) != 1 || got[0] != loadInfo {
		t.Errorf("ListAllMetrics %+v", got)
	}
}

func TestProviderPrometheusDown(t *testing.T) {
	s, _ := prometheus(t, 200, "")
	s.Close()
	p := &metricsadapter.Provider{Prometheus: &metricsadapter.Prometheus{URL: s.URL}, Client: fake.NewClientset(pod("web-1", nil))}
	_, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "demo", Name: "web-1"}, loadInfo, labels.Everything())
	if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "querying prometheus") {
		t.Errorf("prometheus down: %v, want service unavailable", err)
	}
}

func TestNewAdapterValidates(t *testing.T) {
	for _, o := range []metricsadapter.Options{
		{},
		{PrometheusURL: "prometheus:9090"},
		{PrometheusURL: "http://p:9090", Metrics: []string{"bad name"}},
	} {
		if _, err := metricsadapter.NewAdapter(o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}
