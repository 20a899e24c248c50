package image_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kaic-dev/kaic/internal/testregistry"
	"github.com/kaic-dev/kaic/pkg/probe/image"
)

// tinyBinary cross-compiles a small static Go program for linux/arch: a
// stand-in for a cross-compiled kaic where only the image's assembly is
// under test (building kaic for two platforms takes minutes).
func tinyBinary(t *testing.T, arch string) image.Binary {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"probe\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "kaic-linux-"+arch)
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build for %s: %v\n%s", arch, err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return image.Binary{Name: bin, Data: data}
}

func TestPushWithCredentialsAndRepush(t *testing.T) {
	reg := testregistry.Start(t, "kaic", "secret")
	testregistry.Login(t, reg.Host, "kaic", "secret")
	built, err := image.BuildAll([]image.Binary{tinyBinary(t, "amd64")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := image.PushOptions{Transport: reg.Client().Transport}
	ctx := context.Background()

	// No tag: the content-derived one.
	ref, err := image.Push(ctx, reg.Host+"/kaic/kaic-probe", built, opts)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := built.Image.Digest()
	if ref.DigestStr() != want.String() || ref.RepositoryStr() != "kaic/kaic-probe" {
		t.Errorf("pushed %s, want kaic/kaic-probe@%s", ref, want)
	}
	tag, _ := name.NewTag(reg.Host + "/kaic/kaic-probe:" + built.Tag)
	got, err := remote.Image(tag, remote.WithTransport(reg.Client().Transport), remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		t.Fatalf("the content-derived tag %s was not pushed: %v", tag, err)
	}
	if d, _ := got.Digest(); d != want {
		t.Errorf("registry holds %s under %s, pushed %s", d, tag, want)
	}
	first := reg.Uploads.Load()
	if first == 0 {
		t.Fatal("the first push uploaded no blob")
	}

	// Again, to the same and to an explicit tag: nothing new is uploaded.
	again, err := image.Push(ctx, reg.Host+"/kaic/kaic-probe", built, opts)
	if err != nil {
		t.Fatalf("re-push: %v", err)
	}
	tagged, err := image.Push(ctx, reg.Host+"/kaic/kaic-probe:v1.2.3", built, opts)
	if err != nil {
		t.Fatalf("push to a second tag: %v", err)
	}
	if again != ref || tagged.DigestStr() != ref.DigestStr() {
		t.Errorf("re-push gave %s and %s, first push %s", again, tagged, ref)
	}
	if n := reg.Uploads.Load(); n != first {
		t.Errorf("re-pushing uploaded %d more blobs, want none", n-first)
	}
}

func TestPushWrongPassword(t *testing.T) {
	reg := testregistry.Start(t, "kaic", "secret")
	testregistry.Login(t, reg.Host, "kaic", "not-the-password")
	built, err := image.BuildAll([]image.Binary{tinyBinary(t, "amd64")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = image.Push(context.Background(), reg.Host+"/kaic/kaic-probe:v1", built, image.PushOptions{Transport: reg.Client().Transport})
	var pe *image.PushError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a PushError", err)
	}
	for _, want := range []string{reg.Host + "/kaic/kaic-probe:v1", "refused the credentials", "docker login " + reg.Host} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if reg.Uploads.Load() != 0 {
		t.Errorf("%d blob uploads started with a wrong password", reg.Uploads.Load())
	}
}

func TestPushMultiPlatformIndex(t *testing.T) {
	reg := testregistry.Start(t, "kaic", "secret")
	testregistry.Login(t, reg.Host, "kaic", "secret")
	amd, arm := tinyBinary(t, "amd64"), tinyBinary(t, "arm64")
	built, err := image.BuildAll([]image.Binary{amd, arm}, []string{"linux/amd64", "linux/arm64"})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := image.Push(context.Background(), reg.Host+"/kaic-probe:multi", built, image.PushOptions{Transport: reg.Client().Transport})
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref, remote.WithTransport(reg.Client().Transport), remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		t.Fatalf("reading the index back: %v", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, d := range m.Manifests {
		platforms = append(platforms, d.Platform.OS+"/"+d.Platform.Architecture)
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.OS+"/"+cfg.Architecture != platforms[len(platforms)-1] {
			t.Errorf("manifest for %s holds an image configured for %s/%s", platforms[len(platforms)-1], cfg.OS, cfg.Architecture)
		}
	}
	slices.Sort(platforms)
	if strings.Join(platforms, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("index holds %v", platforms)
	}

	// A platform asked for and not given, and two binaries for one platform.
	if _, err := image.BuildAll([]image.Binary{amd}, []string{"linux/amd64", "linux/arm64"}); err == nil || !strings.Contains(err.Error(), "--platform linux/arm64: no binary") {
		t.Errorf("missing platform: %v", err)
	}
	if _, err := image.BuildAll([]image.Binary{amd, amd}, nil); err == nil || !strings.Contains(err.Error(), "both built for linux/amd64") {
		t.Errorf("duplicate platform: %v", err)
	}
}
