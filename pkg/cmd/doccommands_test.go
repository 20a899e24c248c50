package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/internal/testenv"
)

// Where documentation shows kaic command lines: fenced code blocks and
// inline code of Markdown, and the run: steps of workflows.
var (
	fenced     = regexp.MustCompile("(?s)```[a-z]*\n(.*?)```")
	inlineCode = regexp.MustCompile("`((?:bin/)?kaic [^`]+)`")
	lineStart  = regexp.MustCompile(`(?m)^\s*(?:-\s*)?(?:run:\s*)?(?:go run \./cmd/|bin/|\./)?kaic( [^#|\n]*)`)
)

// commandLines returns the kaic command lines of a file's content,
// without "kaic".
func commandLines(name string, data string) []string {
	var out []string
	add := func(text string) {
		for _, m := range lineStart.FindAllStringSubmatch(text, -1) {
			out = append(out, m[1])
		}
	}
	if strings.HasSuffix(name, ".md") {
		for _, m := range fenced.FindAllStringSubmatch(data, -1) {
			add(m[1])
		}
		for _, m := range inlineCode.FindAllStringSubmatch(data, -1) {
			add(m[1])
		}
		return out
	}
	add(data)
	return out
}

// TestDocumentedCommandsExist reads the README and the GitHub workflows and
// checks that every kaic command line they show names a real command with
// flags it has, so that what a reader copies runs.
func TestDocumentedCommandsExist(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files := []string{filepath.Join(root, "README.md")}
	workflows, _ := filepath.Glob(filepath.Join(root, ".github", "workflows", "*.yml"))
	files = append(files, workflows...)
	cmd := NewRootCommand(&bytes.Buffer{}, &bytes.Buffer{})
	seen := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range commandLines(f, string(data)) {
			line, _, _ = strings.Cut(line, "||")
			line = strings.TrimSpace(line)
			if err := checkCommandLine(cmd, strings.Fields(line)); err != "" {
				t.Errorf("%s: kaic %s: %s", filepath.Base(f), line, err)
			}
			seen++
		}
	}
	for _, bad := range [][]string{{"up", "--no-such-flag"}, {"no-such-command"}, {"verify", "-Z"}} {
		if checkCommandLine(cmd, bad) == "" {
			t.Errorf("kaic %s passes the check", strings.Join(bad, " "))
		}
	}
	if got := commandLines("w.yml", "      - run: bin/kaic validate --allow-simulated _artifacts/run\n"); len(got) != 1 || got[0] != " validate --allow-simulated _artifacts/run" {
		t.Errorf("workflow step not found: %q", got)
	}
	if seen < 10 {
		t.Fatalf("found only %d kaic command lines in %v; the pattern no longer matches the documentation", seen, files)
	}
}

// checkCommandLine says what is wrong with args as a kaic command line, or
// "" when the command exists and has every flag used.
func checkCommandLine(root *cobra.Command, args []string) string {
	c, rest, err := root.Find(args)
	if err != nil {
		return err.Error()
	}
	if c == root && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		return "no command " + rest[0]
	}
	for _, a := range rest {
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		var found bool
		if strings.HasPrefix(a, "--") {
			found = c.Flags().Lookup(name) != nil || c.InheritedFlags().Lookup(name) != nil
		} else {
			found = c.Flags().ShorthandLookup(name[:1]) != nil || c.InheritedFlags().ShorthandLookup(name[:1]) != nil
		}
		if !found {
			return "command " + c.CommandPath() + " has no flag " + a
		}
	}
	return ""
}
