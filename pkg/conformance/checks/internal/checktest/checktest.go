// Package checktest runs one check against a test control plane the way
// kaic's runner does and inspects its result, for the checks' integration
// tests.
package checktest

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// Run runs check through the runner on env with the accelerator model acc
// and logs every test's status and output.
func Run(t *testing.T, env *testenv.Env, check conformance.Check, level conformance.Level, acc profile.Accelerator) conformance.Result {
	t.Helper()
	return RunWith(t, env, check, Options{Version: "1.37", Category: "accelerators", Level: level, Timeout: 5 * time.Minute, Accelerator: &acc})
}

// Options say how [RunWith] runs a check.
type Options struct {
	// Version is the catalog's Kubernetes version.
	Version string
	// Category and Level are those of the check's requirement.
	Category string
	Level    conformance.Level
	// Timeout and CleanupTimeout are the runner's (0: its default cleanup
	// time).
	Timeout, CleanupTimeout time.Duration
	// Accelerator, if set, is the accelerator model of the environment.
	Accelerator *profile.Accelerator
	// WrapTransport, if set, wraps the transport of the check's clients,
	// e.g. to record the requests it sends.
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// RunWith runs check through the runner on env as o says and logs every
// test's status and output.
func RunWith(t *testing.T, env *testenv.Env, check conformance.Check, o Options) conformance.Result {
	t.Helper()
	cfg := env.Config
	if o.WrapTransport != nil {
		cfg = rest.CopyConfig(cfg)
		cfg.Wrap(o.WrapTransport)
	}
	cenv, err := conformance.NewEnv(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Accelerator != nil {
		cenv.Accelerator = *o.Accelerator
	}
	reg, err := conformance.NewRegistry(check)
	if err != nil {
		t.Fatal(err)
	}
	r := &conformance.Runner{
		Catalog:        conformance.Catalog{Version: o.Version, Requirements: []conformance.Requirement{{ID: check.ID(), Category: o.Category, Level: o.Level}}},
		Registry:       reg,
		Env:            *cenv,
		Timeout:        o.Timeout,
		CleanupTimeout: o.CleanupTimeout,
	}
	results, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 {
		t.Fatalf("got %d results", len(results))
	}
	res := results[0]
	for _, tr := range res.Tests() {
		t.Logf("%s: %s %q", tr.Name, tr.Status, tr.Output)
	}
	return res
}

// ExampleModel is the example accelerator model with the given DRA driver
// and DeviceClass.
func ExampleModel(driver, deviceClass string) profile.Accelerator {
	return profile.Accelerator{Model: "example", DRADriver: driver, DeviceClass: deviceClass, DeviceEnvPrefix: "GPU_DEVICE_", NodeTaintKey: "example.com/gpu"}
}

// DevicePluginModel is the example accelerator model allocated by a
// device plugin that advertises resource.
func DevicePluginModel(resource string) profile.Accelerator {
	acc := ExampleModel("", "")
	acc.Allocation, acc.ResourceName = profile.AllocationDevicePlugin, resource
	return acc
}

// AddNode registers a simulated node for the rest of the test, Ready and
// schedulable when it returns, and removes it when the test ends.
func AddNode(t *testing.T, env *testenv.Env, node testenv.Node) {
	t.Helper()
	if err := env.AddNodes(t.Context(), node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := env.RemoveNodes(ctx, node); err != nil {
			t.Errorf("removing node %s: %v", node.Name, err)
		}
	})
}

// Subtest returns the record of the subtest at path below the check's
// test, or nil.
func Subtest(res conformance.Result, path string) *conformance.TestRecord {
	for _, tr := range res.Tests() {
		if tr.Name == res.TestName+"/"+path {
			return tr
		}
	}
	return nil
}

// ExpectStatuses fails t for each subtest whose status differs.
func ExpectStatuses(t *testing.T, res conformance.Result, want map[string]conformance.Status) {
	t.Helper()
	for name, status := range want {
		if tr := Subtest(res, name); tr == nil || tr.Status != status {
			t.Errorf("subtest %s: %+v, want %s", name, tr, status)
		}
	}
}

// ExpectSubtests checks the status of each named subtest; "" means it must
// not have run.
func ExpectSubtests(t *testing.T, res conformance.Result, want map[string]conformance.Status) {
	t.Helper()
	for name, status := range want {
		tr := Subtest(res, name)
		switch {
		case tr == nil && status == "":
		case tr == nil:
			t.Errorf("subtest %s did not run, want %s", name, status)
		case status == "":
			t.Errorf("subtest %s ran (%s), want it not to", name, tr.Status)
		case tr.Status != status:
			t.Errorf("subtest %s: %s, want %s:\n%s", name, tr.Status, status, strings.Join(tr.Output, "\n"))
		}
	}
}

// ExpectSkippedOnKwok fails t unless each subtest was skipped saying the
// node is simulated by kwok.
func ExpectSkippedOnKwok(t *testing.T, res conformance.Result, names ...string) {
	t.Helper()
	for _, name := range names {
		tr := Subtest(res, name)
		if tr == nil || tr.Status != conformance.Skipped {
			t.Errorf("subtest %s: %+v, want skipped", name, tr)
			continue
		}
		if out := strings.Join(tr.Output, "\n"); !strings.Contains(out, "simulated by kwok") {
			t.Errorf("subtest %s does not say why it skips: %q", name, out)
		}
	}
}

// Transcript joins the transcript's texts and bodies.
func Transcript(res conformance.Result) string {
	var b strings.Builder
	for _, e := range res.Transcript {
		b.WriteString(e.Text + "\n" + e.Body + "\n")
	}
	return b.String()
}

// ExpectCleanedUp fails t when the check's namespace still exists or a
// ResourceClaim anywhere is still allocated.
func ExpectCleanedUp(t *testing.T, env *testenv.Env, res conformance.Result) {
	t.Helper()
	cs := env.Clientset()
	if _, err := cs.CoreV1().Namespaces().Get(t.Context(), res.Namespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace %s still exists after cleanup (err %v); problems %q", res.Namespace, err, res.CleanupProblems)
	}
	claims, err := env.DRA().ResourceClaims(metav1.NamespaceAll).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range claims.Items {
		if c.Status.Allocation != nil {
			t.Errorf("ResourceClaim %s/%s is still allocated after the check", c.Namespace, c.Name)
		}
	}
}

// EnsureDeviceClass creates a DeviceClass called name that selects the
// devices of driver, unless it exists.
func EnsureDeviceClass(t *testing.T, env *testenv.Env, name, driver string) {
	t.Helper()
	_, err := env.DRA().DeviceClasses().Create(t.Context(), testenv.DeviceClassFor(name, driver), metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// PublishSlice publishes slice unless one of its name exists, and removes
// it when the test ends.
func PublishSlice(t *testing.T, env *testenv.Env, slice *resourcev1.ResourceSlice) {
	t.Helper()
	slices := env.DRA().ResourceSlices()
	if _, err := slices.Create(t.Context(), slice, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := slices.Delete(ctx, slice.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting ResourceSlice %s: %v", slice.Name, err)
		}
	})
}

// MainWithGPUNodes is the TestMain of the accelerator checks' tests: a
// control plane with control loops and two kwok nodes with two fake devices
// each, advertised both in ResourceSlices and as the extended resource
// testenv.GPUResourceName.
func MainWithGPUNodes(m *testing.M) {
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithGPUNodes(2, 2))
}

// ExpectTranscript fails t for each string of want the transcript lacks.
func ExpectTranscript(t *testing.T, res conformance.Result, want ...string) {
	t.Helper()
	all := Transcript(res)
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("transcript lacks %q", w)
		}
	}
}

// AcceleratorCheck is an accelerator check as its tests run it, at the
// level of its requirement, with the example model.
type AcceleratorCheck struct {
	Check conformance.Check
	Level conformance.Level
}

// Run runs the check on env with the example model of driver and
// DeviceClass class.
func (c AcceleratorCheck) Run(t *testing.T, env *testenv.Env, driver, class string) conformance.Result {
	t.Helper()
	return Run(t, env, c.Check, c.Level, ExampleModel(driver, class))
}

// RunDevicePlugin runs the check on env with the example model allocated
// by a device plugin that advertises resource.
func (c AcceleratorCheck) RunDevicePlugin(t *testing.T, env *testenv.Env, resource string) conformance.Result {
	t.Helper()
	return Run(t, env, c.Check, c.Level, DevicePluginModel(resource))
}

// RunPassing runs the check on the shared control plane with the example
// model over the fake devices (DeviceClass gpu.example.com), stops t
// unless it passed and fails t unless its test is testName.
func (c AcceleratorCheck) RunPassing(t *testing.T, testName string) (*testenv.Env, conformance.Result) {
	t.Helper()
	env := testenv.Shared(t)
	EnsureDeviceClass(t, env, "gpu.example.com", testenv.DefaultDRADriver)
	res := c.Run(t, env, testenv.DefaultDRADriver, "gpu.example.com")
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	if res.TestName != testName {
		t.Errorf("test name %q", res.TestName)
	}
	return env, res
}

// ExpectFailsWithoutDeviceClass runs the check on the shared control plane
// with a model whose DeviceClass does not exist, stops t unless the check
// fails saying so and returns its result.
func (c AcceleratorCheck) ExpectFailsWithoutDeviceClass(t *testing.T) conformance.Result {
	t.Helper()
	res := c.Run(t, testenv.Shared(t), testenv.DefaultDRADriver, "missing.example.com")
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "DeviceClass missing.example.com of the accelerator model does not exist") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	return res
}

// ExpectFailsWhenDriverPublishesNothing runs the check on the shared
// control plane with a model whose driver publishes no devices, and stops t
// unless the check fails saying so.
func (c AcceleratorCheck) ExpectFailsWhenDriverPublishesNothing(t *testing.T) {
	t.Helper()
	env := testenv.Shared(t)
	const driver = "gpu.absent.example.com"
	EnsureDeviceClass(t, env, driver, driver)
	res := c.Run(t, env, driver, driver)
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "driver gpu.absent.example.com publishes no devices") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
}
