//go:build tools

// Package tools names the package recipe.sh builds, so that go.sum covers
// it.
package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
