package driverruntime

import (
	"strings"
	"testing"

	resourcev1 "k8s.io/api/resource/v1"
	"k8s.io/utils/ptr"
)

func TestVersion(t *testing.T) {
	for _, tc := range []struct {
		name  string
		attrs map[resourcev1.QualifiedName]resourcev1.DeviceAttribute
		want  string
		ok    bool
	}{
		{"version value", map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{"driverVersion": {VersionValue: ptr.To("1.0.0")}}, "1.0.0", true},
		{"with domain", map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{"gpu.nvidia.com/driverVersion": {VersionValue: ptr.To("580.95.5")}}, "580.95.5", true},
		{"string value", map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{"driverVersion": {StringValue: ptr.To("580.95.05")}}, "580.95.05", true},
		{"other attributes only", map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{"cudaVersion": {VersionValue: ptr.To("13.0.0")}, "index": {IntValue: ptr.To(int64(0))}}, "", false},
		{"empty", map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{"driverVersion": {StringValue: ptr.To("")}}, "", false},
	} {
		got, ok := version(tc.attrs)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: version = %q, %t; want %q, %t", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSameDriverVersion(t *testing.T) {
	for _, tc := range []struct {
		advertised string
		read       []string
		ok         bool
	}{
		{"1.0.0", []string{"1.0.0"}, true},
		{"580.95.5", []string{"580.95.05"}, true},
		{"v1.2.0", []string{"1.2.0"}, true},
		{"1.0.0", nil, true}, // the driver exposes no version to containers
		{"1.0.0", []string{"1.0.1"}, false},
		{"580.95.5", []string{"580.95.5", "570.1.0"}, false},
		{"1.0.0", []string{"10.0.0"}, false},
	} {
		err := sameDriverVersion(tc.advertised, tc.read)
		if (err == nil) != tc.ok {
			t.Errorf("sameDriverVersion(%q, %q) = %v, want ok=%t", tc.advertised, tc.read, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), tc.advertised) {
			t.Errorf("the error does not name the advertised version: %v", err)
		}
	}
}
