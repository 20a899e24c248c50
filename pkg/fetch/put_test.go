package fetch

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

func TestPutStoresVerifiedContentByDigest(t *testing.T) {
	content := []byte("a chart archive")
	cache := &Cache{Dir: t.TempDir()}
	path, err := cache.Put(bytes.NewReader(content), "sha256:"+strings.ToUpper(digest(content)))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if want := filepath.Join(cache.Dir, "sha256", digest(content)); path != want {
		t.Errorf("Put stored %s, want %s", path, want)
	}
	if got, ok := cache.Lookup(digest(content)); !ok || got != path {
		t.Errorf("Lookup after Put = %q, %v", got, ok)
	}
	// Pinned serves it without a request: the client would fail.
	cache.Client = New(WithMaxAttempts(1))
	if got, err := cache.Pinned(t.Context(), "http://127.0.0.1:1/never", digest(content)); err != nil || got != path {
		t.Errorf("Pinned after Put = %q, %v; want the stored copy without a download", got, err)
	}
	// Putting it again is harmless and leaves one file.
	if _, err := cache.Put(bytes.NewReader(content), digest(content)); err != nil {
		t.Fatalf("second Put: %v", err)
	}
	if files := regularFiles(t, cache.Dir); len(files) != 1 || files[0] != path {
		t.Errorf("cache holds %v, want only %s", files, path)
	}
}

func TestPutRefusesOtherContent(t *testing.T) {
	cache := &Cache{Dir: t.TempDir()}
	want := digest([]byte("expected"))
	_, err := cache.Put(strings.NewReader("tampered"), want)
	var sum *ChecksumError
	if !errors.As(err, &sum) || sum.Want != want || sum.Got != digest([]byte("tampered")) {
		t.Fatalf("Put of other content = %v, want a ChecksumError", err)
	}
	if files := regularFiles(t, cache.Dir); len(files) != 0 {
		t.Errorf("a refused Put left %v in the cache", files)
	}
	// Also when the pinned digest is already cached: the reader is still checked.
	if _, err := cache.Put(strings.NewReader("expected"), want); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Put(strings.NewReader("tampered"), want); !errors.As(err, &sum) {
		t.Errorf("Put of other content over a cached digest = %v, want a ChecksumError", err)
	}
}

func TestPutWithoutDigestAndFailingReader(t *testing.T) {
	cache := &Cache{Dir: t.TempDir()}
	path, err := cache.Put(strings.NewReader("anything"), "")
	if err != nil || filepath.Base(path) != digest([]byte("anything")) {
		t.Fatalf("Put without a digest = %q, %v", path, err)
	}
	broken := io.MultiReader(strings.NewReader("partial"), iotest.ErrReader(errors.New("connection reset")))
	if _, err := cache.Put(broken, ""); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("Put from a failing reader = %v, want its error", err)
	}
	if files := regularFiles(t, cache.Dir); len(files) != 1 {
		t.Errorf("a failed Put left %v", files)
	}
	if _, err := cache.Put(strings.NewReader("x"), "sha256:nothex"); err == nil {
		t.Error("Put with an invalid digest succeeded")
	}
	if _, err := (&Cache{}).Put(strings.NewReader("x"), ""); err == nil {
		t.Error("Put without a directory succeeded")
	}
	if _, err := os.Stat(path); err != nil {
		t.Error(err)
	}
}
