package metricsadapter_test

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kaic-dev/kaic/internal/charttest"
	"github.com/kaic-dev/kaic/pkg/probe/metricsadapter"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/stacks"
)

// apiService holds the fields of an APIService the tests read.
type apiService struct {
	Spec struct {
		Group                 string `json:"group"`
		Version               string `json:"version"`
		GroupPriorityMinimum  int32  `json:"groupPriorityMinimum"`
		VersionPriority       int32  `json:"versionPriority"`
		InsecureSkipTLSVerify bool   `json:"insecureSkipTLSVerify"`
		Service               *struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
			Port      *int32 `json:"port"`
		} `json:"service"`
	} `json:"spec"`
}

const testImage = "kaic.dev/probe:0123456789abcdef"

// render renders the embedded chart offline, as a client-side dry-run
// install into ns.
func render(t *testing.T, ns string, values map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	return charttest.RenderEmbedded(t, "kaic-metrics-adapter", ns, values)
}

// object converts the one rendered object of kind (and name, if given).
func object[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %s %q rendered, want 1", len(found), kind, name)
	}
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(found[0].Object, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// builtinValues are the values of the built-in component.
func builtinValues(t *testing.T) map[string]any {
	t.Helper()
	catalog, err := profile.LoadComponentCatalog(stacks.FS)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := catalog.Get("kaic-metrics-adapter")
	if !ok {
		t.Fatal("no built-in component kaic-metrics-adapter")
	}
	if c.Namespace != "monitoring" || c.Helm == nil || c.Helm.Chart != "kaic://kaic-metrics-adapter" || len(c.DependsOn) != 0 ||
		!slices.Contains(c.Provides, "custom-metrics") || c.Readiness == nil ||
		!slices.Equal(c.Readiness.APIServices, []string{"v1beta1.custom.metrics.k8s.io"}) ||
		!slices.Equal(c.Readiness.Deployments, []string{"kaic-metrics-adapter"}) {
		t.Errorf("built-in component %+v", c)
	}
	values := map[string]any{}
	for k, v := range c.Values {
		values[k] = v
	}
	return values
}

// TestChartFitsTogether renders the built-in component's chart with the
// probe image kaic passes and checks that the APIServices reach the
// Service, the Service the Deployment's port, and that the Deployment runs
// the adapter with the Prometheus URL.
func TestChartFitsTogether(t *testing.T) {
	values := builtinValues(t)
	values["image"] = testImage
	objs, err := render(t, "monitoring", values)
	if err != nil {
		t.Fatal(err)
	}
	dep := object[appsv1.Deployment](t, objs, "Deployment", "kaic-metrics-adapter")
	svc := object[corev1.Service](t, objs, "Service", "kaic-metrics-adapter")

	ctr := dep.Spec.Template.Spec.Containers[0]
	wantArgs := []string{"metrics-adapter", "--prometheus-url=http://prometheus-operated.monitoring.svc:9090",
		"--secure-port=6443", "--metric=" + metricsadapter.DefaultMetric}
	if ctr.Image != testImage || !slices.Equal(ctr.Args, wantArgs) {
		t.Errorf("adapter container %s %q, want %s %q", ctr.Image, ctr.Args, testImage, wantArgs)
	}
	if dep.Spec.Template.Spec.ServiceAccountName != "kaic-metrics-adapter" {
		t.Errorf("service account %q", dep.Spec.Template.Spec.ServiceAccountName)
	}
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("Service selects %s=%s, pod labels %v", k, v, dep.Spec.Template.Labels)
		}
	}
	if len(svc.Spec.Selector) == 0 {
		t.Error("Service selects nothing")
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 443 {
		t.Fatalf("Service ports %+v", svc.Spec.Ports)
	}
	target := svc.Spec.Ports[0].TargetPort.String()
	if !slices.ContainsFunc(ctr.Ports, func(p corev1.ContainerPort) bool {
		return (p.Name == target || p.ContainerPort == svc.Spec.Ports[0].TargetPort.IntVal) && p.ContainerPort == 6443
	}) {
		t.Errorf("Service targets %s, container ports %+v", target, ctr.Ports)
	}
	if p := ctr.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
		t.Errorf("readiness probe %+v", p)
	}

	for _, v := range []string{"v1beta1", "v1beta2"} {
		as := object[apiService](t, objs, "APIService", v+".custom.metrics.k8s.io")
		s := as.Spec
		if s.Group != "custom.metrics.k8s.io" || s.Version != v || s.GroupPriorityMinimum != 100 || s.VersionPriority != 100 || !s.InsecureSkipTLSVerify {
			t.Errorf("APIService %s spec %+v", v, s)
		}
		if s.Service == nil || s.Service.Name != svc.Name || s.Service.Namespace != "monitoring" || s.Service.Port == nil || *s.Service.Port != 443 {
			t.Errorf("APIService %s service %+v, want monitoring/%s:443", v, s.Service, svc.Name)
		}
	}

	// RBAC: delegated auth, the aggregator's settings, pods, and the HPA
	// controller reading the API.
	crb := object[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", "kaic-metrics-adapter:system:auth-delegator")
	if crb.RoleRef.Name != "system:auth-delegator" || crb.Subjects[0].Name != "kaic-metrics-adapter" || crb.Subjects[0].Namespace != "monitoring" {
		t.Errorf("auth delegator binding %+v", crb)
	}
	rb := object[rbacv1.RoleBinding](t, objs, "RoleBinding", "")
	if rb.Namespace != "kube-system" || rb.RoleRef.Name != "extension-apiserver-authentication-reader" {
		t.Errorf("auth reader binding %s/%s → %s", rb.Namespace, rb.Name, rb.RoleRef.Name)
	}
	reader := object[rbacv1.ClusterRole](t, objs, "ClusterRole", "kaic-metrics-adapter-resource-reader")
	if r := reader.Rules; len(r) != 1 || !slices.Contains(r[0].Resources, "pods") || !slices.Contains(r[0].Verbs, "list") {
		t.Errorf("resource reader rules %+v", r)
	}
	hpa := object[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", "kaic-metrics-adapter-hpa-controller")
	if s := hpa.Subjects; len(s) != 1 || s[0].Name != "horizontal-pod-autoscaler" || s[0].Namespace != "kube-system" {
		t.Errorf("HPA binding subjects %+v", s)
	}
	server := object[rbacv1.ClusterRole](t, objs, "ClusterRole", hpa.RoleRef.Name)
	if r := server.Rules; len(r) != 1 || !slices.Equal(r[0].APIGroups, []string{"custom.metrics.k8s.io"}) || !slices.Contains(r[0].Verbs, "get") {
		t.Errorf("custom metrics reader rules %+v", r)
	}
}

// TestChartRequiresImageAndPrometheus: without kaic's image or a
// Prometheus URL the chart fails saying which.
func TestChartRequiresImageAndPrometheus(t *testing.T) {
	if _, err := render(t, "monitoring", map[string]any{}); err == nil || !strings.Contains(err.Error(), "image is required") {
		t.Errorf("without an image: %v", err)
	}
	if _, err := render(t, "monitoring", map[string]any{"image": testImage, "prometheusUrl": ""}); err == nil || !strings.Contains(err.Error(), "prometheusUrl is required") {
		t.Errorf("without a Prometheus URL: %v", err)
	}
	objs, err := render(t, "monitoring", map[string]any{"image": testImage, "metrics": []any{"a", "b"}, "apiVersions": []any{"v1beta2"}})
	if err != nil {
		t.Fatal(err)
	}
	ctr := object[appsv1.Deployment](t, objs, "Deployment", "").Spec.Template.Spec.Containers[0]
	if !slices.Contains(ctr.Args, "--metric=a") || !slices.Contains(ctr.Args, "--metric=b") {
		t.Errorf("args %q", ctr.Args)
	}
	object[apiService](t, objs, "APIService", "v1beta2.custom.metrics.k8s.io")
}
