package servicemetrics

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
	requests := 25
	p := &profile.Profile{}
	p.Spec.Checks.ServiceMetrics = profile.ServiceMetrics{
		Prometheus:        "monitoring/kps-prometheus:http-web",
		ScrapeLabels:      map[string]string{"release": "kube-prometheus-stack"},
		Requests:          &requests,
		CollectionTimeout: profile.Duration{Duration: 7 * time.Minute},
	}
	want := Options{
		Prometheus:        "monitoring/kps-prometheus:http-web",
		ScrapeLabels:      map[string]string{"release": "kube-prometheus-stack"},
		Requests:          25,
		CollectionTimeout: 7 * time.Minute,
	}
	o := OptionsFor(p)
	if !reflect.DeepEqual(o, want) {
		t.Errorf("OptionsFor = %+v, want %+v", o, want)
	}
	o.ScrapeLabels["x"] = "y"
	if _, shared := p.Spec.Checks.ServiceMetrics.ScrapeLabels["x"]; shared {
		t.Error("the options share the profile's scrapeLabels map")
	}
	if c := ForProfile(p); c.ID() != ID {
		t.Errorf("ForProfile ID = %s", c.ID())
	}
}
