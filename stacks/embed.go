// Package stacks holds kaic's built-in stack components, one YAML file each:
// the chart or manifests, the pinned version, the namespace, default values,
// dependencies and readiness conditions.
package stacks

import "embed"

// FS holds the built-in components as <name>.yaml.
//
//go:embed *.yaml
var FS embed.FS
