package cmd

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kaic-dev/kaic/internal/testregistry"
)

// kaic probe image --push against the distribution registry in this
// process (TLS with a certificate no CA signed, hence --insecure; basic
// authentication), with the credentials docker login would have stored.
// /bin/true stands in for a kaic binary: what is under test is the push.
func TestProbeImagePush(t *testing.T) {
	if _, err := os.Stat("/bin/true"); err != nil {
		t.Skip("no /bin/true to build an image from")
	}
	reg := testregistry.Start(t, "kaic", "secret")
	host := reg.Host
	login := func(password string) { testregistry.Login(t, host, "kaic", password) }

	login("secret")
	code, out, errOut := run(t, "probe", "image", "--binary", "/bin/true", "--push", host+"/kaic-probe:test", "--insecure")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	pushed := strings.TrimSpace(out)
	if !strings.HasPrefix(pushed, host+"/kaic-probe@sha256:") {
		t.Errorf("printed %q, want the pushed reference by digest", pushed)
	}
	code, again, _ := run(t, "probe", "image", "--binary", "/bin/true", "--push", host+"/kaic-probe:test", "--insecure")
	if code != 0 || strings.TrimSpace(again) != pushed {
		t.Errorf("re-push: exit %d, printed %q, want %q", code, again, pushed)
	}

	login("wrong")
	code, _, errOut = run(t, "probe", "image", "--binary", "/bin/true", "--push", host+"/kaic-probe:test", "--insecure")
	if code != 1 || !strings.Contains(errOut, "refused the credentials") {
		t.Errorf("wrong password: exit %d, stderr %q", code, errOut)
	}
	// Without --insecure the test certificate is not trusted.
	login("secret")
	code, _, errOut = run(t, "probe", "image", "--binary", "/bin/true", "--push", host+"/kaic-probe:test")
	if code != 1 || !strings.Contains(errOut, "certificate") {
		t.Errorf("untrusted certificate: exit %d, stderr %q", code, errOut)
	}
	for _, args := range [][]string{
		{"probe", "image"},
		{"probe", "image", "--output", "x.tar", "--push", host + "/p"},
	} {
		if code, _, errOut := run(t, args...); code != 2 || !strings.Contains(errOut, "--output FILE or --push REF") {
			t.Errorf("%v: exit %d, %s", args, code, errOut)
		}
	}
}

// asBuild makes the tests run kaic as a build of version v with the given
// published probe image stamped in ("" for none).
func asBuild(t *testing.T, v, stamped string) {
	t.Helper()
	oldV, oldP := version, probeImage
	version, probeImage = v, stamped
	t.Cleanup(func() { version, probeImage = oldV, oldP })
}

// A development build has no published probe image: on a cluster kaic does
// not load its own image into, plan and verify stop before any request
// reaches the cluster, saying how to fix it; on kind, kaic builds the image.
func TestDevelopmentBuildWithoutProbeImageIsRefused(t *testing.T) {
	asBuild(t, "dev", "")
	for _, v := range []string{"AWS_REGION", "AWS_SSH_KEY_NAME", "AWS_B64ENCODED_CREDENTIALS"} {
		t.Setenv(v, "x")
	}
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	doc := "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"" + srv.URL + "\"}}]\n" +
		"users: [{name: u, user: {token: t}}]\ncontexts: [{name: ctx, context: {cluster: c, user: u}}]\ncurrent-context: ctx\n"
	if err := os.WriteFile(kubeconfig, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"plan", "-p", "existing"},
		{"plan", "-p", "capi-aws-gpu"},
		{"verify", "-p", "existing", "--kubeconfig", kubeconfig, "--out", filepath.Join(t.TempDir(), "run")},
	} {
		code, _, stderr := run(t, args...)
		if code != ExitFailure {
			t.Errorf("%v: exit %d, want %d\n%s", args, code, ExitFailure, stderr)
		}
		for _, want := range []string{"development build", "spec.checks.probeImage", "kaic probe image --push"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("%v: the error does not say %q:\n%s", args, want, stderr)
			}
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the refused verify sent %d requests to the cluster", n)
	}

	// kind and Cluster API on Docker: kaic builds the probe image from this
	// binary and loads it into the nodes.
	for _, name := range []string{"kind-dra", "capi-docker"} {
		code, stdout, stderr := run(t, "plan", "-p", name)
		if code != 0 || !strings.Contains(stdout, "Probe image kaic.dev/probe:") || !strings.Contains(stdout, "loaded into the nodes by kaic") {
			t.Errorf("plan -p %s: exit %d\n%s%s", name, code, stdout, stderr)
		}
	}
	// A profile naming its probe image needs nothing published.
	prof := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(prof, []byte("apiVersion: kaic.dev/v1alpha1\nkind: Profile\nextends: existing\nmetadata: {name: mine}\nspec:\n  checks:\n    probeImage: registry.example.com/kaic-probe@sha256:"+strings.Repeat("a", 64)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := run(t, "plan", "-p", prof); code != 0 || !strings.Contains(stdout, "(spec.checks.probeImage)") {
		t.Errorf("plan of a profile naming its probe image: exit %d\n%s%s", code, stdout, stderr)
	}
}

// A release build uses the probe image published for its version, or the
// one stamped in at build time (by digest).
func TestReleaseBuildUsesThePublishedProbeImage(t *testing.T) {
	asBuild(t, "v1.2.3", "")
	code, stdout, stderr := run(t, "plan", "-p", "existing", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var pl struct {
		ProbeImage struct{ Ref, Source string } `json:"probeImage"`
	}
	if err := json.Unmarshal([]byte(stdout), &pl); err != nil {
		t.Fatal(err)
	}
	if pl.ProbeImage.Ref != "ghcr.io/kaic-dev/kaic-probe:v1.2.3" || pl.ProbeImage.Source != "published" {
		t.Errorf("probe image %+v", pl.ProbeImage)
	}
	stamped := "ghcr.io/kaic-dev/kaic-probe:v1.2.3@sha256:" + strings.Repeat("b", 64)
	asBuild(t, "v1.2.3", stamped)
	if _, out, _ := run(t, "version"); !strings.Contains(out, "probe image "+stamped) {
		t.Errorf("kaic version does not name the stamped probe image:\n%s", out)
	}
	// A build between releases is a development build.
	asBuild(t, "v1.2.3-4-gabcdef0", "")
	if code, _, stderr := run(t, "plan", "-p", "existing"); code != ExitFailure || !strings.Contains(stderr, "development build") {
		t.Errorf("a build between releases: exit %d\n%s", code, stderr)
	}
}

// The probe image for kind is built from a linux kaic: another file given
// with --probe-binary is refused before anything is created.
func TestProbeBinaryMustBeLinux(t *testing.T) {
	script := filepath.Join(t.TempDir(), "kaic-darwin")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "run")
	code, _, stderr := run(t, "provision", "-p", "kind-dra", "--probe-binary", script, "--out", out)
	if code != ExitFailure || !strings.Contains(stderr, "not a linux executable") || !strings.Contains(stderr, "--probe-binary") {
		t.Errorf("exit %d\n%s", code, stderr)
	}
}
