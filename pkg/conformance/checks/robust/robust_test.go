package robust

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// One kwok node: the operator's stand-in pod and the RayCluster's head pod
// land there and are marked Running and Ready without a container.
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithNodes(testenv.Node{Name: "kwok-0"}))
}

// testConfig is the check as the tests run it, with shorter waits.
func testConfig(operator string) config {
	return config{operator: operator, readyTimeout: 30 * time.Second, reconcileAfter: time.Minute}
}

// runCheck runs the check c through the runner against env. cleanup bounds
// the runner's cleanup: without a controller manager the check's namespace
// is never deleted, and the runner would wait its full cleanup time.
func runCheck(t *testing.T, env *testenv.Env, c config, cleanup time.Duration) conformance.Result {
	t.Helper()
	return checktest.RunWith(t, env, conformance.NewCheck(ID, c.run), checktest.Options{
		Version: "1.37", Category: "operator", Level: conformance.Must,
		Timeout: 4 * time.Minute, CleanupTimeout: cleanup,
	})
}

// wantOutput checks that a subtest's output holds every string of want.
func wantOutput(t *testing.T, res conformance.Result, subtest string, want ...string) {
	t.Helper()
	tr := checktest.Subtest(res, subtest)
	if tr == nil {
		t.Errorf("subtest %s did not run", subtest)
		return
	}
	out := strings.Join(tr.Output, "\n")
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("the output of %s lacks %q:\n%s", subtest, w, out)
		}
	}
}

// With KubeRay running and its webhook served, the check finds KubeRay by
// its CRD and passes: the webhook denies the invalid RayCluster by name and
// the operator brings the valid one to ready with its head pod and
// service, saying what kwok could not show.
func TestRobustControllerPassesWithKubeRay(t *testing.T) {
	env := sharedWithKubeRay(t)
	res := runCheck(t, env, testConfig(""), 0)
	if res.TestName != "TestRobustCRDControllerOperation" {
		t.Errorf("test name %q, want the official suite's TestRobustCRDControllerOperation", res.TestName)
	}
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"OperatorPodsRunning":     conformance.Passed,
		"CRDRegistered":           conformance.Passed,
		"WebhookOperational":      conformance.Passed,
		"WebhookRejectsInvalidCR": conformance.Passed,
		"ControllerReconcilesCR":  conformance.Passed,
	})
	all := checktest.Transcript(res)
	for _, want := range []string{
		"KubeRay (CRD rayclusters.ray.io is installed)",
		"ai-operators, found by label app.kubernetes.io/name=kuberay-operator: Deployment kuberay-operator",
		"pods of KubeRay in ai-operators",
		"rayservices.ray.io: Established=True",
		"vraycluster.kb.io: https://127.0.0.1:9443/validate-ray-io-v1-raycluster",
		`admission webhook "vraycluster.kb.io" denied the request`,
		"worker group names must be unique",
		"state: ready",
		"RayClusterProvisioned=True",
		"valid-cr-head-", // the head pod
		"not observed: node kwok-0 is simulated by kwok",
		"the head pod's Ready condition is kwok's",
		"deleted namespace " + res.Namespace,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
}

// A webhook configuration whose CA bundle does not vouch for the
// operator's certificate leaves the webhook uncallable: the invalid
// custom resource is refused, but not by the webhook, and the check says
// so. A bundle that is not a certificate at all fails WebhookOperational
// too.
func TestRobustControllerFailsWithWrongCABundle(t *testing.T) {
	env := sharedWithKubeRay(t)
	vwcs := env.Clientset().AdmissionregistrationV1().ValidatingWebhookConfigurations()
	setBundle := func(ctx context.Context, bundle []byte) {
		t.Helper()
		vwc, err := vwcs.Get(ctx, webhookConfigurationName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range vwc.Webhooks {
			vwc.Webhooks[i].ClientConfig.CABundle = bundle
		}
		if _, err := vwcs.Update(ctx, vwc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		setBundle(ctx, kubeRayCA)
	})

	other, err := newWebhookCerts("elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	setBundle(t.Context(), other.CAPEM)
	res := runCheck(t, env, testConfig("kuberay"), 0)
	if res.Status != conformance.Failed {
		t.Fatalf("status %s, want Failed", res.Status)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"OperatorPodsRunning":     conformance.Passed,
		"CRDRegistered":           conformance.Passed,
		"WebhookOperational":      conformance.Passed, // a well-formed bundle: only calling the webhook shows it is wrong
		"WebhookRejectsInvalidCR": conformance.Failed,
		"ControllerReconcilesCR":  conformance.Failed,
	})
	wantOutput(t, res, "WebhookRejectsInvalidCR", "could not call webhook vraycluster.kb.io", "x509", "caBundle does not match")
	wantOutput(t, res, "ControllerReconcilesCR", "the valid RayCluster was not created", `failed calling webhook "vraycluster.kb.io"`)

	setBundle(t.Context(), []byte("not a certificate"))
	res = runCheck(t, env, testConfig("kuberay"), 0)
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"WebhookOperational":      conformance.Failed,
		"WebhookRejectsInvalidCR": conformance.Failed,
	})
	wantOutput(t, res, "WebhookOperational", "webhook vraycluster.kb.io: its caBundle holds no PEM certificate")
	wantOutput(t, res, "WebhookRejectsInvalidCR", "could not call webhook vraycluster.kb.io")
}

// On a control plane of its own, without KubeRay: with nothing installed
// the check fails naming the operators it looks for; with KubeRay named
// it fails naming its namespace, pods and CRDs; with only the CRDs the
// webhook is missing and the invalid RayCluster is accepted; with a
// webhook configuration whose Service nothing backs, the check says that
// no pod serves it and that the API server could not call it.
func TestRobustControllerFailsWithoutKubeRay(t *testing.T) {
	// The API server finds a webhook Service's endpoints itself rather
	// than asking DNS for its name, which would leave the test machine.
	// The control loops create the check namespace's default service account.
	env := testenv.New(t, testenv.WithControlLoops(), testenv.WithAPIServerArgs("--enable-aggregator-routing=true"))
	quick := testConfig("")
	quick.readyTimeout = 2 * time.Second
	const cleanup = 3 * time.Second

	res := runCheck(t, env, quick, cleanup)
	if res.Status != conformance.Failed {
		t.Fatalf("status %s, want Failed", res.Status)
	}
	for _, want := range []string{"no AI operator is installed", "KubeRay (rayclusters.ray.io)", "Kubeflow Trainer (trainjobs.trainer.kubeflow.org)", "kuberay-operator or kubeflow-trainer"} {
		if !strings.Contains(res.Reason, want) {
			t.Errorf("reason %q lacks %q", res.Reason, want)
		}
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{"OperatorPodsRunning": "", "CRDRegistered": ""})

	quick.operator = "kuberay"
	res = runCheck(t, env, quick, cleanup)
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"OperatorPodsRunning": conformance.Failed,
		"CRDRegistered":       conformance.Failed,
		"WebhookOperational":  "",
	})
	wantOutput(t, res, "OperatorPodsRunning", "KubeRay is not running: no Deployment or pod in any namespace is labelled app.kubernetes.io/name=kuberay-operator, and no Service serves a webhook vraycluster.kb.io to lead to its pods")
	wantOutput(t, res, "CRDRegistered", "CRD rayclusters.ray.io of KubeRay is not installed")

	moduleDir, err := kubeRayBinary.ModuleDir(t.Context())
	if err != nil {
		t.Skipf("KubeRay's CRDs are not at hand: %v", err)
	}
	if err := installKubeRayCRDs(t.Context(), env, moduleDir+"/config/crd/bases"); err != nil {
		t.Fatal(err)
	}
	res = runCheck(t, env, quick, cleanup)
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"OperatorPodsRunning":     conformance.Failed,
		"CRDRegistered":           conformance.Passed,
		"WebhookOperational":      conformance.Failed,
		"WebhookRejectsInvalidCR": conformance.Failed,
		"ControllerReconcilesCR":  conformance.Failed,
	})
	wantOutput(t, res, "WebhookOperational", "no ValidatingWebhookConfiguration has webhook vraycluster.kb.io: KubeRay's webhook is not enabled (stack component kuberay-webhook enables it")
	wantOutput(t, res, "WebhookRejectsInvalidCR", "the invalid RayCluster invalid-cr was accepted")
	wantOutput(t, res, "ControllerReconcilesCR", "not attempted: KubeRay's pods are not running")

	certs, err := newWebhookCerts(webhookServiceName + ".ray-system.svc")
	if err != nil {
		t.Fatal(err)
	}
	client := env.Clientset()
	if _, err := client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ray-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Services("ray-system").Create(t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: webhookServiceName},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app.kubernetes.io/name": "kuberay-operator"},
			Ports:    []corev1.ServicePort{{Port: 443}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = installKubeRayWebhook(t.Context(), env, moduleDir+"/config/webhook/manifests.yaml", func(path string) admissionv1.WebhookClientConfig {
		return admissionv1.WebhookClientConfig{
			Service:  &admissionv1.ServiceReference{Namespace: "ray-system", Name: webhookServiceName, Path: &path},
			CABundle: certs.CAPEM,
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	res = runCheck(t, env, quick, cleanup)
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"WebhookOperational":      conformance.Failed,
		"WebhookRejectsInvalidCR": conformance.Failed,
	})
	// The webhook's Service leads to the namespace, where no pod runs.
	wantOutput(t, res, "OperatorPodsRunning", "KubeRay is not running: namespace ray-system (no pod is labelled app.kubernetes.io/name=kuberay-operator; Service ray-system/"+webhookServiceName+" serves webhook vraycluster.kb.io and selects these pods) has no pod matching app.kubernetes.io/name=kuberay-operator")
	wantOutput(t, res, "WebhookOperational", "service ray-system/"+webhookServiceName+" has no ready endpoint: no pod serves the webhook")
	wantOutput(t, res, "WebhookRejectsInvalidCR", "could not call webhook vraycluster.kb.io", "not serving", "no endpoints available")
}

// Where KubeRay's pods run is found, not assumed. On a control plane of
// its own with a kwok node and stand-in operator Deployments (no KubeRay
// process: only OperatorPodsRunning is judged here, and the check stops at
// the missing CRDs): one Deployment outside the stack component's
// namespace is found there; with the labels in two namespaces and nothing
// to tell which serves the cluster, the check fails asking for the
// namespace; named in the profile, it looks there only, and a namespace
// without the pods fails saying the profile named it.
func TestRobustControllerOperatorNamespace(t *testing.T) {
	env := testenv.New(t, testenv.WithControlLoops(), testenv.WithNodes(testenv.Node{Name: "kwok-0"}))
	quick := testConfig("kuberay")
	quick.readyTimeout = 30 * time.Second
	const cleanup = 3 * time.Second
	if err := standInDeployment(t.Context(), env, operatorNamespace); err != nil {
		t.Fatal(err)
	}

	res := runCheck(t, env, quick, cleanup)
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{"OperatorPodsRunning": conformance.Passed})
	wantOutput(t, res, "OperatorPodsRunning",
		"ai-operators, found by label app.kubernetes.io/name=kuberay-operator: Deployment kuberay-operator",
		"kuberay-operator-", // its pod, Ready
		"all 1 pod(s) of KubeRay are Ready")

	const elsewhere = "ray-elsewhere"
	if err := standInDeployment(t.Context(), env, elsewhere); err != nil {
		t.Fatal(err)
	}
	res = runCheck(t, env, quick, cleanup)
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{"OperatorPodsRunning": conformance.Failed})
	wantOutput(t, res, "OperatorPodsRunning",
		"KubeRay's labels app.kubernetes.io/name=kuberay-operator are on Deployments or pods in several namespaces (ai-operators, ray-elsewhere)",
		"name it in spec.checks.robustController.namespace")

	quick.namespace = operatorNamespace
	res = runCheck(t, env, quick, cleanup)
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{"OperatorPodsRunning": conformance.Passed})
	wantOutput(t, res, "OperatorPodsRunning", "KubeRay's namespace: ai-operators, named by spec.checks.robustController.namespace")

	quick.namespace = "default"
	quick.readyTimeout = 2 * time.Second
	res = runCheck(t, env, quick, cleanup)
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{"OperatorPodsRunning": conformance.Failed})
	wantOutput(t, res, "OperatorPodsRunning", "KubeRay is not running: namespace default (named by spec.checks.robustController.namespace) has no pod matching app.kubernetes.io/name=kuberay-operator")
}

// The operators the profile accepts are exactly the check's table.
func TestOperatorsMatchProfile(t *testing.T) {
	var names []string
	for _, op := range Operators() {
		names = append(names, op.Name)
		if _, err := Lookup(op.Name); err != nil {
			t.Error(err)
		}
		if op.Webhook == "" || len(op.CRDs) == 0 || op.Invalid == nil || op.Valid == nil || op.Reconciled == nil || len(op.Children) == 0 {
			t.Errorf("operator %s is incomplete: %+v", op.Name, op)
		}
	}
	if want := profile.RobustControllerOperators(); !slices.Equal(names, want) {
		t.Errorf("operators %v, the profile accepts %v", names, want)
	}
	if _, err := Lookup("kserve"); err == nil {
		t.Error("Lookup(kserve) found an operator")
	}
}

func TestCovers(t *testing.T) {
	rc := kubeRay().Resource
	rule := func(ops []admissionv1.OperationType, groups, versions, resources []string) admissionv1.ValidatingWebhook {
		return admissionv1.ValidatingWebhook{Rules: []admissionv1.RuleWithOperations{{
			Operations: ops,
			Rule:       admissionv1.Rule{APIGroups: groups, APIVersions: versions, Resources: resources},
		}}}
	}
	create := []admissionv1.OperationType{admissionv1.Create}
	for name, tc := range map[string]struct {
		w    admissionv1.ValidatingWebhook
		want bool
	}{
		"exact":          {rule(create, []string{"ray.io"}, []string{"v1"}, []string{"rayclusters"}), true},
		"wildcards":      {rule([]admissionv1.OperationType{admissionv1.OperationAll}, []string{"*"}, []string{"*"}, []string{"*"}), true},
		"update only":    {rule([]admissionv1.OperationType{admissionv1.Update}, []string{"ray.io"}, []string{"v1"}, []string{"rayclusters"}), false},
		"other resource": {rule(create, []string{"ray.io"}, []string{"v1"}, []string{"rayjobs"}), false},
		"no rules":       {admissionv1.ValidatingWebhook{}, false},
	} {
		if got := covers(tc.w, rc); got != tc.want {
			t.Errorf("%s: covers = %v, want %v", name, got, tc.want)
		}
	}
}
