//go:build tools

// Package tools names the package recipe.sh builds, so that go.sum covers
// it.
package tools

import _ "sigs.k8s.io/gateway-api-inference-extension/cmd/epp"
