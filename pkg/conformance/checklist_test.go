package conformance

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// sameContent compares what a checklist holds, ignoring the kept document.
func sameContent(a, b *Checklist) bool {
	return reflect.DeepEqual(a.Metadata, b.Metadata) && reflect.DeepEqual(a.Spec, b.Spec)
}

// nonBlankLines returns the lines of b that are not blank, with runs of
// spaces after the indentation collapsed (the encoder aligns line comments
// its own way).
func nonBlankLines(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		indent := l[:len(l)-len(strings.TrimLeft(l, " "))]
		out = append(out, indent+strings.Join(strings.Fields(l), " "))
	}
	return out
}

func TestChecklistRoundTripsOfficialFiles(t *testing.T) {
	for _, v := range Versions() {
		t.Run(v, func(t *testing.T) {
			in := officialBytes(t, v)
			cl, err := ParseChecklist(in)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := cl.Meta("kubernetesVersion"); got != "v"+v {
				t.Errorf("kubernetesVersion = %q", got)
			}
			if cl.Metadata[0].Key != "kubernetesVersion" || cl.Metadata[1].Key != "platformName" {
				t.Errorf("metadata order not kept: %v", cl.Metadata[:2])
			}
			out, err := cl.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			// Unchanged, the document comes back line for line (only blank
			// lines and spacing before comments may differ), comments and
			// quoting included.
			if a, b := nonBlankLines(in), nonBlankLines(out); !slices.Equal(a, b) {
				t.Errorf("round trip changed the document:\n%s", out)
			}
			again, err := ParseChecklist(out)
			if err != nil {
				t.Fatal(err)
			}
			if !sameContent(cl, again) {
				t.Error("reparsed checklist differs")
			}
		})
	}
}

func TestChecklistEditKeepsTheRest(t *testing.T) {
	in := officialBytes(t, "1.36")
	cl, err := ParseChecklist(in)
	if err != nil {
		t.Fatal(err)
	}
	cl.SetMeta("platformName", "kaic reference cluster")
	cl.SetMeta("k8sConformanceUrl", "https://github.com/cncf/k8s-conformance/tree/master/v1.36/kaic")
	gang := cl.Item("gang_scheduling")
	gang.Status = "Implemented"
	gang.Evidence = []string{"file://results/junit.xml#TestGangScheduling", "file://results/e2e.log"}
	hpn := cl.Item("high_performance_networking")
	hpn.Status, hpn.Notes = "N/A", "no RDMA fabric on this platform"

	out, err := cl.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseChecklist(out)
	if err != nil {
		t.Fatalf("reparsing edited checklist: %v\n%s", err, out)
	}
	if !sameContent(cl, got) {
		t.Errorf("edited checklist did not survive Marshal:\n%s", out)
	}
	if last := got.Metadata[len(got.Metadata)-1]; last.Key != "k8sConformanceUrl" {
		t.Errorf("new metadata key not appended: %v", last)
	}
	text := string(out)
	for _, want := range []string{
		"# Participants should fill in",
		`platformName: "kaic reference cluster"`,
		"      evidence:\n        - \"file://results/junit.xml#TestGangScheduling\"\n",
		`notes: "no RDMA fabric on this platform"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// Items not edited are unchanged.
	orig, _ := ParseChecklist(in)
	if !reflect.DeepEqual(orig.Item("ai_inference"), got.Item("ai_inference")) {
		t.Error("an untouched item changed")
	}
	if cl.Item("no_such_id") != nil {
		t.Error("Item found an unknown id")
	}
}

func TestChecklistKeepsUnknownFields(t *testing.T) {
	in := []byte(`# product
metadata:
  platformName: x
  extra: "kept" # why
spec:
  security:
    - id: secure_accelerator_access
      description: d
      level: MUST
      status: ""
      evidence: []
      notes: ""
      reviewer: someone
  future:
    - id: later
      level: SHOULD
annotations:
  a: b
`)
	cl, err := ParseChecklist(in)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := cl.Meta("extra"); v != "kept" {
		t.Errorf("metadata extra = %q", v)
	}
	cl.Item("later").Status = "Implemented"
	out, err := cl.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"reviewer: someone", "annotations:\n  a: b", "# why", "# product", `status: "Implemented"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "later\n      description") {
		t.Errorf("absent empty fields were added to an existing item:\n%s", out)
	}
}

func TestChecklistMarshalFromScratch(t *testing.T) {
	cl := &Checklist{
		Metadata: []MetadataField{{Key: "kubernetesVersion", Value: "v1.36", Tag: "!!str"}, {Key: "platformName", Value: "true", Tag: "!!str"}},
		Spec: []ChecklistCategory{
			{Name: "networking", Items: []ChecklistItem{{ID: "ai_inference", Description: "Gateway: yes", Level: Must, Evidence: []string{"a"}}}},
			{Name: "operator"},
		},
	}
	out, err := cl.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseChecklist(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !sameContent(cl, got) {
		t.Errorf("got %+v, want %+v\n%s", got, cl, out)
	}
	var plain map[string]any
	if err := yaml.Unmarshal(out, &plain); err != nil {
		t.Fatal(err)
	}
	// "true" must stay a string, not become a boolean.
	if md := plain["metadata"].(map[string]any); md["platformName"] != "true" {
		t.Errorf("platformName decoded as %#v", md["platformName"])
	}

	cl.Spec[1].Items = []ChecklistItem{{ID: "ai_inference"}}
	if _, err := cl.Marshal(); err == nil {
		t.Error("Marshal accepted a repeated id")
	}
}

func TestParseChecklistErrors(t *testing.T) {
	tests := map[string]struct {
		doc  string
		want string
	}{
		"empty":             {"", "empty"},
		"not a mapping":     {"- a\n- b\n", "mapping"},
		"no spec":           {"metadata:\n  a: b\n", "no spec"},
		"spec is a list":    {"spec: [a]\n", "categories"},
		"category not list": {"spec:\n  security: x\n", "list of requirements"},
		"item not mapping":  {"spec:\n  security: [x]\n", "want a mapping"},
		"item without id":   {"spec:\n  security:\n    - level: MUST\n", "no id"},
		"duplicate id":      {"spec:\n  a:\n    - id: x\n  b:\n    - id: x\n", `"x" appears twice`},
		"duplicate key":     {"spec:\n  a:\n    - id: x\n      id: y\n", "duplicate key"},
		"nested metadata":   {"metadata:\n  a: {b: c}\nspec: {}\n", "metadata.a"},
		"evidence string":   {"spec:\n  a:\n    - id: x\n      evidence: url\n", "want a list"},
		"alias":             {"spec:\n  a: &l\n    - id: x\n  b: *l\n", "aliases"},
		"bad yaml":          {"spec: [\n", "parsing checklist"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseChecklist([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseChecklist error = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func FuzzParseChecklist(f *testing.F) {
	for _, v := range Versions() {
		f.Add(officialBytes(f, v))
	}
	for _, seed := range []string{
		"",
		"spec: {}\n",
		"metadata:\nspec:\n  a:\n",
		"spec:\n  a:\n    - id: x\n      evidence: [\"1\", 2]\n      notes: ~\n",
		"metadata: {k: 'v'}\nspec: {s: [{id: a, level: MUST, extra: [1, {b: c}]}]}\n",
		"spec:\n  a: &l\n    - id: x\n  b: *l\n",
		"? [a]\n: b\nspec: {}\n",
		"spec:\n  a:\n    - id: \"x\\ny\"\n      description: |\n        two\n        lines\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cl, err := ParseChecklist(data)
		if err != nil {
			return
		}
		out, err := cl.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed checklist: %v", err)
		}
		again, err := ParseChecklist(out)
		if err != nil {
			t.Fatalf("reparsing Marshal output: %v\n%s", err, out)
		}
		if !sameContent(cl, again) {
			t.Fatalf("round trip changed the checklist\nbefore: %+v\nafter:  %+v\n%s", cl, again, out)
		}
	})
}
