package testenv

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// shared is the control plane of the test binary, i.e. of one test package,
// created on first use by Shared and stopped by Main. A package-level
// variable is what TestMain offers for state that outlives m.Run.
var shared struct {
	mu   sync.Mutex
	opts []Option
	main bool // Main is running
	once sync.Once
	env  *Env
	err  error
}

// Main runs the package's tests with a shared control plane configured by
// opts and exits with their status. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m, testenv.WithControlLoops()) }
//
// The control plane starts when a test first calls [Shared], so unit tests
// and -run filters that select none of the integration tests pay nothing.
// It is stopped after m.Run, when m.Run panics, and on SIGINT or SIGTERM;
// if the test binary dies any other way (a test's panic, -timeout), the
// kernel kills the components through their parent-death signal and the
// next Start removes the directory. When tests fail, the directory with
// the components' logs is kept and its path printed.
func Main(m *testing.M, opts ...Option) {
	os.Exit(runMain(m, opts))
}

func runMain(m *testing.M, opts []Option) (code int) {
	shared.mu.Lock()
	shared.opts = opts
	shared.main = true
	shared.mu.Unlock()

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
	go func() {
		sig, ok := <-signals
		if !ok {
			return
		}
		stopShared(true)
		fmt.Fprintf(os.Stderr, "testenv: stopped the control plane on %v\n", sig)
		os.Exit(1)
	}()

	defer func() {
		if r := recover(); r != nil {
			stopShared(true)
			panic(r)
		}
	}()
	code = m.Run()
	stopShared(code != 0)
	return code
}

func stopShared(failed bool) {
	shared.mu.Lock()
	env := shared.env
	shared.env = nil
	shared.mu.Unlock()
	if env == nil {
		return
	}
	keep, _ := strconv.ParseBool(os.Getenv("KAIC_TESTENV_KEEP"))
	if err := env.stop(failed || keep); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: stop: %v\n", err)
	}
	if failed || keep {
		fmt.Fprintf(os.Stderr, "testenv: kept %s (component logs in logs/)\n", env.Dir)
	}
}

// Shared returns the test package's control plane, starting it on first
// use with the options given to [Main]. Without the binaries it skips t
// (fails it when CI=true); if the start failed it fails t.
func Shared(t testing.TB) *Env {
	t.Helper()
	shared.mu.Lock()
	inMain := shared.main
	shared.mu.Unlock()
	if !inMain {
		t.Fatal("testenv.Shared needs TestMain to call testenv.Main")
	}
	shared.once.Do(func() {
		env, err := Start(context.Background(), shared.opts...)
		shared.mu.Lock()
		shared.env, shared.err = env, err
		shared.mu.Unlock()
		if err == nil {
			t.Logf("testenv: control plane started in %s (%s) in %s", env.Timings.Total().Round(time.Millisecond), env.Timings, env.Dir)
		}
	})
	shared.mu.Lock()
	env, err := shared.env, shared.err
	shared.mu.Unlock()
	if err != nil {
		handleStartError(t, err)
	}
	if env == nil {
		t.Fatal("testenv: the shared control plane was already stopped")
	}
	return env
}

// New starts a control plane for t alone and stops it when t ends. Without
// the binaries it skips t (fails it when CI=true).
func New(t testing.TB, opts ...Option) *Env {
	t.Helper()
	ctx := t.Context()
	env, err := Start(ctx, opts...)
	if err != nil {
		handleStartError(t, err)
	}
	t.Cleanup(func() {
		if err := env.stop(t.Failed()); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
		if t.Failed() {
			t.Logf("kept %s (component logs in logs/)", env.Dir)
		}
	})
	return env
}

// handleStartError fails t, or skips it with a one-line reason when only
// binaries are missing outside CI.
func handleStartError(t testing.TB, err error) {
	t.Helper()
	if !isMissingBinaries(err) {
		t.Fatal(err)
	}
	if InCI() {
		t.Fatalf("CI=true: %v", err)
	}
	t.Skip(err.Error())
}
