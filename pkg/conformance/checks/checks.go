// Package checks assembles kaic's built-in conformance checks, one package
// per requirement beneath it, into a registry.
package checks

import (
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/dra"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/driverruntime"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/gang"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/gpusharing"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/secureaccess"
)

// Builtin returns a registry of every built-in check.
func Builtin() *conformance.Registry {
	reg, err := conformance.NewRegistry(
		dra.Check(),
		driverruntime.Check(),
		gang.Check(),
		gpusharing.Check(),
		secureaccess.Check(),
	)
	if err != nil {
		panic(err) // the built-in list is fixed; a test covers it
	}
	return reg
}
