package profile_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/pkg/profile"
)

// A profile that only says allocation: device-plugin gets the model's
// resource; one that says nothing allocates through DRA.
func TestAllocationDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, src                  string
		allocation, resource, fake string
	}{
		{"existing, device plugin", "extends: existing\nspec:\n  accelerator:\n    allocation: device-plugin\n", profile.AllocationDevicePlugin, "nvidia.com/gpu", ""},
		{"existing, own resource", "extends: existing\nspec:\n  accelerator:\n    allocation: device-plugin\n    resourceName: nvidia.com/mig-1g.10gb\n", profile.AllocationDevicePlugin, "nvidia.com/mig-1g.10gb", ""},
		{"kind-dra as is", "extends: kind-dra\n", profile.AllocationDRA, "example.com/gpu", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "apiVersion: kaic.dev/v1alpha1\nkind: Profile\nmetadata:\n  name: mine\n" + tc.src
			r, err := newLoader().LoadBytes("mine.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			a := r.Profile.Spec.Accelerator
			if a.Allocation != tc.allocation || a.ResourceName != tc.resource {
				t.Errorf("allocation %q, resourceName %q; want %q, %q", a.Allocation, a.ResourceName, tc.allocation, tc.resource)
			}
			if a.DevicePlugin() != (tc.allocation == profile.AllocationDevicePlugin) {
				t.Errorf("DevicePlugin() = %t", a.DevicePlugin())
			}
		})
	}
}

// Extended resource names are checked as the API server checks them in a
// container's resources, each problem at spec.accelerator.resourceName.
func TestResourceNameValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string // part of the error; "" for valid
	}{
		{"nvidia.com/gpu", ""},
		{"amd.com/gpu", ""},
		{"example.com/fake-gpu", ""},
		{"nvidia.com/mig-1g.10gb", ""},
		{"gpu", "it needs a domain prefix"},
		{"kubernetes.io/gpu", "the kubernetes.io domain is reserved"},
		{"node.kubernetes.io/gpu", "the kubernetes.io domain is reserved"},
		{"requests.example.com/gpu", "the requests. prefix is reserved"},
		{"example.com/-gpu", "must consist of alphanumeric characters"},
		{"Example_com/gpu", "prefix part"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "apiVersion: kaic.dev/v1alpha1\nkind: Profile\nmetadata:\n  name: mine\nextends: existing\nspec:\n  accelerator:\n    allocation: device-plugin\n    resourceName: " + tc.name + "\n"
			_, err := newLoader().LoadBytes("mine.yaml", []byte(src))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("valid name refused: %v", err)
				}
				return
			}
			var list profile.ErrorList
			if !errors.As(err, &list) || len(list) != 1 {
				t.Fatalf("err = %v, want one field error", err)
			}
			if list[0].Path != "spec.accelerator.resourceName" || !strings.Contains(list[0].Message, tc.want) {
				t.Errorf("error %s: %s, want spec.accelerator.resourceName saying %q", list[0].Path, list[0].Message, tc.want)
			}
		})
	}
}
