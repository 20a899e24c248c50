package evidence

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kaic-dev/kaic/pkg/conformance"
)

// PRODUCT.yaml status values.
const (
	StatusImplemented          = "Implemented"
	StatusNotImplemented       = "Not Implemented"
	StatusPartiallyImplemented = "Partially Implemented"
	StatusNA                   = "N/A"
)

// Product fills the official checklist of the run's version: id,
// description and level stay as published; status, evidence and notes
// come from the results; metadata comes from the profile. It returns the
// document and warnings for metadata still holding placeholders.
func Product(run *Run) ([]byte, []string, error) {
	cl, err := conformance.ParseChecklist(run.Template)
	if err != nil {
		return nil, nil, fmt.Errorf("official checklist v%s: %w", run.Version, err)
	}
	results := map[string]conformance.Result{}
	for _, r := range run.Results {
		results[r.ID] = r
	}
	for ci := range cl.Spec {
		for ii := range cl.Spec[ci].Items {
			item := &cl.Spec[ci].Items[ii]
			res, ok := results[item.ID]
			fillItem(item, res, ok, run)
		}
	}
	warnings := fillMetadata(cl, run)
	data, err := cl.Marshal()
	if err != nil {
		return nil, nil, err
	}
	return data, warnings, nil
}

func fillItem(item *conformance.ChecklistItem, res conformance.Result, ok bool, run *Run) {
	var notes []string
	item.Evidence = nil
	switch {
	case !ok:
		item.Status = ""
		notes = append(notes, "Not verified: the run holds no result for this requirement (it ended before its check ran).")
	case res.Status == conformance.Passed:
		item.Status = StatusImplemented
		item.Evidence = []string{"file://" + JUnitFile + "#" + res.TestName, transcriptPath(res.TestName)}
		if what := platformNote(item.ID, res, run.Components); what != "" {
			notes = append(notes, what)
		}
		notes = append(notes, fmt.Sprintf("Verified by kaic (%s%s).", res.TestName, subtestSummary(res)))
	case res.Status == conformance.Failed:
		item.Status = StatusNotImplemented
		item.Evidence = []string{transcriptPath(res.TestName)}
		notes = append(notes, sentence(fmt.Sprintf("kaic's check %s failed: %s", res.TestName, res.Reason)))
	case res.Status == conformance.NotApplicable:
		item.Status = StatusNA
		notes = append(notes, sentence(res.Reason))
	default: // skipped
		item.Status = ""
		notes = append(notes, sentence("Not verified by kaic: "+res.Reason))
	}
	if run.Simulated() {
		notes = append(notes, run.SimulatedNotice())
	}
	item.Notes = strings.Join(notes, " ")
}

// sentence ends s with a full stop unless it already ends a sentence, so
// notes joined with spaces read as sentences.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || strings.HasSuffix(s, ".") || strings.HasSuffix(s, "!") || strings.HasSuffix(s, "?") {
		return s
	}
	return s + "."
}

// requirementCapabilities are the capabilities (stack components'
// spec.provides) through which a platform meets each requirement.
var requirementCapabilities = map[string][]string{
	"dra_support":                {"dra-driver"},
	"secure_accelerator_access":  {"dra-driver"},
	"gpu_sharing":                {"dra-driver"},
	"driver_runtime_management":  {"dra-driver", "driver-management"},
	"accelerator_metrics":        {"accelerator-metrics", "monitoring"},
	"ai_service_metrics":         {"monitoring"},
	"pod_autoscaling":            {"custom-metrics", "monitoring"},
	"gang_scheduling":            {"gang-scheduling"},
	"robust_controller":          {"ai-operator", "ai-operator-webhook"},
	"ai_inference":               {"gateway", "gateway-class"},
	"advanced_inference_ingress": {"gateway", "gateway-class"},
	"workload_sandboxing":        {"sandbox-runtime"},
}

// platformNote says what on the platform met a requirement: the installed
// components that bring its capabilities, with their versions, and what the
// check showed them do ("kueue 0.20.0: a 3-pod Job was admitted all
// together; …."). Empty when the run knows neither.
func platformNote(id string, res conformance.Result, components []Component) string {
	var names []string
	for _, c := range components {
		if slices.ContainsFunc(c.Provides, func(p string) bool { return slices.Contains(requirementCapabilities[id], p) }) {
			name := c.Name
			if c.Version != "" {
				name += " " + c.Version
			}
			names = append(names, name)
		}
	}
	shown := strings.Join(res.Shown, "; ")
	switch {
	case len(names) > 0 && shown != "":
		return sentence(strings.Join(names, ", ") + ": " + shown)
	case len(names) > 0:
		return sentence("Served by " + strings.Join(names, ", "))
	case shown != "":
		return sentence(strings.ToUpper(shown[:1]) + shown[1:])
	}
	return ""
}

// subtestSummary says how many subtests passed, e.g. ", 5 of 6 subtests
// passed, 1 skipped".
func subtestSummary(res conformance.Result) string {
	tests := res.Tests()
	if len(tests) <= 1 {
		return ""
	}
	var passed, skipped int
	for _, tr := range tests[1:] {
		switch tr.Status {
		case conformance.Passed:
			passed++
		case conformance.Skipped:
			skipped++
		}
	}
	s := fmt.Sprintf(", %d of %d subtests passed", passed, len(tests)-1)
	if skipped > 0 {
		s += fmt.Sprintf(", %d skipped", skipped)
	}
	return s
}

// metadataFields are PRODUCT.yaml's metadata keys, in template order.
var metadataFields = []string{
	"kubernetesVersion", "platformName", "platformVersion", "vendorName", "websiteUrl", "repoUrl",
	"documentationUrl", "productLogoUrl", "description", "contactEmailAddress", "k8sConformanceUrl",
}

func fillMetadata(cl *conformance.Checklist, run *Run) []string {
	var values map[string]string
	if run.Profile != nil {
		p := run.Profile.Spec.Product
		values = map[string]string{
			"kubernetesVersion":   kubernetesMinorOf(run.Profile.Spec.KubernetesVersion),
			"platformName":        p.PlatformName,
			"platformVersion":     p.PlatformVersion,
			"vendorName":          p.VendorName,
			"websiteUrl":          p.WebsiteURL,
			"repoUrl":             p.RepoURL,
			"documentationUrl":    p.DocumentationURL,
			"productLogoUrl":      p.ProductLogoURL,
			"description":         strings.TrimSpace(p.Description),
			"contactEmailAddress": p.ContactEmailAddress,
			"k8sConformanceUrl":   p.K8sConformanceURL,
		}
	}
	var warnings []string
	for _, key := range metadataFields {
		v := values[key]
		cur, present := cl.Meta(key)
		switch {
		case v != "":
			cl.SetMeta(key, v)
		case key == "repoUrl":
			if present {
				cl.SetMeta(key, "") // optional: an empty value, not the template's placeholder
			}
		case !present || cur == "":
			cl.SetMeta(key, "["+key+"]")
		}
		if key == "repoUrl" {
			continue
		}
		if final, _ := cl.Meta(key); isPlaceholder(final) {
			warnings = append(warnings, fmt.Sprintf("PRODUCT.yaml metadata.%s is the placeholder %q: set spec.product.%s in the profile (the CNCF validator rejects placeholders)", key, final, key))
		}
	}
	return warnings
}

// isPlaceholder reports whether a metadata value is empty or of the form
// "[...]", which the CNCF validator rejects.
func isPlaceholder(v string) bool {
	v = strings.TrimSpace(v)
	return v == "" || (strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]"))
}

// kubernetesMinorOf writes a Kubernetes version the way the checklist
// template and accepted submissions do: v1.37, not v1.37.0.
func kubernetesMinorOf(v string) string {
	if m := kubernetesMinor.FindStringSubmatch(strings.TrimSpace(v)); m != nil {
		return "v" + m[1]
	}
	return v
}
