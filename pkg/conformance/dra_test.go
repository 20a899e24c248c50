package conformance

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/draapi"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// TestDRAObjectsGoToTheServedVersion runs a check against a real API
// server that serves resource.k8s.io as v1beta2 and v1beta1 only (as
// Kubernetes 1.33 does): the runner discovers v1beta2 for the run, the
// v1 objects the check applies are sent as v1beta2 and recorded so, reads
// through env.DRA() return them as v1, the DeviceClass need is looked at
// through v1beta2, and no request goes to resource.k8s.io/v1.
func TestDRAObjectsGoToTheServedVersion(t *testing.T) {
	kube := testenv.New(t, testenv.WithResourceAPIVersions("v1beta2", "v1beta1"), testenv.WithControlLoops(), testenv.WithoutScheduler())
	if _, err := kube.CreateDeviceClass(t.Context(), "gpu.example.com"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var paths []string
	cfg := rest.CopyConfig(kube.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			paths = append(paths, r.Method+" "+r.URL.Path)
			mu.Unlock()
			return rt.RoundTrip(r)
		})
	})
	env, err := NewEnv(cfg, &profile.Profile{Spec: profile.Spec{Accelerator: profile.Accelerator{DeviceClass: "gpu.example.com"}}})
	if err != nil {
		t.Fatal(err)
	}

	spec := resourcev1.ResourceClaimSpec{Devices: resourcev1.DeviceClaim{Requests: []resourcev1.DeviceRequest{{
		Name: "gpu",
		Exactly: &resourcev1.ExactDeviceRequest{
			DeviceClassName: "gpu.example.com",
			AllocationMode:  resourcev1.DeviceAllocationModeExactCount,
			Count:           1,
		},
	}}}}
	var used draapi.Version
	check := WithNeeds(NewCheck("dra_support", func(t *T, env *Env) {
		used = env.DRA().Version()
		t.Apply(&resourcev1.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: "applied.example.com"}})
		t.Apply(&resourcev1.ResourceClaimTemplate{
			ObjectMeta: metav1.ObjectMeta{Name: "one-gpu"},
			Spec:       resourcev1.ResourceClaimTemplateSpec{Spec: spec},
		})
		t.Apply(&resourcev1.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Name: "one-gpu"}, Spec: spec})
		claim, err := env.DRA().ResourceClaims(env.Namespace).Get(t.Context(), "one-gpu", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%v", err)
		}
		if e := claim.Spec.Devices.Requests[0].Exactly; e == nil || e.DeviceClassName != "gpu.example.com" || e.Count != 1 {
			t.Errorf("the claim read back has request %+v", claim.Spec.Devices.Requests[0])
		}
		if _, err := env.DRA().ResourceClaimTemplates(env.Namespace).Get(t.Context(), "one-gpu", metav1.GetOptions{}); err != nil {
			t.Errorf("%v", err)
		}
	}), func(env *Env) []Need { return []Need{DeviceClassNeed(env)} })
	r := &Runner{Catalog: testCatalog("dra_support"), Registry: mustRegistry(t, check), Env: *env}
	results, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	res := results[0]
	for _, tr := range res.Tests() {
		t.Logf("%s: %s %q", tr.Name, tr.Status, tr.Output)
	}
	if res.Status != Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	if used != draapi.V1beta2 || r.Env.DRAAPI.Version != draapi.V1beta2 {
		t.Errorf("the check used %q and the run discovered %q, want v1beta2", used, r.Env.DRAAPI.Version)
	}
	applied := 0
	for _, e := range res.Transcript {
		if e.Kind == EntryApply {
			applied++
			if !strings.Contains(e.Body, "apiVersion: resource.k8s.io/v1beta2") {
				t.Errorf("%s recorded as:\n%s", e.Text, e.Body)
			}
		}
	}
	if applied != 3 {
		t.Errorf("%d objects recorded as applied, want 3", applied)
	}
	// The cluster-scoped object the check applied is gone after it.
	if _, err := kube.DRA().DeviceClasses().Get(t.Context(), "applied.example.com", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("DeviceClass applied.example.com after the check: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	var beta2 int
	for _, p := range paths {
		switch {
		case strings.Contains(p, "/apis/resource.k8s.io/v1/"), strings.HasSuffix(p, "/apis/resource.k8s.io/v1"):
			t.Errorf("request to resource.k8s.io/v1: %s", p)
		case strings.Contains(p, "/apis/resource.k8s.io/v1beta2/"):
			beta2++
		}
	}
	// The need's get, three applies, two gets and the cleanup's delete.
	if beta2 < 7 {
		t.Errorf("%d requests to resource.k8s.io/v1beta2 objects, want at least 7: %q", beta2, paths)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
