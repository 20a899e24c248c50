// Command kaic provisions, installs and verifies a Kubernetes AI Conformance
// reference environment. See pkg/cmd for its commands.
package main

import (
	"context"
	"os"

	"github.com/kaic-dev/kaic/pkg/cmd"
)

func main() {
	os.Exit(cmd.Execute(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
