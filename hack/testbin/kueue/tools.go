//go:build tools

// Package tools records the Kueue manager this module builds, so that
// go.sum covers it.
package tools

import _ "sigs.k8s.io/kueue/cmd/kueue"
