package draapi_test

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	resourcev1 "k8s.io/api/resource/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/diff"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/draapi"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// pathRecorder records the paths of the requests a client sends.
type pathRecorder struct {
	mu    sync.Mutex
	paths []string
}

func (p *pathRecorder) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		p.mu.Lock()
		p.paths = append(p.paths, r.Method+" "+r.URL.Path)
		p.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestClientAgainstAPIServer writes and reads every kind the checks use
// through a real kube-apiserver 1.37 that serves v1, only v1beta2 and
// v1beta1, or only v1beta1 (as --runtime-config makes it), and checks that
// the client picked the newest served version, sent every request to it,
// and read back what it wrote.
func TestClientAgainstAPIServer(t *testing.T) {
	for _, tc := range []struct {
		served []string
		want   draapi.Version
	}{
		{nil, draapi.V1}, // the environment's default: every version on
		{[]string{"v1beta2", "v1beta1"}, draapi.V1beta2},
		{[]string{"v1beta1"}, draapi.V1beta1},
	} {
		name := "all"
		if tc.served != nil {
			name = strings.Join(tc.served, "+")
		}
		t.Run(name, func(t *testing.T) {
			var opts []testenv.Option
			if tc.served != nil {
				opts = append(opts, testenv.WithResourceAPIVersions(tc.served...))
			}
			env := testenv.New(t, opts...)
			rec := &pathRecorder{}
			cfg := rest.CopyConfig(env.Config)
			cfg.Wrap(rec.wrap)
			kube := kubernetes.NewForConfigOrDie(cfg)
			dyn := dynamic.NewForConfigOrDie(cfg)

			api, err := draapi.Discover(kube.Discovery())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("served %s; using %s", api.ServedList(), api)
			if api.Version != tc.want {
				t.Fatalf("chose %q, want %q", api.Version, tc.want)
			}
			exercise(t, draapi.NewClient(dyn, api))

			prefix := "/apis/resource.k8s.io/" + string(tc.want) + "/"
			var dra []string
			for _, p := range rec.paths {
				if strings.Contains(p, "/apis/resource.k8s.io/") {
					dra = append(dra, p)
				}
			}
			if len(dra) < 10 {
				t.Errorf("only %d requests to resource.k8s.io: %q", len(dra), dra)
			}
			for _, p := range dra {
				if !strings.Contains(p, prefix) {
					t.Errorf("request %s did not go to %s", p, prefix)
				}
			}
		})
	}
}

// exercise creates, reads, watches, updates the status of and deletes
// the kinds the checks use.
func exercise(t *testing.T, dra *draapi.Client) {
	ctx := t.Context()
	class := &resourcev1.DeviceClass{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu.example.com"},
		Spec: resourcev1.DeviceClassSpec{Selectors: []resourcev1.DeviceSelector{{
			CEL: &resourcev1.CELDeviceSelector{Expression: `device.driver == "gpu.example.com"`},
		}}},
	}
	if _, err := dra.DeviceClasses().Create(ctx, class, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gotClass, err := dra.DeviceClasses().Get(ctx, class.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(gotClass.Spec, class.Spec) {
		t.Errorf("DeviceClass read back differs:\n%s", diff.Diff(class.Spec, gotClass.Spec))
	}

	// Devices are where v1beta1 differs (under "basic"); the other
	// driver's slice must not come back from the field selector.
	slice := testenv.FakeGPUSlice("node-a", "gpu.example.com", 2)
	added := metav1.NewTime(time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC))
	slice.Spec.Devices[1].Taints = []resourcev1.DeviceTaint{{Key: "example.com/broken", Effect: resourcev1.DeviceTaintEffectNoSchedule, TimeAdded: &added}}
	for _, s := range []*resourcev1.ResourceSlice{slice, testenv.FakeGPUSlice("node-a", "other.example.com", 1)} {
		if _, err := dra.ResourceSlices().Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	listed, err := dra.ResourceSlices().List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorDriver, "gpu.example.com").String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(listed.Items) != 1 {
		t.Fatalf("listed %d slices of gpu.example.com, want 1", len(listed.Items))
	}
	if got := listed.Items[0].Spec.Devices; !apiequality.Semantic.DeepEqual(got, slice.Spec.Devices) {
		t.Errorf("devices read back differ:\n%s", diff.Diff(slice.Spec.Devices, got))
	}

	// Requests are the other place where v1beta1 differs.
	const ns = "default"
	spec := resourcev1.ResourceClaimSpec{Devices: resourcev1.DeviceClaim{Requests: []resourcev1.DeviceRequest{{
		Name: "gpu",
		Exactly: &resourcev1.ExactDeviceRequest{
			DeviceClassName: class.Name,
			Selectors:       []resourcev1.DeviceSelector{{CEL: &resourcev1.CELDeviceSelector{Expression: `device.attributes["gpu.example.com"].index >= 0`}}},
			AllocationMode:  resourcev1.DeviceAllocationModeExactCount,
			Count:           1,
		},
	}}}}
	template := &resourcev1.ResourceClaimTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "one-gpu", Namespace: ns},
		Spec:       resourcev1.ResourceClaimTemplateSpec{Spec: spec},
	}
	gotTemplate, err := dra.ResourceClaimTemplates(ns).Create(ctx, template, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(gotTemplate.Spec.Spec, spec) {
		t.Errorf("template read back differs:\n%s", diff.Diff(spec, gotTemplate.Spec.Spec))
	}
	claim, err := dra.ResourceClaims(ns).Create(ctx, &resourcev1.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "one-gpu"},
		Spec:       spec,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(claim.Spec, spec) {
		t.Errorf("claim read back differs:\n%s", diff.Diff(spec, claim.Spec))
	}

	// An allocation written to the status is seen by a watch and a get.
	w, err := dra.ResourceClaims(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: claim.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	claim.Status.Allocation = &resourcev1.AllocationResult{Devices: resourcev1.DeviceAllocationResult{
		Results: []resourcev1.DeviceRequestAllocationResult{{Request: "gpu", Driver: "gpu.example.com", Pool: "node-a", Device: "gpu-0"}},
	}}
	claim.Status.ReservedFor = []resourcev1.ResourceClaimConsumerReference{{Resource: "pods", Name: "p", UID: "0f6c8d0e-1111-4222-8333-444455556666"}}
	if _, err := dra.ResourceClaims(ns).UpdateStatus(ctx, claim, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		got, ok := ev.Object.(*resourcev1.ResourceClaim)
		if ev.Type != watch.Modified || !ok || got.Status.Allocation == nil {
			t.Fatalf("watch event %s %T, want a modified *v1.ResourceClaim with its allocation", ev.Type, ev.Object)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no watch event for the allocation")
	}
	got, err := dra.ResourceClaims(ns).Get(ctx, claim.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(got.Status, claim.Status) {
		t.Errorf("status read back differs:\n%s", diff.Diff(claim.Status, got.Status))
	}
	all, err := dra.ResourceClaims(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(all.Items, func(c resourcev1.ResourceClaim) bool { return c.Name == claim.Name && c.Status.Allocation != nil }) {
		t.Errorf("claims of all namespaces lack the allocated claim: %d items", len(all.Items))
	}

	if err := dra.ResourceClaims(ns).Delete(ctx, claim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := dra.ResourceClaims(ns).Get(ctx, claim.Name, metav1.GetOptions{}); err == nil {
		t.Error("the claim is still there after Delete")
	}
}
