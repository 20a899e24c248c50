// Package profiles holds kaic's built-in profiles, one YAML file each, each
// runnable as it is (kaic profiles list).
package profiles

import "embed"

// FS holds the built-in profiles as <name>.yaml.
//
//go:embed *.yaml
var FS embed.FS
