package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kaic-dev/kaic/pkg/draapi"
)

// resourceAPIVersions are the resource.k8s.io versions kube-apiserver
// v1.37 serves; v1 is on by default, the others need --runtime-config.
// [WithResourceAPIVersions] serves a subset.
var resourceAPIVersions = []string{"v1", "v1beta2", "v1beta1", "v1alpha3"}

// dirPrefix names the environments' temporary directories.
const dirPrefix = "kaic-testenv-"

// ownerFile in an environment's directory holds the pid of the test binary
// that owns it; a directory whose owner is gone is left over from a crash.
const ownerFile = "owner.pid"

// Env is a running control plane. Its exported fields are read-only.
type Env struct {
	// Config authenticates as a member of system:masters.
	Config *rest.Config
	// Kubeconfig is the same identity as a kubeconfig file's content, and
	// KubeconfigPath the file holding it.
	Kubeconfig     []byte
	KubeconfigPath string
	// Dir is the temporary directory with certificates, etcd data and the
	// components' logs (Dir/logs/<component>.log).
	Dir string
	// DRADriver is the driver name of the fake accelerators on Nodes.
	DRADriver string
	// Nodes are the simulated nodes, Ready when Start returned.
	Nodes []Node
	// Timings says how long each start phase took.
	Timings Timings

	cfg        config
	etcd       *component
	apiServer  *component
	dependents []*component // started after the API server, stopped before it
	clientset  *kubernetes.Clientset
	dynamic    *dynamic.DynamicClient
	dra        draapi.API
	stopOnce   sync.Once
	stopErr    error
}

// Timings are the durations of the start phases, each from the start of
// [Start] (the last attempt, if ports had to be picked again).
type Timings struct {
	Etcd         time.Duration // etcd healthy
	APIServer    time.Duration // kube-apiserver ready
	ControlLoops time.Duration // controller manager, scheduler and kwok healthy
	Nodes        time.Duration // nodes Ready and ResourceSlices published
}

// String lists the phases that ran, e.g. "etcd 0.6s, kube-apiserver 4.3s".
func (t Timings) String() string {
	var phases []string
	for _, p := range []struct {
		name string
		d    time.Duration
	}{{"etcd", t.Etcd}, {"kube-apiserver", t.APIServer}, {"control loops", t.ControlLoops}, {"nodes", t.Nodes}} {
		if p.d > 0 {
			phases = append(phases, fmt.Sprintf("%s %s", p.name, p.d.Round(time.Millisecond)))
		}
	}
	return strings.Join(phases, ", ")
}

// Total is the time Start took to return.
func (t Timings) Total() time.Duration {
	return max(t.Etcd, t.APIServer, t.ControlLoops, t.Nodes)
}

// Start runs a control plane as opts describe and returns once every
// component is ready. If binaries are missing it returns a
// *MissingBinariesError before starting anything; if a component fails, the
// error quotes the end of its log and names the directory kept for
// inspection. ctx bounds only the start, not the processes' lifetime.
func Start(ctx context.Context, opts ...Option) (*Env, error) {
	cfg := defaultConfig()
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.binDir == "" {
		dir, err := BinDir()
		if err != nil {
			return nil, err
		}
		cfg.binDir = dir
	}
	bins := binaries{dir: cfg.binDir}
	if err := bins.check(cfg.requiredFiles()...); err != nil {
		return nil, err
	}
	if err := validateNodes(cfg.nodes); err != nil {
		return nil, err
	}
	removeAbandonedDirs(cfg)

	ctx, cancel := context.WithTimeoutCause(ctx, cfg.startTimeout,
		fmt.Errorf("control plane not ready within %s", cfg.startTimeout))
	defer cancel()
	const attempts = 3
	for attempt := 1; ; attempt++ {
		env, err := start(ctx, cfg, bins, attempt == attempts)
		if err == nil || attempt == attempts || !addressInUse(err) || ctx.Err() != nil {
			return env, err
		}
		cfg.logger.Warn("a component lost its port to another process; starting again with new ports", "attempt", attempt)
	}
}

func (c config) requiredFiles() []string {
	files := []string{binEtcd, binAPIServer}
	if c.controlLoops {
		files = append(files, binControllerManager)
		if !c.noScheduler {
			files = append(files, binScheduler)
		}
	}
	if len(c.nodes) > 0 {
		files = append(files, binKwok, kwokStagesFile)
	}
	return files
}

func validateNodes(nodes []Node) error {
	seen := map[string]bool{}
	for _, n := range nodes {
		switch {
		case n.Name == "":
			return errors.New("testenv: a node has no name")
		case seen[n.Name]:
			return fmt.Errorf("testenv: node %s is declared twice", n.Name)
		case n.GPUs < 0:
			return fmt.Errorf("testenv: node %s has a negative GPU count", n.Name)
		}
		seen[n.Name] = true
	}
	return nil
}

// start makes one attempt; on failure it stops what it started and keeps
// the directory, unless another attempt follows a port conflict.
func start(ctx context.Context, cfg config, bins binaries, lastAttempt bool) (*Env, error) {
	began := time.Now()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	env := &Env{Dir: dir, DRADriver: cfg.draDriver, Nodes: slices.Clone(cfg.nodes), cfg: cfg}
	if err := env.run(ctx, bins, began); err != nil {
		if !lastAttempt && addressInUse(err) {
			_ = env.stop(false)
			return nil, err
		}
		_ = env.stop(true)
		return nil, fmt.Errorf("testenv: %w\n(kept %s for inspection)", err, dir)
	}
	cfg.logger.Info("control plane ready", "dir", dir,
		"etcd", env.Timings.Etcd, "apiServer", env.Timings.APIServer,
		"controlLoops", env.Timings.ControlLoops, "nodes", env.Timings.Nodes)
	return env, nil
}

func (e *Env) run(ctx context.Context, bins binaries, began time.Time) error {
	cfg := e.cfg
	if err := os.WriteFile(filepath.Join(e.Dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return err
	}
	logDir := filepath.Join(e.Dir, "logs")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return err
	}
	certs, err := newPKI(filepath.Join(e.Dir, "pki"))
	if err != nil {
		return fmt.Errorf("generate certificates: %w", err)
	}
	ports, err := freeLoopbackPorts(6)
	if err != nil {
		return err
	}
	etcdClientPort, etcdPeerPort, apiPort, kcmPort, schedulerPort, kwokPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]

	// etcd
	etcdClientURL := "http://" + loopback(etcdClientPort)
	etcdPeerURL := "http://" + loopback(etcdPeerPort)
	e.etcd, err = startComponent("etcd", bins.path(binEtcd), logDir, []string{
		"--name=testenv",
		"--data-dir=" + filepath.Join(e.Dir, "etcd"),
		"--listen-client-urls=" + etcdClientURL,
		"--advertise-client-urls=" + etcdClientURL,
		"--listen-peer-urls=" + etcdPeerURL,
		"--initial-advertise-peer-urls=" + etcdPeerURL,
		"--initial-cluster=testenv=" + etcdPeerURL,
		"--unsafe-no-fsync",
	})
	if err != nil {
		return err
	}
	plainHTTP := &http.Client{}
	if err := e.etcd.waitReady(ctx, httpProbe(plainHTTP, etcdClientURL+"/health", `"health":"true"`)); err != nil {
		return err
	}
	e.Timings.Etcd = time.Since(began)

	// kube-apiserver
	runtimeConfig := make([]string, 0, len(resourceAPIVersions))
	for _, v := range resourceAPIVersions {
		runtimeConfig = append(runtimeConfig, "resource.k8s.io/"+v+"="+strconv.FormatBool(cfg.servesResourceVersion(v)))
	}
	apiArgs := []string{
		"--bind-address=127.0.0.1",
		// 1.37 refuses a loopback advertise address unless the endpoint
		// reconciler is off; there is no kubernetes Service to keep anyway.
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--etcd-servers=" + etcdClientURL,
		"--cert-dir=" + filepath.Join(e.Dir, "pki"),
		"--tls-cert-file=" + certs.servingCert,
		"--tls-private-key-file=" + certs.servingKey,
		"--client-ca-file=" + certs.caCert,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + certs.serviceAccountPub,
		"--service-account-signing-key-file=" + certs.serviceAccountKey,
		"--authorization-mode=" + cfg.authorizationModes(),
		"--runtime-config=" + strings.Join(runtimeConfig, ","),
	}
	apiArgs = append(apiArgs, cfg.featureGateArgs()...)
	apiArgs = append(apiArgs, cfg.apiServerArgs...)
	e.apiServer, err = startComponent("kube-apiserver", bins.path(binAPIServer), logDir, apiArgs)
	if err != nil {
		return err
	}
	host := "https://" + loopback(apiPort)
	e.Config = &rest.Config{
		Host: host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   certs.caPEM,
			CertData: certs.adminCertPEM,
			KeyData:  certs.adminKeyPEM,
		},
		QPS:   100,
		Burst: 200,
	}
	transport, err := rest.TransportFor(e.Config)
	if err != nil {
		return err
	}
	adminHTTPS := &http.Client{Transport: transport}
	if err := e.apiServer.waitReady(ctx, httpProbe(adminHTTPS, host+"/readyz", "ok")); err != nil {
		return err
	}
	e.Timings.APIServer = time.Since(began)
	if e.clientset, err = kubernetes.NewForConfig(e.Config); err != nil {
		return err
	}
	if e.dynamic, err = dynamic.NewForConfig(e.Config); err != nil {
		return err
	}
	if e.dra, err = draapi.Discover(e.clientset.Discovery()); err != nil {
		return err
	}
	if err := e.writeKubeconfig(certs); err != nil {
		return err
	}

	// controller manager, scheduler and kwok start side by side.
	type probed struct {
		c     *component
		probe func(context.Context) error
	}
	var waits []probed
	componentArgs := func(port int) []string {
		return []string{
			"--kubeconfig=" + e.KubeconfigPath,
			"--authentication-kubeconfig=" + e.KubeconfigPath,
			"--authorization-kubeconfig=" + e.KubeconfigPath,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(port),
			"--tls-cert-file=" + certs.servingCert,
			"--tls-private-key-file=" + certs.servingKey,
			"--leader-elect=false",
		}
	}
	if cfg.controlLoops {
		kcmArgs := append(componentArgs(kcmPort),
			"--controllers=*",
			"--service-account-private-key-file="+certs.serviceAccountKey,
			"--root-ca-file="+certs.caCert,
			"--use-service-account-credentials=false",
		)
		kcm, err := e.startDependent("kube-controller-manager", bins.path(binControllerManager), logDir,
			append(append(kcmArgs, cfg.featureGateArgs()...), cfg.kcmArgs...))
		if err != nil {
			return err
		}
		waits = append(waits, probed{kcm, httpProbe(adminHTTPS, "https://"+loopback(kcmPort)+"/healthz", "ok")})
	}
	if cfg.controlLoops && !cfg.noScheduler {
		scheduler, err := e.startDependent("kube-scheduler", bins.path(binScheduler), logDir,
			append(componentArgs(schedulerPort), cfg.featureGateArgs()...))
		if err != nil {
			return err
		}
		waits = append(waits, probed{scheduler, httpProbe(adminHTTPS, "https://"+loopback(schedulerPort)+"/readyz", "ok")})
	}
	if len(cfg.nodes) > 0 {
		kwok, err := e.startDependent("kwok", bins.path(binKwok), logDir, []string{
			"--kubeconfig=" + e.KubeconfigPath,
			"--config=" + bins.path(kwokStagesFile),
			"--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=fake",
			"--server-address=" + loopback(kwokPort),
			"--node-ip=127.0.0.1",
			"--cidr=10.244.0.0/16",
		})
		if err != nil {
			return err
		}
		waits = append(waits, probed{kwok, httpProbe(plainHTTP, "http://"+loopback(kwokPort)+"/healthz", "ok")})
	}
	errs := make([]error, len(waits))
	var wg sync.WaitGroup
	for i, w := range waits {
		wg.Go(func() { errs[i] = w.c.waitReady(ctx, w.probe) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(waits) > 0 {
		e.Timings.ControlLoops = time.Since(began)
	}

	if len(cfg.nodes) > 0 {
		if err := registerNodes(ctx, e.clientset, e.DRA(), cfg.nodes, cfg.draDriver); err != nil {
			if kwokErr := e.dependents[len(e.dependents)-1].exitError(); kwokErr != nil {
				return e.dependents[len(e.dependents)-1].failure(kwokErr)
			}
			return err
		}
		e.Timings.Nodes = time.Since(began)
	}
	return nil
}

func (e *Env) startDependent(name, binary, logDir string, args []string) (*component, error) {
	c, err := startComponent(name, binary, logDir, args)
	if err != nil {
		return nil, err
	}
	e.dependents = append(e.dependents, c)
	return c, nil
}

// servesResourceVersion reports whether the API server is to serve
// resource.k8s.io/version.
func (c config) servesResourceVersion(version string) bool {
	return c.resourceVersions == nil || slices.Contains(c.resourceVersions, version)
}

// authorizationModes are the API server's authorizers. The Node authorizer
// of kube-apiserver 1.37 watches ResourceSlices through resource.k8s.io/v1
// only, and the server never reports ready while that watch fails, so
// without v1 it is left out; the components and tests authenticate as
// system:masters, whom RBAC allows everything, and no kubelet talks to
// this API server.
func (c config) authorizationModes() string {
	if c.servesResourceVersion("v1") {
		return "Node,RBAC"
	}
	return "RBAC"
}

func (c config) featureGateArgs() []string {
	if len(c.featureGates) == 0 {
		return nil
	}
	gates := make([]string, 0, len(c.featureGates))
	for _, name := range slices.Sorted(maps.Keys(c.featureGates)) {
		gates = append(gates, name+"="+strconv.FormatBool(c.featureGates[name]))
	}
	return []string{"--feature-gates=" + strings.Join(gates, ",")}
}

func (e *Env) writeKubeconfig(certs *pki) error {
	const name = "kaic-testenv"
	kubeconfig := clientcmdapi.Config{
		Clusters: map[string]*clientcmdapi.Cluster{name: {
			Server:                   e.Config.Host,
			CertificateAuthorityData: certs.caPEM,
		}},
		AuthInfos: map[string]*clientcmdapi.AuthInfo{adminUser: {
			ClientCertificateData: certs.adminCertPEM,
			ClientKeyData:         certs.adminKeyPEM,
		}},
		Contexts:       map[string]*clientcmdapi.Context{name: {Cluster: name, AuthInfo: adminUser}},
		CurrentContext: name,
	}
	data, err := clientcmd.Write(kubeconfig)
	if err != nil {
		return fmt.Errorf("encode kubeconfig: %w", err)
	}
	e.Kubeconfig = data
	e.KubeconfigPath = filepath.Join(e.Dir, "kubeconfig")
	return os.WriteFile(e.KubeconfigPath, data, 0o600)
}

// Clientset returns a typed client authenticated as the admin.
func (e *Env) Clientset() *kubernetes.Clientset { return e.clientset }

// Dynamic returns a dynamic client authenticated as the admin.
func (e *Env) Dynamic() *dynamic.DynamicClient { return e.dynamic }

// DRA returns a client of resource.k8s.io at the newest version the API
// server serves (see [WithResourceAPIVersions]), authenticated as the
// admin.
func (e *Env) DRA() *draapi.Client { return draapi.NewClient(e.dynamic, e.dra) }

// LogPath returns the log file of component (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler or kwok).
func (e *Env) LogPath(component string) string {
	return filepath.Join(e.Dir, "logs", component+".log")
}

// Stop terminates every component (SIGTERM to its process group, SIGKILL
// after a grace period) and removes Dir unless KAIC_TESTENV_KEEP is true.
// It is safe to call more than once.
func (e *Env) Stop() error {
	keep, _ := strconv.ParseBool(os.Getenv("KAIC_TESTENV_KEEP"))
	return e.stop(keep)
}

// stop terminates the API server and its clients at once (each takes about
// a second to shut down gracefully, so in turn they would add up), then
// etcd, which the API server needs until it is gone.
func (e *Env) stop(keepDir bool) error {
	e.stopOnce.Do(func() {
		var wg sync.WaitGroup
		for _, c := range append([]*component{e.apiServer}, e.dependents...) {
			if c != nil {
				wg.Go(func() { c.stop(e.cfg.stopGrace, e.cfg.logger) })
			}
		}
		wg.Wait()
		if e.etcd != nil {
			e.etcd.stop(e.cfg.stopGrace, e.cfg.logger)
		}
		if keepDir {
			// Kept on purpose: not an abandoned directory.
			_ = os.Remove(filepath.Join(e.Dir, ownerFile))
			return
		}
		e.stopErr = os.RemoveAll(e.Dir)
	})
	return e.stopErr
}

// pids returns the process ids of the running components.
func (e *Env) pids() []int {
	var pids []int
	for _, c := range append([]*component{e.etcd, e.apiServer}, e.dependents...) {
		if c != nil {
			pids = append(pids, c.pid())
		}
	}
	return pids
}

// httpProbe returns a readiness probe that GETs url and wants status 200
// with want in the body.
func httpProbe(client *http.Client, url, want string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
		}
		return nil
	}
}

// freeLoopbackPorts returns n distinct ports that were free on 127.0.0.1.
// All listeners are held until every port is picked so none repeats; a
// process may still take one before a component binds it, which Start
// answers by trying again.
func freeLoopbackPorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// removeAbandonedDirs deletes environment directories whose owning test
// binary died without stopping them (their processes died with it).
func removeAbandonedDirs(cfg config) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		if err := os.RemoveAll(dir); err == nil {
			cfg.logger.Debug("removed abandoned environment directory", "dir", dir, "owner", pid)
		}
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
