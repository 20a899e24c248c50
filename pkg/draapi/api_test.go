package draapi

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"
)

func TestChoose(t *testing.T) {
	for _, tc := range []struct {
		served []string
		want   Version
		says   string
	}{
		{[]string{"v1", "v1beta2", "v1beta1", "v1alpha3"}, V1, "resource.k8s.io/v1"},
		{[]string{"v1beta1", "v1beta2"}, V1beta2, "resource.k8s.io/v1beta2 (v1 not served)"},
		{[]string{"v1beta1"}, V1beta1, "resource.k8s.io/v1beta1 (v1 and v1beta2 not served)"},
		{[]string{"v1alpha3"}, "", "kaic can use (v1, v1beta2, v1beta1); it serves: v1alpha3"},
		{[]string{}, "", "it serves: none"},
	} {
		api := Choose(tc.served)
		if api.Version != tc.want || !strings.Contains(api.String(), tc.says) {
			t.Errorf("Choose(%v) = %q, %q; want %q, %q", tc.served, api.Version, api.String(), tc.want, tc.says)
		}
		var notServed *NotServedError
		if got := errors.As(api.Err(), &notServed); got != (tc.want == "") {
			t.Errorf("Choose(%v).Err() = %v", tc.served, api.Err())
		}
	}
	if zero := (API{}); zero.Discovered() || zero.Err() == nil {
		t.Errorf("the zero API is discovered (%v) or usable (%v)", zero.Discovered(), zero.Err())
	}
}

func TestDiscover(t *testing.T) {
	d := &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{Resources: []*metav1.APIResourceList{
		{GroupVersion: "v1"},
		{GroupVersion: "resource.k8s.io/v1beta2"},
		{GroupVersion: "resource.k8s.io/v1beta1"},
		{GroupVersion: "other.example.com/v1"},
	}}}
	api, err := Discover(d)
	if err != nil {
		t.Fatal(err)
	}
	if api.Version != V1beta2 || api.ServedList() != "v1beta2, v1beta1" {
		t.Errorf("Discover = %+v", api)
	}

	none, err := Discover(&fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{}})
	if err != nil {
		t.Fatal(err)
	}
	if !none.Discovered() || none.Version != "" || none.ServedList() != "none" {
		t.Errorf("Discover without the group = %+v", none)
	}
	if _, err := NewClient(nil, none).ResourceClaims("ns").Get(t.Context(), "c", metav1.GetOptions{}); !errors.As(err, new(*NotServedError)) {
		t.Errorf("a request without a served version: %v", err)
	}
}
