package kind

import (
	"errors"
	"strings"
	"testing"

	kinderrors "sigs.k8s.io/kind/pkg/errors"
	kindexec "sigs.k8s.io/kind/pkg/exec"
)

// kind wraps a failed docker command in errors whose message leaves out
// what docker printed; the provisioner's error carries its last lines.
func TestWithCommandOutput(t *testing.T) {
	run := &kindexec.RunError{
		Command: []string{"docker", "pull", "kindest/node:v1.37.0"},
		Output:  []byte("Trying to pull...\nline one\n\nline two\nError response from daemon: Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host\n"),
		Inner:   errors.New("exit status 1"),
	}
	err := withCommandOutput(kinderrors.Wrap(run, "failed to pull image"))
	msg := err.Error()
	for _, want := range []string{"failed to pull image", "exit status 1", "line one; line two; Error response from daemon", "no such host"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "Trying to pull") {
		t.Errorf("error %q keeps more than the last lines", msg)
	}
	plain := errors.New("no command involved")
	if got := withCommandOutput(plain); got != plain {
		t.Errorf("an error without a command changed: %v", got)
	}
	if withCommandOutput(nil) != nil {
		t.Error("nil became an error")
	}
}
