// Package testregistry runs the distribution registry in the test process,
// on loopback with TLS and basic authentication, for tests that push
// images the way users do.
package testregistry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	// The registry's htpasswd authentication and in-memory storage.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"golang.org/x/crypto/bcrypt"
)

// Registry is a running registry. Its certificate is httptest's: clients
// trust it through Client(), or skip verification.
type Registry struct {
	*httptest.Server
	// Host is host:port, the registry part of image references.
	Host string
	// Uploads counts the blob uploads started.
	Uploads atomic.Int32
}

// Start runs a registry accepting user with password; it stops with the
// test.
func Start(t testing.TB, user, password string) *Registry {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{"inmemory": configuration.Parameters{}},
		Auth:    configuration.Auth{"htpasswd": configuration.Parameters{"realm": "kaic-test", "path": htpasswd}},
	}
	cfg.HTTP.Secret = "kaic-test"
	cfg.Log.Level = "error"
	app := handlers.NewApp(context.Background(), cfg)
	r := &Registry{}
	r.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodPost && strings.Contains(req.URL.Path, "/blobs/uploads") {
			r.Uploads.Add(1)
		}
		app.ServeHTTP(w, req)
	}))
	t.Cleanup(r.Close)
	r.Host = strings.TrimPrefix(r.URL, "https://")
	return r
}

// Login writes a Docker config file holding user:password for host, as
// docker login does, and points DOCKER_CONFIG at it for the test.
func Login(t testing.TB, host, user, password string) {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	data, err := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"auth": auth}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
}
