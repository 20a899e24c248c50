package apiversions

import "testing"

type version string

func TestNewest(t *testing.T) {
	known := []version{"v1", "v1beta2", "v1beta1"}
	for _, tc := range []struct {
		served []string
		want   version
		ok     bool
	}{
		{[]string{"v1beta1", "v1beta2"}, "v1beta2", true},
		{[]string{"v1", "v1beta1"}, "v1", true},
		{[]string{"v1beta1"}, "v1beta1", true},
		{[]string{"v2alpha1"}, "", false},
		{nil, "", false},
	} {
		if got, ok := Newest(known, tc.served); got != tc.want || ok != tc.ok {
			t.Errorf("Newest(%v) = %q, %v; want %q, %v", tc.served, got, ok, tc.want, tc.ok)
		}
	}
}
