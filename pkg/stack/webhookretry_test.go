package stack_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
)

func TestWebhookUnavailable(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		hook string
		ok   bool
	}{
		{`Internal error occurred: failed calling webhook "mdeployment.kb.io": failed to call webhook: Post "https://kueue-webhook-service.kueue-system.svc:443/mutate-apps-v1-deployment?timeout=10s": dial tcp 10.96.1.2:443: connect: connection refused`, "mdeployment.kb.io", true},
		{`Internal error occurred: failed calling webhook "w.example.com": failed to call webhook: Post "https://s.ns.svc:443/v?timeout=10s": no endpoints available for service "s"`, "w.example.com", true},
		{`failed calling webhook "w.example.com": failed to call webhook: Post "https://s.ns.svc:443/": tls: failed to verify certificate: x509: certificate signed by unknown authority`, "w.example.com", true},
		// A webhook that answered and denied is the component's problem.
		{`admission webhook "vraycluster.kb.io" denied the request: worker group names must be unique`, "", false},
		{`connection refused`, "", false},
	} {
		hook, ok := stack.WebhookUnavailable(errors.New(tc.msg))
		if hook != tc.hook || ok != tc.ok {
			t.Errorf("%q: got %q, %t; want %q, %t", tc.msg, hook, ok, tc.hook, tc.ok)
		}
	}
	if _, ok := stack.WebhookUnavailable(nil); ok {
		t.Error("nil error reported as an unavailable webhook")
	}
}

// notes records the installer's notes.
type notes struct {
	stepRecorder
	mu    sync.Mutex
	lines []string
}

func (n *notes) Notef(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lines = append(n.lines, fmt.Sprintf(format, args...))
}

func (n *notes) text() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.lines, "\n")
}

// A component whose objects an admission webhook of another component
// intercepts before that webhook serves is applied once the webhook
// answers, and fails naming the webhook when it never does.
func TestInstallWaitsForAnUnavailableWebhook(t *testing.T) {
	defer stack.SetWebhookRetryPause(500 * time.Millisecond)()
	env := testenv.Shared(t)
	ctx := t.Context()
	ns := namespace(t, env)
	client := env.Clientset()
	label := "kaic-webhook-test-" + rand.String(5)
	if _, err := client.CoreV1().Namespaces().Patch(ctx, ns, "application/merge-patch+json", []byte(`{"metadata":{"labels":{"`+label+`":"intercepted"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	// The webhook's Service selects no pod: as if its pods were not up yet.
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "not-serving", Namespace: ns},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "nothing"}, Ports: []corev1.ServicePort{{Port: 443, TargetPort: intstr.FromInt32(9443)}}},
	}
	if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hookName := "configmaps." + label + ".test.kaic.dev"
	createHook := func(t *testing.T) string {
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: label + "-" + rand.String(4)},
			Webhooks: []admissionregistrationv1.ValidatingWebhook{{
				Name:                    hookName,
				ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: ns, Name: svc.Name, Path: ptr.To("/validate")}},
				Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
				NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{label: "intercepted"}},
				FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
				SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
				AdmissionReviewVersions: []string{"v1"},
			}},
		}
		created, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.WithoutCancel(ctx), created.Name, metav1.DeleteOptions{})
		})
		return created.Name
	}
	file := filepath.Join(t.TempDir(), "cm.yaml")
	if err := os.WriteFile(file, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: intercepted\ndata:\n  a: b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	component := func(timeout time.Duration) profile.Component {
		return profile.Component{Name: "intercepted", Namespace: ns, Manifests: &profile.Manifests{Files: []string{file}},
			Readiness: &profile.Readiness{Timeout: profile.Duration{Duration: timeout}}}
	}

	t.Run("applied once the webhook answers", func(t *testing.T) {
		vwc := createHook(t)
		rep := &notes{}
		in := newInstaller(t, env, nil, stack.WithProgress(rep))
		// The webhook "starts serving" (goes away) after a few attempts.
		go func() {
			time.Sleep(3 * time.Second)
			_ = client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.WithoutCancel(ctx), vwc, metav1.DeleteOptions{})
		}()
		recs, err := in.Install(ctx, []profile.Component{component(time.Minute)})
		if err != nil {
			t.Fatalf("install: %v", err)
		}
		if recs[0].Action != stack.ActionApplied {
			t.Errorf("record %+v", recs[0])
		}
		if !strings.Contains(rep.text(), hookName) || !strings.Contains(rep.text(), "does not answer yet") {
			t.Errorf("no note about waiting for the webhook: %q", rep.text())
		}
		if _, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "intercepted", metav1.GetOptions{}); err != nil {
			t.Errorf("configmap: %v", err)
		}
		_ = client.CoreV1().ConfigMaps(ns).Delete(ctx, "intercepted", metav1.DeleteOptions{})
	})

	t.Run("fails naming the webhook when it never answers", func(t *testing.T) {
		createHook(t)
		in := newInstaller(t, env, nil)
		start := time.Now()
		_, err := in.Install(ctx, []profile.Component{component(4 * time.Second)})
		if err == nil || !strings.Contains(err.Error(), `failed calling webhook "`+hookName+`"`) {
			t.Fatalf("err = %v, want the webhook named", err)
		}
		if timeout := (*stack.WebhookTimeoutError)(nil); !errors.As(err, &timeout) || timeout.Webhook != hookName || timeout.Limit != 4*time.Second {
			t.Errorf("err = %v, want a WebhookTimeoutError for %s within 4s", err, hookName)
		}
		if took := time.Since(start); took > 30*time.Second {
			t.Errorf("gave up after %s, want about the component's 4s", took)
		}
	})
}

// The retry stops at once on success or on any error but an unreachable
// webhook, and never starts a pause that would end past its limit.
func TestRetryPastWebhooks(t *testing.T) {
	unreachable := errors.New(`Internal error occurred: failed calling webhook "w.kaic.dev": failed to call webhook: Post "https://s.ns.svc:443/": dial tcp 10.96.0.9:443: connect: connection refused`)
	denied := errors.New(`admission webhook "w.kaic.dev" denied the request: no`)
	for _, tc := range []struct {
		name     string
		answers  []error // one per attempt; the last repeats
		attempts int
		want     error
		gaveUp   bool // a WebhookTimeoutError
	}{
		{"succeeds at once", []error{nil}, 1, nil, false},
		{"denied at once", []error{denied}, 1, denied, false},
		{"answers on the third attempt", []error{unreachable, unreachable, nil}, 3, nil, false},
		{"denied after waiting", []error{unreachable, denied}, 2, denied, false},
		// Limit 1s, pause 400ms: attempts at 0 and 400ms, then 800ms; a
		// fourth would need a pause ending at 1.2s.
		{"never answers", []error{unreachable}, 3, unreachable, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var attempts, waits int
			err := stack.RetryPastWebhooks(t.Context(), time.Second, 400*time.Millisecond,
				func(hook string, err error) {
					waits++
					if hook != "w.kaic.dev" || err != unreachable {
						t.Errorf("told to wait for %q after %v", hook, err)
					}
				},
				func() error {
					attempts++
					return tc.answers[min(attempts, len(tc.answers))-1]
				})
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if attempts != tc.attempts || waits != attempts-1 {
				t.Errorf("%d attempts and %d waits, want %d and %d", attempts, waits, tc.attempts, tc.attempts-1)
			}
			var timeout *stack.WebhookTimeoutError
			if gaveUp := errors.As(err, &timeout); gaveUp != tc.gaveUp {
				t.Errorf("err = %v: WebhookTimeoutError %t", err, gaveUp)
			} else if gaveUp && (timeout.Webhook != "w.kaic.dev" || timeout.Limit != time.Second || timeout.Waited > time.Second) {
				t.Errorf("timeout %+v", timeout)
			}
		})
	}
}
