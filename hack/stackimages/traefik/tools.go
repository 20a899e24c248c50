//go:build tools

// Package tools names the package recipe.sh builds, so that go.sum covers
// it.
package tools

import _ "github.com/traefik/traefik/v3/cmd/traefik"
