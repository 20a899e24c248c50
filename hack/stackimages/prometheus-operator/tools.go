//go:build tools

// Package tools names the packages recipe.sh builds, so that go.sum covers
// them.
package tools

import (
	_ "github.com/prometheus-operator/prometheus-operator/cmd/operator"
	_ "github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader"
)
