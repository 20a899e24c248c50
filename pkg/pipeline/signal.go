package pipeline

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// ExitCodeInterrupted is the exit status of a run stopped by a signal, both through
// ErrInterrupted and through a second signal's immediate exit.
const ExitCodeInterrupted = 130

// SignalError is the cause (context.Cause) of a context cancelled by SignalContext.
type SignalError struct {
	Signal os.Signal
}

func (e *SignalError) Error() string { return "received " + signalName(e.Signal) }

func signalName(sig os.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return sig.String()
}

// SignalContext returns a context that is cancelled, with a *SignalError as its cause, on
// the first SIGINT or SIGTERM, so the running phase can stop cleanly and the run state be
// saved. A second signal means the user will not wait: the process exits at once with
// ExitCodeInterrupted. Call stop to stop listening and release the context.
func SignalContext(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	return notifyContext(parent, os.Stderr, os.Exit, syscall.SIGINT, syscall.SIGTERM)
}

func notifyContext(parent context.Context, stderr io.Writer, exit func(int), sigs ...os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			cancel(&SignalError{Signal: sig})
			fmt.Fprintf(stderr, "\n%s: stopping the current phase and saving the run state (send it again to exit at once)\n", signalName(sig))
		case <-done:
			return
		}
		select {
		case sig := <-ch:
			fmt.Fprintf(stderr, "\n%s again: exiting now; the run state may show a phase still running\n", signalName(sig))
			exit(ExitCodeInterrupted)
		case <-done:
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
			cancel(context.Canceled)
		})
	}
}
