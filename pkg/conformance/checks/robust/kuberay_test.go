package robust

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/kaic-dev/kaic/internal/testenv"
)

// The KubeRay operator the tests run: built by `hack/testbin/build.sh
// kuberay` into the testbin directory from the version pinned by the
// wrapper module below; its CRDs and webhook manifest come from the module
// cache.
const (
	kubeRayBinary    = "kuberay"
	kubeRayModule    = "github.com/ray-project/kuberay/ray-operator"
	kubeRayWrapper   = "../../../../hack/testbin/kuberay"
	kubeRayBuildHint = "make testbin-operators"
	// webhookPort is where the operator serves its webhooks: it takes the
	// port from no flag, so it is controller-runtime's default.
	webhookPort = 9443
	// webhookConfigurationName is the configuration the tests install,
	// holding the operator's RayCluster webhook.
	webhookConfigurationName = "kuberay-validating-webhook-configuration"
	webhookServiceName       = "kuberay-webhook-service"
)

// kubeRayOnce starts KubeRay against the shared control plane once per
// test binary; the kernel stops it when the test binary exits.
var kubeRayOnce struct {
	sync.Once
	err  error
	skip string
	ca   []byte // the CA the webhook configuration trusts
}

// sharedWithKubeRay returns the package's control plane with KubeRay
// running against it: its CRDs installed, the operator (a process on the
// test's machine) ready with its RayCluster webhook served on loopback and
// registered, and a Deployment standing for the operator's pods (kwok runs
// them, without containers) where its stack component installs them.
func sharedWithKubeRay(t *testing.T) *testenv.Env {
	t.Helper()
	env := testenv.Shared(t)
	kubeRayOnce.Do(func() {
		binary, err := kubeRayBinaryPath()
		if err != nil {
			kubeRayOnce.err = err
			return
		}
		if _, err := os.Stat(binary); err != nil {
			kubeRayOnce.skip = fmt.Sprintf("the KubeRay operator %s is missing: build it with `%s`", binary, kubeRayBuildHint)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		began := time.Now()
		kubeRayOnce.ca, kubeRayOnce.err = startKubeRay(ctx, env, binary)
		if kubeRayOnce.err == nil {
			t.Logf("KubeRay %s ready in %s", kubeRayVersionOrEmpty(), time.Since(began).Round(time.Millisecond))
		}
	})
	switch {
	case kubeRayOnce.skip != "":
		testenv.MissingOperator(t, kubeRayOnce.skip)
	case kubeRayOnce.err != nil:
		t.Fatalf("starting KubeRay: %v", kubeRayOnce.err)
	}
	return env
}

func kubeRayBinaryPath() (string, error) {
	dir, err := testenv.BinDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, kubeRayBinary), nil
}

// kubeRayVersion reads the KubeRay version the wrapper module pins.
func kubeRayVersion() (string, error) {
	data, err := os.ReadFile(filepath.Join(kubeRayWrapper, "go.mod"))
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 3 && f[0] == "require" && f[1] == kubeRayModule {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("%s/go.mod does not require %s", kubeRayWrapper, kubeRayModule)
}

func kubeRayVersionOrEmpty() string {
	v, _ := kubeRayVersion()
	return v
}

// kubeRayModuleDir returns the module cache directory of the pinned
// KubeRay operator, downloading it only if the cache lacks it.
func kubeRayModuleDir(ctx context.Context) (string, error) {
	version, err := kubeRayVersion()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", kubeRayModule+"@"+version)
	cmd.Dir = kubeRayWrapper
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating %s@%s in the module cache: %w", kubeRayModule, version, err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("locating %s@%s in the module cache: no directory in %q", kubeRayModule, version, out)
	}
	return info.Dir, nil
}

// startKubeRay installs KubeRay's CRDs, starts the operator with its
// webhooks on and registers its RayCluster webhook. It returns the CA the
// webhook configuration trusts.
func startKubeRay(ctx context.Context, env *testenv.Env, binary string) ([]byte, error) {
	moduleDir, err := kubeRayModuleDir(ctx)
	if err != nil {
		return nil, err
	}
	if l, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(webhookPort))); err != nil {
		return nil, fmt.Errorf("KubeRay serves its webhooks on port %d, which is taken: %w", webhookPort, err)
	} else {
		l.Close()
	}
	ports, err := freePorts(2)
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
	if err := os.WriteFile(filepath.Join(certDir, "tls.crt"), certs.certPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.key"), certs.keyPEM, 0o600); err != nil {
		return nil, err
	}
	if _, err := installKubeRayCRDs(ctx, env, filepath.Join(moduleDir, "config", "crd", "bases")); err != nil {
		return nil, err
	}

	logPath := env.LogPath("kuberay")
	proc, err := startProcess(binary, logPath, []string{
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", healthPort),
		fmt.Sprintf("--metrics-addr=127.0.0.1:%d", metricsPort),
		"--enable-leader-election=false",
		"--log-stdout-encoder=console",
	}, []string{"KUBECONFIG=" + env.KubeconfigPath, "TMPDIR=" + tmp, "ENABLE_WEBHOOKS=true"})
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, proc, fmt.Sprintf("http://127.0.0.1:%d/readyz", healthPort)); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, tail(logPath, 30))
	}
	if err := waitServing(ctx, proc, net.JoinHostPort("127.0.0.1", strconv.Itoa(webhookPort)), certs.caPEM); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, tail(logPath, 30))
	}
	url := fmt.Sprintf("https://127.0.0.1:%d", webhookPort)
	if err := installKubeRayWebhook(ctx, env, filepath.Join(moduleDir, "config", "webhook", "manifests.yaml"), func(path string) admissionv1.WebhookClientConfig {
		u := url + path
		return admissionv1.WebhookClientConfig{URL: &u, CABundle: certs.caPEM}
	}); err != nil {
		return nil, err
	}
	if err := standInOperatorPods(ctx, env); err != nil {
		return nil, err
	}
	return certs.caPEM, nil
}

// installKubeRayCRDs creates KubeRay's CRDs from the module and waits until
// they are established. It returns their names.
func installKubeRayCRDs(ctx context.Context, env *testenv.Env, dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no CRDs in %s (%v)", dir, err)
	}
	crds := env.Dynamic().Resource(testenv.CRDResource)
	var names []string
	for _, f := range files {
		objs, err := readManifests(f)
		if err != nil {
			return nil, err
		}
		for _, crd := range objs {
			if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return nil, fmt.Errorf("creating CRD %s: %w", crd.GetName(), err)
			}
			names = append(names, crd.GetName())
		}
	}
	for _, name := range names {
		if err := testenv.WaitForCRDEstablished(ctx, env.Dynamic(), name); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// installKubeRayWebhook registers the RayCluster webhook of the module's
// webhook manifest, called where clientConfig says. The manifest also
// lists RayJob and RayService webhooks, but the operator registers only the
// RayCluster one (ENABLE_WEBHOOKS): nothing would answer the others.
func installKubeRayWebhook(ctx context.Context, env *testenv.Env, manifest string, clientConfig func(path string) admissionv1.WebhookClientConfig) error {
	objs, err := readManifests(manifest)
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
// component installs, with the chart's labels, in its namespace. kwok runs
// its pod without a container: the operator itself runs as a process on
// the test's machine.
func standInOperatorPods(ctx context.Context, env *testenv.Env) error {
	client := env.Clientset()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ray-system"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	labels := map[string]string{"app.kubernetes.io/name": "kuberay-operator", "app.kubernetes.io/instance": "kuberay-operator", "app.kubernetes.io/component": "kuberay-operator"}
	_, err := client.AppsV1().Deployments("ray-system").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "kuberay-operator", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "kuberay-operator",
					Image: "quay.io/kuberay/operator:" + kubeRayVersionOrEmpty(),
				}}},
			},
		},
	}, metav1.CreateOptions{})
	return err
}

func readManifests(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 64*1024)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// process is a started operator.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// startProcess runs binary with its output in logPath and extra
// environment variables. The process has its own process group and the
// kernel kills it when the test binary exits.
func startProcess(binary, logPath string, args, environ []string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), environ...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = processAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	return p, nil
}

// waitReady polls the operator's readiness endpoint (there is nothing to
// watch) until it answers 200, the process exits or ctx ends.
func waitReady(ctx context.Context, p *process, url string) error {
	return poll(ctx, p, func() error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return nil
	})
}

// waitServing polls until the webhook server at addr completes a TLS
// handshake with a certificate caPEM vouches for: readiness does not wait
// for it.
func waitServing(ctx context.Context, p *process, addr string, caPEM []byte) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	dialer := &tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}
	return poll(ctx, p, func() error {
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

func poll(ctx context.Context, p *process, try func() error) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("the KubeRay operator exited: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("the KubeRay operator was not ready (%v): %w", last, ctx.Err())
		case <-tick.C:
		}
		if last = try(); last == nil {
			return nil
		}
	}
}

func tail(path string, lines int) string {
	data, _ := os.ReadFile(path)
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return "--- " + path + " (end) ---\n" + strings.Join(all, "\n")
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// webhookCerts are a CA and a serving certificate it signed for the
// webhook service's DNS name and 127.0.0.1, where the API server calls the
// webhook in the tests.
type webhookCerts struct {
	caPEM, certPEM, keyPEM []byte
}

func newWebhookCerts(dnsName string) (*webhookCerts, error) {
	notBefore := time.Now().Add(-time.Hour)
	notAfter := notBefore.Add(24 * time.Hour)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kaic-test-webhook-ca"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: dnsName},
		DNSNames:     []string{dnsName},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &webhookCerts{
		caPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}
