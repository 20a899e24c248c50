package evidence

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/kaic-dev/kaic/pkg/conformance"
)

// writeGood writes the evidence of a run in which every MUST passed and
// returns the path of its PRODUCT.yaml.
func writeGood(t *testing.T, run *Run) string {
	t.Helper()
	run.Template = officialTemplate(t, run.Version)
	written, err := Write(t.TempDir(), run)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(written.Dir, ProductFile)
}

func validate(t *testing.T, product string, opts ValidateOptions) *Validation {
	t.Helper()
	v, err := Validate(t.Context(), product, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestValidateAcceptsKaicsOwnEvidence(t *testing.T) {
	product := writeGood(t, allMustPass(false))
	// Cite the other two artifacts too, so all three parsers are exercised.
	editProduct(t, product, func(cl *conformance.Checklist) {
		it := cl.Item("gang_scheduling")
		it.Evidence = append(it.Evidence, "file://results.json#TestGangScheduling", "e2e.log", "v1.37/acme-ai/junit.xml")
	})
	v := validate(t, product, ValidateOptions{})
	if !v.OK() {
		t.Fatalf("a run where every MUST passed is rejected: %v", v.Errors)
	}
	if v.Version != "1.37" {
		t.Errorf("version %q", v.Version)
	}
	var warned bool
	for _, w := range v.Warnings {
		warned = warned || strings.Contains(w.String(), "spec.schedulingOrchestration.cluster_autoscaling: MUST requirement is N/A")
	}
	if !warned {
		t.Errorf("no warning for the conditional MUST reported N/A: %v", v.Warnings)
	}
}

func TestValidateRejectsAFailedMust(t *testing.T) {
	run := allMustPass(false)
	run.Results[1] = failed("gang_scheduling", 0, "Negative", "a pod ran")
	v := validate(t, writeGood(t, run), ValidateOptions{})
	wantFindings(t, v, []string{
		`spec.schedulingOrchestration.gang_scheduling: MUST requirement has status "Not Implemented"; it must be "Implemented"`,
		"junit.xml: test TestGangScheduling failed",
		"junit.xml: test TestGangScheduling/Negative failed",
	})
}

func TestValidateSimulated(t *testing.T) {
	product := writeGood(t, allMustPass(true))
	v := validate(t, product, ValidateOptions{})
	wantFindings(t, v, []string{"evidence: the evidence comes from simulated accelerators (junit.xml property kaic.simulated=true, notes of"})
	if v := validate(t, product, ValidateOptions{AllowSimulated: true}); !v.OK() {
		t.Errorf("--allow-simulated still rejects: %v", v.Errors)
	}
}

// TestValidateBrokenSubmissions breaks a good submission one way at a time;
// each must be rejected with a precise message.
func TestValidateBrokenSubmissions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, product string)
		want   []string
	}{{
		name: "missing id",
		break_: func(t *testing.T, p string) {
			editProduct(t, p, func(cl *conformance.Checklist) { dropItem(cl, "gang_scheduling") })
		},
		want: []string{"spec.schedulingOrchestration.gang_scheduling: missing requirement id gang_scheduling"},
	}, {
		name: "missing category",
		break_: func(t *testing.T, p string) {
			editProduct(t, p, func(cl *conformance.Checklist) {
				for i := range cl.Spec {
					if cl.Spec[i].Name == "operator" {
						cl.Spec = append(cl.Spec[:i], cl.Spec[i+1:]...)
						return
					}
				}
			})
		},
		want: []string{"spec.operator: missing category (needed for robust_controller)"},
	}, {
		name:   "MUST not Implemented",
		break_: setItem("ai_inference", func(it *conformance.ChecklistItem) { it.Status = StatusPartiallyImplemented }),
		want:   []string{`spec.networking.ai_inference: MUST requirement has status "Partially Implemented"; it must be "Implemented"`},
	}, {
		name:   "MUST N/A other than the conditional one",
		break_: setItem("pod_autoscaling", func(it *conformance.ChecklistItem) { it.Status, it.Notes = StatusNA, "no HPA" }),
		want:   []string{`spec.schedulingOrchestration.pod_autoscaling: MUST requirement has status "N/A"`},
	}, {
		name:   "N/A without notes",
		break_: setItem("virtualized_accelerator", func(it *conformance.ChecklistItem) { it.Notes = "" }),
		want:   []string{"spec.accelerators.virtualized_accelerator: status N/A needs notes explaining why"},
	}, {
		name:   "conditional MUST N/A without notes",
		break_: setItem("cluster_autoscaling", func(it *conformance.ChecklistItem) { it.Notes = " " }),
		want: []string{
			`spec.schedulingOrchestration.cluster_autoscaling: MUST requirement has status "N/A"`,
			"spec.schedulingOrchestration.cluster_autoscaling: status N/A needs notes explaining why",
		},
	}, {
		name:   "unknown status",
		break_: setItem("gpu_sharing", func(it *conformance.ChecklistItem) { it.Status = "Done" }),
		want:   []string{`spec.accelerators.gpu_sharing: status "Done" is not one of`},
	}, {
		name: "evidence file missing",
		break_: func(t *testing.T, p string) {
			if err := os.RemoveAll(filepath.Join(filepath.Dir(p), "tests", "TestAIInference")); err != nil {
				t.Fatal(err)
			}
		},
		want: []string{"spec.networking.ai_inference: evidence file tests/TestAIInference/output.md does not exist"},
	}, {
		name:   "evidence names a missing test",
		break_: setItem("ai_inference", func(it *conformance.ChecklistItem) { it.Evidence[0] = "file://junit.xml#TestNoSuchThing" }),
		want:   []string{"spec.networking.ai_inference: junit.xml has no test TestNoSuchThing"},
	}, {
		name: "evidence names a failing test",
		break_: replaceIn(JUnitFile, `name="TestAIInference/HeaderRoute" time="1.234">`,
			`name="TestAIInference/HeaderRoute" time="1.234"><failure message="route missing">x</failure>`),
		want: []string{
			"junit.xml: test TestAIInference/HeaderRoute failed",
			"spec.networking.ai_inference: test TestAIInference failed in junit.xml",
		},
	}, {
		name:   "subtest failure under a passing parent in results.json",
		break_: citeAndReplace("ai_service_metrics", "file://results.json#TestAIServiceMetrics", ResultsFile, `"Action":"pass","Package":"kaic.dev/conformance","Test":"TestAIServiceMetrics/Query"`, `"Action":"fail","Package":"kaic.dev/conformance","Test":"TestAIServiceMetrics/Query"`),
		want: []string{
			"results.json: test TestAIServiceMetrics/Query failed",
			"spec.observability.ai_service_metrics: test TestAIServiceMetrics failed in results.json",
		},
	}, {
		name:   "failing test in e2e.log",
		break_: citeAndReplace("robust_controller", "e2e.log", E2ELogFile, "--- PASS: TestRobustCRDControllerOperation/WebhookRejectsInvalidCR", "--- FAIL: TestRobustCRDControllerOperation/WebhookRejectsInvalidCR"),
		want:   []string{"e2e.log: test TestRobustCRDControllerOperation/WebhookRejectsInvalidCR failed"},
	}, {
		name: "skipped test behind an Implemented requirement",
		break_: replaceIn(JUnitFile, `name="TestAcceleratorPerformanceMetrics" time="1.000">`,
			`name="TestAcceleratorPerformanceMetrics" time="1.000"><skipped message="no endpoint"></skipped>`),
		want: []string{"spec.observability.accelerator_metrics: test TestAcceleratorPerformanceMetrics was skipped in junit.xml, but the requirement is Implemented"},
	}, {
		name:   "malformed XML",
		break_: replaceIn(JUnitFile, "</testsuites>", "</testsuite"),
		want:   []string{"junit.xml: cannot be parsed: malformed XML"},
	}, {
		name:   "malformed JSON",
		break_: citeAndReplace("ai_service_metrics", "results.json", ResultsFile, `{"Time":"2026-09-01T10:00:00Z","Action":"output"`, `{"Time":2026,"Action":"output"`),
		want:   []string{"results.json: cannot be parsed: line 2 is not a go test -json event"},
	}, {
		name: "JUnit with another root",
		break_: func(t *testing.T, p string) {
			writeFile(t, filepath.Join(filepath.Dir(p), JUnitFile), `<report><testcase name="x"/></report>`)
		},
		want: []string{"junit.xml: cannot be parsed: root element is <report>, want <testsuites> or <testsuite>"},
	}, {
		name:   "evidence escaping the product directory",
		break_: setItem("ai_inference", func(it *conformance.ChecklistItem) { it.Evidence = []string{"../../secrets.txt"} }),
		want:   []string{"spec.networking.ai_inference: evidence ../../secrets.txt escapes the product directory"},
	}, {
		name: "evidence in another product's directory",
		break_: setItem("ai_inference", func(it *conformance.ChecklistItem) {
			it.Evidence = []string{"file://v1.37/other-vendor/junit.xml#TestAIInference"}
		}),
		want: []string{"spec.networking.ai_inference: evidence file://v1.37/other-vendor/junit.xml#TestAIInference points into another product's directory (other-vendor)"},
	}, {
		name: "evidence in another version's directory of the same product",
		break_: setItem("ai_inference", func(it *conformance.ChecklistItem) {
			it.Evidence = []string{"file://v1.36/acme-ai/junit.xml#TestAIInference"}
		}),
		want: []string{"spec.networking.ai_inference: evidence file://v1.36/acme-ai/junit.xml#TestAIInference points into another version's directory (v1.36, this submission is v1.37)"},
	}, {
		name: "evidence that is a symbolic link",
		break_: func(t *testing.T, p string) {
			dir := filepath.Dir(p)
			if err := os.Symlink("/etc/hostname", filepath.Join(dir, "host.txt")); err != nil {
				t.Fatal(err)
			}
			setItem("ai_inference", func(it *conformance.ChecklistItem) { it.Evidence = []string{"host.txt"} })(t, p)
		},
		want: []string{"spec.networking.ai_inference: evidence file host.txt: is a symbolic link"},
	}, {
		name: "evidence that is a FIFO",
		break_: func(t *testing.T, p string) {
			if err := syscall.Mkfifo(filepath.Join(filepath.Dir(p), "pipe.log"), 0o600); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
			setItem("ai_inference", func(it *conformance.ChecklistItem) { it.Evidence = []string{"pipe.log"} })(t, p)
		},
		want: []string{"spec.networking.ai_inference: evidence file pipe.log: is not a regular file"},
	}, {
		name: "evidence larger than kaic reads",
		break_: func(t *testing.T, p string) {
			f, err := os.Create(filepath.Join(filepath.Dir(p), "huge.log"))
			if err != nil {
				t.Fatal(err)
			}
			// A sparse file: the size is checked before anything is read.
			if err := f.Truncate(MaxEvidenceBytes + 1); err != nil {
				t.Fatal(err)
			}
			_ = f.Close()
			setItem("ai_inference", func(it *conformance.ChecklistItem) { it.Evidence = []string{"huge.log"} })(t, p)
		},
		want: []string{"spec.networking.ai_inference: evidence file huge.log: is 67108865 bytes, over the 64 MiB kaic reads"},
	}, {
		// Nesting that would make a parser recurse without end is refused
		// at a fixed depth, in the YAML and in the test artifacts alike.
		name: "PRODUCT.yaml nested beyond any checklist",
		break_: func(t *testing.T, p string) {
			writeFile(t, p, "metadata:\n  description: "+strings.Repeat("[", 100000)+strings.Repeat("]", 100000)+"\n")
		},
		want: []string{"PRODUCT.yaml: parsing checklist: yaml: line 2: exceeded max depth"},
	}, {
		// The test reports are read as a stream of tokens: deep nesting
		// is read through like anything else and holds no test.
		name: "junit.xml nested beyond any report",
		break_: func(t *testing.T, p string) {
			writeFile(t, filepath.Join(filepath.Dir(p), JUnitFile), "<testsuites>"+strings.Repeat("<a>", 100000)+strings.Repeat("</a>", 100000)+"</testsuites>")
		},
		want: []string{"spec.networking.ai_inference: junit.xml has no test TestAIInference"},
	}, {
		name:   "logo in a format the instructions do not ask for",
		break_: editMeta("productLogoUrl", "https://acme.example/logo.png?v=2"),
		want:   []string{`metadata.productLogoUrl: "https://acme.example/logo.png?v=2" is not an SVG, EPS or AI file`},
	}, {
		name:   "placeholder in an optional metadata field",
		break_: editMeta("repoUrl", "[Repository URL]"),
		want:   []string{`metadata.repoUrl: is the placeholder "[Repository URL]"`},
	}, {
		name: "metadata value that is not a string",
		break_: func(t *testing.T, p string) {
			editProduct(t, p, func(cl *conformance.Checklist) { cl.SetMeta("platformVersion", "PLATFORM-VERSION") })
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			raw := regexp.MustCompile(`(?m)^(\s*platformVersion:).*$`).ReplaceAllString(string(data), "${1} 2.4")
			writeFile(t, p, raw)
		},
		want: []string{"metadata.platformVersion: 2.4 is not a string (YAML reads it as float): quote it"},
	}, {
		name: "results.json with a failure outside any test",
		break_: func(t *testing.T, p string) {
			f := filepath.Join(filepath.Dir(p), ResultsFile)
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, f, string(data)+`{"Action":"fail","Package":"kaic/conformance"}`+"\n")
			setItem("ai_inference", func(it *conformance.ChecklistItem) { it.Evidence = []string{"results.json"} })(t, p)
		},
		want: []string{"results.json: reports a failure outside any test"},
	}, {
		name: "JUnit file with no test results",
		break_: func(t *testing.T, p string) {
			writeFile(t, filepath.Join(filepath.Dir(p), JUnitFile), `<testsuites></testsuites>`)
		},
		want: []string{"junit.xml: holds no test results"},
	}, {
		name: "e2e.log with no test results",
		break_: func(t *testing.T, p string) {
			writeFile(t, filepath.Join(filepath.Dir(p), E2ELogFile), "ok  \tkaic\t1.2s\n")
			setItem("ai_inference", func(it *conformance.ChecklistItem) { it.Evidence = []string{"e2e.log"} })(t, p)
		},
		want: []string{"e2e.log: holds no test results"},
	}, {
		name: "artifact names are matched without regard to case",
		break_: func(t *testing.T, p string) {
			writeFile(t, filepath.Join(filepath.Dir(p), "E2E.log"), "--- FAIL: TestAIInference (1.00s)\n")
			setItem("ai_inference", func(it *conformance.ChecklistItem) { it.Evidence = []string{"E2E.log"} })(t, p)
		},
		want: []string{"E2E.log: test TestAIInference failed"},
	}, {
		name:   "placeholder metadata",
		break_: editMeta("vendorName", "[Vendor Name]"),
		want:   []string{`metadata.vendorName: is the placeholder "[Vendor Name]"`},
	}, {
		name:   "empty metadata",
		break_: editMeta("description", ""),
		want:   []string{"metadata.description: is empty"},
	}, {
		name: "missing metadata",
		break_: func(t *testing.T, p string) {
			editProduct(t, p, func(cl *conformance.Checklist) {
				for i, f := range cl.Metadata {
					if f.Key == "contactEmailAddress" {
						cl.Metadata = append(cl.Metadata[:i], cl.Metadata[i+1:]...)
						return
					}
				}
			})
		},
		want: []string{"metadata.contactEmailAddress: missing required field"},
	}, {
		name:   "k8sConformanceUrl format",
		break_: editMeta("k8sConformanceUrl", "https://github.com/cncf/k8s-conformance/blob/main/v1.37/acme"),
		want:   []string{`metadata.k8sConformanceUrl: "https://github.com/cncf/k8s-conformance/blob/main/v1.37/acme" does not match`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			product := writeGood(t, allMustPass(false))
			tc.break_(t, product)
			wantFindings(t, validate(t, product, ValidateOptions{}), tc.want)
		})
	}
}

func TestValidateVersionFromPathOrMetadata(t *testing.T) {
	product := writeGood(t, allMustPass(false))
	flat := filepath.Join(t.TempDir(), "PRODUCT.yaml")
	data, _ := os.ReadFile(product)
	writeFile(t, flat, string(data))
	v := validate(t, flat, ValidateOptions{})
	if v.Version != "1.37" || !strings.Contains(findingsText(v.Warnings), "taken from metadata.kubernetesVersion") {
		t.Errorf("version %q, warnings:\n%s", v.Version, findingsText(v.Warnings))
	}
	editProduct(t, flat, func(cl *conformance.Checklist) { cl.SetMeta("kubernetesVersion", "") })
	wantFindings(t, validate(t, flat, ValidateOptions{}), []string{"cannot tell the conformance version"})
}

func TestValidateHybridWarning(t *testing.T) {
	product := writeGood(t, allMustPass(false))
	editProduct(t, product, func(cl *conformance.Checklist) {
		cl.Item("secure_accelerator_access").Evidence = []string{"tests/TestSecureAcceleratorAccess/output.md"}
	})
	v := validate(t, product, ValidateOptions{})
	if !v.OK() {
		t.Fatalf("errors: %v", v.Errors)
	}
	if !strings.Contains(findingsText(v.Warnings), "spec.security.secure_accelerator_access: including test artifacts (e2e.log, junit.xml, or results.json) as evidence is recommended") {
		t.Errorf("no hybrid-verification warning: %v", v.Warnings)
	}
}

func TestValidateOnline(t *testing.T) {
	var agents []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		agents = append(agents, r.UserAgent())
		switch r.URL.Path {
		case "/landscape.yml":
			_, _ = w.Write([]byte("landscape:\n  - category:\n    name: CNCF Members\n    subcategories:\n      - subcategory:\n        name: Silver\n        items:\n          - item:\n            name: Acme Corporation (member)\n"))
		case "/gone.svg":
			w.WriteHeader(http.StatusNotFound)
		default:
			if r.Method == http.MethodHead {
				w.WriteHeader(http.StatusMethodNotAllowed) // GET is tried next
				return
			}
			_, _ = w.Write([]byte("ok"))
		}
	}))
	defer srv.Close()
	run := allMustPass(false)
	pr := &run.Profile.Spec.Product
	pr.WebsiteURL, pr.DocumentationURL, pr.ProductLogoURL = srv.URL+"/site", srv.URL+"/docs", srv.URL+"/gone.svg"
	product := writeGood(t, run)
	// k8sConformanceUrl must be on github.com; answer it from the test server.
	client := &http.Client{Transport: rewriteHost{srv.URL}}
	v := validate(t, product, ValidateOptions{Online: true, Client: client, LandscapeURL: srv.URL + "/landscape.yml"})
	wantFindings(t, v, []string{"metadata.productLogoUrl: " + srv.URL + "/gone.svg is not reachable: HTTP 404"})
	if len(v.Errors) != 1 {
		t.Errorf("want only the logo error: %v", v.Errors)
	}
	if len(agents) == 0 || agents[0] != ValidatorUserAgent {
		t.Errorf("User-Agent %q", agents)
	}
	editProduct(t, product, func(cl *conformance.Checklist) { cl.SetMeta("vendorName", "Acme Corp") })
	v = validate(t, product, ValidateOptions{Online: true, Client: client, LandscapeURL: srv.URL + "/landscape.yml"})
	wantFindings(t, v, []string{`metadata.vendorName: "Acme Corp" is not a CNCF member listed in the landscape`})
}

// rewriteHost sends requests for github.com to a test server.
type rewriteHost struct{ base string }

func (r rewriteHost) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == "github.com" {
		u := *req.URL
		u.Scheme, u.Host = "http", strings.TrimPrefix(r.base, "http://")
		req = req.Clone(req.Context())
		req.URL = &u
	}
	return http.DefaultTransport.RoundTrip(req)
}

func wantFindings(t *testing.T, v *Validation, want []string) {
	t.Helper()
	if v.OK() {
		t.Fatalf("accepted; want errors %q", want)
	}
	got := findingsText(v.Errors)
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("no error %q among:\n%s", w, got)
		}
	}
}

func findingsText(fs []Finding) string {
	var lines []string
	for _, f := range fs {
		lines = append(lines, f.String())
	}
	return strings.Join(lines, "\n")
}

func editProduct(t *testing.T, product string, edit func(*conformance.Checklist)) {
	t.Helper()
	data, err := os.ReadFile(product)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := conformance.ParseChecklist(data)
	if err != nil {
		t.Fatal(err)
	}
	edit(cl)
	out, err := cl.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, product, string(out))
}

func setItem(id string, edit func(*conformance.ChecklistItem)) func(*testing.T, string) {
	return func(t *testing.T, p string) {
		editProduct(t, p, func(cl *conformance.Checklist) { edit(cl.Item(id)) })
	}
}

func editMeta(key, value string) func(*testing.T, string) {
	return func(t *testing.T, p string) {
		editProduct(t, p, func(cl *conformance.Checklist) { cl.SetMeta(key, value) })
	}
}

func dropItem(cl *conformance.Checklist, id string) {
	for ci := range cl.Spec {
		for ii, it := range cl.Spec[ci].Items {
			if it.ID == id {
				cl.Spec[ci].Items = append(cl.Spec[ci].Items[:ii], cl.Spec[ci].Items[ii+1:]...)
				return
			}
		}
	}
}

func replaceIn(file, old, new string) func(*testing.T, string) {
	return func(t *testing.T, p string) {
		t.Helper()
		path := filepath.Join(filepath.Dir(p), file)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), old) {
			t.Fatalf("%s does not contain %q", file, old)
		}
		writeFile(t, path, strings.Replace(string(data), old, new, 1))
	}
}

// citeAndReplace adds evidence to a requirement and edits the cited file.
func citeAndReplace(id, evidence, file, old, new string) func(*testing.T, string) {
	return func(t *testing.T, p string) {
		setItem(id, func(it *conformance.ChecklistItem) { it.Evidence = append(it.Evidence, evidence) })(t, p)
		replaceIn(file, old, new)(t, p)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestValidateCNCFCompat: with CNCFCompat, kaic's own rules (simulated
// accelerators, symbolic links) are warnings that say so; without it they
// are errors.
func TestValidateCNCFCompat(t *testing.T) {
	product := writeGood(t, allMustPass(true))
	if err := os.Symlink(JUnitFile, filepath.Join(filepath.Dir(product), "linked.xml")); err != nil {
		t.Fatal(err)
	}
	setItem("ai_inference", func(it *conformance.ChecklistItem) {
		it.Evidence = append(it.Evidence, "linked.xml")
	})(t, product)

	strict := validate(t, product, ValidateOptions{})
	wantFindings(t, strict, []string{"linked.xml: is a symbolic link", "simulated accelerators"})

	compat := validate(t, product, ValidateOptions{CNCFCompat: true})
	if !compat.OK() {
		t.Fatalf("--cncf-compat rejected it:\n%s", findingsText(compat.Errors))
	}
	warnings := findingsText(compat.Warnings)
	for _, want := range []string{"not a CNCF rule", "linked.xml: is a symbolic link", "simulated accelerators"} {
		if !strings.Contains(warnings, want) {
			t.Errorf("no warning %q among:\n%s", want, warnings)
		}
	}
}
