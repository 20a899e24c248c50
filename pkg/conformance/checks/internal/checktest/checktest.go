// Package checktest runs one check against a test control plane the way
// kaic's runner does and inspects its result, for the checks' integration
// tests.
package checktest

import (
	"context"
	"strings"
	"testing"
	"time"

	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// Run runs check through the runner on env with the accelerator model acc
// and logs every test's status and output.
func Run(t *testing.T, env *testenv.Env, check conformance.Check, level conformance.Level, acc profile.Accelerator) conformance.Result {
	t.Helper()
	cenv, err := conformance.NewEnv(env.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	cenv.Accelerator = acc
	reg, err := conformance.NewRegistry(check)
	if err != nil {
		t.Fatal(err)
	}
	r := &conformance.Runner{
		Catalog:  conformance.Catalog{Version: "1.37", Requirements: []conformance.Requirement{{ID: check.ID(), Category: "accelerators", Level: level}}},
		Registry: reg,
		Env:      *cenv,
		Timeout:  5 * time.Minute,
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
	claims, err := cs.ResourceV1().ResourceClaims(metav1.NamespaceAll).List(t.Context(), metav1.ListOptions{})
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
	_, err := env.Clientset().ResourceV1().DeviceClasses().Create(t.Context(), testenv.DeviceClassFor(name, driver), metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// PublishSlice publishes slice unless one of its name exists, and removes
// it when the test ends.
func PublishSlice(t *testing.T, env *testenv.Env, slice *resourcev1.ResourceSlice) {
	t.Helper()
	slices := env.Clientset().ResourceV1().ResourceSlices()
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
