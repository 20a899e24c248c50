package evidence

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/kaic-dev/kaic/pkg/atomicfile"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// Written says what Write produced.
type Written struct {
	// Dir is the product directory, <out>/v<X.Y>/<product-dir>.
	Dir string
	// Files are the files written, relative to Dir.
	Files []string
	// Warnings are problems a submission would be rejected for that the
	// profile can fix, such as placeholder metadata.
	Warnings []string
}

// Write writes every artifact of run into run.ProductDir(out), replacing
// earlier ones (transcripts of tests no longer present are removed).
func Write(out string, run *Run) (*Written, error) {
	dir := run.ProductDir(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("writing evidence: %w", err)
	}
	w := &Written{Dir: dir}
	if run.Simulated() {
		w.Warnings = append(w.Warnings, run.SimulatedNotice())
	}
	product, warnings, err := Product(run)
	if err != nil {
		return nil, err
	}
	w.Warnings = append(w.Warnings, warnings...)
	junit, err := JUnit(run)
	if err != nil {
		return nil, err
	}
	results, err := ResultsJSON(run)
	if err != nil {
		return nil, err
	}
	report, err := Report(run)
	if err != nil {
		return nil, err
	}
	files := []struct {
		name string
		data []byte
	}{
		{ProductFile, product},
		{JUnitFile, junit},
		{ResultsFile, results},
		{E2ELogFile, E2ELog(run)},
		{ReportFile, report},
	}
	if err := os.RemoveAll(filepath.Join(dir, TestsDir)); err != nil {
		return nil, fmt.Errorf("writing evidence: %w", err)
	}
	for _, res := range run.ordered() {
		files = append(files, struct {
			name string
			data []byte
		}{transcriptPath(res.TestName), Transcript(run, res)})
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, filepath.FromSlash(f.name)), f.data); err != nil {
			return nil, fmt.Errorf("writing evidence: %w", err)
		}
		w.Files = append(w.Files, f.name)
	}
	return w, nil
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o644)
}

// Regenerate writes the evidence of the run directory out from the results
// saved in out/results, the profile p and the official checklist of the
// profile's conformance version read from src.
func Regenerate(ctx context.Context, out string, p *profile.Profile, src conformance.Source, kaicVersion string, components []Component) (*Written, error) {
	results, err := conformance.LoadResults(filepath.Join(out, conformance.ResultsDirName))
	if err != nil {
		return nil, err
	}
	if len(results) == 0 {
		return nil, fmt.Errorf("%s holds no results: run the verify phase first", filepath.Join(out, conformance.ResultsDirName))
	}
	version := p.Spec.ConformanceVersion
	template, _, err := conformance.ReadChecklist(ctx, version, src)
	if err != nil {
		return nil, fmt.Errorf("%w (offline? pass the directory of the official checklists)", err)
	}
	return Write(out, &Run{Version: version, Template: template, Profile: p, Results: results, KaicVersion: kaicVersion, Components: components})
}
