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
	testenv.Main(m)
}
