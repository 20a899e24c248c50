package cmd

import (
	"io"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/kaic-dev/kaic/internal/testenv"
)

// TestMain gives the tests that install stacks a control plane (API server
// and etcd, started on first use); the others never start it.
func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard)
	// The tests run kaic as a release build would, with a published probe
	// image, so that profiles of clusters kaic cannot load its image into
	// plan and run; the tests of a development build reset it.
	probeImage = "example.com/kaic-probe:test"
	testenv.Main(m)
}
