package kaic_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/provision/preflight"
)

// TestDoctorReportsWhatPlanWouldRefuse: a Cluster API profile whose
// variables are not set fails doctor, naming them, before anything pulls.
// The host is a fixture with no container runtime, so the test does not
// depend on this machine.
func TestDoctorReportsWhatPlanWouldRefuse(t *testing.T) {
	host := &preflight.Host{
		Root:      t.TempDir(),
		LookPath:  func(string) (string, error) { return "", errors.New("not found") },
		Run:       func(context.Context, string, ...string) ([]byte, error) { return nil, errors.New("no runtime") },
		FreeBytes: func(string) (uint64, error) { return 1 << 40, nil },
	}
	unset := kaic.WithGetenv(func(string) string { return "" })
	report, err := kaic.New(unset).Doctor(t.Context(), kaic.DoctorOptions{Profile: "capi-aws-gpu", Host: host, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !report.Failed() || len(report.Findings) == 0 {
		t.Fatalf("doctor passed a profile whose variables are unset: %+v", report)
	}
	f := report.Findings[0]
	if f.Check != "profile plan" || f.Status != preflight.Fail || !strings.Contains(f.Detail, "AWS_REGION") {
		t.Errorf("first finding %+v, want the plan's failure naming AWS_REGION", f)
	}

	set := kaic.WithGetenv(func(k string) string { return "value-of-" + k })
	report, err = kaic.New(set).Doctor(t.Context(), kaic.DoctorOptions{Profile: "capi-aws-gpu", Host: host, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range report.Findings {
		if f.Check == "profile plan" {
			t.Errorf("variables set, still %+v", f)
		}
	}
}
