package evidence

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/profile"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// checklistsDir is the directory of the official checklist files.
func checklistsDir(t testing.TB) string { return testenv.OfficialChecklists(t) }

func officialTemplate(t testing.TB, version string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(checklistsDir(t), conformance.ChecklistFileName(version)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var t0 = time.Date(2026, 9, 1, 10, 0, 0, 0, time.UTC)

func boolPtr(b bool) *bool { return &b }

// testProfile is a profile with complete product metadata; simulated
// selects the example accelerator model.
func testProfile(simulated bool) *profile.Profile {
	p := &profile.Profile{}
	p.Metadata.Name = "acme-ai"
	p.Spec.KubernetesVersion = "v1.37.0"
	p.Spec.ConformanceVersion = "1.37"
	p.Spec.Output.ProductDir = "acme-ai"
	p.Spec.Accelerator = profile.Accelerator{Model: "nvidia", DRADriver: "gpu.nvidia.com", DeviceClass: "gpu.nvidia.com", Simulated: boolPtr(false)}
	if simulated {
		p.Spec.Accelerator = profile.Accelerator{Model: "example", DRADriver: "gpu.example.com", DeviceClass: "gpu.example.com", Simulated: boolPtr(true)}
	}
	p.Spec.Product = profile.Product{
		PlatformName:        "Acme AI Platform",
		PlatformVersion:     "2.4.0",
		VendorName:          "Acme Corporation",
		WebsiteURL:          "https://acme.example/ai",
		RepoURL:             "https://github.com/acme/ai-platform",
		DocumentationURL:    "https://acme.example/ai/docs",
		ProductLogoURL:      "https://acme.example/logo.svg",
		Description:         "Acme's managed Kubernetes for AI workloads.",
		ContactEmailAddress: "conformance@acme.example",
		K8sConformanceURL:   "https://github.com/cncf/k8s-conformance/tree/master/v1.37/acme-ai",
	}
	return p
}

// passed is a passing result with the given subtests, which start one
// second apart.
func passed(id string, at time.Duration, subtests ...string) conformance.Result {
	cat, _ := conformance.Builtin("1.37")
	req, _ := cat.Requirement(id)
	name := conformance.TestName(id)
	start := t0.Add(at)
	root := &conformance.TestRecord{Name: name, Status: conformance.Passed, Start: start, Duration: time.Duration(len(subtests)+1) * time.Second,
		Output: []string{"STEP: check " + id}}
	transcript := []conformance.Entry{{Time: start, Test: name, Kind: conformance.EntryStep, Text: "check " + id}}
	for i, s := range subtests {
		sub := &conformance.TestRecord{Name: name + "/" + s, Status: conformance.Passed, Start: start.Add(time.Duration(i) * time.Second),
			Duration: 1234 * time.Millisecond, Output: []string{"observed " + s + ": ok"}}
		root.Subtests = append(root.Subtests, sub)
		transcript = append(transcript,
			conformance.Entry{Time: sub.Start, Test: sub.Name, Kind: conformance.EntryApply, Text: "Pod ns/" + s, Body: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: " + s + "\n"},
			conformance.Entry{Time: sub.Start, Test: sub.Name, Kind: conformance.EntryObserve, Text: s, Body: "phase: Running\nnode: node-1"})
	}
	return conformance.Result{ID: id, TestName: name, Category: req.Category, Level: req.Level, Status: conformance.Passed,
		Namespace: "kaic-" + id, Start: start, Duration: root.Duration, Test: root, Transcript: transcript}
}

func failed(id string, at time.Duration, sub, why string) conformance.Result {
	r := passed(id, at, "Positive", sub)
	r.Status = conformance.Failed
	r.Test.Status = conformance.Failed
	r.Test.Subtests[1].Status = conformance.Failed
	r.Test.Subtests[1].Output = append(r.Test.Subtests[1].Output, why)
	r.Reason = r.TestName + "/" + sub + ": " + why
	r.Transcript = append(r.Transcript, conformance.Entry{Time: r.Start.Add(time.Second), Test: r.TestName + "/" + sub, Kind: conformance.EntryError, Text: why})
	return r
}

func notRun(id string, status conformance.Status, reason string) conformance.Result {
	cat, _ := conformance.Builtin("1.37")
	req, _ := cat.Requirement(id)
	name := conformance.TestName(id)
	line := "SKIP: " + reason
	if status == conformance.NotApplicable {
		line = "N/A: " + reason
	}
	return conformance.Result{ID: id, TestName: name, Category: req.Category, Level: req.Level, Status: status, Reason: reason, Start: t0,
		Test: &conformance.TestRecord{Name: name, Status: conformance.Skipped, Start: t0, Output: []string{line}}}
}

// allMustPass is a 1.37 run in which every MUST passed,
// cluster_autoscaling is N/A and the SHOULDs were not verified.
func allMustPass(simulated bool) *Run {
	p := testProfile(simulated)
	results := []conformance.Result{
		passed("ai_inference", 0, "WeightedSplit", "HeaderRoute"),
		shown(passed("gang_scheduling", 10*time.Second, "Positive", "Negative"),
			"a 3-pod Job was admitted all together", "a 4-pod Job beyond the quota was held back whole"),
		notRun("cluster_autoscaling", conformance.NotApplicable, "The platform has no cluster autoscaler."),
		passed("pod_autoscaling", 20*time.Second, "ScaleUp", "ScaleDown"),
		shown(passed("accelerator_metrics", 30*time.Second), "per-device utilization and memory read from the exporter for every device"),
		passed("ai_service_metrics", 40*time.Second, "Query"),
		passed("secure_accelerator_access", 50*time.Second, "PositiveAccessTest", "NegativeIsolationTest"),
		passed("robust_controller", 60*time.Second, "OperatorPodsRunning", "WebhookRejectsInvalidCR"),
		notRun("gpu_sharing", conformance.Skipped, "kaic has no check for this requirement yet"),
		notRun("virtualized_accelerator", conformance.NotApplicable, "No hypervisor layer."),
	}
	return &Run{Version: "1.37", Profile: p, Results: results, KaicVersion: "v0.1.0-test", Components: []Component{
		{Name: "kueue", Version: "0.20.0", Provides: []string{"gang-scheduling"}},
		{Name: "kuberay-operator", Version: "1.6.0", Provides: []string{"ai-operator"}},
		{Name: "cert-manager", Version: "v1.20.2", Provides: []string{"certificates"}},
	}}
}

// shown adds what the check showed to a result, as T.Shown records it.
func shown(r conformance.Result, phrases ...string) conformance.Result {
	for _, p := range phrases {
		r.Shown = append(r.Shown, p)
		r.Transcript = append(r.Transcript, conformance.Entry{Time: r.Start, Test: r.TestName, Kind: conformance.EntryShown, Text: p})
	}
	return r
}

// mixed is a simulated 1.37 run with a failed MUST.
func mixed() *Run {
	run := allMustPass(true)
	run.Results[1] = failed("gang_scheduling", 10*time.Second, "Negative", "pod neg-job-0 reached Running although the job does not fit")
	return run
}
