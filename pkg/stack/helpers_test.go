package stack_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/sirupsen/logrus"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/registry"
	repo "helm.sh/helm/v4/pkg/repo/v1"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/fetch"
	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/stack"
)

func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard)
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithNodes(testenv.Node{Name: "kwok-stack-0"}))
}

// testChart describes a chart the tests write: a ConfigMap holding
// .Values.message and a Deployment running .Values.image.
type testChart struct {
	name    string
	version string
	// unschedulable gives the Deployment a node selector no node has, so
	// that it never becomes ready.
	unschedulable bool
}

// write writes the chart into a new directory and returns its path.
func (c testChart) write(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), c.name)
	nodeSelector := ""
	if c.unschedulable {
		nodeSelector = "      nodeSelector:\n        kaic.dev/no-such-node: \"true\"\n"
	}
	files := map[string]string{
		"Chart.yaml": fmt.Sprintf("apiVersion: v2\nname: %s\nversion: %s\nappVersion: \"1.0\"\ndescription: a chart written by kaic's tests\n", c.name, c.version),
		"values.yaml": `message: from-chart
image: registry.example/kaic-test/app:1.0
replicas: 1
`,
		"templates/configmap.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
data:
  message: {{ .Values.message | quote }}
  chartVersion: {{ .Chart.Version | quote }}
`,
		"templates/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels:
      app: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app: {{ .Release.Name }}
    spec:
      initContainers:
        - name: init
          image: registry.example/kaic-test/init:1.0
      containers:
        - name: app
          image: {{ .Values.image }}
` + nodeSelector,
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// pack writes the chart and packages it, returning the .tgz path and its
// digest (sha256:<hex>).
func (c testChart) pack(t *testing.T) (string, string) {
	t.Helper()
	ch, err := loader.LoadDir(c.write(t))
	if err != nil {
		t.Fatal(err)
	}
	path, err := chartutil.Save(ch, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return path, "sha256:" + hex.EncodeToString(sum[:])
}

// ociRegistry runs the distribution registry in process on loopback, with
// TLS from httptest, and returns its host:port and a client that trusts it.
func ociRegistry(t *testing.T) (string, *http.Client) {
	t.Helper()
	srv := ociRegistryServer(t)
	return strings.TrimPrefix(srv.URL, "https://"), srv.Client()
}

// ociRegistryServer is ociRegistry's server, for tests that stop it early.
func ociRegistryServer(t *testing.T) *httptest.Server {
	t.Helper()
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{"inmemory": configuration.Parameters{}},
	}
	cfg.HTTP.Secret = "kaic-test"
	cfg.Log.Level = "error"
	app := handlers.NewApp(context.Background(), cfg)
	srv := httptest.NewTLSServer(app)
	t.Cleanup(srv.Close)
	return srv
}

// pushChart pushes a packaged chart to host/charts/<name>:<version>.
func pushChart(t *testing.T, host string, hc *http.Client, tgz string, c testChart) string {
	t.Helper()
	rc, err := registry.NewClient(registry.ClientOptHTTPClient(hc), registry.ClientOptCredentialsFile(filepath.Join(t.TempDir(), "config.json")))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(tgz)
	if err != nil {
		t.Fatal(err)
	}
	ref := fmt.Sprintf("%s/charts/%s:%s", host, c.name, c.version)
	if _, err := rc.Push(data, ref, registry.PushOptStrictMode(true)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return "oci://" + host + "/charts/" + c.name
}

// chartRepo serves index.yaml and the given packaged charts. failFirst
// makes the first N requests fail with 503, truncate makes the first
// download of each archive stop halfway.
type chartRepo struct {
	*httptest.Server
	failFirst int32
	truncate  bool

	mu        sync.Mutex
	truncated map[string]bool
	requests  atomic.Int32
	files     map[string][]byte
}

func newChartRepo(t *testing.T, failFirst int32, truncate bool, charts ...testChart) *chartRepo {
	t.Helper()
	r := &chartRepo{failFirst: failFirst, truncate: truncate, truncated: map[string]bool{}, files: map[string][]byte{}}
	r.Server = httptest.NewTLSServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	idx := repo.NewIndexFile()
	for _, c := range charts {
		path, digest := c.pack(t)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := loader.LoadArchive(strings.NewReader(string(data)))
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(path)
		r.files["/charts/"+name] = data
		if err := idx.MustAdd(ch.Metadata, "charts/"+name, "", strings.TrimPrefix(digest, "sha256:")); err != nil {
			t.Fatal(err)
		}
	}
	idxPath := filepath.Join(t.TempDir(), "index.yaml")
	if err := idx.WriteFile(idxPath, 0o644); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(idxPath)
	if err != nil {
		t.Fatal(err)
	}
	r.files["/index.yaml"] = data
	return r
}

func (r *chartRepo) serve(w http.ResponseWriter, req *http.Request) {
	if r.requests.Add(1) <= r.failFirst {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	data, ok := r.files[req.URL.Path]
	if !ok {
		http.NotFound(w, req)
		return
	}
	r.mu.Lock()
	cut := r.truncate && strings.HasSuffix(req.URL.Path, ".tgz") && !r.truncated[req.URL.Path]
	if cut {
		r.truncated[req.URL.Path] = true
	}
	r.mu.Unlock()
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	if cut {
		_, _ = w.Write(data[:len(data)/2])
		return // the handler returns early: the client sees a short body
	}
	_, _ = w.Write(data)
}

// newInstaller builds an Installer against the shared control plane whose
// downloads trust hc's TLS roots.
func newInstaller(t *testing.T, env *testenv.Env, hc *http.Client, opts ...stack.Option) *stack.Installer {
	t.Helper()
	if hc == nil {
		hc = http.DefaultClient
	}
	client := fetch.New(fetch.WithHTTPClient(hc), fetch.WithWait(10*time.Millisecond, 50*time.Millisecond))
	base := []stack.Option{
		stack.WithKubeconfig(env.Kubeconfig, ""),
		stack.WithCache(&fetch.Cache{Dir: t.TempDir(), Client: client}),
		stack.WithDefaultTimeout(time.Minute),
	}
	in, err := stack.New(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// stepRecorder records the order of reported steps.
type stepRecorder struct {
	mu    sync.Mutex
	steps []string
}

func (s *stepRecorder) StartStep(name string) *progress.Step {
	s.mu.Lock()
	s.steps = append(s.steps, name)
	s.mu.Unlock()
	return progress.StartStep(progress.Discard, "", name)
}

func (s *stepRecorder) Notef(string, ...any) {}

func (s *stepRecorder) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.steps...)
}
