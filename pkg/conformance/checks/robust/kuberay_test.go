package robust

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kaic-dev/kaic/internal/testenv"
)

// kubeRayBinary is the KubeRay operator the tests run: built by
// `hack/testbin/build.sh kuberay` into the testbin directory from the
// version pinned by the wrapper module; its CRDs and webhook manifest come
// from the module cache.
var kubeRayBinary = &testenv.Operator{
	Name:    "kuberay",
	Title:   "KubeRay",
	Role:    "operator",
	Module:  "github.com/ray-project/kuberay/ray-operator",
	Wrapper: "hack/testbin/kuberay",
}

const (
	// webhookPort is where the operator serves its webhooks: it takes the
	// port from no flag, so it is controller-runtime's default.
	webhookPort = 9443
	// webhookConfigurationName is the configuration the tests install,
	// holding the operator's RayCluster webhook.
	webhookConfigurationName = "kuberay-validating-webhook-configuration"
	webhookServiceName       = "kuberay-webhook-service"
	// operatorNamespace is where the stand-in operator pods run: not the
	// namespace the kuberay-operator stack component installs into, so
	// that only finding them leads the check there.
	operatorNamespace = "ai-operators"
)

// kubeRayCA is the CA the webhook configuration trusts, once KubeRay runs.
var kubeRayCA []byte

// sharedWithKubeRay returns the package's control plane with KubeRay
// running against it: its CRDs installed, the operator (a process on the
// test's machine) ready with its RayCluster webhook served on loopback and
// registered, and a Deployment standing for the operator's pods (kwok runs
// them, without containers) where its stack component installs them.
// KubeRay starts once per test binary and stops with the control plane.
func sharedWithKubeRay(t *testing.T) *testenv.Env {
	t.Helper()
	env := testenv.Shared(t)
	kubeRayBinary.StartOnce(t, func(ctx context.Context, binary string) error {
		var err error
		kubeRayCA, err = startKubeRay(ctx, env, binary)
		return err
	})
	return env
}

// newWebhookCerts returns a CA and a serving certificate it signed for
// dnsName and 127.0.0.1, valid for a day.
func newWebhookCerts(dnsName string) (*testenv.WebhookCerts, error) {
	return testenv.NewWebhookCerts(dnsName, testenv.WebhookCA{})
}

// startKubeRay installs KubeRay's CRDs, starts the operator with its
// webhooks on and registers its RayCluster webhook. It returns the CA the
// webhook configuration trusts.
func startKubeRay(ctx context.Context, env *testenv.Env, binary string) ([]byte, error) {
	moduleDir, err := kubeRayBinary.ModuleDir(ctx)
	if err != nil {
		return nil, err
	}
	if l, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(webhookPort))); err != nil {
		return nil, fmt.Errorf("KubeRay serves its webhooks on port %d, which is taken: %w", webhookPort, err)
	} else {
		l.Close()
	}
	ports, err := testenv.FreePorts(2)
	if err != nil {
		return nil, err
	}
	healthPort, metricsPort := ports[0], ports[1]

	// controller-runtime reads the serving certificate from
	// $TMPDIR/k8s-webhook-server/serving-certs.
	tmp := filepath.Join(env.Dir, "kuberay", "tmp")
	certDir := filepath.Join(tmp, "k8s-webhook-server", "serving-certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	certs, err := newWebhookCerts(webhookServiceName + ".ray-system.svc")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.crt"), certs.CertPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.key"), certs.KeyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := installKubeRayCRDs(ctx, env, filepath.Join(moduleDir, "config", "crd", "bases")); err != nil {
		return nil, err
	}

	proc, err := kubeRayBinary.Start(env, binary, []string{
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", healthPort),
		fmt.Sprintf("--metrics-addr=127.0.0.1:%d", metricsPort),
		"--enable-leader-election=false",
		"--log-stdout-encoder=console",
	}, []string{"KUBECONFIG=" + env.KubeconfigPath, "TMPDIR=" + tmp, "ENABLE_WEBHOOKS=true"})
	if err != nil {
		return nil, err
	}
	if err := proc.WaitReady(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", healthPort)); err != nil {
		return nil, err
	}
	// Readiness does not wait for the webhook server.
	if err := proc.WaitServing(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(webhookPort)), certs.CAPEM); err != nil {
		return nil, err
	}
	url := fmt.Sprintf("https://127.0.0.1:%d", webhookPort)
	if err := installKubeRayWebhook(ctx, env, filepath.Join(moduleDir, "config", "webhook", "manifests.yaml"), func(path string) admissionv1.WebhookClientConfig {
		u := url + path
		return admissionv1.WebhookClientConfig{URL: &u, CABundle: certs.CAPEM}
	}); err != nil {
		return nil, err
	}
	if err := standInOperatorPods(ctx, env); err != nil {
		return nil, err
	}
	return certs.CAPEM, nil
}

// installKubeRayCRDs creates KubeRay's CRDs from the module and waits until
// they are established.
func installKubeRayCRDs(ctx context.Context, env *testenv.Env, dir string) error {
	_, err := testenv.ApplyManifests(ctx, env, dir, nil)
	return err
}

// installKubeRayWebhook registers the RayCluster webhook of the module's
// webhook manifest, called where clientConfig says. The manifest also
// lists RayJob and RayService webhooks, but the operator registers only the
// RayCluster one (ENABLE_WEBHOOKS): nothing would answer the others.
func installKubeRayWebhook(ctx context.Context, env *testenv.Env, manifest string, clientConfig func(path string) admissionv1.WebhookClientConfig) error {
	objs, err := testenv.ReadManifests(manifest)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		if obj.GetKind() != "ValidatingWebhookConfiguration" {
			continue
		}
		var vwc admissionv1.ValidatingWebhookConfiguration
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &vwc); err != nil {
			return err
		}
		var kept []admissionv1.ValidatingWebhook
		for _, w := range vwc.Webhooks {
			if w.Name != "vraycluster.kb.io" {
				continue
			}
			path := ""
			if w.ClientConfig.Service != nil && w.ClientConfig.Service.Path != nil {
				path = *w.ClientConfig.Service.Path
			}
			w.ClientConfig = clientConfig(path)
			kept = append(kept, w)
		}
		if len(kept) == 0 {
			return fmt.Errorf("%s has no webhook vraycluster.kb.io", manifest)
		}
		vwc.Webhooks = kept
		vwc.ObjectMeta = metav1.ObjectMeta{Name: webhookConfigurationName}
		_, err := env.Clientset().AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &vwc, metav1.CreateOptions{})
		return err
	}
	return fmt.Errorf("%s has no ValidatingWebhookConfiguration", manifest)
}

// standInOperatorPods creates the Deployment the kuberay-operator stack
// component installs, with the chart's labels, in operatorNamespace. kwok
// runs its pod without a container: the operator itself runs as a process
// on the test's machine.
func standInOperatorPods(ctx context.Context, env *testenv.Env) error {
	return standInDeployment(ctx, env, operatorNamespace)
}

// standInDeployment creates a Deployment named kuberay-operator with the
// chart's labels in namespace, creating the namespace if needed.
func standInDeployment(ctx context.Context, env *testenv.Env, namespace string) error {
	client := env.Clientset()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	labels := map[string]string{"app.kubernetes.io/name": "kuberay-operator", "app.kubernetes.io/instance": "kuberay-operator", "app.kubernetes.io/component": "kuberay-operator"}
	_, err := client.AppsV1().Deployments(namespace).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "kuberay-operator", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "kuberay-operator",
					Image: "quay.io/kuberay/operator:" + kubeRayBinary.VersionOrEmpty(),
				}}},
			},
		},
	}, metav1.CreateOptions{})
	return err
}
