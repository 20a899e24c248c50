package servicemetrics

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
	"github.com/kaic-dev/kaic/pkg/probe"
)

// What is real in these tests and what stands in:
//
// Real: the API server with its service proxy, which forwards the check's
// requests over the network to the endpoints of the check's Service; the
// scheduler and the EndpointSlice controller, which turn the check's Pod
// and Service into an endpoint; kaic's probe server (its counter,
// histogram and gauge); the ServiceMonitor CRD the check applies to; the
// check's code.
//
// Stands in (see standin_test.go): a node agent plays the kubelet of node
// agentNode and runs the probe in this process on a non-loopback address;
// a minimal Prometheus with ServiceMonitor discovery, reached through the
// service proxy as prometheus-operated, stands in for Prometheus and
// prometheus-operator. The e2e suite runs the real ones on kind.

const (
	agentNode      = "agent-0"
	kwokNode       = "kwok-0"
	monitoringNode = "monitoring-host"
	monitoringNS   = "monitoring"
	scrapeLabel    = "release"
	scrapeValue    = "kaic-test"
)

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithNodes(testenv.Node{Name: kwokNode}))
}

func resourceQ(s string) resource.Quantity { return resource.MustParse(s) }

type fixture struct {
	env   *testenv.Env
	ip    string
	agent *agent
	prom  *miniPrometheus
}

var (
	setupOnce sync.Once
	shared    *fixture
	setupErr  error
)

func setup(t *testing.T) *fixture {
	t.Helper()
	env := testenv.Shared(t)
	setupOnce.Do(func() { shared, setupErr = start(env) })
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	shared.agent.extra.Store(0)
	shared.prom.setSelector(nil)
	shared.prom.startIn(0)
	return shared
}

func start(env *testenv.Env) (*fixture, error) {
	ctx := context.Background()
	cs := env.Clientset()
	ip, err := testenv.ProxyableHostIP()
	if err != nil {
		return nil, err
	}
	a, err := startAgent(ctx, cs, agentNode, ip)
	if err != nil {
		return nil, err
	}
	host := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: monitoringNode}, Spec: corev1.NodeSpec{Unschedulable: true}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, host, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	p := &miniPrometheus{client: cs, dynamic: env.Dynamic()}
	go p.loop(ctx, time.Second)
	return &fixture{env: env, ip: ip, agent: a, prom: p}, nil
}

// freePort picks a port free on the host address for the workload.
func (f *fixture) freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(f.ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// publishPrometheus serves the stand-in as monitoring/prometheus-operated
// for the rest of the test.
func (f *fixture) publishPrometheus(t *testing.T) {
	t.Helper()
	stop, err := publish(t.Context(), f.env.Clientset(), f.ip, monitoringNode, monitoringNS, "prometheus-operated", f.prom)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
}

const crdName = "servicemonitors.monitoring.coreos.com"

// installCRD serves monitoring.coreos.com/v1 ServiceMonitor (schema-less,
// which is all the check needs of prometheus-operator's CRD).
func (f *fixture) installCRD(t *testing.T) {
	t.Helper()
	checktest.ServeMonitoring(t, f.env, "servicemonitors", "ServiceMonitor", false)
}

// installStackMonitor creates, for the rest of the test, the PodMonitor of
// kaic's stack component kaic-probe-monitor as its chart renders it, and
// waits until the stand-in Prometheus has it: installed with the stack, it
// is in the configuration before any check starts.
func (f *fixture) installStackMonitor(t *testing.T) {
	t.Helper()
	for _, o := range checktest.InstallStackProbeMonitor(t, f.env) {
		f.prom.waitForMonitor(t, "pod:"+o.GetNamespace()+"/"+o.GetName())
	}
}

func (f *fixture) removeCRD(t *testing.T) {
	t.Helper()
	crds := f.env.Dynamic().Resource(testenv.CRDResource)
	if err := crds.Delete(t.Context(), crdName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := f.env.Clientset().Discovery().ServerResourcesForGroupVersion(MonitoringGroupVersion)
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("ServiceMonitor CRD still served: %v", err)
	}
}

// cordon keeps the scheduler off node for the rest of the test.
func (f *fixture) cordon(t *testing.T, node string) {
	t.Helper()
	set := func(ctx context.Context, v bool) error {
		n, err := f.env.Clientset().CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Spec.Unschedulable = v
		_, err = f.env.Clientset().CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
		return err
	}
	if err := set(t.Context(), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := set(ctx, false); err != nil {
			t.Errorf("uncordoning %s: %v", node, err)
		}
	})
}

func (f *fixture) run(t *testing.T, o Options) conformance.Result {
	t.Helper()
	if o.Port == 0 {
		o.Port = f.freePort(t)
	}
	if o.ScrapeInterval == "" {
		o.ScrapeInterval = "1s"
	}
	if o.CollectionTimeout == 0 {
		o.CollectionTimeout = 15 * time.Second
	}
	return checktest.RunWith(t, f.env, New(o), checktest.Options{
		Version: "1.37", Category: "observability", Level: conformance.Must, Timeout: 2 * time.Minute,
	})
}

// expectFailed fails t unless the check failed saying every one of wants.
func expectFailed(t *testing.T, res conformance.Result, wants ...string) {
	t.Helper()
	if res.Status != conformance.Failed {
		t.Errorf("check status %s, want failed", res.Status)
	}
	out := strings.Join(res.Test.Output, "\n")
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("the check does not say %q:\n%s", w, out)
		}
	}
}

// TestNoPrometheus: without a Prometheus the check fails before creating
// anything.
func TestNoPrometheus(t *testing.T) {
	f := setup(t)
	f.installCRD(t)
	res := f.run(t, Options{})
	expectFailed(t, res, "no Prometheus found", "operated-prometheus=true")
	if strings.Contains(checktest.Transcript(res), "applied Pod") || strings.Contains(checktest.Transcript(res), "Pod "+res.Namespace) {
		t.Error("the check created its workload although no Prometheus answers")
	}
}

// TestNoServiceMonitorCRD: a Prometheus without prometheus-operator's API
// cannot be told to scrape anything.
func TestNoServiceMonitorCRD(t *testing.T) {
	f := setup(t)
	f.removeCRD(t)
	f.publishPrometheus(t)
	res := f.run(t, Options{})
	expectFailed(t, res, "monitoring.coreos.com/v1 ServiceMonitor is not served", "prometheus-operator")
}

// TestMetricsCollected: Prometheus selects ServiceMonitors labelled
// release=kaic-test; with that scrape label the check's workload is
// scraped and the counts match the requests sent.
func TestMetricsCollected(t *testing.T) {
	f := setup(t)
	f.installCRD(t)
	f.publishPrometheus(t)
	f.cordon(t, kwokNode)
	f.prom.setSelector(map[string]string{scrapeLabel: scrapeValue})
	// Installed moments ago, Prometheus is still starting: the check waits
	// for it to answer.
	f.prom.startIn(5 * time.Second)
	res := f.run(t, Options{ScrapeLabels: map[string]string{scrapeLabel: scrapeValue}, Requests: 10})
	if res.Status != conformance.Passed {
		t.Fatalf("check status %s, want passed: %s", res.Status, res.Reason)
	}
	tr := checktest.Transcript(res)
	for _, want := range []string{
		probe.MetricRequests + `{kaic_run="run-`, "reports exactly the 10 requests sent",
		"ServiceMonitor " + res.Namespace + "/" + name, scrapeLabel + ": " + scrapeValue,
		// When its configuration was loaded, from runtimeinfo.
		"Prometheus configuration loaded after the ServiceMonitor was created: ",
	} {
		if !strings.Contains(tr, want) {
			t.Errorf("the transcript does not show %q:\n%s", want, tr)
		}
	}
	checktest.ExpectCleanedUp(t, f.env, res)
}

// TestMetricsCollectedThroughStackMonitor: with the PodMonitor of kaic's
// stack (as its chart renders it), the check labels its pod for it and
// creates no ServiceMonitor; the monitor copies the run label onto the
// series and the counts match the requests sent.
func TestMetricsCollectedThroughStackMonitor(t *testing.T) {
	f := setup(t)
	f.installCRD(t)
	f.publishPrometheus(t)
	f.installStackMonitor(t)
	f.cordon(t, kwokNode)
	res := f.run(t, Options{Requests: 10})
	if res.Status != conformance.Passed {
		t.Fatalf("check status %s, want passed: %s", res.Status, res.Reason)
	}
	tr := checktest.Transcript(res)
	for _, want := range []string{
		"PodMonitor monitoring/kaic-probe, installed with kaic's stack", "kaic.dev/run=run-", "kaic.dev/scrape=probe",
		probe.MetricRequests + `{kaic_run="run-`, "reports exactly the 10 requests sent",
		// When Prometheus loaded its configuration is told against the
		// pod's creation, not a monitor's (whether before or after
		// depends on the stand-in's rounds on a loaded machine).
		"pod " + name + " was created",
	} {
		if !strings.Contains(tr, want) {
			t.Errorf("the transcript does not show %q:\n%s", want, tr)
		}
	}
	if strings.Contains(tr, "ServiceMonitor "+res.Namespace) {
		t.Errorf("the check created a ServiceMonitor although the stack's PodMonitor scrapes its pod:\n%s", tr)
	}
	checktest.ExpectCleanedUp(t, f.env, res)
}

// TestStackMonitorNotSelected: Prometheus selects only monitors labelled
// release=kaic-test, which the stack's PodMonitor is not, so the series
// never appear and the check says Prometheus has no target for it.
func TestStackMonitorNotSelected(t *testing.T) {
	f := setup(t)
	f.installCRD(t)
	f.publishPrometheus(t)
	f.installStackMonitor(t)
	f.cordon(t, kwokNode)
	f.prom.setSelector(map[string]string{scrapeLabel: scrapeValue})
	res := f.run(t, Options{CollectionTimeout: 6 * time.Second})
	expectFailed(t, res, "series never appeared in Prometheus", "Prometheus has no target for PodMonitor monitoring/kaic-probe", "podMonitorSelector")
}

// TestPrometheusNeverAnswers: a Prometheus that never starts answering
// fails the check before it creates anything.
func TestPrometheusNeverAnswers(t *testing.T) {
	f := setup(t)
	f.installCRD(t)
	f.publishPrometheus(t)
	f.prom.startIn(time.Hour)
	res := f.run(t, Options{AnswerTimeout: 4 * time.Second})
	expectFailed(t, res, "does not answer within 4s")
	if strings.Contains(checktest.Transcript(res), "applied Pod") {
		t.Error("the check created its workload although Prometheus does not answer")
	}
}

// TestNothingScrapes: the ServiceMonitor lacks the label Prometheus
// selects, so the series never appear and the check says Prometheus never
// discovered the target.
func TestNothingScrapes(t *testing.T) {
	f := setup(t)
	f.installCRD(t)
	f.publishPrometheus(t)
	f.cordon(t, kwokNode)
	f.prom.setSelector(map[string]string{scrapeLabel: scrapeValue})
	res := f.run(t, Options{CollectionTimeout: 6 * time.Second})
	expectFailed(t, res, "series never appeared in Prometheus", "Prometheus has no target for ServiceMonitor "+res.Namespace+"/"+name)
}

// TestCountsDiffer: the workload served requests the check did not send,
// so the counter exceeds N and the check says both numbers.
func TestCountsDiffer(t *testing.T) {
	f := setup(t)
	f.installCRD(t)
	f.publishPrometheus(t)
	f.cordon(t, kwokNode)
	f.agent.extra.Store(3)
	res := f.run(t, Options{Requests: 10})
	expectFailed(t, res, "Prometheus counts more than the 10 requests sent", "reads 13, want 10")
}

// TestOnKwok: a pod on a kwok node serves nothing, so the traffic part is
// skipped with the reason.
func TestOnKwok(t *testing.T) {
	f := setup(t)
	f.installCRD(t)
	f.publishPrometheus(t)
	f.cordon(t, agentNode)
	res := f.run(t, Options{})
	if res.Status != conformance.Skipped || !strings.Contains(res.Reason, "simulated by kwok") {
		t.Errorf("check %s (%s), want skipped saying the node is simulated by kwok", res.Status, res.Reason)
	}
}
