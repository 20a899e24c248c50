package stack_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/fetch"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
)

// cachedBlobs lists the digests the cache directory holds.
func cachedBlobs(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "sha256"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, "sha256:"+e.Name())
	}
	return out
}

// An OCI chart pinned by digest is kept in the content-addressed cache:
// once pulled, it installs and renders with the registry gone.
func TestPinnedOCIChartCachedByDigest(t *testing.T) {
	env := testenv.Shared(t)
	ns := namespace(t, env)
	srv := ociRegistryServer(t)
	host, hc := strings.TrimPrefix(srv.URL, "https://"), srv.Client()
	c := testChart{name: "cached", version: "0.5.0"}
	tgz, digest := c.pack(t)
	ref := pushChart(t, host, hc, tgz, c)
	other := testChart{name: "tampered", version: "0.5.0"}
	otherTgz, otherDigest := other.pack(t)
	otherRef := pushChart(t, host, hc, otherTgz, other)

	cacheDir := t.TempDir()
	installer := func(offline bool) *stack.Installer {
		client := fetch.New(fetch.WithHTTPClient(hc), fetch.WithMaxAttempts(2), fetch.WithWait(10*time.Millisecond, 20*time.Millisecond))
		in, err := stack.New(
			stack.WithKubeconfig(env.Kubeconfig, ""),
			stack.WithCache(&fetch.Cache{Dir: cacheDir, Client: client, Offline: offline}),
			stack.WithDefaultTimeout(time.Minute),
		)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}

	// A chart whose digest is not the pinned one (here, the other chart's)
	// is refused and not kept.
	_, err := installer(false).Images(t.Context(), []profile.Component{{Name: "tampered", Namespace: ns, Helm: &profile.HelmChart{Chart: otherRef, Version: "0.5.0", Digest: digest}}})
	var mismatch *stack.DigestMismatchError
	if !errors.As(err, &mismatch) || mismatch.Got != otherDigest {
		t.Fatalf("error %v, want a DigestMismatchError", err)
	}
	if blobs := cachedBlobs(t, cacheDir); len(blobs) != 0 {
		t.Fatalf("cache holds %v after a refused chart, want nothing", blobs)
	}

	comp := component("cached", ns, &profile.HelmChart{Chart: ref, Version: "0.5.0", Digest: digest}, map[string]any{"message": "cached"})
	if _, err := installer(false).Images(t.Context(), []profile.Component{comp}); err != nil {
		t.Fatal(err)
	}
	if blobs := cachedBlobs(t, cacheDir); len(blobs) != 1 || blobs[0] != digest {
		t.Fatalf("cache holds %v, want the pinned archive %s", blobs, digest)
	}
	data, err := os.ReadFile(filepath.Join(cacheDir, "sha256", strings.TrimPrefix(digest, "sha256:")))
	want, _ := os.ReadFile(tgz)
	if err != nil || string(data) != string(want) {
		t.Fatalf("cached archive differs from the pushed one (%v)", err)
	}

	// The registry goes away: the cached archive is used.
	srv.Close()
	recs, err := installer(true).Install(t.Context(), []profile.Component{comp})
	if err != nil {
		t.Fatalf("install with the registry gone: %v", err)
	}
	if r := recs[0]; r.Action != stack.ActionInstalled || r.Digest != digest || r.Source != stack.SourceOCI {
		t.Errorf("record %+v", r)
	}
	if got := configMessage(t, env.Clientset(), ns, "cached"); got != "cached" {
		t.Errorf("message %q", got)
	}
	// An unpinned reference still needs the registry.
	unpinned := comp
	unpinned.Helm = &profile.HelmChart{Chart: ref, Version: "0.5.0"}
	if _, err := installer(true).Images(t.Context(), []profile.Component{unpinned}); err == nil {
		t.Error("an unpinned chart rendered with the registry gone")
	}
}
