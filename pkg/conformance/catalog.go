// Package conformance holds the catalog of Kubernetes AI Conformance
// requirements: which requirement ids exist in each conformance version,
// their category and level (MUST or SHOULD), the test name kaic reports for
// each, and the official checklist documents that carry their descriptions.
//
// The built-in table only knows ids, categories and levels. Descriptions are
// read from the official checklist file for the version (Load), and a file
// that disagrees with the table is refused, so a change to the official
// checklist is noticed rather than silently followed.
package conformance

import (
	"fmt"
	"slices"
	"strings"
)

// Level is how strongly a requirement applies.
type Level string

// The levels used by the official checklists.
const (
	Must   Level = "MUST"
	Should Level = "SHOULD"
)

// Requirement is one item of the conformance checklist.
type Requirement struct {
	ID       string
	Category string // checklist key, e.g. "schedulingOrchestration"
	Level    Level
	// Description is the official wording, empty in a built-in catalog.
	Description string
}

// Catalog is the list of requirements of one conformance version, in the
// order of the official checklist.
type Catalog struct {
	Version      string // e.g. "1.36"
	Requirements []Requirement
	// Source says where the catalog came from: "builtin", a file path or a
	// URL, with a note when a cached copy was used offline.
	Source string
}

// Requirement returns the requirement with the given id.
func (c Catalog) Requirement(id string) (Requirement, bool) {
	i := slices.IndexFunc(c.Requirements, func(r Requirement) bool { return r.ID == id })
	if i < 0 {
		return Requirement{}, false
	}
	return c.Requirements[i], true
}

// BuiltinSource is the Source of a catalog returned by Builtin.
const BuiltinSource = "builtin"

// versions are the conformance versions kaic knows, oldest first; the
// columns of matrix follow this order.
var versions = []string{"1.33", "1.34", "1.35", "1.36", "1.37"}

// matrix is the requirement table of every known version, checked against
// the official checklist files by the tests. Rows are in checklist order;
// an empty level means the id is not part of that version.
var matrix = []struct {
	category string
	id       string
	levels   [5]Level // 1.33 1.34 1.35 1.36 1.37
}{
	{"accelerators", "dra_support", [...]Level{Should, Must, Must, "", ""}},
	{"accelerators", "driver_runtime_management", [...]Level{"", "", Should, Should, Should}},
	{"accelerators", "gpu_sharing", [...]Level{"", "", Should, Should, Should}},
	{"accelerators", "virtualized_accelerator", [...]Level{"", "", Should, Should, Should}},
	{"networking", "ai_inference", [...]Level{Must, Must, Must, Must, Must}},
	{"networking", "advanced_inference_ingress", [...]Level{"", "", "", Should, Should}},
	{"networking", "high_performance_networking", [...]Level{"", "", "", Should, Should}},
	{"networking", "disaggregated_inference", [...]Level{"", "", "", Should, Should}},
	{"schedulingOrchestration", "gang_scheduling", [...]Level{Must, Must, Must, Must, Must}},
	{"schedulingOrchestration", "cluster_autoscaling", [...]Level{Must, Must, Must, Must, Must}},
	{"schedulingOrchestration", "pod_autoscaling", [...]Level{Must, Must, Must, Must, Must}},
	{"observability", "accelerator_metrics", [...]Level{Must, Must, Must, Must, Must}},
	{"observability", "ai_service_metrics", [...]Level{Must, Must, Must, Must, Must}},
	{"security", "secure_accelerator_access", [...]Level{Must, Must, Must, Must, Must}},
	{"security", "workload_sandboxing", [...]Level{"", "", "", "", Should}},
	{"operator", "robust_controller", [...]Level{Must, Must, Must, Must, Must}},
}

// Versions returns the conformance versions kaic knows, oldest first.
func Versions() []string {
	return slices.Clone(versions)
}

// normalizeVersion accepts "1.36" and "v1.36" and returns the index of the
// version in versions.
func normalizeVersion(version string) (string, int, error) {
	v := strings.TrimPrefix(strings.TrimSpace(version), "v")
	i := slices.Index(versions, v)
	if i < 0 {
		return "", -1, fmt.Errorf("unknown conformance version %q (known: %s)", version, strings.Join(versions, ", "))
	}
	return v, i, nil
}

// Builtin returns the built-in catalog of a version: ids, categories and
// levels, without descriptions.
func Builtin(version string) (Catalog, error) {
	v, col, err := normalizeVersion(version)
	if err != nil {
		return Catalog{}, err
	}
	cat := Catalog{Version: v, Source: BuiltinSource}
	for _, row := range matrix {
		if row.levels[col] == "" {
			continue
		}
		cat.Requirements = append(cat.Requirements, Requirement{ID: row.id, Category: row.category, Level: row.levels[col]})
	}
	return cat, nil
}

// categories are the checklist category keys in checklist order, with the
// names shown to people.
var categories = []struct{ key, title string }{
	{"accelerators", "Accelerators"},
	{"networking", "Networking"},
	{"schedulingOrchestration", "Scheduling and orchestration"},
	{"observability", "Observability"},
	{"security", "Security"},
	{"operator", "Operator"},
}

// Categories returns the checklist category keys in checklist order.
func Categories() []string {
	keys := make([]string, len(categories))
	for i, c := range categories {
		keys[i] = c.key
	}
	return keys
}

// CategoryTitle returns the display name of a category key, for example
// "Scheduling and orchestration" for "schedulingOrchestration". An unknown
// key is returned unchanged.
func CategoryTitle(category string) string {
	for _, c := range categories {
		if c.key == category {
			return c.title
		}
	}
	return category
}

// testNames maps requirement ids to the Go test name under which kaic reports
// the check. upstream marks names used by the official AI conformance test
// suite, which the CNCF validator looks for in test artifacts; the others are
// kaic's own names, in the same style.
var testNames = map[string]struct {
	name     string
	upstream bool
}{
	"secure_accelerator_access": {"TestSecureAcceleratorAccess", true},
	"gang_scheduling":           {"TestGangScheduling", true},
	"cluster_autoscaling":       {"TestAcceleratorClusterAutoscaling", true},
	"ai_service_metrics":        {"TestAIServiceMetrics", true},
	"accelerator_metrics":       {"TestAcceleratorPerformanceMetrics", true},
	"robust_controller":         {"TestRobustCRDControllerOperation", true},
	"workload_sandboxing":       {"TestWorkloadSandboxing", true},
	"driver_runtime_management": {"TestAcceleratorDriverRuntimeManagement", true},

	"dra_support":                 {"TestDRASupport", false},
	"ai_inference":                {"TestAIInference", false},
	"pod_autoscaling":             {"TestPodAutoscaling", false},
	"gpu_sharing":                 {"TestGPUSharing", false},
	"virtualized_accelerator":     {"TestVirtualizedAccelerator", false},
	"advanced_inference_ingress":  {"TestAdvancedInferenceIngress", false},
	"high_performance_networking": {"TestHighPerformanceNetworking", false},
	"disaggregated_inference":     {"TestDisaggregatedInference", false},
}

// TestName returns the Go test name reported for a requirement id: the
// official suite's name where it has one, a kaic name otherwise. It returns
// "" for an id kaic does not know.
func TestName(id string) string {
	return testNames[id].name
}

// IsUpstreamTest reports whether TestName(id) is the name of a test in the
// official AI conformance test suite.
func IsUpstreamTest(id string) bool {
	return testNames[id].upstream
}
