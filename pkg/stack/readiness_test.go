package stack_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
)

// notReadyError asserts err is a NotReadyError of component whose message
// holds every one of wants, and returns the message.
func notReadyError(t *testing.T, err error, component string, wants ...string) string {
	t.Helper()
	var notReady *stack.NotReadyError
	var compErr *stack.ComponentError
	if !errors.As(err, &notReady) || !errors.As(err, &compErr) || compErr.Component != component {
		t.Fatalf("error %v, want a NotReadyError of component %s", err, component)
	}
	msg := err.Error()
	t.Logf("error:\n%s", msg)
	for _, want := range wants {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q", want)
		}
	}
	return msg
}

const daemonSetTemplate = `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ .Release.Name }}
spec:
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      containers:
        - name: agent
          image: registry.example/kaic-test/agent:1.0
          resources:
            requests: {cpu: {{ .Values.cpu | quote }}}
`

// A DaemonSet counts as ready once it runs a ready pod on every node it
// targets (the kwok node here); one whose pods cannot be scheduled fails
// the component with its name and why.
func TestDaemonSetReadiness(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	dir := writeChart(t, "agent", "0.1.0", map[string]string{"values.yaml": "cpu: 100m\n", "templates/ds.yaml": daemonSetTemplate})
	in := newInstaller(t, env, nil)

	ready := localComponent("agent", ns, dir, time.Minute, profile.Readiness{DaemonSets: []string{"agent"}})
	if _, err := in.Install(t.Context(), []profile.Component{ready}); err != nil {
		t.Fatal(err)
	}
	ds, err := env.Clientset().AppsV1().DaemonSets(ns).Get(t.Context(), "agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := ds.Status; s.DesiredNumberScheduled != 1 || s.NumberReady != 1 {
		t.Errorf("daemonset status %+v, want 1 of 1 ready when the component is ready", s)
	}

	// Each pod asks for more CPU than the node has: none ever runs.
	starved := localComponent("starved", ns, dir, 10*time.Second, profile.Readiness{DaemonSets: []string{"starved"}})
	starved.Values = map[string]any{"cpu": "64"}
	_, err = in.Install(t.Context(), []profile.Component{starved})
	notReadyError(t, err, "starved", "DaemonSet "+ns+"/starved", "Insufficient cpu", "rolled back: release starved uninstalled")
	if _, err := env.Clientset().AppsV1().DaemonSets(ns).Get(t.Context(), "starved", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the failed daemonset is still there (err %v)", err)
	}

	// The declared condition on its own: a component whose objects are
	// ready but which waits for a DaemonSet elsewhere (here, created by
	// hand) that cannot run.
	other := namespace(t, env)
	ds.ObjectMeta = metav1.ObjectMeta{Name: "elsewhere", Namespace: other}
	ds.Status = appsv1.DaemonSetStatus{}
	ds.Spec.Template.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("64")
	if _, err := env.Clientset().AppsV1().DaemonSets(other).Create(t.Context(), ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "cm.yaml")
	if err := os.WriteFile(file, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: waits\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waits := profile.Component{
		Name: "waits", Namespace: ns, Manifests: &profile.Manifests{Files: []string{file}},
		Readiness: &profile.Readiness{Timeout: profile.Duration{Duration: 8 * time.Second}, DaemonSets: []string{other + "/elsewhere"}},
	}
	_, err = in.Install(t.Context(), []profile.Component{waits})
	notReadyError(t, err, "waits", "DaemonSet "+other+"/elsewhere: 0 of 1 pods ready", "FailedScheduling")
}

const statefulSetTemplate = `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: {{ .Release.Name }}-server}
  template:
    metadata:
      labels: {app.kubernetes.io/name: {{ .Release.Name }}-server}
    spec:
      containers:
        - name: server
          image: registry.example/kaic-test/server:1.0
          resources:
            requests: {cpu: {{ .Values.cpu | quote }}}
`

// Pods chosen by label count as ready once enough of them are; pods that
// never become ready fail the component, naming them and why, and a
// selector that matches nothing, or fewer ready pods than wanted, says so.
func TestPodReadiness(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	dir := writeChart(t, "server", "0.1.0", map[string]string{"values.yaml": "cpu: 100m\n", "templates/sts.yaml": statefulSetTemplate})
	in := newInstaller(t, env, nil)

	// The chart's StatefulSet makes a pod that its own readiness waits for.
	db := localComponent("db", ns, dir, time.Minute, profile.Readiness{Pods: []profile.PodReadiness{{Selector: "app.kubernetes.io/name=db-server"}}})
	if _, err := in.Install(t.Context(), []profile.Component{db}); err != nil {
		t.Fatal(err)
	}
	pod, err := env.Clientset().CoreV1().Pods(ns).Get(t.Context(), "db-0", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the component is ready but its pod is not there: %v", err)
	}

	// A component whose pods someone else starts, later: it is ready only
	// once they are.
	file := filepath.Join(t.TempDir(), "cm.yaml")
	if err := os.WriteFile(file, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: waits\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	late := pod.DeepCopy()
	late.ObjectMeta = metav1.ObjectMeta{Name: "late", Namespace: ns, Labels: map[string]string{"app.kubernetes.io/name": "late"}}
	late.Spec.NodeName = ""
	late.Status = corev1.PodStatus{}
	created := make(chan error, 1)
	go func() {
		time.Sleep(2 * time.Second)
		_, err := env.Clientset().CoreV1().Pods(ns).Create(context.WithoutCancel(t.Context()), late, metav1.CreateOptions{})
		created <- err
	}()
	follows := profile.Component{
		Name: "follows", Namespace: ns, Manifests: &profile.Manifests{Files: []string{file}},
		Readiness: &profile.Readiness{Timeout: profile.Duration{Duration: time.Minute}, Pods: []profile.PodReadiness{{Selector: "app.kubernetes.io/name=late"}}},
	}
	if _, err := in.Install(t.Context(), []profile.Component{follows}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-created:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("the component is ready before its pod was created")
	}
	if got, err := env.Clientset().CoreV1().Pods(ns).Get(t.Context(), "late", metav1.GetOptions{}); err != nil || !stack.PodReady(got) {
		t.Errorf("pod late is not ready when the component is (err %v)", err)
	}

	// A component of its own that waits for pods elsewhere: a pod that
	// asks for more CPU than the node has (made by hand: an operator's, not
	// the component's), a selector that matches nothing, and fewer ready
	// pods than wanted.
	other := namespace(t, env)
	starved := pod.DeepCopy()
	starved.ObjectMeta = metav1.ObjectMeta{Name: "starved", Namespace: other, Labels: map[string]string{"app.kubernetes.io/name": "starved"}}
	starved.Spec.NodeName = ""
	starved.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("64")
	starved.Status = corev1.PodStatus{}
	if _, err := env.Clientset().CoreV1().Pods(other).Create(t.Context(), starved, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waits := profile.Component{
		Name: "waits", Namespace: other, Manifests: &profile.Manifests{Files: []string{file}},
		Readiness: &profile.Readiness{Timeout: profile.Duration{Duration: 5 * time.Second}, Pods: []profile.PodReadiness{
			{Selector: "app.kubernetes.io/name=nothing"},
			{Selector: "app.kubernetes.io/name=starved"},
			{Namespace: ns, Selector: "app.kubernetes.io/name=db-server", MinReady: 2},
		}},
	}
	_, err = in.Install(t.Context(), []profile.Component{waits})
	msg := notReadyError(t, err, "waits",
		"pods app.kubernetes.io/name=nothing in namespace "+other+": none exists yet, want 1 ready",
		"pods app.kubernetes.io/name=starved in namespace "+other+": 0 of 1 ready, want 1",
		"Pod "+other+"/starved", "FailedScheduling",
		"pods app.kubernetes.io/name=db-server in namespace "+ns+": 1 of 1 ready, want 2")
	if strings.Contains(msg, "Pod "+ns+"/db-0") {
		t.Error("the ready pod is described as unready")
	}
}

const apiServiceTemplate = `apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
{{- if .Values.externalName }}
  type: ExternalName
  externalName: {{ .Values.externalName }}
{{- else }}
  ports:
    - port: {{ .Values.port }}
      targetPort: 8443
{{- end }}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1alpha1.{{ .Values.group }}
spec:
  group: {{ .Values.group }}
  version: v1alpha1
  groupPriorityMinimum: 100
  versionPriority: 10
  insecureSkipTLSVerify: true
  service:
    namespace: {{ .Release.Namespace }}
    name: {{ .Release.Name }}
    port: {{ .Values.port }}
`

// aggregatedServer is an aggregated API server on loopback serving the
// discovery document of group/v1alpha1 (no resources).
func aggregatedServer(t *testing.T, group string) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/apis/"+group+"/v1alpha1" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(metav1.APIResourceList{
			TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
			GroupVersion: group + "/v1alpha1",
			APIResources: []metav1.APIResource{},
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// An APIService counts as ready once the API server finds its aggregated
// server available; one whose service has no endpoints stays unavailable
// and fails the component, naming the APIService.
func TestAPIServiceReadiness(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	dir := writeChart(t, "aggregated", "0.1.0", map[string]string{"templates/api.yaml": apiServiceTemplate})
	in := newInstaller(t, env, nil)

	// Available: an ExternalName service leads the API server to a real
	// aggregated server on loopback.
	const readyGroup = "ready.test.kaic.dev"
	srv := aggregatedServer(t, readyGroup)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	available := localComponent("aggregated", ns, dir, time.Minute, profile.Readiness{APIServices: []string{"v1alpha1." + readyGroup}})
	available.Values = map[string]any{"group": readyGroup, "externalName": "localhost", "port": u.Port()}
	recs, err := in.Install(t.Context(), []profile.Component{available})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.Uninstall(context.Background(), recs) })
	apiServices := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	as, err := env.Dynamic().Resource(apiServices).Get(t.Context(), "v1alpha1."+readyGroup, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fmt.Sprint(as.Object["status"]), "status:True type:Available") {
		t.Errorf("APIService status %v, want Available once the component is ready", as.Object["status"])
	}

	// Unavailable: a ClusterIP service without endpoints.
	const stuckGroup = "stuck.test.kaic.dev"
	stuck := localComponent("stuck-api", ns, dir, 10*time.Second, profile.Readiness{APIServices: []string{"v1alpha1." + stuckGroup}})
	stuck.Values = map[string]any{"group": stuckGroup, "port": 443}
	_, err = in.Install(t.Context(), []profile.Component{stuck})
	notReadyError(t, err, "stuck-api", "APIService v1alpha1."+stuckGroup, "not Available", "rolled back: release stuck-api uninstalled")
	if _, err := env.Dynamic().Resource(apiServices).Get(t.Context(), "v1alpha1."+stuckGroup, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the unavailable APIService is still registered (err %v)", err)
	}
}

const webhookTemplate = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: 1
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      containers:
        - name: webhook
          image: registry.example/kaic-test/webhook:1.0
          ports: [{containerPort: 8443}]
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
  selector: {app: {{ .Values.selects }}}
  ports:
    - port: 443
      targetPort: 8443
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: {{ .Release.Name }}.test.kaic.dev
webhooks:
  - name: {{ .Release.Name }}.test.kaic.dev
    clientConfig:
      service:
        namespace: {{ .Release.Namespace }}
        name: {{ .Release.Name }}
        path: /validate
    rules:
      - apiGroups: ["test.kaic.dev"]
        apiVersions: ["v1"]
        operations: ["CREATE"]
        resources: ["nothings"]
    failurePolicy: Ignore
    sideEffects: None
    admissionReviewVersions: ["v1"]
`

// A webhook counts as ready once its service has a ready endpoint (the
// kwok pod behind it); one whose service selects no pod fails the
// component, naming the service and the webhook.
func TestWebhookReadiness(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	dir := writeChart(t, "hook", "0.1.0", map[string]string{"templates/webhook.yaml": webhookTemplate})
	in := newInstaller(t, env, nil)

	ready := localComponent("hook", ns, dir, time.Minute, profile.Readiness{Webhooks: []string{"hook.test.kaic.dev"}})
	ready.Values = map[string]any{"selects": "hook"}
	recs, err := in.Install(t.Context(), []profile.Component{ready})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.Uninstall(context.Background(), recs) })
	slices, err := env.Clientset().DiscoveryV1().EndpointSlices(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=hook"})
	if err != nil || len(slices.Items) == 0 || len(slices.Items[0].Endpoints) == 0 {
		t.Errorf("endpoint slices of the webhook service: %+v, %v; want a ready endpoint", slices, err)
	}

	deaf := localComponent("deaf", ns, dir, 10*time.Second, profile.Readiness{Webhooks: []string{"deaf.test.kaic.dev"}})
	deaf.Values = map[string]any{"selects": "nobody"}
	_, err = in.Install(t.Context(), []profile.Component{deaf})
	notReadyError(t, err, "deaf", "Service "+ns+"/deaf: no ready endpoint for webhook deaf.test.kaic.dev", "rolled back: release deaf uninstalled")
}
