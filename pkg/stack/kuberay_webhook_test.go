package stack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kaic-dev/kaic/internal/charttest"
	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/robust"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
	"github.com/kaic-dev/kaic/stacks"
)

// The KubeRay operator's module: its main.go says which webhooks the
// operator registers, its kubebuilder markers what each one validates.
const kubeRayModule = "github.com/ray-project/kuberay/ray-operator"

// What controller-runtime's webhook server uses when the operator
// configures none (KubeRay's main.go sets no WebhookServer): the port, and
// the directory of tls.crt and tls.key under $TMPDIR, which the image does
// not set.
const (
	webhookServerPort = 9443
	servingCertDir    = "/tmp/k8s-webhook-server/serving-certs"
)

// builtinComponent returns a built-in stack component by name.
func builtinComponent(t *testing.T, name string) profile.Component {
	t.Helper()
	catalog, err := profile.LoadComponentCatalog(stacks.FS)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := catalog.Get(name)
	if !ok {
		t.Fatalf("no built-in component %s", name)
	}
	return c
}

// renderEmbedded renders an embedded chart with charttest.RenderEmbedded.
func renderEmbedded(t *testing.T, name, ns string, values map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	return charttest.RenderEmbedded(t, name, ns, values)
}

// kubeRayWebhookObjects are the objects of the kuberay-webhook chart.
type kubeRayWebhookObjects struct {
	issuer, certificate *unstructured.Unstructured
	service             corev1.Service
	deployment          appsv1.Deployment
	vwc                 admissionv1.ValidatingWebhookConfiguration
}

// splitKubeRayWebhook sorts rendered objects by kind, failing on kinds the
// chart should not have and on missing ones.
func splitKubeRayWebhook(t *testing.T, objs []*unstructured.Unstructured) kubeRayWebhookObjects {
	t.Helper()
	var out kubeRayWebhookObjects
	seen := map[string]int{}
	for _, o := range objs {
		seen[o.GetKind()]++
		var err error
		switch o.GetKind() {
		case "Issuer":
			out.issuer = o
		case "Certificate":
			out.certificate = o
		case "Service":
			err = runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &out.service)
		case "Deployment":
			err = runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &out.deployment)
		case "ValidatingWebhookConfiguration":
			err = runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &out.vwc)
		default:
			t.Errorf("unexpected %s %s in the chart", o.GetKind(), o.GetName())
		}
		if err != nil {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	for _, kind := range []string{"Issuer", "Certificate", "Service", "Deployment", "ValidatingWebhookConfiguration"} {
		if seen[kind] != 1 {
			t.Fatalf("the chart renders %d %s, want 1", seen[kind], kind)
		}
	}
	return out
}

// TestKubeRayWebhookComponent checks the built-in kuberay-webhook
// component against the kuberay-operator component it completes and the
// robust_controller check that relies on it: same namespace, installed
// after the operator and cert-manager, the operator chart's image version,
// and readiness that waits for the webhook's endpoints.
func TestKubeRayWebhookComponent(t *testing.T) {
	hook := builtinComponent(t, "kuberay-webhook")
	operator := builtinComponent(t, "kuberay-operator")
	kubeRay, err := robust.Lookup(profile.OperatorKubeRay)
	if err != nil {
		t.Fatal(err)
	}

	if hook.Helm == nil || hook.Helm.Chart != profile.EmbeddedChartScheme+"kuberay-webhook" {
		t.Errorf("chart %+v, want %skuberay-webhook", hook.Helm, profile.EmbeddedChartScheme)
	}
	if hook.Namespace != operator.Namespace {
		t.Errorf("namespace %q; the operator's is %q", hook.Namespace, operator.Namespace)
	}
	for _, dep := range []string{"cert-manager", operator.Name} {
		if !slices.Contains(hook.DependsOn, dep) {
			t.Errorf("dependsOn %v lacks %s", hook.DependsOn, dep)
		}
	}
	// The replica joins the operator's leader election: it must run the
	// operator version the kuberay-operator chart runs (chart version
	// 1.6.0 runs operator image v1.6.0).
	tag, _, _ := unstructured.NestedString(hook.Values, "image", "tag")
	if want := "v" + strings.TrimPrefix(operator.ChartVersion(), "v"); tag != want {
		t.Errorf("image tag %q, want %q: the version of the kuberay-operator chart (%s)", tag, want, operator.ChartVersion())
	}

	objs, err := renderEmbedded(t, "kuberay-webhook", hook.Namespace, hook.Values)
	if err != nil {
		t.Fatal(err)
	}
	rendered := splitKubeRayWebhook(t, objs)
	r := hook.Readiness
	if r == nil || !slices.Contains(r.Deployments, rendered.deployment.Name) || !slices.Equal(r.Webhooks, []string{rendered.vwc.Name}) {
		t.Errorf("readiness %+v, want deployment %s and webhook configuration %s (whose service endpoints it then waits for)", r, rendered.deployment.Name, rendered.vwc.Name)
	}
	if !slices.ContainsFunc(rendered.vwc.Webhooks, func(w admissionv1.ValidatingWebhook) bool { return w.Name == kubeRay.Webhook }) {
		t.Errorf("the webhook configuration has no %s, the webhook the robust_controller check exercises", kubeRay.Webhook)
	}
	sel, err := labels.Parse(kubeRay.PodSelector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(rendered.deployment.Spec.Template.Labels)) {
		t.Errorf("pod labels %v do not match %q: the check would not count the replica among KubeRay's pods", rendered.deployment.Spec.Template.Labels, kubeRay.PodSelector)
	}
}

// TestKubeRayWebhookChartRenders renders the chart with the Helm SDK and
// checks that its objects fit together: the certificate's Secret mounted
// where the operator reads it, webhooks on, the Service in front of the
// webhook port, the certificate naming the Service, the configuration
// calling the Service and asking cert-manager for its CA bundle.
func TestKubeRayWebhookChartRenders(t *testing.T) {
	const ns = "ray-system"
	hook := builtinComponent(t, "kuberay-webhook")
	objs, err := renderEmbedded(t, "kuberay-webhook", ns, hook.Values)
	if err != nil {
		t.Fatal(err)
	}
	o := splitKubeRayWebhook(t, objs)
	checkKubeRayWebhookObjects(t, o, ns)

	// Without the operator's version the chart refuses to render.
	if _, err := renderEmbedded(t, "kuberay-webhook", ns, nil); err == nil || !strings.Contains(err.Error(), "image.tag is required") {
		t.Errorf("rendering without image.tag: %v, want an error saying it is required", err)
	}
}

// checkKubeRayWebhookObjects checks the chart's objects, rendered into or
// read back from namespace ns.
func checkKubeRayWebhookObjects(t *testing.T, o kubeRayWebhookObjects, ns string) {
	t.Helper()
	// The Issuer signs the Certificate, which names the Service.
	secretName, _, _ := unstructured.NestedString(o.certificate.Object, "spec", "secretName")
	issuerKind, _, _ := unstructured.NestedString(o.certificate.Object, "spec", "issuerRef", "kind")
	issuerName, _, _ := unstructured.NestedString(o.certificate.Object, "spec", "issuerRef", "name")
	if issuerKind != "Issuer" || issuerName != o.issuer.GetName() {
		t.Errorf("certificate issuer %s/%s, want Issuer %s", issuerKind, issuerName, o.issuer.GetName())
	}
	if _, selfSigned, _ := unstructured.NestedMap(o.issuer.Object, "spec", "selfSigned"); !selfSigned {
		t.Errorf("issuer %v is not self-signed", o.issuer.Object["spec"])
	}
	dnsNames, _, _ := unstructured.NestedStringSlice(o.certificate.Object, "spec", "dnsNames")
	if want := o.service.Name + "." + ns + ".svc"; !slices.Contains(dnsNames, want) {
		t.Errorf("certificate DNS names %v lack %s, the name the API server calls", dnsNames, want)
	}
	for _, obj := range []metav1.Object{o.issuer, o.certificate, &o.service, &o.deployment} {
		if obj.GetNamespace() != ns {
			t.Errorf("%s is in namespace %q, want %q", obj.GetName(), obj.GetNamespace(), ns)
		}
	}

	// The operator runs with webhooks on and the Secret where
	// controller-runtime reads it, and is Ready once the webhook serves.
	pod := o.deployment.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("containers %+v, want the operator only", pod.Containers)
	}
	ctr := pod.Containers[0]
	if !slices.ContainsFunc(ctr.Env, func(e corev1.EnvVar) bool { return e.Name == "ENABLE_WEBHOOKS" && e.Value == "true" }) {
		t.Errorf("env %+v lacks ENABLE_WEBHOOKS=true", ctr.Env)
	}
	if !strings.HasPrefix(ctr.Image, "quay.io/kuberay/operator:v") {
		t.Errorf("image %s is not KubeRay's operator", ctr.Image)
	}
	if pod.ServiceAccountName != "kuberay-operator" {
		t.Errorf("service account %q, want the operator chart's kuberay-operator (its RBAC)", pod.ServiceAccountName)
	}
	if !slices.Contains(ctr.Args, "--enable-leader-election=true") {
		t.Errorf("args %v: without leader election the replica would reconcile beside the operator", ctr.Args)
	}
	i := slices.IndexFunc(ctr.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == servingCertDir })
	if i < 0 {
		t.Fatalf("nothing mounted at %s: %+v", servingCertDir, ctr.VolumeMounts)
	}
	j := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == ctr.VolumeMounts[i].Name })
	if j < 0 || pod.Volumes[j].Secret == nil || pod.Volumes[j].Secret.SecretName != secretName {
		t.Errorf("volume mounted at %s is %+v, want the certificate's Secret %s", servingCertDir, pod.Volumes, secretName)
	} else if opt := pod.Volumes[j].Secret.Optional; opt != nil && *opt {
		t.Errorf("the certificate Secret is optional: the operator would start without it and fail to serve")
	}
	k := slices.IndexFunc(ctr.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == webhookServerPort })
	if k < 0 {
		t.Fatalf("ports %+v lack the webhook port %d", ctr.Ports, webhookServerPort)
	}
	webhookPortName := ctr.Ports[k].Name
	if p := ctr.ReadinessProbe; p == nil || p.TCPSocket == nil || (p.TCPSocket.Port.String() != webhookPortName && p.TCPSocket.Port.IntValue() != webhookServerPort) {
		t.Errorf("readiness probe %+v does not wait for the webhook port", p)
	}

	// The Service selects the replica's pods and forwards to the webhook
	// port.
	if len(o.service.Spec.Selector) == 0 || !labels.SelectorFromSet(o.service.Spec.Selector).Matches(labels.Set(o.deployment.Spec.Template.Labels)) {
		t.Errorf("service selector %v does not select the pods %v", o.service.Spec.Selector, o.deployment.Spec.Template.Labels)
	}
	var servicePort int32
	for _, p := range o.service.Spec.Ports {
		if p.TargetPort.String() == webhookPortName || p.TargetPort.IntValue() == webhookServerPort {
			servicePort = p.Port
		}
	}
	if servicePort == 0 {
		t.Errorf("service ports %+v do not forward to %s (%d)", o.service.Spec.Ports, webhookPortName, webhookServerPort)
	}

	// The configuration calls that Service and asks for the CA bundle.
	if got, want := o.vwc.Annotations["cert-manager.io/inject-ca-from"], ns+"/"+o.certificate.GetName(); got != want {
		t.Errorf("cert-manager.io/inject-ca-from = %q, want %q", got, want)
	}
	for _, w := range o.vwc.Webhooks {
		s := w.ClientConfig.Service
		if s == nil || s.Name != o.service.Name || s.Namespace != ns {
			t.Errorf("webhook %s calls %+v, want service %s/%s", w.Name, s, ns, o.service.Name)
			continue
		}
		if port := int32(443); s.Port != nil {
			port = *s.Port
			if port != servicePort {
				t.Errorf("webhook %s calls port %d, the service serves the webhook on %d", w.Name, port, servicePort)
			}
		} else if servicePort != port {
			t.Errorf("webhook %s calls port 443, the service serves the webhook on %d", w.Name, servicePort)
		}
	}
}

// registeredWebhook is a webhook the KubeRay operator registers, as its
// kubebuilder marker declares it.
type registeredWebhook struct {
	name, path, failurePolicy, sideEffects string
	groups, versions, resources, verbs     []string
	admissionReviewVersions                []string
}

var (
	kubeRayModuleOnce sync.Once
	kubeRayModuleDir  string
	kubeRayModuleErr  error
)

// kubeRayOperatorSource returns the module cache directory of the KubeRay
// operator at version, downloading it through the Go module proxy if the
// cache lacks it.
func kubeRayOperatorSource(t *testing.T, version string) string {
	t.Helper()
	kubeRayModuleOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", kubeRayModule+"@"+version)
		cmd.Dir = os.TempDir()
		cmd.Env = append(os.Environ(), "GOFLAGS=", "GO111MODULE=on")
		out, err := cmd.Output()
		if err != nil {
			kubeRayModuleErr = fmt.Errorf("go mod download %s@%s: %w (%s)", kubeRayModule, version, err, out)
			return
		}
		var info struct{ Dir string }
		if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
			kubeRayModuleErr = fmt.Errorf("go mod download %s@%s: no directory in %q (%v)", kubeRayModule, version, out, err)
			return
		}
		kubeRayModuleDir = info.Dir
	})
	if kubeRayModuleErr != nil {
		t.Fatal(kubeRayModuleErr)
	}
	return kubeRayModuleDir
}

var (
	setupWebhookCall = regexp.MustCompile(`webhooks\.(Setup\w+WebhookWithManager)\(`)
	webhookMarker    = regexp.MustCompile(`(?m)^\s*//\s*\+kubebuilder:webhook:(\S+)`)
)

// operatorWebhooks reads from the operator's source the validating
// webhooks it registers: the Setup…WebhookWithManager functions main.go
// calls when ENABLE_WEBHOOKS=true, each with the kubebuilder marker of the
// file declaring it. It fails if the operator configures its webhook
// server itself, since the chart relies on controller-runtime's defaults.
func operatorWebhooks(t *testing.T, dir string) []registeredWebhook {
	t.Helper()
	mainGo, err := os.ReadFile(filepath.Join(dir, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mainGo), `os.Getenv("ENABLE_WEBHOOKS") == "true"`) {
		t.Errorf("the operator's main.go no longer turns its webhooks on with ENABLE_WEBHOOKS=true")
	}
	for _, s := range []string{"WebhookServer", "CertDir", "webhook.Options"} {
		if strings.Contains(string(mainGo), s) {
			t.Errorf("the operator's main.go mentions %s: it may no longer serve on port %d with certificates from %s", s, webhookServerPort, servingCertDir)
		}
	}
	sources, err := filepath.Glob(filepath.Join(dir, "pkg", "webhooks", "*", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []registeredWebhook
	for _, call := range setupWebhookCall.FindAllStringSubmatch(string(mainGo), -1) {
		found := false
		for _, src := range sources {
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), "func "+call[1]+"(") {
				continue
			}
			markers := webhookMarker.FindAllStringSubmatch(string(data), -1)
			if len(markers) != 1 {
				t.Fatalf("%s: %d webhook markers, want 1", src, len(markers))
			}
			out = append(out, parseWebhookMarker(t, markers[0][1]))
			found = true
		}
		if !found {
			t.Fatalf("main.go calls %s, declared in no file of pkg/webhooks", call[1])
		}
	}
	if len(out) == 0 {
		t.Fatal("the operator's main.go registers no webhook")
	}
	return out
}

// parseWebhookMarker parses the arguments of a +kubebuilder:webhook marker
// (key=value pairs separated by commas, lists by semicolons).
func parseWebhookMarker(t *testing.T, args string) registeredWebhook {
	t.Helper()
	kv := map[string]string{}
	for _, field := range strings.Split(args, ",") {
		k, v, ok := strings.Cut(field, "=")
		if !ok {
			t.Fatalf("webhook marker %q: field %q is not key=value", args, field)
		}
		kv[k] = v
	}
	if kv["mutating"] != "false" {
		t.Fatalf("webhook marker %q: not a validating webhook", args)
	}
	list := func(k string) []string { return strings.Split(kv[k], ";") }
	w := registeredWebhook{
		name: kv["name"], path: kv["path"], sideEffects: kv["sideEffects"],
		groups: list("groups"), versions: list("versions"), resources: list("resources"),
		admissionReviewVersions: list("admissionReviewVersions"),
	}
	switch strings.ToLower(kv["failurePolicy"]) {
	case "", "fail":
		w.failurePolicy = string(admissionv1.Fail)
	case "ignore":
		w.failurePolicy = string(admissionv1.Ignore)
	default:
		t.Fatalf("webhook marker %q: unknown failurePolicy", args)
	}
	for _, v := range list("verbs") {
		w.verbs = append(w.verbs, strings.ToUpper(v))
	}
	if w.name == "" || w.path == "" {
		t.Fatalf("webhook marker %q: no name or path", args)
	}
	return w
}

// diffFromOperator compares a webhook configuration with the webhooks the
// operator registers (the same webhooks, each calling the path the
// operator serves it on, for the resources and operations it validates)
// and returns the differences.
func diffFromOperator(vwc admissionv1.ValidatingWebhookConfiguration, registered []registeredWebhook) []string {
	var diffs []string
	errorf := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	var want, got []string
	for _, r := range registered {
		want = append(want, r.name)
	}
	for _, w := range vwc.Webhooks {
		got = append(got, w.Name)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		errorf("the configuration has webhooks %v, the operator registers %v", got, want)
	}
	for _, r := range registered {
		i := slices.IndexFunc(vwc.Webhooks, func(w admissionv1.ValidatingWebhook) bool { return w.Name == r.name })
		if i < 0 {
			continue
		}
		w := vwc.Webhooks[i]
		if s := w.ClientConfig.Service; s == nil || s.Path == nil || *s.Path != r.path {
			errorf("webhook %s calls %+v, the operator serves it at %s", r.name, s, r.path)
		}
		if len(w.Rules) != 1 {
			errorf("webhook %s has rules %+v, want the operator's one", r.name, w.Rules)
		} else {
			rule := w.Rules[0]
			var ops []string
			for _, op := range rule.Operations {
				ops = append(ops, string(op))
			}
			for _, cmp := range []struct {
				what      string
				got, want []string
			}{
				{"API groups", rule.APIGroups, r.groups},
				{"API versions", rule.APIVersions, r.versions},
				{"resources", rule.Resources, r.resources},
				{"operations", ops, r.verbs},
			} {
				if !slices.Equal(slices.Sorted(slices.Values(cmp.got)), slices.Sorted(slices.Values(cmp.want))) {
					errorf("webhook %s: %s %v, the operator validates %v", r.name, cmp.what, cmp.got, cmp.want)
				}
			}
		}
		if w.FailurePolicy == nil || string(*w.FailurePolicy) != r.failurePolicy {
			errorf("webhook %s: failurePolicy %v, the operator declares %s", r.name, w.FailurePolicy, r.failurePolicy)
		}
		if w.SideEffects == nil || string(*w.SideEffects) != r.sideEffects {
			errorf("webhook %s: sideEffects %v, the operator declares %s", r.name, w.SideEffects, r.sideEffects)
		}
		if !slices.Equal(w.AdmissionReviewVersions, r.admissionReviewVersions) {
			errorf("webhook %s: admissionReviewVersions %v, the operator accepts %v", r.name, w.AdmissionReviewVersions, r.admissionReviewVersions)
		}
	}
	return diffs
}

// kubeRayVersion is the operator version the component runs.
func kubeRayVersion(t *testing.T, hook profile.Component) string {
	t.Helper()
	tag, _, _ := unstructured.NestedString(hook.Values, "image", "tag")
	if tag == "" {
		t.Fatal("the kuberay-webhook component sets no image.tag")
	}
	return tag
}

// TestKubeRayWebhookMatchesOperatorSource checks the rendered webhook
// configuration against the webhooks the operator version the component
// runs registers, read from its source.
func TestKubeRayWebhookMatchesOperatorSource(t *testing.T) {
	hook := builtinComponent(t, "kuberay-webhook")
	registered := operatorWebhooks(t, kubeRayOperatorSource(t, kubeRayVersion(t, hook)))
	objs, err := renderEmbedded(t, "kuberay-webhook", "ray-system", hook.Values)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffFromOperator(splitKubeRayWebhook(t, objs).vwc, registered) {
		t.Error(d)
	}

	// The comparison notices a configuration that drifts from the
	// operator: a path it does not serve, a webhook it does not register.
	drifted := splitKubeRayWebhook(t, objs).vwc
	p := "/validate-ray-io-v1-rayclusters"
	drifted.Webhooks[0].ClientConfig.Service.Path = &p
	drifted.Webhooks = append(drifted.Webhooks, admissionv1.ValidatingWebhook{Name: "vrayjob.kb.io"})
	diffs := diffFromOperator(drifted, registered)
	if !slices.ContainsFunc(diffs, func(d string) bool { return strings.Contains(d, p) }) ||
		!slices.ContainsFunc(diffs, func(d string) bool { return strings.Contains(d, "vrayjob.kb.io") }) {
		t.Errorf("differences of a drifted configuration: %q; want the wrong path and the unregistered webhook", diffs)
	}
}

// minimalCRD is a namespaced CRD of group/v1 kind that stores anything:
// enough for the API server to accept cert-manager's objects where
// cert-manager does not run.
func minimalCRD(group, kind, plural string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": plural + "." + group},
		"spec": map[string]any{
			"group": group,
			"names": map[string]any{"kind": kind, "plural": plural, "singular": strings.ToLower(kind), "listKind": kind + "List"},
			"scope": "Namespaced",
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
			}},
		},
	}}
}

// TestKubeRayWebhookInstalls installs the built-in kuberay-webhook
// component into the test control plane as the install phase does, waits
// for its declared readiness (the webhook Service has a ready endpoint,
// the kwok pod), and checks what the API server holds against the
// operator's source. It then shows that the API server sends RayCluster
// creations to that Service and path, and nothing else of KubeRay's.
//
// cert-manager does not run here: its CRDs stand in so that the Issuer and
// Certificate are accepted, no Secret is issued (kwok runs the pod without
// mounting it) and no CA bundle is injected, so the injection itself and
// the webhook's answers are covered on kind (e2e), not here.
func TestKubeRayWebhookInstalls(t *testing.T) {
	env := testenv.Shared(t)
	ctx := t.Context()
	cs := env.Clientset()
	hook := builtinComponent(t, "kuberay-webhook")
	moduleDir := kubeRayOperatorSource(t, kubeRayVersion(t, hook))
	registered := operatorWebhooks(t, moduleDir)

	// What the component depends on: cert-manager's APIs, KubeRay's CRDs
	// and the operator chart's ServiceAccount.
	for _, crd := range []*unstructured.Unstructured{
		minimalCRD("cert-manager.io", "Issuer", "issuers"),
		minimalCRD("cert-manager.io", "Certificate", "certificates"),
	} {
		if _, err := env.Dynamic().Resource(testenv.CRDResource).Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		if err := testenv.WaitForCRDEstablished(ctx, env.Dynamic(), crd.GetName()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := testenv.ApplyManifests(ctx, env, filepath.Join(moduleDir, "config", "crd", "bases"), nil); err != nil {
		t.Fatal(err)
	}
	in := newInstaller(t, env, nil)

	// Without the operator (its ServiceAccount) the replica gets no pod:
	// the component does not become ready and is rolled back.
	orphan := hook
	orphan.Namespace = namespace(t, env)
	orphan.Readiness = &profile.Readiness{Timeout: profile.Duration{Duration: 10 * time.Second}, Deployments: hook.Readiness.Deployments, Webhooks: hook.Readiness.Webhooks}
	_, err := in.Install(ctx, []profile.Component{orphan})
	notReadyError(t, err, "kuberay-webhook", "Deployment "+orphan.Namespace+"/kuberay-webhook", "rolled back")

	ns := namespace(t, env)
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "kuberay-operator"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	comp := hook
	comp.Namespace = ns
	readiness := *hook.Readiness
	readiness.Timeout = profile.Duration{Duration: 2 * time.Minute}
	comp.Readiness = &readiness
	recs, err := in.Install(ctx, []profile.Component{comp})
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	t.Cleanup(func() {
		if err := in.Uninstall(context.Background(), recs); err != nil {
			t.Errorf("uninstall: %v", err)
		}
	})

	// Read back what the API server holds of each object the chart
	// renders.
	rendered, err := renderEmbedded(t, "kuberay-webhook", ns, comp.Values)
	if err != nil {
		t.Fatal(err)
	}
	var got kubeRayWebhookObjects
	for _, obj := range rendered {
		r := stack.ObjectRef{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()}
		gvk := schema.FromAPIVersionAndKind(r.APIVersion, r.Kind)
		switch r.Kind {
		case "Issuer", "Certificate":
			u, err := env.Dynamic().Resource(gvk.GroupVersion().WithResource(strings.ToLower(r.Kind)+"s")).Namespace(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if r.Kind == "Issuer" {
				got.issuer = u
			} else {
				got.certificate = u
			}
		case "Service":
			s, err := cs.CoreV1().Services(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got.service = *s
		case "Deployment":
			d, err := cs.AppsV1().Deployments(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got.deployment = *d
		case "ValidatingWebhookConfiguration":
			v, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, r.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got.vwc = *v
		}
	}
	if got.issuer == nil || got.certificate == nil || got.vwc.Name == "" || got.deployment.Name == "" || got.service.Name == "" {
		t.Fatalf("the chart renders objects the API server does not hold")
	}
	checkKubeRayWebhookObjects(t, got, ns)
	for _, d := range diffFromOperator(got.vwc, registered) {
		t.Error(d)
	}
	for _, w := range got.vwc.Webhooks {
		t.Logf("webhook %s: caBundle %d bytes (cert-manager's CA injector fills it in; it does not run here)", w.Name, len(w.ClientConfig.CABundle))
	}

	// The API server sends creating a RayCluster to the webhook, through
	// the Service, at the operator's path: the call fails here (no
	// container answers), and failurePolicy Fail turns that into a denial
	// naming the webhook.
	rayClusters := env.Dynamic().Resource(schema.GroupVersionResource{Group: "ray.io", Version: "v1", Resource: "rayclusters"}).Namespace(ns)
	rc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "ray.io/v1", "kind": "RayCluster",
		"metadata": map[string]any{"name": "webhook-probe"},
		"spec": map[string]any{"headGroupSpec": map[string]any{
			"rayStartParams": map[string]any{},
			"template": map[string]any{"spec": map[string]any{"containers": []any{
				map[string]any{"name": "ray-head", "image": "registry.example/kaic-test/ray:1"},
			}}},
		}},
	}}
	_, err = rayClusters.Create(ctx, rc, metav1.CreateOptions{})
	rayClusterHook := registered[slices.IndexFunc(registered, func(r registeredWebhook) bool { return slices.Contains(r.resources, "rayclusters") })]
	switch {
	case err == nil:
		t.Errorf("a RayCluster was created: the API server did not call webhook %s", rayClusterHook.name)
	case !strings.Contains(err.Error(), rayClusterHook.name) || !strings.Contains(err.Error(), got.service.Name+"."+ns+".svc") || !strings.Contains(err.Error(), rayClusterHook.path):
		t.Errorf("creating a RayCluster: %v; want a denial by webhook %s calling service %s at %s", err, rayClusterHook.name, got.service.Name, rayClusterHook.path)
	default:
		t.Logf("creating a RayCluster went to the webhook: %v", err)
	}

	// RayJobs have no webhook registered by the operator: none is called.
	rayJobs := env.Dynamic().Resource(schema.GroupVersionResource{Group: "ray.io", Version: "v1", Resource: "rayjobs"}).Namespace(ns)
	rj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "ray.io/v1", "kind": "RayJob",
		"metadata": map[string]any{"name": "no-webhook"},
		"spec":     map[string]any{"entrypoint": "python -c 'print(1)'"},
	}}
	if _, err := rayJobs.Create(ctx, rj, metav1.CreateOptions{}); err != nil {
		t.Errorf("creating a RayJob: %v; no webhook should be called for RayJobs", err)
	}
}
