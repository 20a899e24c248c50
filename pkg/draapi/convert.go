package draapi

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
)

// ToVersion returns obj, an object of a Go type of k8s.io/api/resource/v1,
// as the unstructured content of the same object at version v, ready to be
// sent to a server that serves v. A field that v cannot hold is an error.
func ToVersion(obj runtime.Object, v Version) (*unstructured.Unstructured, error) {
	gvk, err := v1Kind(obj)
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(gvk.Kind, "List") {
		return nil, fmt.Errorf("converting a %s: only single objects are written", gvk.Kind)
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: content}
	reshape(content, gvk.Kind, v, false)
	u.SetGroupVersionKind(v.GroupVersion().WithKind(gvk.Kind))
	// Decoding into v's own Go type finds what v has no field for.
	typed, err := scheme.Scheme.New(u.GroupVersionKind())
	if err != nil {
		return nil, fmt.Errorf("%s has no %s: %w", v, gvk.Kind, err)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(content, typed, true); err != nil {
		return nil, fmt.Errorf("%s %s cannot be written as %s: %w", gvk.Kind, u.GetName(), v, err)
	}
	return u, nil
}

// FromVersion decodes content, an object or list of version v as a server
// sends it, into out, a pointer to the matching Go type of
// k8s.io/api/resource/v1. It rearranges content in place. Fields that v1
// does not know are dropped, as a typed client drops them. out's TypeMeta
// is left empty, as typed clients leave it.
func FromVersion(content map[string]any, v Version, out runtime.Object) error {
	gvk, err := v1Kind(out)
	if err != nil {
		return err
	}
	if kind, isList := strings.CutSuffix(gvk.Kind, "List"); isList {
		items, _ := content["items"].([]any)
		for _, item := range items {
			if m, ok := item.(map[string]any); ok {
				reshape(m, kind, v, true)
				delete(m, "apiVersion")
				delete(m, "kind")
			}
		}
	} else {
		reshape(content, gvk.Kind, v, true)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(content, out); err != nil {
		return fmt.Errorf("decoding a %s of %s: %w", gvk.Kind, v, err)
	}
	out.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
	return nil
}

// v1Kind returns the kind of obj, which must be of a Go type of
// k8s.io/api/resource/v1.
func v1Kind(obj runtime.Object) (schema.GroupVersionKind, error) {
	kinds, _, err := scheme.Scheme.ObjectKinds(obj)
	if err != nil {
		return schema.GroupVersionKind{}, fmt.Errorf("converting %T: %w", obj, err)
	}
	for _, k := range kinds {
		if k.GroupVersion() == V1.GroupVersion() {
			return k, nil
		}
	}
	return schema.GroupVersionKind{}, fmt.Errorf("converting %T: not a type of %s", obj, V1)
}

// reshape rearranges the content of an object of kind between the shape of
// v1 and that of v (toV1 says which way). Only v1beta1 differs from v1:
//
//   - a DeviceRequest (ResourceClaim spec.devices.requests[], and the same
//     in a ResourceClaimTemplate's spec.spec) holds what v1 holds under
//     "exactly" itself, beside its name and firstAvailable;
//   - a Device (ResourceSlice spec.devices[]) holds everything but its
//     name under "basic".
//
// DeviceClass and the status of a ResourceClaim have one shape in all
// three versions.
func reshape(content map[string]any, kind string, v Version, toV1 bool) {
	if v != V1beta1 {
		return
	}
	switch kind {
	case "ResourceSlice":
		for _, device := range objects(content, "spec", "devices") {
			if toV1 {
				unnest(device, "basic")
			} else {
				device["basic"] = nest(device, "name")
			}
		}
	case "ResourceClaim", "ResourceClaimTemplate":
		path := []string{"spec", "devices", "requests"}
		if kind == "ResourceClaimTemplate" {
			path = append([]string{"spec"}, path...)
		}
		for _, request := range objects(content, path...) {
			if !toV1 {
				unnest(request, "exactly")
				continue
			}
			exactly := nest(request, "name", "firstAvailable")
			subRequests, _ := request["firstAvailable"].([]any)
			if len(subRequests) > 0 && exactly["deviceClassName"] == "" {
				// v1beta1 writes an empty deviceClassName beside
				// firstAvailable; v1 has no exact request then.
				delete(exactly, "deviceClassName")
			}
			if len(subRequests) == 0 || len(exactly) > 0 {
				request["exactly"] = exactly
			}
		}
	}
}

// objects returns the objects in the list at path in content; none when
// there is no list there.
func objects(content map[string]any, path ...string) []map[string]any {
	var cur any = content
	for _, key := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[key]
	}
	list, _ := cur.([]any)
	out := make([]map[string]any, 0, len(list))
	for _, item := range list {
		if m, ok := item.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// nest moves every field of obj but those named in keep into a new object
// and returns it.
func nest(obj map[string]any, keep ...string) map[string]any {
	inner := map[string]any{}
	for k, v := range obj {
		if !slices.Contains(keep, k) {
			inner[k] = v
			delete(obj, k)
		}
	}
	return inner
}

// unnest moves the fields of the object obj holds at key into obj itself.
func unnest(obj map[string]any, key string) {
	inner, _ := obj[key].(map[string]any)
	delete(obj, key)
	for k, v := range inner {
		obj[k] = v
	}
}
