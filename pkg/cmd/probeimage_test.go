package cmd

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"golang.org/x/crypto/bcrypt"
)

// kaic probe image --push against the distribution registry in this
// process (TLS with a certificate no CA signed, hence --insecure; basic
// authentication), with the credentials docker login would have stored.
// /bin/true stands in for a kaic binary: what is under test is the push.
func TestProbeImagePush(t *testing.T) {
	if _, err := os.Stat("/bin/true"); err != nil {
		t.Skip("no /bin/true to build an image from")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("kaic:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{"inmemory": configuration.Parameters{}},
		Auth:    configuration.Auth{"htpasswd": configuration.Parameters{"realm": "kaic-test", "path": htpasswd}},
	}
	cfg.HTTP.Secret = "kaic-test"
	cfg.Log.Level = "error"
	srv := httptest.NewTLSServer(handlers.NewApp(context.Background(), cfg))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")
	login := func(password string) {
		dir := t.TempDir()
		auth := base64.StdEncoding.EncodeToString([]byte("kaic:" + password))
		data, _ := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"auth": auth}}})
		if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("DOCKER_CONFIG", dir)
	}

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
