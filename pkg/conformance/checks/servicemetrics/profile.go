package servicemetrics

import (
	"maps"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// ForProfile returns the ai_service_metrics check configured by the
// profile's spec.checks.serviceMetrics; what it leaves unset (or a nil
// profile) is found on the cluster.
func ForProfile(p *profile.Profile) conformance.Check { return New(OptionsFor(p)) }

// OptionsFor maps the profile's spec.checks.serviceMetrics onto Options.
func OptionsFor(p *profile.Profile) Options {
	if p == nil {
		return Options{}
	}
	sm := p.Spec.Checks.ServiceMetrics
	o := Options{
		Prometheus:        sm.Prometheus,
		ScrapeLabels:      maps.Clone(sm.ScrapeLabels),
		CollectionTimeout: sm.CollectionTimeout.Duration,
	}
	if sm.Requests != nil {
		o.Requests = *sm.Requests
	}
	return o
}
