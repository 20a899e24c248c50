package evidence

import (
	"context"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// chromium returns the headless browser, skipping the test outside CI when
// it is not installed (CI installs Debian's chromium package).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal("CI=true but no chromium in PATH: install Debian's chromium package (apt-get install -y chromium)")
	}
	t.Skip("chromium is not installed; report.html rendering is checked in CI (apt-get install -y chromium)")
	return ""
}

// TestReportRendersInChromium renders report.html in headless Chromium and
// requires the summary numbers the page shows, after its script ran, to
// equal junit.xml's totals.
func TestReportRendersInChromium(t *testing.T) {
	browser := chromium(t)
	for name, run := range map[string]*Run{"all-must-pass": allMustPass(false), "simulated-with-failure": mixed()} {
		t.Run(name, func(t *testing.T) {
			run.Template = officialTemplate(t, run.Version)
			written, err := Write(t.TempDir(), run)
			if err != nil {
				t.Fatal(err)
			}
			page, err := os.ReadFile(filepath.Join(written.Dir, ReportFile))
			if err != nil {
				t.Fatal(err)
			}
			// Self-contained: no external stylesheet, script, image or font.
			if m := regexp.MustCompile(`(?i)<(link|script|img)[^>]+(src|href)=`).Find(page); m != nil {
				t.Errorf("report.html loads an external asset: %s", m)
			}
			dom := dumpDOM(t, browser, filepath.Join(written.Dir, ReportFile))
			if !strings.Contains(dom, `data-summary="verified"`) {
				t.Fatalf("the page's script did not verify its summary (script not run, or counts disagree):\n%.2000s", dom)
			}
			var junit struct {
				Tests    int `xml:"tests,attr"`
				Failures int `xml:"failures,attr"`
				Errors   int `xml:"errors,attr"`
				Skipped  int `xml:"skipped,attr"`
			}
			data, _ := os.ReadFile(filepath.Join(written.Dir, JUnitFile))
			if err := xml.Unmarshal(data, &junit); err != nil {
				t.Fatal(err)
			}
			for id, want := range map[string]int{
				"tc-tests":    junit.Tests,
				"tc-failures": junit.Failures + junit.Errors,
				"tc-skipped":  junit.Skipped,
				"tc-passed":   junit.Tests - junit.Failures - junit.Errors - junit.Skipped,
			} {
				if got := shownNumber(t, dom, id); got != want {
					t.Errorf("page shows %s = %d, junit.xml says %d", id, got, want)
				}
			}
			if got, want := strings.Contains(dom, `id="simulated-banner"`), run.Simulated(); got != want {
				t.Errorf("simulated banner shown = %v, want %v", got, want)
			}
			if run.Simulated() {
				if got := shownNumber(t, dom, "req-fail"); got != 1 {
					t.Errorf("page shows %d failed requirements, want 1", got)
				}
				if !strings.Contains(dom, `id="failures"`) {
					t.Error("the failures are not listed")
				}
			}
		})
	}
}

func dumpDOM(t *testing.T, browser, file string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--dump-dom", "file://"+file)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return string(out)
}

func shownNumber(t *testing.T, dom, id string) int {
	t.Helper()
	m := regexp.MustCompile(`id="` + id + `"[^>]*>(\d+)<`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no element %s in the rendered page", id)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestReportListsEveryRequirement: a requirement the run holds no result
// for still has a row, N/A with the profile's notes when the profile opts
// it out, "no result" otherwise.
func TestReportListsEveryRequirement(t *testing.T) {
	run := allMustPass(false)
	run.Profile.Spec.Checks.OptOuts = append(run.Profile.Spec.Checks.OptOuts,
		profile.OptOut{ID: "high_performance_networking", Status: "N/A", Notes: "No RDMA fabric."})
	page, err := Report(run)
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	cat, err := conformance.Builtin(run.Version)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(html, `<tr class="requirement"`); n != len(cat.Requirements) {
		t.Errorf("%d requirement rows, the checklist has %d", n, len(cat.Requirements))
	}
	for _, req := range cat.Requirements {
		if !strings.Contains(html, "<code>"+req.ID+"</code>") {
			t.Errorf("no row for %s", req.ID)
		}
	}
	if !strings.Contains(html, "opted out by the profile: No RDMA fabric.") {
		t.Error("the opted-out requirement does not show the profile's notes")
	}
	if !strings.Contains(html, `data-status="none"`) || !strings.Contains(html, "NO RESULT") {
		t.Error("requirements without a result are not labelled as such")
	}
}

func TestTimelineCountsChecksRunningAtOnce(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	res := func(id string, from, to int) conformance.Result {
		return conformance.Result{ID: id, Status: conformance.Passed, Start: t0.Add(time.Duration(from) * time.Second), Duration: time.Duration(to-from) * time.Second}
	}
	// a: 0-10, b: 5-20, c: 10-15 (starts as a ends), d: 12-14: b, c and d overlap.
	results := []conformance.Result{res("a", 0, 10), res("b", 5, 20), res("c", 10, 15), res("d", 12, 14), {ID: "never-ran", Status: conformance.Skipped}}
	rows, most := timeline(results, t0, t0.Add(20*time.Second))
	if most != 3 {
		t.Errorf("most at once = %d, want 3", most)
	}
	if len(rows) != 4 || rows[1].ID != "b" || rows[1].LeftPct != "25.00" || rows[1].WidthPct != "75.00" || rows[1].End != "20.0s" {
		t.Errorf("rows %+v", rows)
	}
}
