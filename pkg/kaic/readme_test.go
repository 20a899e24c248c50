package kaic_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/kaic"
)

// yamlBlock is a fenced YAML block of a Markdown file.
var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestREADMEProfilesPlan plans every profile the README shows, so an
// example a reader copies works as shown.
func TestREADMEProfilesPlan(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	client := kaic.New()
	planned := 0
	for i, m := range yamlBlock.FindAllSubmatch(readme, -1) {
		if !strings.Contains(string(m[1]), "kind: Profile") {
			continue
		}
		file := filepath.Join(t.TempDir(), "readme-profile.yaml")
		if err := os.WriteFile(file, m[1], 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Plan(file); err != nil {
			t.Errorf("README profile block %d does not plan: %v\n%s", i+1, err, m[1])
		}
		planned++
	}
	if planned == 0 {
		t.Fatal("the README shows no profile; the test looks for ```yaml blocks holding kind: Profile")
	}
}
