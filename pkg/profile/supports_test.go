package profile

import (
	"strings"
	"testing"
)

func TestSupportsCovers(t *testing.T) {
	for _, tc := range []struct {
		rng, version string
		want         bool
		err          bool
	}{
		{"1.33-1.36", "v1.33.0", true, false},
		{"1.33-1.36", "v1.36.9", true, false},
		{"1.33-1.36", "v1.37.0", false, false},
		{"1.33-1.36", "1.32", false, false},
		{"1.33+", "v1.40.1", true, false},
		{"1.33+", "v1.32.1", false, false},
		{"1.36-1.33", "v1.34.0", false, true},
		{"1.33", "v1.33.0", false, true},
		{"2.1-2.3", "v1.33.0", false, true},
		{"1.33-1.36", "latest", false, true},
	} {
		got, err := Supports{Kubernetes: tc.rng}.Covers(tc.version)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%q covers %q = %v, %v; want %v, error %v", tc.rng, tc.version, got, err, tc.want, tc.err)
		}
	}
}

func TestSupportGapsJudgeOnlyTheStatedVersion(t *testing.T) {
	s := &Supports{Kubernetes: "1.33-1.36", Source: "upstream", Checked: "2026-12-04", Version: "v1.9.1"}
	comps := []Component{
		{Name: "pinned", Helm: &HelmChart{Chart: "c", Version: "v1.9.1"}, Supports: s},
		{Name: "overridden", Helm: &HelmChart{Chart: "c", Version: "v1.10.0"}, Supports: s},
		{Name: "unstated", Helm: &HelmChart{Chart: "c", Version: "v1"}},
	}
	gaps := SupportGaps("v1.37.0", comps)
	if len(gaps) != 1 || gaps[0].Component != "pinned" {
		t.Fatalf("gaps = %+v, want only the component at the stated version", gaps)
	}
	msg := gaps[0].String()
	for _, want := range []string{"pinned v1.9.1", "1.33–1.36", "v1.37.0", "upstream"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if g := SupportGaps("v1.35.2", comps); len(g) != 0 {
		t.Errorf("in range, got gaps %+v", g)
	}
}

func TestBuiltinSupportRangesApplyToTheirPinnedVersion(t *testing.T) {
	cat, err := LoadComponentCatalog(nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, name := range cat.Names() {
		c, _ := cat.Get(name)
		if c.Supports == nil {
			continue
		}
		seen++
		if c.Supports.Version != c.ChartVersion() {
			t.Errorf("%s: range stated for %q, installs %q", name, c.Supports.Version, c.ChartVersion())
		}
	}
	if seen == 0 {
		t.Fatal("no built-in component states a support range")
	}
}

func TestSupportsValidatedWithFieldPaths(t *testing.T) {
	_, err := (&Loader{}).LoadBytes("p.yaml", []byte(`apiVersion: kaic.dev/v1alpha1
kind: Profile
extends: kind-dra
metadata:
  name: p
spec:
  stack:
    components:
      - name: keda
        supports:
          kubernetes: "1.36-1.30"
          checked: yesterday
`))
	if err == nil {
		t.Fatal("a bad support range was accepted")
	}
	for _, want := range []string{"supports.kubernetes", "supports.source", "supports.checked", "the range ends before it starts"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
