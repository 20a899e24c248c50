package gang

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kaic-dev/kaic/internal/testenv"
)

// kueue is the Kueue manager the tests run: built by `hack/testbin/build.sh
// kueue` into the testbin directory from the version pinned by the wrapper
// module, whose CRDs and webhook manifests come from the module cache.
var kueue = &testenv.Operator{
	Name:    "kueue",
	Title:   "Kueue",
	Role:    "manager",
	Module:  "sigs.k8s.io/kueue",
	Wrapper: "hack/testbin/kueue",
}

const (
	kueueNamespace   = "kueue-system"
	kueueSecret      = "kueue-webhook-server-cert"
	kueueServiceName = "kueue-webhook-service"
)

// conversionCRDs are the CRDs Kueue serves conversion for; its certificate
// manager insists on injecting its CA into each of them.
var conversionCRDs = map[string]bool{
	"localqueues.kueue.x-k8s.io":        true,
	"clusterqueues.kueue.x-k8s.io":      true,
	"cohorts.kueue.x-k8s.io":            true,
	"workloads.kueue.x-k8s.io":          true,
	"multikueueclusters.kueue.x-k8s.io": true,
}

// webhookConfigurationKinds are the kinds of the webhook manifest the tests
// install.
var webhookConfigurationKinds = map[string]bool{
	"MutatingWebhookConfiguration":   true,
	"ValidatingWebhookConfiguration": true,
}

// sharedWithKueue returns the package's control plane with Kueue running
// against it: its CRDs installed, its manager ready and its Job and queue
// webhooks served with the test's certificates. Kueue starts once per test
// binary and stops with the control plane.
func sharedWithKueue(t *testing.T) *testenv.Env {
	t.Helper()
	env := testenv.Shared(t)
	kueue.StartOnce(t, func(ctx context.Context, binary string) error {
		return startKueue(ctx, env, binary)
	})
	return env
}

func startKueue(ctx context.Context, env *testenv.Env, binary string) error {
	moduleDir, err := kueue.ModuleDir(ctx)
	if err != nil {
		return err
	}
	ports, err := testenv.FreePorts(2)
	if err != nil {
		return err
	}
	webhookPort, healthPort := ports[0], ports[1]
	webhookURL := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(webhookPort))

	work := filepath.Join(env.Dir, "kueue")
	certDir := filepath.Join(work, "certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return err
	}
	// A CA in the form Kueue's certificate manager accepts: an RSA key, a
	// certificate valid for its CA name, far from expiry.
	certs, err := testenv.NewWebhookCerts(kueueServiceName+"."+kueueNamespace+".svc", testenv.WebhookCA{
		Name:         "kueue-ca",
		Organization: "kueue",
		NameAsDNS:    true,
		RSA:          true,
		Validity:     2 * 365 * 24 * time.Hour,
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.crt"), certs.CertPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.key"), certs.KeyPEM, 0o600); err != nil {
		return err
	}

	client := env.Clientset()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: kueueNamespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	// Kueue's certificate manager finds valid certificates in its secret
	// and keeps them, so its webhooks are served with the test's CA.
	if _, err := client.CoreV1().Secrets(kueueNamespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: kueueSecret},
		Data:       map[string][]byte{"ca.crt": certs.CAPEM, "ca.key": certs.CAKeyPEM, "tls.crt": certs.CertPEM, "tls.key": certs.KeyPEM},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := installKueueCRDs(ctx, env, filepath.Join(moduleDir, "config/components/crd/bases"), webhookURL, certs.CAPEM, nil); err != nil {
		return err
	}

	config := fmt.Sprintf(`apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
namespace: %s
health:
  healthProbeBindAddress: 127.0.0.1:%d
metrics:
  bindAddress: "0"
webhook:
  host: 127.0.0.1
  port: %d
  certDir: %s
leaderElection:
  leaderElect: false
internalCertManagement:
  enable: true
  webhookServiceName: %s
  webhookSecretName: %s
integrations:
  frameworks: ["batch/job"]
`, kueueNamespace, healthPort, webhookPort, certDir, kueueServiceName, kueueSecret)
	configPath := filepath.Join(work, "config.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return err
	}
	proc, err := kueue.Start(env, binary, []string{
		"--config=" + configPath,
		"--kubeconfig=" + env.KubeconfigPath,
		// The visibility API server wants certificates of its own and an
		// APIService; the check does not use it.
		"--feature-gates=VisibilityOnDemand=false",
	}, nil)
	if err != nil {
		return err
	}
	if err := proc.WaitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", healthPort)); err != nil {
		return err
	}
	return installKueueWebhooks(ctx, env, filepath.Join(moduleDir, "config/components/webhook/manifests.yaml"), webhookURL, certs.CAPEM)
}

// installKueueCRDs creates Kueue's CRDs from the module, with conversion
// served by the manager at webhookURL, and waits until they are
// established. With only set, each CRD serves only that version of the
// ones it defines (and stores it), as a Kueue that knows no other would.
func installKueueCRDs(ctx context.Context, env *testenv.Env, dir, webhookURL string, caPEM []byte, only *string) error {
	_, err := testenv.ApplyManifests(ctx, env, dir, func(crd *unstructured.Unstructured) (bool, error) {
		if only != nil {
			if err := serveOnly(crd, *only); err != nil {
				return false, err
			}
		}
		if conversionCRDs[crd.GetName()] {
			conversion := map[string]any{
				"strategy": "Webhook",
				"webhook": map[string]any{
					"conversionReviewVersions": []any{"v1"},
					"clientConfig":             clientConfig(webhookURL+"/convert", caPEM),
				},
			}
			if err := unstructured.SetNestedField(crd.Object, jsonValue(conversion), "spec", "conversion"); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	return err
}

// serveOnly makes crd serve and store version alone, if it defines it.
func serveOnly(crd *unstructured.Unstructured, version string) error {
	versions, _, err := unstructured.NestedSlice(crd.Object, "spec", "versions")
	if err != nil {
		return err
	}
	defines := false
	for _, v := range versions {
		defines = defines || v.(map[string]any)["name"] == version
	}
	if !defines {
		return nil
	}
	for _, v := range versions {
		m := v.(map[string]any)
		m["served"] = m["name"] == version
		m["storage"] = m["name"] == version
	}
	return unstructured.SetNestedSlice(crd.Object, versions, "spec", "versions")
}

// installKueueWebhooks registers the manager's webhooks for Jobs and for
// Kueue's own objects, called at webhookURL. Webhooks of integrations the
// manager does not run (pods, deployments, other frameworks) are left out:
// nothing would answer them.
func installKueueWebhooks(ctx context.Context, env *testenv.Env, manifest, webhookURL string, caPEM []byte) error {
	_, err := testenv.ApplyManifests(ctx, env, manifest, func(obj *unstructured.Unstructured) (bool, error) {
		if !webhookConfigurationKinds[obj.GetKind()] {
			return false, nil
		}
		hooks, _, _ := unstructured.NestedSlice(obj.Object, "webhooks")
		var kept []any
		for _, h := range hooks {
			hook := h.(map[string]any)
			if !webhookFor(hook, "batch", "kueue.x-k8s.io") {
				continue
			}
			path, _, _ := unstructured.NestedString(hook, "clientConfig", "service", "path")
			hook["clientConfig"] = clientConfig(webhookURL+path, caPEM)
			kept = append(kept, jsonValue(hook))
		}
		obj.Object["webhooks"] = kept
		// The names Kueue's certificate manager keeps up to date.
		obj.SetName("kueue-" + obj.GetName())
		return true, nil
	})
	return err
}

// clientConfig calls a webhook at url, trusting caPEM if given.
func clientConfig(url string, caPEM []byte) map[string]any {
	c := map[string]any{"url": url}
	if len(caPEM) > 0 {
		c["caBundle"] = caPEM
	}
	return c
}

// webhookFor reports whether a webhook's rules cover one of the API groups.
func webhookFor(hook map[string]any, groups ...string) bool {
	rules, _, _ := unstructured.NestedSlice(hook, "rules")
	for _, r := range rules {
		apiGroups, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "apiGroups")
		for _, g := range apiGroups {
			for _, want := range groups {
				if g == want {
					return true
				}
			}
		}
	}
	return false
}

// jsonValue round-trips v through JSON, so that it holds only the types
// unstructured objects may hold ([]byte becomes base64 text).
func jsonValue(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}
