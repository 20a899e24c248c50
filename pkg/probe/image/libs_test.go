package image

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A dynamic binary whose libraries are not where kaic looks is refused with
// the library named, not turned into an image that cannot start.
func TestDynamicBinaryWithoutItsLibraries(t *testing.T) {
	ls, err := os.ReadFile("/bin/ls")
	if err != nil {
		t.Skip("no /bin/ls to use as a dynamic binary")
	}
	_, libs, err := inspect(ls, "/")
	if err != nil {
		t.Fatalf("/bin/ls with this machine's libraries: %v", err)
	}
	if len(libs) < 2 || !strings.Contains(libs[0].path, "ld-linux") {
		t.Fatalf("libraries of /bin/ls: want the loader first and at least one library, got %d files", len(libs))
	}
	var names []string
	for _, l := range libs {
		names = append(names, filepath.Base(l.path))
	}
	if !strings.Contains(strings.Join(names, " "), "libc.so") {
		t.Errorf("libraries of /bin/ls %v lack the C library", names)
	}

	// The same binary against an empty root: its loader is missing.
	empty := t.TempDir()
	if _, err := build(ls, empty); !errors.Is(err, ErrNotStatic) || !strings.Contains(err.Error(), "loader") {
		t.Errorf("empty root: %v", err)
	}
	// Only the loader there: the first library is named.
	dst := filepath.Join(empty, filepath.FromSlash(libs[0].path))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, libs[0].data, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := build(ls, empty); !errors.Is(err, ErrNotStatic) || !strings.Contains(err.Error(), "library ") || !strings.Contains(err.Error(), "not found") {
		t.Errorf("root with the loader only: %v", err)
	}
}
