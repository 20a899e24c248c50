package inference

import (
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// ForProfile returns the ai_inference check configured by the profile's
// spec.checks.inference; what it leaves unset (or a nil profile) is found
// on the cluster or defaulted.
func ForProfile(p *profile.Profile) conformance.Check { return CheckWith(OptionsFor(p)) }

// IngressForProfile returns the advanced_inference_ingress check
// configured by the profile's spec.checks.inference.
func IngressForProfile(p *profile.Profile) conformance.Check {
	return IngressCheckWith(OptionsFor(p))
}

// OptionsFor maps the profile's spec.checks.inference onto Options.
func OptionsFor(p *profile.Profile) Options {
	if p == nil {
		return Options{}
	}
	in := p.Spec.Checks.Inference
	o := Options{
		GatewayClass:        in.GatewayClass,
		IngressGatewayClass: in.IngressGatewayClass,
		EndpointPickerImage: in.EndpointPickerImage,
		ReadyTimeout:        in.ReadyTimeout.Duration,
		TrafficTimeout:      in.TrafficTimeout.Duration,
	}
	if in.Requests != nil {
		o.Requests = *in.Requests
	}
	if in.Tolerance != nil {
		o.Tolerance = *in.Tolerance
	}
	return o
}
