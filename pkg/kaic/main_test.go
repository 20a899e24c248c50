package kaic_test

import (
	"testing"

	"github.com/kaic-dev/kaic/internal/testenv"
)

// TestMain gives the tests that install stacks or run the preflight a
// control plane (API server, etcd and the control loops, whose service
// account controller the preflight waits for), started on first use; the
// others never start it.
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.WithControlLoops())
}
