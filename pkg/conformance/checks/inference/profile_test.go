package inference

import (
	"reflect"
	"testing"
	"time"

	"github.com/kaic-dev/kaic/pkg/profile"
)

func TestOptionsFor(t *testing.T) {
	if o := OptionsFor(nil); !reflect.DeepEqual(o, Options{}) {
		t.Errorf("nil profile: %+v, want no overrides", o)
	}
	if o := OptionsFor(&profile.Profile{}); !reflect.DeepEqual(o, Options{}) {
		t.Errorf("empty profile: %+v, want no overrides", o)
	}
	requests, tolerance := 400, 4.5
	p := &profile.Profile{}
	p.Spec.Checks.Inference = profile.Inference{
		GatewayClass:   "vendor-gateway",
		Requests:       &requests,
		Tolerance:      &tolerance,
		ReadyTimeout:   profile.Duration{Duration: 10 * time.Minute},
		TrafficTimeout: profile.Duration{Duration: 90 * time.Second},
	}
	want := Options{GatewayClass: "vendor-gateway", Requests: 400, Tolerance: 4.5, ReadyTimeout: 10 * time.Minute, TrafficTimeout: 90 * time.Second}
	if o := OptionsFor(p); !reflect.DeepEqual(o, want) {
		t.Errorf("OptionsFor = %+v, want %+v", o, want)
	}
	// Unset settings take the defaults.
	p.Spec.Checks.Inference = profile.Inference{GatewayClass: "vendor-gateway"}
	if o, want := OptionsFor(p).withDefaults(), (Options{GatewayClass: "vendor-gateway"}).withDefaults(); !reflect.DeepEqual(o, want) {
		t.Errorf("partial settings: %+v, want %+v", o, want)
	}
	if c := ForProfile(p); c.ID() != ID {
		t.Errorf("ForProfile ID = %s", c.ID())
	}
	if c := IngressForProfile(p); c.ID() != IngressID {
		t.Errorf("IngressForProfile ID = %s", c.ID())
	}
}
