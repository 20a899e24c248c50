package sandboxing

import (
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// ForProfile returns the workload_sandboxing check for the RuntimeClass
// the profile names in spec.checks.sandboxing.runtimeClass; without one
// (or with a nil profile) the check detects the sandbox RuntimeClass.
func ForProfile(p *profile.Profile) conformance.Check { return New(OptionsFor(p)) }

// OptionsFor maps the profile's spec.checks.sandboxing onto Options.
func OptionsFor(p *profile.Profile) Options {
	if p == nil {
		return Options{}
	}
	return Options{RuntimeClass: p.Spec.Checks.Sandboxing.RuntimeClass}
}
