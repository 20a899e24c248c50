package evidence

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// File names of the evidence in the product directory.
const (
	ProductFile    = "PRODUCT.yaml"
	JUnitFile      = "junit.xml"
	ResultsFile    = "results.json"
	E2ELogFile     = "e2e.log"
	ReportFile     = "report.html"
	TestsDir       = "tests"
	TranscriptFile = "output.md"
)

// Package is the package name the go test artifacts report the checks
// under.
const Package = "kaic.dev/conformance"

// Run is everything the writers need: the official checklist of the
// version, the profile (product metadata, accelerator model) and the
// results.
type Run struct {
	// Version is the conformance version, e.g. "1.37".
	Version string
	// Template is the official checklist of Version, as published.
	Template []byte
	Profile  *profile.Profile
	// Results are the requirement results, in any order.
	Results []conformance.Result
	// KaicVersion is recorded in the artifacts.
	KaicVersion string
	// Components are the stack components the run installed: PRODUCT.yaml's
	// notes name those that serve a requirement.
	Components []Component
}

// Component is a stack component a run installed.
type Component struct {
	Name string
	// Version is the chart's (or the manifests') version, when known.
	Version string
	// Provides are the capabilities the component brings (its spec.provides).
	Provides []string
}

// ProductDir is the directory of the run's evidence inside out:
// <out>/v<X.Y>/<product-dir>.
func (r *Run) ProductDir(out string) string {
	return filepath.Join(out, "v"+r.Version, r.productDirName())
}

func (r *Run) productDirName() string {
	if r.Profile != nil && r.Profile.Spec.Output.ProductDir != "" {
		return r.Profile.Spec.Output.ProductDir
	}
	if r.Profile != nil {
		return r.Profile.Metadata.Name
	}
	return "product"
}

// Simulated reports whether the run's accelerators are simulated.
func (r *Run) Simulated() bool { return r.Profile != nil && r.Profile.IsSimulated() }

// SimulatedNotice is the sentence every artifact of a simulated run
// carries.
func (r *Run) SimulatedNotice() string {
	model := ""
	if r.Profile != nil {
		a := r.Profile.Spec.Accelerator
		model = fmt.Sprintf(" (accelerator model %q, DRA driver %s)", a.Model, a.DRADriver)
		if a.DevicePlugin() {
			model = fmt.Sprintf(" (accelerator model %q, device plugin resource %s)", a.Model, a.ResourceName)
		}
	}
	return "SIMULATED ACCELERATORS" + model + ": these results demonstrate the mechanisms on simulated devices; they are not certification evidence."
}

// ordered returns the results in the order of the version's catalog,
// unknown ids last.
func (r *Run) ordered() []conformance.Result {
	cat, _ := conformance.Builtin(r.Version)
	index := map[string]int{}
	for i, req := range cat.Requirements {
		index[req.ID] = i
	}
	out := slices.Clone(r.Results)
	slices.SortStableFunc(out, func(a, b conformance.Result) int {
		ia, oka := index[a.ID]
		ib, okb := index[b.ID]
		switch {
		case oka && okb:
			return ia - ib
		case oka:
			return -1
		case okb:
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// span returns the earliest start and latest end of the results.
func (r *Run) span() (time.Time, time.Time) {
	var start, end time.Time
	for _, res := range r.Results {
		if start.IsZero() || res.Start.Before(start) {
			start = res.Start
		}
		if e := res.Start.Add(res.Duration); e.After(end) {
			end = e
		}
	}
	return start, end
}

// transcriptPath is the transcript of a test, relative to the product
// directory.
func transcriptPath(testName string) string {
	return TestsDir + "/" + strings.ReplaceAll(testName, "/", "_") + "/" + TranscriptFile
}
