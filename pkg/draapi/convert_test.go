package draapi

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	resourcev1beta1 "k8s.io/api/resource/v1beta1"
	resourcev1beta2 "k8s.io/api/resource/v1beta2"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/diff"
	"k8s.io/utils/ptr"
)

// The objects the checks write, in v1 and as v1beta1 holds them.
func oneDeviceClaimV1() *resourcev1.ResourceClaim {
	return &resourcev1.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "one", Namespace: "ns"},
		Spec: resourcev1.ResourceClaimSpec{Devices: resourcev1.DeviceClaim{Requests: []resourcev1.DeviceRequest{{
			Name: "accelerator",
			Exactly: &resourcev1.ExactDeviceRequest{
				DeviceClassName: "gpu.example.com",
				Selectors:       []resourcev1.DeviceSelector{{CEL: &resourcev1.CELDeviceSelector{Expression: "true"}}},
				AllocationMode:  resourcev1.DeviceAllocationModeExactCount,
				Count:           2,
			},
		}}}},
		Status: resourcev1.ResourceClaimStatus{
			Allocation: &resourcev1.AllocationResult{Devices: resourcev1.DeviceAllocationResult{Results: []resourcev1.DeviceRequestAllocationResult{
				{Request: "accelerator", Driver: "gpu.example.com", Pool: "node-a", Device: "gpu-0"},
			}}},
			ReservedFor: []resourcev1.ResourceClaimConsumerReference{{Resource: "pods", Name: "p", UID: "uid-1"}},
		},
	}
}

func oneDeviceClaimV1beta1() *resourcev1beta1.ResourceClaim {
	return &resourcev1beta1.ResourceClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "resource.k8s.io/v1beta1", Kind: "ResourceClaim"},
		ObjectMeta: metav1.ObjectMeta{Name: "one", Namespace: "ns"},
		Spec: resourcev1beta1.ResourceClaimSpec{Devices: resourcev1beta1.DeviceClaim{Requests: []resourcev1beta1.DeviceRequest{{
			Name:            "accelerator",
			DeviceClassName: "gpu.example.com",
			Selectors:       []resourcev1beta1.DeviceSelector{{CEL: &resourcev1beta1.CELDeviceSelector{Expression: "true"}}},
			AllocationMode:  resourcev1beta1.DeviceAllocationModeExactCount,
			Count:           2,
		}}}},
		Status: resourcev1beta1.ResourceClaimStatus{
			Allocation: &resourcev1beta1.AllocationResult{Devices: resourcev1beta1.DeviceAllocationResult{Results: []resourcev1beta1.DeviceRequestAllocationResult{
				{Request: "accelerator", Driver: "gpu.example.com", Pool: "node-a", Device: "gpu-0"},
			}}},
			ReservedFor: []resourcev1beta1.ResourceClaimConsumerReference{{Resource: "pods", Name: "p", UID: "uid-1"}},
		},
	}
}

func sliceV1() *resourcev1.ResourceSlice {
	return &resourcev1.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a-gpu"},
		Spec: resourcev1.ResourceSliceSpec{
			Driver:   "gpu.example.com",
			NodeName: ptr.To("node-a"),
			Pool:     resourcev1.ResourcePool{Name: "node-a", Generation: 1, ResourceSliceCount: 1},
			Devices: []resourcev1.Device{
				{
					Name:       "gpu-0",
					Attributes: map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{"index": {IntValue: ptr.To(int64(0))}},
					Capacity:   map[resourcev1.QualifiedName]resourcev1.DeviceCapacity{"memory": {Value: resource.MustParse("80Gi")}},
				},
				{Name: "bare"},
			},
		},
	}
}

func sliceV1beta1() *resourcev1beta1.ResourceSlice {
	return &resourcev1beta1.ResourceSlice{
		TypeMeta:   metav1.TypeMeta{APIVersion: "resource.k8s.io/v1beta1", Kind: "ResourceSlice"},
		ObjectMeta: metav1.ObjectMeta{Name: "node-a-gpu"},
		Spec: resourcev1beta1.ResourceSliceSpec{
			Driver:   "gpu.example.com",
			NodeName: "node-a",
			Pool:     resourcev1beta1.ResourcePool{Name: "node-a", Generation: 1, ResourceSliceCount: 1},
			Devices: []resourcev1beta1.Device{
				{Name: "gpu-0", Basic: &resourcev1beta1.BasicDevice{
					Attributes: map[resourcev1beta1.QualifiedName]resourcev1beta1.DeviceAttribute{"index": {IntValue: ptr.To(int64(0))}},
					Capacity:   map[resourcev1beta1.QualifiedName]resourcev1beta1.DeviceCapacity{"memory": {Value: resource.MustParse("80Gi")}},
				}},
				// v1beta1 requires basic: a device with a name only still has one.
				{Name: "bare", Basic: &resourcev1beta1.BasicDevice{}},
			},
		},
	}
}

// TestToV1beta1 checks the two places where v1beta1 differs, written by
// hand from k8s.io/api's resource/v1beta1 types.
func TestToV1beta1(t *testing.T) {
	firstAvailable := &resourcev1.ResourceClaimTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "any-gpu"},
		Spec: resourcev1.ResourceClaimTemplateSpec{Spec: resourcev1.ResourceClaimSpec{Devices: resourcev1.DeviceClaim{Requests: []resourcev1.DeviceRequest{{
			Name:           "gpu",
			FirstAvailable: []resourcev1.DeviceSubRequest{{Name: "big", DeviceClassName: "big.example.com", AllocationMode: resourcev1.DeviceAllocationModeAll}},
		}}}}},
	}
	firstAvailableBeta := &resourcev1beta1.ResourceClaimTemplate{
		TypeMeta:   metav1.TypeMeta{APIVersion: "resource.k8s.io/v1beta1", Kind: "ResourceClaimTemplate"},
		ObjectMeta: metav1.ObjectMeta{Name: "any-gpu"},
		Spec: resourcev1beta1.ResourceClaimTemplateSpec{Spec: resourcev1beta1.ResourceClaimSpec{Devices: resourcev1beta1.DeviceClaim{Requests: []resourcev1beta1.DeviceRequest{{
			Name:           "gpu",
			FirstAvailable: []resourcev1beta1.DeviceSubRequest{{Name: "big", DeviceClassName: "big.example.com", AllocationMode: resourcev1beta1.DeviceAllocationModeAll}},
		}}}}},
	}
	for _, tc := range []struct {
		name string
		v1   runtime.Object
		beta runtime.Object
	}{
		{"claim with an exact request", oneDeviceClaimV1(), oneDeviceClaimV1beta1()},
		{"template with firstAvailable", firstAvailable, firstAvailableBeta},
		{"slice", sliceV1(), sliceV1beta1()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ToVersion(tc.v1, V1beta1)
			if err != nil {
				t.Fatal(err)
			}
			got := reflect.New(reflect.TypeOf(tc.beta).Elem()).Interface().(runtime.Object)
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, got, true); err != nil {
				t.Fatal(err)
			}
			if !apiequality.Semantic.DeepEqual(got, tc.beta) {
				t.Errorf("v1 → v1beta1 differs (-want +got):\n%s", diff.Diff(tc.beta, got))
			}

			// And back: what a v1beta1 server returns reads as the v1 object.
			content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(tc.beta)
			if err != nil {
				t.Fatal(err)
			}
			back := reflect.New(reflect.TypeOf(tc.v1).Elem()).Interface().(runtime.Object)
			if err := FromVersion(content, V1beta1, back); err != nil {
				t.Fatal(err)
			}
			if !apiequality.Semantic.DeepEqual(back, tc.v1) {
				t.Errorf("v1beta1 → v1 differs (-want +got):\n%s", diff.Diff(tc.v1, back))
			}
		})
	}
}

// TestV1beta2HasTheShapeOfV1: only apiVersion changes.
func TestV1beta2HasTheShapeOfV1(t *testing.T) {
	u, err := ToVersion(oneDeviceClaimV1(), V1beta2)
	if err != nil {
		t.Fatal(err)
	}
	if u.GetAPIVersion() != "resource.k8s.io/v1beta2" || u.GetKind() != "ResourceClaim" {
		t.Errorf("apiVersion %q kind %q", u.GetAPIVersion(), u.GetKind())
	}
	var beta resourcev1beta2.ResourceClaim
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &beta, true); err != nil {
		t.Fatal(err)
	}
	if e := beta.Spec.Devices.Requests[0].Exactly; e == nil || e.DeviceClassName != "gpu.example.com" || e.Count != 2 {
		t.Errorf("v1beta2 request %+v", beta.Spec.Devices.Requests[0])
	}
}

// A field the target version has no place for is refused, not dropped:
// v1's "exactly" is unknown to v1beta1 unless moved.
func TestCheckedAgainstTargetType(t *testing.T) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(oneDeviceClaimV1())
	if err != nil {
		t.Fatal(err)
	}
	err = runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(content, &resourcev1beta1.ResourceClaim{}, true)
	if err == nil || !strings.Contains(err.Error(), "exactly") {
		t.Fatalf("v1 content decoded as v1beta1 without reshaping: %v, want an unknown field exactly", err)
	}
	if _, err := ToVersion(&resourcev1.ResourceClaimList{}, V1beta1); err == nil {
		t.Error("a list was converted for writing")
	}
	if _, err := ToVersion(&corev1.Pod{}, V1beta1); err == nil {
		t.Error("a Pod was converted")
	}
}

// Every field of every converted type survives the trip to each beta and
// back, in both directions: the types are filled by reflection, so a field
// added to k8s.io/api that one version cannot hold fails this test.
func TestRoundTripEveryField(t *testing.T) {
	pairs := []struct {
		v1               func() runtime.Object
		v1beta1, v1beta2 func() runtime.Object
	}{
		{func() runtime.Object { return &resourcev1.DeviceClass{} }, func() runtime.Object { return &resourcev1beta1.DeviceClass{} }, func() runtime.Object { return &resourcev1beta2.DeviceClass{} }},
		{func() runtime.Object { return &resourcev1.ResourceSlice{} }, func() runtime.Object { return &resourcev1beta1.ResourceSlice{} }, func() runtime.Object { return &resourcev1beta2.ResourceSlice{} }},
		{func() runtime.Object { return &resourcev1.ResourceClaim{} }, func() runtime.Object { return &resourcev1beta1.ResourceClaim{} }, func() runtime.Object { return &resourcev1beta2.ResourceClaim{} }},
		{func() runtime.Object { return &resourcev1.ResourceClaimTemplate{} }, func() runtime.Object { return &resourcev1beta1.ResourceClaimTemplate{} }, func() runtime.Object { return &resourcev1beta2.ResourceClaimTemplate{} }},
	}
	for _, p := range pairs {
		for _, target := range []struct {
			version Version
			newObj  func() runtime.Object
		}{{V1beta1, p.v1beta1}, {V1beta2, p.v1beta2}} {
			kind := reflect.TypeOf(p.v1()).Elem().Name()
			t.Run(kind+"/"+string(target.version), func(t *testing.T) {
				// v1 → beta → v1
				orig := p.v1()
				fill(t, reflect.ValueOf(orig).Elem(), 0)
				u, err := ToVersion(orig, target.version)
				if err != nil {
					t.Fatalf("every field of v1 cannot be written as %s: %v", target.version, err)
				}
				back := p.v1()
				if err := FromVersion(u.Object, target.version, back); err != nil {
					t.Fatal(err)
				}
				if !apiequality.Semantic.DeepEqual(orig, back) {
					t.Errorf("v1 → %s → v1 changed the object (-orig +back):\n%s", target.version, diff.Diff(orig, back))
				}

				// beta → v1 → beta
				beta := target.newObj()
				fill(t, reflect.ValueOf(beta).Elem(), 0)
				content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(beta)
				if err != nil {
					t.Fatal(err)
				}
				asV1 := p.v1()
				if err := FromVersion(content, target.version, asV1); err != nil {
					t.Fatal(err)
				}
				u, err = ToVersion(asV1, target.version)
				if err != nil {
					t.Fatal(err)
				}
				betaBack := target.newObj()
				if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, betaBack, true); err != nil {
					t.Fatal(err)
				}
				betaBack.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
				if !apiequality.Semantic.DeepEqual(beta, betaBack) {
					t.Errorf("%s → v1 → %s changed the object (-orig +back):\n%s", target.version, target.version, diff.Diff(beta, betaBack))
				}
			})
		}
	}
}

func TestFromVersionReadsLists(t *testing.T) {
	item, err := runtime.DefaultUnstructuredConverter.ToUnstructured(sliceV1beta1())
	if err != nil {
		t.Fatal(err)
	}
	content := map[string]any{
		"apiVersion": "resource.k8s.io/v1beta1", "kind": "ResourceSliceList",
		"metadata": map[string]any{"resourceVersion": "42"},
		"items":    []any{item},
	}
	var list resourcev1.ResourceSliceList
	if err := FromVersion(content, V1beta1, &list); err != nil {
		t.Fatal(err)
	}
	want := sliceV1()
	if list.ResourceVersion != "42" || len(list.Items) != 1 || !apiequality.Semantic.DeepEqual(&list.Items[0], want) {
		t.Errorf("list %+v, want resourceVersion 42 and %+v", list, want)
	}
	if list.APIVersion != "" || list.Kind != "" {
		t.Errorf("TypeMeta %+v, want it empty as typed clients leave it", list.TypeMeta)
	}
}

// fill sets every field reachable from v to a value that is not its zero
// value, one element in every slice and map.
func fill(t *testing.T, v reflect.Value, depth int) {
	t.Helper()
	if depth > 20 {
		t.Fatalf("types nest deeper than expected at %s", v.Type())
	}
	switch x := v.Addr().Interface().(type) {
	case *resource.Quantity:
		*x = resource.MustParse("3Gi")
		return
	case *metav1.Time:
		*x = metav1.NewTime(time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC).Local())
		return
	case *runtime.RawExtension:
		x.Raw = []byte(`{"key":"value"}`)
		return
	case *metav1.FieldsV1:
		x.SetRawString(`{"f:spec":{}}`)
		return
	case *metav1.TypeMeta:
		return // set by the conversion itself
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(t, v.Field(i), depth+1)
			}
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), depth+1)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes([]byte("bytes"))
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(t, v.Index(0), depth+1)
	case reflect.Map:
		key := reflect.New(v.Type().Key()).Elem()
		fill(t, key, depth+1)
		val := reflect.New(v.Type().Elem()).Elem()
		fill(t, val, depth+1)
		v.Set(reflect.MakeMap(v.Type()))
		v.SetMapIndex(key, val)
	case reflect.String:
		v.SetString("s-" + strings.ToLower(v.Type().Name()))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	default:
		t.Fatalf("fill: unexpected %s", v.Type())
	}
}
