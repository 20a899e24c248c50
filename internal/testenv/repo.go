package testenv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// modulePath is the path of kaic's root module.
const modulePath = "github.com/kaic-dev/kaic"

// RepoRoot returns the repository root: the nearest directory at or above
// the working directory whose go.mod declares kaic's root module (the
// nested modules under hack/ have their own go.mod).
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(data), []byte("module "+modulePath+"\n")) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod of %s at or above %s", modulePath, wd)
		}
	}
}

// OfficialChecklists returns the directory of the official AI conformance
// checklists: $KAIC_CHECKLIST_DIR, which kaic itself reads too, else the
// directory beside the repository (<root>/../shared/checklists). A missing
// directory fails t: the tests that need it cannot say anything without it.
func OfficialChecklists(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("KAIC_CHECKLIST_DIR")
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(filepath.Dir(root), "shared", "checklists")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("official checklists not found (set KAIC_CHECKLIST_DIR or put them in ../shared/checklists beside the repository): %v", err)
	}
	return dir
}
