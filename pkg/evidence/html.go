package evidence

import (
	"bytes"
	"fmt"
	"html/template"
	"sort"
	"time"

	"github.com/kaic-dev/kaic/pkg/conformance"
)

// reportData is what report.html shows.
type reportData struct {
	Title       string
	Version     string
	KaicVersion string
	Simulated   bool
	Notice      string
	Platform    string
	Profile     string
	Started     string
	Finished    string
	Categories  []categoryRow
	Totals      levelCounts
	Cases       caseCounts
	Failures    []requirementRow
	Rows        []requirementRow
	TestCases   []testCaseRow
	Timeline    []timelineRow
	// MaxConcurrent is the most checks that ran at once.
	MaxConcurrent int
	Span          string
}

type levelCounts struct{ Pass, Fail, Skip, NA, None, Total int }

// noResult is the status of a requirement of the checklist that the run
// holds no result for (not selected, or no check exists for it).
const noResult conformance.Status = "none"

func (c *levelCounts) add(s conformance.Status) {
	c.Total++
	switch s {
	case conformance.Passed:
		c.Pass++
	case conformance.Failed:
		c.Fail++
	case conformance.NotApplicable:
		c.NA++
	case noResult:
		c.None++
	default:
		c.Skip++
	}
}

type categoryRow struct {
	Title        string
	Must, Should levelCounts
}

// caseCounts are the totals of junit.xml's root element.
type caseCounts struct{ Tests, Failures, Skipped, Passed int }

type requirementRow struct {
	ID, Category, Level, Status, StatusClass, Duration, Reason, TestName string
	JUnit, Transcript                                                    string
}

// timelineRow is one check on the run's timeline, in seconds from the
// first check's start and in percent of the run's span for the bar.
type timelineRow struct {
	ID                string
	Start, End        string
	LeftPct, WidthPct string
	StatusClass       string
}

type testCaseRow struct {
	Name, Status, Duration string
}

func statusClass(s conformance.Status) string {
	switch s {
	case conformance.Passed:
		return "pass"
	case conformance.Failed:
		return "fail"
	case conformance.NotApplicable:
		return "na"
	case noResult:
		return "none"
	default:
		return "skip"
	}
}

// Report returns report.html: one self-contained page (inline style and
// script, no external assets) with the summary by category and level,
// failures first, every requirement with its status, duration and
// evidence, and every test case. A small script recounts the test cases in
// the browser and flags any disagreement with the totals printed.
func Report(run *Run) ([]byte, error) {
	start, end := run.span()
	d := reportData{
		Title:       fmt.Sprintf("Kubernetes AI Conformance v%s: kaic report", run.Version),
		Version:     run.Version,
		KaicVersion: orDev(run.KaicVersion),
		Simulated:   run.Simulated(),
		Notice:      run.SimulatedNotice(),
	}
	if !start.IsZero() {
		d.Started, d.Finished = start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339)
	}
	if run.Profile != nil {
		d.Platform = run.Profile.Spec.Product.PlatformName
		d.Profile = run.Profile.Metadata.Name
	}
	byCategory := map[string]*categoryRow{}
	for _, key := range conformance.Categories() {
		byCategory[key] = &categoryRow{Title: conformance.CategoryTitle(key)}
	}
	// tally counts a requirement's status in its category and the totals.
	tally := func(category string, level conformance.Level, status conformance.Status) {
		cat := byCategory[category]
		if cat == nil {
			cat = &categoryRow{Title: conformance.CategoryTitle(category)}
			byCategory[category] = cat
		}
		if level == conformance.Must {
			cat.Must.add(status)
		} else {
			cat.Should.add(status)
		}
		d.Totals.add(status)
	}
	for _, res := range run.ordered() {
		row := requirementRow{
			ID: res.ID, Category: conformance.CategoryTitle(res.Category), Level: string(res.Level),
			Status: verdictWord(res.Status), StatusClass: statusClass(res.Status),
			Duration: fmt.Sprintf("%.2fs", seconds(res.Duration)), Reason: res.Reason, TestName: res.TestName,
			Transcript: transcriptPath(res.TestName),
		}
		if res.Status == conformance.Passed || res.Status == conformance.Failed {
			row.JUnit = JUnitFile
		}
		d.Rows = append(d.Rows, row)
		if res.Status == conformance.Failed {
			d.Failures = append(d.Failures, row)
		}
		tally(res.Category, res.Level, res.Status)
		for _, tr := range res.Tests() {
			d.TestCases = append(d.TestCases, testCaseRow{Name: tr.Name, Status: statusClass(tr.Status), Duration: fmt.Sprintf("%.2fs", seconds(tr.Duration))})
			d.Cases.Tests++
			switch tr.Status {
			case conformance.Passed:
				d.Cases.Passed++
			case conformance.Failed:
				d.Cases.Failures++
			default:
				d.Cases.Skipped++
			}
		}
	}
	// Every requirement of the checklist has a row: one the run has no
	// result for is N/A when the profile opts it out (with its notes), and
	// "no result" otherwise.
	have := map[string]bool{}
	for _, res := range run.Results {
		have[res.ID] = true
	}
	cat, _ := conformance.Builtin(run.Version)
	for _, req := range cat.Requirements {
		if have[req.ID] {
			continue
		}
		status, word, reason := noResult, "NO RESULT", "kaic recorded no result for it in this run: it was not selected, or kaic has no check for it"
		if run.Profile != nil {
			for _, o := range run.Profile.Spec.Checks.OptOuts {
				if o.ID == req.ID {
					status, word, reason = conformance.NotApplicable, "N/A", "opted out by the profile: "+o.Notes
				}
			}
		}
		row := requirementRow{ID: req.ID, Category: conformance.CategoryTitle(req.Category), Level: string(req.Level),
			Status: word, StatusClass: statusClass(status), Duration: "–", Reason: reason, TestName: conformance.TestName(req.ID)}
		d.Rows = append(d.Rows, row)
		tally(req.Category, req.Level, status)
	}
	for _, key := range conformance.Categories() {
		if c := byCategory[key]; c.Must.Total+c.Should.Total > 0 {
			d.Categories = append(d.Categories, *c)
		}
	}
	d.Timeline, d.MaxConcurrent = timeline(run.ordered(), start, end)
	if !start.IsZero() {
		d.Span = fmt.Sprintf("%.1fs", end.Sub(start).Seconds())
	}
	var buf bytes.Buffer
	if err := reportTemplate.Execute(&buf, d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// timeline places every check that ran between the run's start and end,
// and counts the most that ran at once.
func timeline(results []conformance.Result, start, end time.Time) ([]timelineRow, int) {
	span := end.Sub(start).Seconds()
	if start.IsZero() || span <= 0 {
		return nil, 0
	}
	type edge struct {
		at    time.Time
		delta int
	}
	var rows []timelineRow
	var edges []edge
	for _, r := range results {
		if r.Start.IsZero() || r.Duration <= 0 {
			continue
		}
		from, to := r.Start.Sub(start).Seconds(), r.Start.Add(r.Duration).Sub(start).Seconds()
		rows = append(rows, timelineRow{
			ID: r.ID, Start: fmt.Sprintf("%.1fs", from), End: fmt.Sprintf("%.1fs", to),
			LeftPct: fmt.Sprintf("%.2f", 100*from/span), WidthPct: fmt.Sprintf("%.2f", max(100*(to-from)/span, 0.5)),
			StatusClass: statusClass(r.Status),
		})
		edges = append(edges, edge{r.Start, 1}, edge{r.Start.Add(r.Duration), -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at.Equal(edges[j].at) {
			return edges[i].delta < edges[j].delta // an end before a start at the same instant
		}
		return edges[i].at.Before(edges[j].at)
	})
	running, most := 0, 0
	for _, e := range edges {
		running += e.delta
		most = max(most, running)
	}
	return rows, most
}

var reportTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
.meta { color: #59636e; margin-top: 0; }
.banner { border: 3px solid #cf222e; background: #ffebe9; color: #82071e; padding: .8rem 1rem; font-weight: 700; margin: 1rem 0; }
.mismatch { border: 3px solid #bf8700; background: #fff8c5; padding: .6rem 1rem; }
table { border-collapse: collapse; width: 100%; margin: .6rem 0 1.4rem; }
th, td { border: 1px solid #d1d9e0; padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #1a7f37; font-weight: 600; }
.fail { color: #cf222e; font-weight: 700; }
.skip { color: #9a6700; }
.na { color: #59636e; }
.none { color: #59636e; font-style: italic; }
.bar { background: currentColor; height: .9rem; border-radius: 2px; min-width: 2px; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { border: 1px solid #d1d9e0; border-radius: 6px; padding: .6rem 1rem; min-width: 8rem; }
.card b { display: block; font-size: 1.6rem; }
code { font-size: .9em; }
</style>
</head>
<body data-summary="unchecked">
<h1>{{.Title}}</h1>
<p class="meta">{{if .Platform}}{{.Platform}} · {{end}}{{if .Profile}}profile {{.Profile}} · {{end}}kaic {{.KaicVersion}}{{if .Started}} · {{.Started}} – {{.Finished}}{{end}}</p>
{{if .Simulated}}<div class="banner" id="simulated-banner">{{.Notice}}</div>{{end}}
<div id="summary-warning" class="mismatch" hidden></div>

<h2>Summary</h2>
<div class="cards">
<div class="card">Requirements<b id="req-total">{{.Totals.Total}}</b></div>
<div class="card pass">Passed<b id="req-pass">{{.Totals.Pass}}</b></div>
<div class="card fail">Failed<b id="req-fail">{{.Totals.Fail}}</b></div>
<div class="card skip">Skipped<b id="req-skip">{{.Totals.Skip}}</b></div>
<div class="card na">N/A<b id="req-na">{{.Totals.NA}}</b></div>
<div class="card none">No result<b id="req-none">{{.Totals.None}}</b></div>
</div>
<p>Test cases (as in junit.xml): <b id="tc-tests">{{.Cases.Tests}}</b> tests, <b id="tc-failures">{{.Cases.Failures}}</b> failures, <b id="tc-skipped">{{.Cases.Skipped}}</b> skipped, <b id="tc-passed">{{.Cases.Passed}}</b> passed.</p>
<table id="by-category">
<thead><tr><th>Category</th><th class="num">MUST pass</th><th class="num">MUST fail</th><th class="num">MUST skip</th><th class="num">MUST N/A</th><th class="num">SHOULD pass</th><th class="num">SHOULD fail</th><th class="num">SHOULD skip</th><th class="num">SHOULD N/A</th></tr></thead>
<tbody>
{{range .Categories}}<tr><td>{{.Title}}</td><td class="num">{{.Must.Pass}}</td><td class="num">{{.Must.Fail}}</td><td class="num">{{.Must.Skip}}</td><td class="num">{{.Must.NA}}</td><td class="num">{{.Should.Pass}}</td><td class="num">{{.Should.Fail}}</td><td class="num">{{.Should.Skip}}</td><td class="num">{{.Should.NA}}</td></tr>
{{end}}</tbody>
</table>

{{if .Failures}}<h2>Failures</h2>
<table id="failures">
<thead><tr><th>Requirement</th><th>Level</th><th>Why</th><th>Evidence</th></tr></thead>
<tbody>
{{range .Failures}}<tr><td><code>{{.ID}}</code></td><td>{{.Level}}</td><td>{{.Reason}}</td><td><a href="{{.Transcript}}">transcript</a></td></tr>
{{end}}</tbody>
</table>
{{end}}
<h2>Requirements</h2>
<table id="requirements">
<thead><tr><th>Requirement</th><th>Category</th><th>Level</th><th>Status</th><th class="num">Duration</th><th>Evidence</th><th>Notes</th></tr></thead>
<tbody>
{{range .Rows}}<tr class="requirement" data-status="{{.StatusClass}}"><td><code>{{.ID}}</code><br><small>{{.TestName}}</small></td><td>{{.Category}}</td><td>{{.Level}}</td><td class="{{.StatusClass}}">{{.Status}}</td><td class="num">{{.Duration}}</td><td>{{if .JUnit}}<a href="{{.JUnit}}">junit.xml</a><br>{{end}}{{if .Transcript}}<a href="{{.Transcript}}">transcript</a>{{end}}</td><td>{{.Reason}}</td></tr>
{{end}}</tbody>
</table>

{{if .Timeline}}<h2>Timeline</h2>
<p>The checks over the run's {{.Span}}; at most <b id="max-concurrent">{{.MaxConcurrent}}</b> ran at once.</p>
<table id="timeline">
<thead><tr><th>Requirement</th><th class="num">Start</th><th class="num">End</th><th style="width:55%">When</th></tr></thead>
<tbody>
{{range .Timeline}}<tr><td><code>{{.ID}}</code></td><td class="num">{{.Start}}</td><td class="num">{{.End}}</td><td><div class="bar {{.StatusClass}}" style="margin-left:{{.LeftPct}}%;width:{{.WidthPct}}%">&nbsp;</div></td></tr>
{{end}}</tbody>
</table>
{{end}}
<h2>Test cases</h2>
<table id="testcases">
<thead><tr><th>Test</th><th>Result</th><th class="num">Duration</th></tr></thead>
<tbody>
{{range .TestCases}}<tr class="testcase" data-status="{{.Status}}"><td><code>{{.Name}}</code></td><td class="{{.Status}}">{{.Status}}</td><td class="num">{{.Duration}}</td></tr>
{{end}}</tbody>
</table>
<script>
(function () {
  var count = function (sel, status) {
    return document.querySelectorAll(sel + (status ? '[data-status="' + status + '"]' : '')).length;
  };
  var want = {
    'tc-tests': count('tr.testcase'),
    'tc-failures': count('tr.testcase', 'fail'),
    'tc-skipped': count('tr.testcase', 'skip') + count('tr.testcase', 'na'),
    'tc-passed': count('tr.testcase', 'pass'),
    'req-total': count('tr.requirement'),
    'req-pass': count('tr.requirement', 'pass'),
    'req-fail': count('tr.requirement', 'fail'),
    'req-skip': count('tr.requirement', 'skip'),
    'req-na': count('tr.requirement', 'na'),
    'req-none': count('tr.requirement', 'none')
  };
  var bad = [];
  for (var id in want) {
    var shown = parseInt(document.getElementById(id).textContent, 10);
    if (shown !== want[id]) { bad.push(id + ' shows ' + shown + ' but the page lists ' + want[id]); }
  }
  document.body.setAttribute('data-summary', bad.length ? 'mismatch' : 'verified');
  if (bad.length) {
    var w = document.getElementById('summary-warning');
    w.textContent = 'Summary does not match the rows: ' + bad.join('; ');
    w.hidden = false;
  }
})();
</script>
</body>
</html>
`))
