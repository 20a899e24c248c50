package progress

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns both ends of a new pseudo-terminal.
func openPTY(t *testing.T) (controller, terminal *os.File) {
	t.Helper()
	controller, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { controller.Close() })
	fd := int(controller.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlocking pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	terminal, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening pty: %v", err)
	}
	t.Cleanup(func() { terminal.Close() })
	return controller, terminal
}

func TestPrinterOnPseudoTerminal(t *testing.T) {
	controller, terminal := openPTY(t)
	noCI := func(string) string { return "" }
	if got := DetectMode(terminal, noCI); got != ModeLive {
		t.Fatalf("DetectMode on a terminal = %v, want live", got)
	}
	ci := func(k string) string {
		if k == "CI" {
			return "true"
		}
		return ""
	}
	if got := DetectMode(terminal, ci); got != ModePlain {
		t.Errorf("DetectMode with CI=true = %v, want plain", got)
	}
	if err := unix.IoctlSetWinsize(int(terminal.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: 30, Row: 10}); err != nil {
		t.Fatal(err)
	}

	output := make(chan string)
	go func() {
		var all bytes.Buffer
		_, _ = io.Copy(&all, controller) // ends when the test closes the controller
		output <- all.String()
	}()

	p := NewPrinter(terminal, WithGetenv(noCI), WithTickInterval(10*time.Millisecond))
	if p.Mode() != ModeLive {
		t.Fatalf("printer mode %v, want live", p.Mode())
	}
	p.Report(Event{Kind: PhaseStarted, Phase: "provision"})
	s := StartStep(p, "provision", "creating a kind cluster with a long name")
	time.Sleep(50 * time.Millisecond)
	s.Done(nil)
	p.Report(Event{Kind: PhaseFinished, Phase: "provision", Status: StatusSucceeded, Duration: time.Second})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	terminal.Close()
	controller.Close()
	out := <-output

	for _, want := range []string{
		"▶ provision",
		clearLine + "⠋ provision 0s",
		// Truncated to the 30-column terminal so "\r" can rewrite it.
		"provision › creating a… 0s",
		"✓ creating a kind cluster with a long name ok (",
		"✓ provision succeeded (1.0s)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, out)
		}
	}
	if strings.Count(out, clearLine) < 3 {
		t.Errorf("live line was not rewritten in place: %q", out)
	}
}
