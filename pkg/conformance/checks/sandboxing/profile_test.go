package sandboxing

import (
	"testing"

	"github.com/kaic-dev/kaic/pkg/profile"
)

func TestOptionsFor(t *testing.T) {
	if o := OptionsFor(nil); o != (Options{}) {
		t.Errorf("nil profile: %+v, want no overrides", o)
	}
	if o := OptionsFor(&profile.Profile{}); o != (Options{}) {
		t.Errorf("empty profile: %+v, want detection", o)
	}
	p := &profile.Profile{}
	p.Spec.Checks.Sandboxing.RuntimeClass = "vendor-microvm"
	if o := OptionsFor(p); o != (Options{RuntimeClass: "vendor-microvm"}) {
		t.Errorf("OptionsFor = %+v", o)
	}
	if c := ForProfile(p); c.ID() != ID {
		t.Errorf("ForProfile ID = %s", c.ID())
	}
}
