package evidence

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/pkg/conformance"
)

// TestGolden compares every artifact with the checked-in files under
// testdata/golden/<case>; go test -run TestGolden -update rewrites them.
func TestGolden(t *testing.T) {
	for name, run := range map[string]*Run{"all-must-pass": allMustPass(false), "simulated-with-failure": mixed()} {
		t.Run(name, func(t *testing.T) {
			run.Template = officialTemplate(t, run.Version)
			out := t.TempDir()
			written, err := Write(out, run)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "golden", name)
			if *update {
				if err := os.RemoveAll(golden); err != nil {
					t.Fatal(err)
				}
				if err := os.CopyFS(golden, os.DirFS(written.Dir)); err != nil {
					t.Fatal(err)
				}
				return
			}
			want := listFiles(t, golden)
			got := listFiles(t, written.Dir)
			if !slices.Equal(got, want) {
				t.Fatalf("files differ from %s (run with -update to accept):\n got %q\nwant %q", golden, got, want)
			}
			for _, f := range got {
				g, _ := os.ReadFile(filepath.Join(written.Dir, f))
				w, _ := os.ReadFile(filepath.Join(golden, f))
				if !bytes.Equal(g, w) {
					t.Errorf("%s differs from %s (run with -update to accept); first difference at line %d", f, golden, firstDiffLine(g, w))
				}
			}
		})
	}
}

func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

func firstDiffLine(a, b []byte) int {
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}

// TestProductKeepsTheOfficialChecklist checks that PRODUCT.yaml has every
// category and id of the official checklist with its description and level
// untouched, and the status rules.
func TestProductKeepsTheOfficialChecklist(t *testing.T) {
	for _, version := range []string{"1.33", "1.35", "1.36", "1.37"} {
		t.Run(version, func(t *testing.T) {
			run := mixed()
			run.Version = version
			run.Template = officialTemplate(t, version)
			data, warnings, err := Product(run)
			if err != nil {
				t.Fatal(err)
			}
			if len(warnings) != 0 {
				t.Errorf("complete metadata gave warnings: %q", warnings)
			}
			official, _ := conformance.ParseChecklist(run.Template)
			got, err := conformance.ParseChecklist(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Spec) != len(official.Spec) {
				t.Fatalf("%d categories, official %d", len(got.Spec), len(official.Spec))
			}
			for ci, cat := range official.Spec {
				if got.Spec[ci].Name != cat.Name || len(got.Spec[ci].Items) != len(cat.Items) {
					t.Fatalf("category %s differs", cat.Name)
				}
				for ii, want := range cat.Items {
					item := got.Spec[ci].Items[ii]
					if item.ID != want.ID || item.Description != want.Description || item.Level != want.Level {
						t.Errorf("%s: id/description/level changed", want.ID)
					}
					switch item.ID {
					case "gang_scheduling":
						if item.Status != StatusNotImplemented || !strings.Contains(item.Notes, "reached Running") {
							t.Errorf("failed check: status %q notes %q", item.Status, item.Notes)
						}
					case "ai_inference":
						if item.Status != StatusImplemented || !slices.Contains(item.Evidence, "file://junit.xml#TestAIInference") ||
							!slices.Contains(item.Evidence, "tests/TestAIInference/output.md") {
							t.Errorf("passed check: %+v", item)
						}
					case "cluster_autoscaling":
						if item.Status != StatusNA || !strings.HasPrefix(item.Notes, "The platform has no cluster autoscaler.") {
							t.Errorf("opt-out: %+v", item)
						}
					}
					if !strings.Contains(item.Notes, "SIMULATED ACCELERATORS") {
						t.Errorf("%s: notes of a simulated run do not say so: %q", item.ID, item.Notes)
					}
				}
			}
			if v, _ := got.Meta("k8sConformanceUrl"); v != testProfile(false).Spec.Product.K8sConformanceURL {
				t.Errorf("k8sConformanceUrl = %q", v)
			}
		})
	}
}

func TestProductWarnsAboutPlaceholders(t *testing.T) {
	run := allMustPass(false)
	run.Template = officialTemplate(t, "1.37")
	run.Profile.Spec.Product.VendorName = "[Vendor Name]"
	run.Profile.Spec.Product.K8sConformanceURL = ""
	data, warnings, err := Product(run)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(warnings, "\n")
	if len(warnings) != 2 || !strings.Contains(joined, "metadata.vendorName is the placeholder \"[Vendor Name]\"") ||
		!strings.Contains(joined, "metadata.k8sConformanceUrl is the placeholder \"[k8sConformanceUrl]\"") {
		t.Errorf("warnings: %q", warnings)
	}
	if !bytes.Contains(data, []byte(`k8sConformanceUrl: "[k8sConformanceUrl]"`)) && !bytes.Contains(data, []byte(`k8sConformanceUrl: '[k8sConformanceUrl]'`)) {
		t.Errorf("PRODUCT.yaml lacks the k8sConformanceUrl placeholder:\n%s", data)
	}
}

// TestArtifactsAgree parses kaic's own junit.xml, results.json and e2e.log
// and requires each to record every test with the result's status.
func TestArtifactsAgree(t *testing.T) {
	run := mixed()
	junit, err := JUnit(run)
	if err != nil {
		t.Fatal(err)
	}
	results, err := ResultsJSON(run)
	if err != nil {
		t.Fatal(err)
	}
	parsed := map[string]func([]byte) (*TestOutcomes, error){
		JUnitFile: ParseJUnit, ResultsFile: ParseGoTestJSON, E2ELogFile: ParseGoTestLog,
	}
	data := map[string][]byte{JUnitFile: junit, ResultsFile: results, E2ELogFile: E2ELog(run)}
	for file, parse := range parsed {
		o, err := parse(data[file])
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		n := 0
		for _, res := range run.Results {
			for _, tr := range res.Tests() {
				n++
				want := tr.Status
				if got := o.Status[tr.Name]; got != want {
					t.Errorf("%s: %s is %q, want %q", file, tr.Name, got, want)
				}
			}
		}
		if len(o.Status) != n {
			t.Errorf("%s records %d tests, want %d", file, len(o.Status), n)
		}
		if f := o.Failed(); !slices.Equal(f, []string{"TestGangScheduling", "TestGangScheduling/Negative"}) {
			t.Errorf("%s: failed tests %q", file, f)
		}
	}
	if !bytes.Contains(data[E2ELogFile], []byte("SIMULATED ACCELERATORS")) || !bytes.Contains(junit, []byte(`<property name="kaic.simulated" value="true">`)) {
		t.Error("the go test artifacts of a simulated run do not say so")
	}
}
