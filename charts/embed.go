// Package charts holds the Helm charts that ship inside the kaic binary,
// one directory per chart, referenced from stack components as
// kaic://<directory name>. They are versioned with kaic itself.
package charts

import "embed"

// FS holds every chart directory (and this package's own files, which are
// not charts).
//
//go:embed *
var FS embed.FS
