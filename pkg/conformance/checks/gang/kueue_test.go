package gang

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
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

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/kaic-dev/kaic/internal/testenv"
)

// The Kueue manager the tests run: built by `hack/testbin/build.sh kueue`
// into the testbin directory from the version pinned by the wrapper module
// below, whose CRDs and webhook manifests come from the module cache.
const (
	kueueBinary      = "kueue"
	kueueModule      = "sigs.k8s.io/kueue"
	kueueWrapper     = "../../../../hack/testbin/kueue"
	kueueBuildHint   = "make testbin-operators"
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

var (
	webhookConfigurations = map[string]schema.GroupVersionResource{
		"MutatingWebhookConfiguration":   {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"},
		"ValidatingWebhookConfiguration": {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"},
	}
)

// kueueOnce starts Kueue against the shared control plane once per test
// binary; it is stopped by the kernel when the test binary exits (see
// startProcess), after the control plane it talks to.
var kueueOnce struct {
	sync.Once
	err  error
	skip string
}

// sharedWithKueue returns the package's control plane with Kueue running
// against it: its CRDs installed, its manager ready and its Job and queue
// webhooks served with the test's certificates.
func sharedWithKueue(t *testing.T) *testenv.Env {
	t.Helper()
	env := testenv.Shared(t)
	kueueOnce.Do(func() {
		binary, err := kueueBinaryPath()
		if err != nil {
			kueueOnce.err = err
			return
		}
		if _, err := os.Stat(binary); err != nil {
			kueueOnce.skip = fmt.Sprintf("the Kueue manager %s is missing: build it with `%s`", binary, kueueBuildHint)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		began := time.Now()
		kueueOnce.err = startKueue(ctx, env, binary)
		if kueueOnce.err == nil {
			t.Logf("Kueue %s ready in %s", kueueVersionOrEmpty(), time.Since(began).Round(time.Millisecond))
		}
	})
	switch {
	case kueueOnce.skip != "":
		testenv.MissingOperator(t, kueueOnce.skip)
	case kueueOnce.err != nil:
		t.Fatalf("starting Kueue: %v", kueueOnce.err)
	}
	return env
}

func kueueBinaryPath() (string, error) {
	dir, err := testenv.BinDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, kueueBinary), nil
}

// kueueVersion reads the Kueue version the wrapper module pins.
func kueueVersion() (string, error) {
	data, err := os.ReadFile(filepath.Join(kueueWrapper, "go.mod"))
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 3 && f[0] == "require" && f[1] == kueueModule {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("%s/go.mod does not require %s", kueueWrapper, kueueModule)
}

func kueueVersionOrEmpty() string {
	v, _ := kueueVersion()
	return v
}

// kueueModuleDir returns the module cache directory of the pinned Kueue,
// downloading it only if the cache lacks it.
func kueueModuleDir(ctx context.Context) (string, error) {
	version, err := kueueVersion()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", kueueModule+"@"+version)
	cmd.Dir = kueueWrapper
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating %s@%s in the module cache: %w", kueueModule, version, err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("locating %s@%s in the module cache: no directory in %q", kueueModule, version, out)
	}
	return info.Dir, nil
}

func startKueue(ctx context.Context, env *testenv.Env, binary string) error {
	moduleDir, err := kueueModuleDir(ctx)
	if err != nil {
		return err
	}
	ports, err := freePorts(2)
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
	certs, err := newWebhookCerts(kueueServiceName + "." + kueueNamespace + ".svc")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.crt"), certs.certPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.key"), certs.keyPEM, 0o600); err != nil {
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
		Data:       map[string][]byte{"ca.crt": certs.caPEM, "ca.key": certs.caKeyPEM, "tls.crt": certs.certPEM, "tls.key": certs.keyPEM},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := installKueueCRDs(ctx, env, filepath.Join(moduleDir, "config/components/crd/bases"), webhookURL, certs.caPEM); err != nil {
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
	logPath := env.LogPath("kueue")
	proc, err := startProcess(binary, logPath, []string{
		"--config=" + configPath,
		"--kubeconfig=" + env.KubeconfigPath,
		// The visibility API server wants certificates of its own and an
		// APIService; the check does not use it.
		"--feature-gates=VisibilityOnDemand=false",
	})
	if err != nil {
		return err
	}
	if err := waitReady(ctx, proc, fmt.Sprintf("http://127.0.0.1:%d/readyz", healthPort)); err != nil {
		return fmt.Errorf("%w\n%s", err, tail(logPath, 30))
	}
	return installKueueWebhooks(ctx, env, filepath.Join(moduleDir, "config/components/webhook/manifests.yaml"), webhookURL, certs.caPEM)
}

// installKueueCRDs creates Kueue's CRDs from the module, with conversion
// served by the manager at webhookURL, and waits until they are
// established.
func installKueueCRDs(ctx context.Context, env *testenv.Env, dir, webhookURL string, caPEM []byte) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no CRDs in %s (%v)", dir, err)
	}
	crds := env.Dynamic().Resource(testenv.CRDResource)
	var names []string
	for _, f := range files {
		objs, err := readManifests(f)
		if err != nil {
			return err
		}
		for _, crd := range objs {
			if conversionCRDs[crd.GetName()] {
				conversion := map[string]any{
					"strategy": "Webhook",
					"webhook": map[string]any{
						"conversionReviewVersions": []any{"v1"},
						"clientConfig":             clientConfig(webhookURL+"/convert", caPEM),
					},
				}
				if err := unstructured.SetNestedField(crd.Object, jsonValue(conversion), "spec", "conversion"); err != nil {
					return err
				}
			}
			if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating CRD %s: %w", crd.GetName(), err)
			}
			names = append(names, crd.GetName())
		}
	}
	for _, name := range names {
		if err := testenv.WaitForCRDEstablished(ctx, env.Dynamic(), name); err != nil {
			return err
		}
	}
	return nil
}

// installKueueWebhooks registers the manager's webhooks for Jobs and for
// Kueue's own objects, called at webhookURL. Webhooks of integrations the
// manager does not run (pods, deployments, other frameworks) are left out:
// nothing would answer them.
func installKueueWebhooks(ctx context.Context, env *testenv.Env, manifest, webhookURL string, caPEM []byte) error {
	objs, err := readManifests(manifest)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		gvr, ok := webhookConfigurations[obj.GetKind()]
		if !ok {
			continue
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
		if _, err := env.Dynamic().Resource(gvr).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	return nil
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

// process is a started manager.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

// startProcess runs binary with its output in logPath. The process has its
// own process group and the kernel kills it when the test binary exits.
func startProcess(binary, logPath string, args []string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
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

// waitReady polls the manager's readiness endpoint (there is nothing to
// watch) until it answers 200, the process exits or ctx ends.
func waitReady(ctx context.Context, p *process, url string) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("the Kueue manager exited: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("the Kueue manager was not ready (%s): %w", last, ctx.Err())
		case <-tick.C:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err.Error()
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
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

// webhookCerts are a CA in the form Kueue's certificate manager accepts
// (an RSA key, a certificate valid for its CA name, far from expiry) and a
// serving certificate it signed for the webhook service's DNS name and
// 127.0.0.1, where the API server calls the webhooks in the tests.
type webhookCerts struct {
	caPEM, caKeyPEM, certPEM, keyPEM []byte
}

func newWebhookCerts(dnsName string) (*webhookCerts, error) {
	notBefore := time.Now().Add(-time.Hour)
	notAfter := notBefore.Add(2 * 365 * 24 * time.Hour)
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kueue-ca", Organization: []string{"kueue"}},
		DNSNames:              []string{"kueue-ca"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
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
		caPEM:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		caKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(caKey)}),
		certPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}
