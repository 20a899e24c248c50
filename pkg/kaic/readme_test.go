package kaic_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// repoFile reads a file of the repository: its path and its content.
func repoFile(t *testing.T, elem ...string) (string, []byte) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(append([]string{root}, elem...)...)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data
}

// yamlBlock is a fenced YAML block of a Markdown file.
var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestREADMEProfilesPlan plans every profile the README shows, so an
// example a reader copies works as shown.
func TestREADMEProfilesPlan(t *testing.T) {
	_, readme := repoFile(t, "README.md")
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

// TestREADMEStackTable keeps the README's stack table true to stacks/:
// every built-in component has a row with its pinned version and the
// Kubernetes range it states (or "not recorded"), and a proof status.
func TestREADMEStackTable(t *testing.T) {
	_, readme := repoFile(t, "README.md")
	_, after, ok := strings.Cut(string(readme), "<!-- stack-table: checked by TestREADMEStackTable -->\n")
	if !ok {
		t.Fatal("README has no stack table marker")
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(after, "\n")[2:] {
		if !strings.HasPrefix(line, "| ") {
			break
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 4 {
			t.Fatalf("row %q: want 4 cells", line)
		}
		rows[cells[0]] = cells
	}
	cat, err := profile.LoadComponentCatalog(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range cat.Names() {
		c, _ := cat.Get(name)
		row, ok := rows[name]
		if !ok {
			t.Errorf("README stack table has no row for %s", name)
			continue
		}
		delete(rows, name)
		version := c.ChartVersion()
		if c.Helm != nil && strings.HasPrefix(c.Helm.Chart, profile.EmbeddedChartScheme) {
			version = "kaic's"
		}
		if row[1] != version {
			t.Errorf("%s: README says version %q, stacks/ pins %q", name, row[1], version)
		}
		supports := "not recorded"
		if c.Supports != nil {
			supports = c.Supports.Minors()
		} else if version == "kaic's" {
			supports = "all kaic supports"
		}
		if row[2] != supports {
			t.Errorf("%s: README says Kubernetes %q, stacks/ states %q", name, row[2], supports)
		}
		if strings.TrimSpace(row[3]) == "" {
			t.Errorf("%s: no proof status", name)
		}
	}
	for name := range rows {
		t.Errorf("README stack table lists %s, which is not a built-in component", name)
	}
}
