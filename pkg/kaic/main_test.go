package kaic_test

import (
	"testing"

	"github.com/kaic-dev/kaic/internal/testenv"
)

// TestMain gives the tests that install stacks a control plane (API server
// and etcd, started on first use); the others never start it.
func TestMain(m *testing.M) {
	testenv.Main(m)
}
