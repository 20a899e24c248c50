package evidence

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/kaic-dev/kaic/pkg/conformance"
)

// Transcript returns tests/<TestName>/output.md of one result: the
// requirement, the verdict and why, then every step in order with the
// manifests applied and the state observed.
func Transcript(run *Run, res conformance.Result) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n\n", res.TestName)
	if run.Simulated() {
		fmt.Fprintf(&b, "> **%s**\n\n", run.SimulatedNotice())
	}
	fmt.Fprintf(&b, "| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| Requirement | `%s` (%s, %s) |\n", res.ID, conformance.CategoryTitle(res.Category), res.Level)
	fmt.Fprintf(&b, "| Conformance version | v%s |\n", run.Version)
	fmt.Fprintf(&b, "| Verdict | **%s** |\n", verdictWord(res.Status))
	if !res.Start.IsZero() {
		fmt.Fprintf(&b, "| Started | %s |\n", res.Start.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "| Duration | %s |\n", res.Duration.Round(10*time.Millisecond))
	if res.Namespace != "" {
		fmt.Fprintf(&b, "| Namespace | `%s` |\n", res.Namespace)
	}
	if len(res.APIRequests) > 0 {
		fmt.Fprintf(&b, "| API requests | %s |\n", conformance.APIRequestSummary(res.APIRequests))
	}
	if res.WaitTime > 0 {
		fmt.Fprintf(&b, "| Waiting | %d waits, %s in all, %d requests besides watches |\n", res.Waits, res.WaitTime.Round(10*time.Millisecond), res.WaitRequests)
	}
	if run.Profile != nil {
		a := run.Profile.Spec.Accelerator
		if a.DevicePlugin() {
			fmt.Fprintf(&b, "| Accelerator model | %s (device plugin, extended resource `%s`) |\n", a.Model, a.ResourceName)
		} else {
			fmt.Fprintf(&b, "| Accelerator model | %s (DeviceClass `%s`, driver `%s`) |\n", a.Model, a.DeviceClass, a.DRADriver)
		}
	}
	b.WriteString("\n## Verdict\n\n")
	switch res.Status {
	case conformance.Passed:
		fmt.Fprintf(&b, "&check; **PASS**: every test of %s passed or was skipped with a reason.\n", res.TestName)
	case conformance.Failed:
		fmt.Fprintf(&b, "&cross; **FAIL**: %s\n", res.Reason)
	case conformance.NotApplicable:
		fmt.Fprintf(&b, "**N/A**: %s\n", res.Reason)
	default:
		fmt.Fprintf(&b, "&warning; **SKIPPED**: %s\n", res.Reason)
	}
	if tests := res.Tests(); len(tests) > 1 {
		b.WriteString("\n| Test | Result | Duration |\n|---|---|---|\n")
		for _, tr := range tests {
			fmt.Fprintf(&b, "| `%s` | %s | %.2fs |\n", tr.Name, verdictWord(tr.Status), seconds(tr.Duration))
		}
	}
	if len(res.Transcript) > 0 {
		b.WriteString("\n## Steps\n")
		current := ""
		for _, e := range res.Transcript {
			if e.Test != current {
				current = e.Test
				fmt.Fprintf(&b, "\n### %s\n\n", e.Test)
			}
			clock := e.Time.UTC().Format("15:04:05")
			switch e.Kind {
			case conformance.EntryStep:
				fmt.Fprintf(&b, "\n#### %s\n\n", e.Text)
			case conformance.EntryApply:
				fmt.Fprintf(&b, "%s applied **%s**:\n\n%s\n", clock, e.Text, fence("yaml", e.Body))
			case conformance.EntryObserve:
				if e.Body == "" {
					fmt.Fprintf(&b, "%s observed %s\n\n", clock, e.Text)
				} else {
					fmt.Fprintf(&b, "%s observed **%s**:\n\n%s\n", clock, e.Text, fence("", e.Body))
				}
			case conformance.EntryError:
				fmt.Fprintf(&b, "%s &cross; **%s**\n\n", clock, oneLine(e.Text))
				if strings.Contains(e.Text, "\n") {
					b.WriteString(fence("", e.Text) + "\n")
				}
			case conformance.EntrySkip:
				fmt.Fprintf(&b, "%s &warning; SKIPPED: %s\n\n", clock, e.Text)
			case conformance.EntryCleanup:
				fmt.Fprintf(&b, "%s cleanup: %s\n\n", clock, e.Text)
			case conformance.EntryShown:
				fmt.Fprintf(&b, "%s &check; shown: %s\n\n", clock, e.Text)
			default:
				fmt.Fprintf(&b, "%s %s\n\n", clock, e.Text)
			}
		}
	}
	if len(res.CleanupProblems) > 0 {
		b.WriteString("\n## Cleanup problems\n\n")
		for _, p := range res.CleanupProblems {
			fmt.Fprintf(&b, "- %s\n", p)
		}
	}
	return b.Bytes()
}

func verdictWord(s conformance.Status) string {
	switch s {
	case conformance.Passed:
		return "PASS"
	case conformance.Failed:
		return "FAIL"
	case conformance.NotApplicable:
		return "N/A"
	default:
		return "SKIP"
	}
}

// fence wraps text in a code fence longer than any backtick run inside.
func fence(lang, text string) string {
	ticks := "```"
	for strings.Contains(text, ticks) {
		ticks += "`"
	}
	return ticks + lang + "\n" + strings.TrimRight(text, "\n") + "\n" + ticks + "\n"
}

func oneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
