//go:build tools

// Package tools records the KubeRay operator this module builds, so that
// go.sum covers it.
package tools

import _ "github.com/ray-project/kuberay/ray-operator"
