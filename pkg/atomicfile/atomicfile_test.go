package atomicfile

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// faultyFS injects one failure into a write.
type faultyFS struct {
	osFS
	failWrite, failSync, failRename bool
}

var errInjected = errors.New("injected failure")

func (f faultyFS) CreateTemp(dir, pattern string) (tempFile, error) {
	tmp, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return faultyFile{File: tmp, fs: f}, nil
}

func (f faultyFS) Rename(oldpath, newpath string) error {
	if f.failRename {
		return errInjected
	}
	return os.Rename(oldpath, newpath)
}

type faultyFile struct {
	*os.File
	fs faultyFS
}

func (f faultyFile) Write(p []byte) (int, error) {
	if f.fs.failWrite {
		// Half the data reaches the disk before the failure.
		n, _ := f.File.Write(p[:len(p)/2])
		return n, errInjected
	}
	return f.File.Write(p)
}

func (f faultyFile) Sync() error {
	if f.fs.failSync {
		return errInjected
	}
	return f.File.Sync()
}

func TestFailedWriteKeepsThePreviousFile(t *testing.T) {
	for _, tt := range []struct {
		name string
		fs   faultyFS
	}{
		{"write", faultyFS{failWrite: true}},
		{"sync", faultyFS{failSync: true}},
		{"rename", faultyFS{failRename: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.json")
			if err := Write(path, []byte("before\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			err := write(tt.fs, path, 0o644, func(w io.Writer) error {
				_, err := w.Write([]byte("after, and longer than before\n"))
				return err
			})
			if !errors.Is(err, errInjected) {
				t.Fatalf("error = %v, want the injected failure", err)
			}
			assertContent(t, path, "before\n")
			assertOnlyFiles(t, dir, "state.json")
		})
	}
}

func TestWriteReplacesWithModeAndCleansUp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfig")
	for _, content := range []string{"one", "two, longer", "3"} {
		if err := Write(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		assertContent(t, path, content)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", info.Mode().Perm())
	}
	assertOnlyFiles(t, dir, "kubeconfig")
}

func TestWriteFuncFailureLeavesNoFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "chart.tgz")
	err := WriteFunc(path, 0o644, func(w io.Writer) error {
		_, _ = w.Write(bytes.Repeat([]byte("x"), 1000))
		return errInjected
	})
	if !errors.Is(err, errInjected) {
		t.Fatalf("error = %v, want the fill function's", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed first write left %s: %v", path, err)
	}
	assertOnlyFiles(t, dir)
}

func assertContent(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s holds %q, want %q", path, got, want)
	}
}

func assertOnlyFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if len(got) != len(want) {
		t.Fatalf("%s holds %v, want %v (a temporary file left behind?)", dir, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s holds %v, want %v", dir, got, want)
		}
	}
}
