package fetch

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// regularFiles lists the files under dir, ignoring directories.
func regularFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestPinnedTruncatedBodyRetriedThenVerified(t *testing.T) {
	payload := bytes.Repeat([]byte("kaic"), 4096)
	srv := newServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			truncate(t, w, payload)
			return
		}
		w.Write(payload)
	})
	cache := &Cache{Dir: t.TempDir(), Client: fastClient(3)}
	path, err := cache.Pinned(t.Context(), srv.URL+"/blob", "sha256:"+strings.ToUpper(digest(payload)))
	if err != nil {
		t.Fatalf("Pinned: %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Errorf("cached %d bytes, want %d", len(got), len(payload))
	}
	if n := srv.requests(); n != 2 {
		t.Errorf("server saw %d requests, want 2", n)
	}
	if files := regularFiles(t, cache.Dir); len(files) != 1 || files[0] != path {
		t.Errorf("cache holds %v, want only %s", files, path)
	}
}

func TestPinnedChecksumMismatchRefused(t *testing.T) {
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "tampered content")
	})
	want := digest([]byte("expected content"))
	cache := &Cache{Dir: t.TempDir(), Client: fastClient(3)}
	path, err := cache.Pinned(t.Context(), srv.URL+"/blob", want)
	var sumErr *ChecksumError
	if !errors.As(err, &sumErr) {
		t.Fatalf("Pinned = %q, %v; want a ChecksumError", path, err)
	}
	if sumErr.Want != want || sumErr.Got != digest([]byte("tampered content")) {
		t.Errorf("ChecksumError = %+v", sumErr)
	}
	if !strings.Contains(err.Error(), srv.URL+"/blob") {
		t.Errorf("error %q does not name the URL", err)
	}
	if n := srv.requests(); n != 1 {
		t.Errorf("server saw %d requests, want 1 (a mismatch is not retried)", n)
	}
	if files := regularFiles(t, cache.Dir); len(files) != 0 {
		t.Errorf("cache holds %v after a mismatch, want nothing", files)
	}
	if _, ok := cache.Lookup(want); ok {
		t.Error("Lookup finds the refused content")
	}
}

func TestPinnedCacheHitMakesNoRequest(t *testing.T) {
	payload := []byte("chart archive")
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Write(payload)
	})
	cache := &Cache{Dir: t.TempDir(), Client: fastClient(2)}
	first, err := cache.Pinned(t.Context(), srv.URL+"/a", digest(payload))
	if err != nil {
		t.Fatalf("first Pinned: %v", err)
	}
	srv.Close()
	// The same content under another URL is the same cache entry.
	second, err := cache.Pinned(t.Context(), srv.URL+"/b", digest(payload))
	if err != nil {
		t.Fatalf("second Pinned: %v", err)
	}
	if first != second {
		t.Errorf("paths differ: %s, %s", first, second)
	}
	if n := srv.requests(); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
}

func TestPinnedCorruptCacheRedownloaded(t *testing.T) {
	payload := []byte("good bytes")
	srv := newServer(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Write(payload)
	})
	cache := &Cache{Dir: t.TempDir(), Client: fastClient(2)}
	path, err := cache.Pinned(t.Context(), srv.URL, digest(payload))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("bit rot"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Pinned(t.Context(), srv.URL, digest(payload)); err != nil {
		t.Fatalf("Pinned after corruption: %v", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, payload) {
		t.Errorf("cache holds %q, want %q", got, payload)
	}
	if n := srv.requests(); n != 2 {
		t.Errorf("server saw %d requests, want 2", n)
	}
}

func TestPinnedOfflineMiss(t *testing.T) {
	cache := &Cache{Dir: t.TempDir(), Offline: true}
	_, err := cache.Pinned(t.Context(), "http://127.0.0.1:1/never", digest([]byte("x")))
	if !errors.Is(err, ErrNotCached) {
		t.Errorf("Pinned offline = %v, want ErrNotCached", err)
	}
}

func TestPinnedRejectsBadDigest(t *testing.T) {
	cache := &Cache{Dir: t.TempDir()}
	for _, sum := range []string{"", "abc", strings.Repeat("z", 64), "md5:" + strings.Repeat("a", 64)} {
		if _, err := cache.Pinned(t.Context(), "http://127.0.0.1:1/x", sum); err == nil {
			t.Errorf("Pinned accepted digest %q", sum)
		}
	}
}

func TestGetRevalidatesAndFallsBackOffline(t *testing.T) {
	var current atomic.Value
	current.Store("v1")
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		version := current.Load().(string)
		etag := `"` + version + `"`
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Last-Modified", "Tue, 01 Sep 2026 10:00:00 GMT")
		fmt.Fprintf(w, "checklist %s", version)
	})
	url := srv.URL + "/docs/AIConformance-1.36.yaml"
	cache := &Cache{Dir: t.TempDir(), Client: fastClient(2)}
	read := func(e *Entry) string {
		t.Helper()
		b, err := os.ReadFile(e.Path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	e, err := cache.Get(t.Context(), url)
	if err != nil {
		t.Fatalf("first Get: %v", err)
	}
	if e.Status != Downloaded || read(e) != "checklist v1" || e.ETag != `"v1"` {
		t.Errorf("first Get = %+v, content %q", e, read(e))
	}

	e, err = cache.Get(t.Context(), url)
	if err != nil {
		t.Fatalf("revalidating Get: %v", err)
	}
	if e.Status != NotModified || read(e) != "checklist v1" {
		t.Errorf("revalidating Get = %+v", e)
	}

	current.Store("v2")
	e, err = cache.Get(t.Context(), url)
	if err != nil {
		t.Fatalf("Get after change: %v", err)
	}
	if e.Status != Downloaded || read(e) != "checklist v2" {
		t.Errorf("Get after change = %+v, content %q", e, read(e))
	}
	if n := srv.requests(); n != 3 {
		t.Errorf("server saw %d requests, want 3", n)
	}

	offline := &Cache{Dir: cache.Dir, Offline: true}
	e, err = offline.Get(t.Context(), url)
	if err != nil {
		t.Fatalf("offline Get: %v", err)
	}
	if e.Status != Cached || e.Err != nil || read(e) != "checklist v2" {
		t.Errorf("offline Get = %+v", e)
	}
	if n := srv.requests(); n != 3 {
		t.Errorf("offline Get made a request (server saw %d)", n)
	}

	srv.Close()
	e, err = cache.Get(t.Context(), url)
	if err != nil {
		t.Fatalf("Get with the server down: %v", err)
	}
	if e.Status != Cached || e.Err == nil || read(e) != "checklist v2" {
		t.Errorf("Get with the server down = %+v", e)
	}

	if _, err := offline.Get(t.Context(), srv.URL+"/other"); !errors.Is(err, ErrNotCached) {
		t.Errorf("offline Get of an uncached URL = %v, want ErrNotCached", err)
	}
}

func TestGetDoesNotHideNotFound(t *testing.T) {
	var gone atomic.Bool
	srv := newServer(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if gone.Load() {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "content")
	})
	cache := &Cache{Dir: t.TempDir(), Client: fastClient(2)}
	if _, err := cache.Get(t.Context(), srv.URL+"/f"); err != nil {
		t.Fatal(err)
	}
	gone.Store(true)
	_, err := cache.Get(t.Context(), srv.URL+"/f")
	if !IsNotFound(err) {
		t.Errorf("Get of a removed URL = %v, want a 404 error", err)
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/tmp/xdg")
	if got, err := DefaultDir(); err != nil || got != "/tmp/xdg/kaic" {
		t.Errorf("DefaultDir = %q, %v", got, err)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/someone")
	if got, err := DefaultDir(); err != nil || got != "/home/someone/.cache/kaic" {
		t.Errorf("DefaultDir = %q, %v", got, err)
	}
}
