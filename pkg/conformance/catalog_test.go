package conformance

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/fetch"
)

// officialDir returns the directory of the official checklist files.
func officialDir(t testing.TB) string { return testenv.OfficialChecklists(t) }

func officialBytes(t testing.TB, version string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(officialDir(t), ChecklistFileName(version)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuiltinMatchesOfficialChecklists(t *testing.T) {
	// Counts of MUST and SHOULD per version, as published.
	counts := map[string][2]int{
		"1.33": {8, 1},
		"1.34": {9, 0},
		"1.35": {9, 3},
		"1.36": {8, 6},
		"1.37": {8, 7},
	}
	for _, v := range Versions() {
		t.Run(v, func(t *testing.T) {
			cl, err := ParseChecklist(officialBytes(t, v))
			if err != nil {
				t.Fatal(err)
			}
			var official []Requirement
			for _, cat := range cl.Spec {
				for _, item := range cat.Items {
					official = append(official, Requirement{ID: item.ID, Category: cat.Name, Level: item.Level})
				}
			}
			builtin, err := Builtin(v)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(builtin.Requirements, official) {
				t.Errorf("built-in catalog differs from the official checklist\nbuilt-in: %v\nofficial: %v", builtin.Requirements, official)
			}
			var must, should int
			for _, r := range builtin.Requirements {
				switch r.Level {
				case Must:
					must++
				case Should:
					should++
				}
			}
			if got := [2]int{must, should}; got != counts[v] {
				t.Errorf("MUST, SHOULD = %v, want %v", got, counts[v])
			}
			if builtin.Source != BuiltinSource || builtin.Version != v {
				t.Errorf("Builtin(%s) Version, Source = %q, %q", v, builtin.Version, builtin.Source)
			}
		})
	}
}

func TestVersionsCoverOfficialFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(officialDir(t), "AIConformance-*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, f := range files {
		onDisk = append(onDisk, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "AIConformance-"), ".yaml"))
	}
	slices.Sort(onDisk)
	if !slices.Equal(onDisk, Versions()) {
		t.Errorf("official files %v, built-in versions %v", onDisk, Versions())
	}
}

func TestBuiltinVersionSpelling(t *testing.T) {
	withV, err := Builtin("v1.36")
	if err != nil {
		t.Fatalf("Builtin(v1.36): %v", err)
	}
	if withV.Version != "1.36" || len(withV.Requirements) != 14 {
		t.Errorf("Builtin(v1.36) = %s with %d requirements", withV.Version, len(withV.Requirements))
	}
	for _, bad := range []string{"", "1.32", "1.38", "latest"} {
		if _, err := Builtin(bad); err == nil || !strings.Contains(err.Error(), "unknown conformance version") {
			t.Errorf("Builtin(%q) error = %v", bad, err)
		}
	}
}

func TestCategoriesAndTitles(t *testing.T) {
	titles := map[string]string{
		"accelerators":            "Accelerators",
		"networking":              "Networking",
		"schedulingOrchestration": "Scheduling and orchestration",
		"observability":           "Observability",
		"security":                "Security",
		"operator":                "Operator",
	}
	for key, want := range titles {
		if got := CategoryTitle(key); got != want {
			t.Errorf("CategoryTitle(%q) = %q, want %q", key, got, want)
		}
	}
	if got := CategoryTitle("quantum"); got != "quantum" {
		t.Errorf("CategoryTitle of an unknown key = %q", got)
	}
	// Every official file lists its categories in the order of Categories.
	for _, v := range Versions() {
		cl, err := ParseChecklist(officialBytes(t, v))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range cl.Spec {
			names = append(names, c.Name)
		}
		if !slices.Equal(names, Categories()) {
			t.Errorf("%s categories %v, want %v", v, names, Categories())
		}
	}
}

func TestTestNames(t *testing.T) {
	upstream := map[string]string{
		"secure_accelerator_access": "TestSecureAcceleratorAccess",
		"gang_scheduling":           "TestGangScheduling",
		"cluster_autoscaling":       "TestAcceleratorClusterAutoscaling",
		"ai_service_metrics":        "TestAIServiceMetrics",
		"accelerator_metrics":       "TestAcceleratorPerformanceMetrics",
		"robust_controller":         "TestRobustCRDControllerOperation",
		"workload_sandboxing":       "TestWorkloadSandboxing",
		"driver_runtime_management": "TestAcceleratorDriverRuntimeManagement",
	}
	for id, want := range upstream {
		if got := TestName(id); got != want || !IsUpstreamTest(id) {
			t.Errorf("TestName(%q) = %q, upstream %v; want %q, upstream", id, got, IsUpstreamTest(id), want)
		}
	}
	seen := map[string]string{}
	for _, row := range matrix {
		name := TestName(row.id)
		if !strings.HasPrefix(name, "Test") || len(name) < 5 {
			t.Errorf("TestName(%q) = %q", row.id, name)
		}
		if other, dup := seen[name]; dup {
			t.Errorf("%s and %s share the test name %s", row.id, other, name)
		}
		seen[name] = row.id
		if _, ok := upstream[row.id]; !ok && IsUpstreamTest(row.id) {
			t.Errorf("%s is marked as an upstream test", row.id)
		}
	}
	if TestName("dra_support") != "TestDRASupport" {
		t.Errorf("TestName(dra_support) = %q", TestName("dra_support"))
	}
	if TestName("no_such_requirement") != "" {
		t.Error("TestName of an unknown id is not empty")
	}
}

// checkLoaded compares a loaded catalog with the official file's items.
func checkLoaded(t *testing.T, cat Catalog, version string) {
	t.Helper()
	cl, err := ParseChecklist(officialBytes(t, version))
	if err != nil {
		t.Fatal(err)
	}
	if cat.Version != version {
		t.Errorf("Version = %q, want %q", cat.Version, version)
	}
	var n int
	for _, c := range cl.Spec {
		for _, item := range c.Items {
			if n >= len(cat.Requirements) {
				t.Fatalf("catalog has %d requirements, the checklist more", len(cat.Requirements))
			}
			got := cat.Requirements[n]
			want := Requirement{ID: item.ID, Category: c.Name, Level: item.Level, Description: item.Description}
			if got != want {
				t.Errorf("requirement %d = %+v, want %+v", n, got, want)
			}
			if got.Description == "" {
				t.Errorf("%s has no description", got.ID)
			}
			n++
		}
	}
	if n != len(cat.Requirements) {
		t.Errorf("catalog has %d requirements, the checklist %d", len(cat.Requirements), n)
	}
}

func TestLoadFromFileAndDir(t *testing.T) {
	dir := officialDir(t)
	for _, v := range Versions() {
		t.Run(v, func(t *testing.T) {
			file := filepath.Join(dir, ChecklistFileName(v))
			cat, err := Load(t.Context(), v, Source{File: file})
			if err != nil {
				t.Fatalf("Load(File): %v", err)
			}
			checkLoaded(t, cat, v)
			if cat.Source != file {
				t.Errorf("Source = %q, want %q", cat.Source, file)
			}

			cat, err = Load(t.Context(), "v"+v, Source{Dir: dir})
			if err != nil {
				t.Fatalf("Load(Dir): %v", err)
			}
			checkLoaded(t, cat, v)
		})
	}
}

func TestLoadFromURLWithOfflineFallback(t *testing.T) {
	dir := officialDir(t)
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		name := strings.TrimPrefix(r.URL.Path, "/cncf/docs/")
		if strings.Contains(name, "/") || !strings.HasPrefix(name, "AIConformance-") {
			http.NotFound(w, r)
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("If-None-Match") == `"`+name+`"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"`+name+`"`)
		w.Write(b)
	}))
	defer srv.Close()

	client := fetch.New(fetch.WithMaxAttempts(2), fetch.WithWait(time.Millisecond, 2*time.Millisecond))
	src := Source{BaseURL: srv.URL + "/cncf/docs", CacheDir: t.TempDir(), Client: client}
	url := srv.URL + "/cncf/docs/AIConformance-1.36.yaml"

	cat, err := Load(t.Context(), "1.36", src)
	if err != nil {
		t.Fatalf("Load from URL: %v", err)
	}
	checkLoaded(t, cat, "1.36")
	if cat.Source != url {
		t.Errorf("Source = %q, want %q", cat.Source, url)
	}

	// Online again: revalidated, same catalog.
	if cat, err = Load(t.Context(), "1.36", src); err != nil {
		t.Fatalf("second Load: %v", err)
	}
	checkLoaded(t, cat, "1.36")
	if n := requests.Load(); n != 2 {
		t.Errorf("server saw %d requests, want 2", n)
	}

	offline := src
	offline.Offline = true
	if cat, err = Load(t.Context(), "1.36", offline); err != nil {
		t.Fatalf("offline Load: %v", err)
	}
	checkLoaded(t, cat, "1.36")
	if !strings.Contains(cat.Source, "cached copy") || !strings.Contains(cat.Source, "offline") {
		t.Errorf("offline Source = %q, want it to say a cached copy was used offline", cat.Source)
	}
	if n := requests.Load(); n != 2 {
		t.Errorf("offline Load made a request (server saw %d)", n)
	}

	srv.Close()
	if cat, err = Load(t.Context(), "1.36", src); err != nil {
		t.Fatalf("Load with the server down: %v", err)
	}
	checkLoaded(t, cat, "1.36")
	if !strings.Contains(cat.Source, "server unreachable") {
		t.Errorf("Source = %q, want it to say the server was unreachable", cat.Source)
	}

	// Nothing cached for 1.35: offline must fail.
	if _, err := Load(t.Context(), "1.35", offline); !errors.Is(err, fetch.ErrNotCached) {
		t.Errorf("offline Load of an uncached version = %v, want ErrNotCached", err)
	}
}

func TestLoadRejectsTamperedChecklist(t *testing.T) {
	tests := []struct {
		name    string
		version string
		tamper  func(*Checklist)
		want    []string
	}{
		{
			name:    "level changed",
			version: "1.36",
			tamper:  func(cl *Checklist) { cl.Item("gpu_sharing").Level = Must },
			want:    []string{`"gpu_sharing"`, "level"},
		},
		{
			name:    "id removed",
			version: "1.35",
			tamper: func(cl *Checklist) {
				acc := &cl.Spec[0]
				acc.Items = slices.DeleteFunc(acc.Items, func(i ChecklistItem) bool { return i.ID == "dra_support" })
			},
			want: []string{`missing id "dra_support"`},
		},
		{
			name:    "extra id",
			version: "1.37",
			tamper: func(cl *Checklist) {
				sec := &cl.Spec[4]
				sec.Items = append(sec.Items, ChecklistItem{ID: "confidential_computing", Description: "new", Level: Should})
			},
			want: []string{`unknown id "confidential_computing"`},
		},
		{
			name:    "category changed",
			version: "1.34",
			tamper: func(cl *Checklist) {
				item := cl.Spec[0].Items[0]
				cl.Spec[0].Items = nil
				cl.Spec[1].Items = append(cl.Spec[1].Items, item)
			},
			want: []string{`"dra_support"`, `category "networking"`},
		},
		{
			name:    "file of another version",
			version: "1.36",
			tamper:  func(cl *Checklist) { cl.SetMeta("kubernetesVersion", "v1.37") },
			want:    []string{"kubernetesVersion"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, err := ParseChecklist(officialBytes(t, tt.version))
			if err != nil {
				t.Fatal(err)
			}
			tt.tamper(cl)
			data, err := cl.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), ChecklistFileName(tt.version))
			if err := os.WriteFile(file, data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = Load(t.Context(), tt.version, Source{File: file})
			var mismatch *MismatchError
			if !errors.As(err, &mismatch) {
				t.Fatalf("Load = %v, want a MismatchError", err)
			}
			if len(mismatch.Problems) != 1 {
				t.Errorf("problems = %q, want exactly one", mismatch.Problems)
			}
			for _, want := range append(tt.want, file) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %s", err, want)
				}
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(t.Context(), "1.36", Source{File: filepath.Join(t.TempDir(), "missing.yaml")}); err == nil {
		t.Error("Load of a missing file succeeded")
	}
	if _, err := Load(t.Context(), "1.36", Source{Dir: t.TempDir()}); err == nil {
		t.Error("Load from an empty directory succeeded")
	}
	if _, err := Load(t.Context(), "2.0", Source{Dir: officialDir(t)}); err == nil {
		t.Error("Load of an unknown version succeeded")
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("spec: [1, 2]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(t.Context(), "1.36", Source{File: bad}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("Load of a malformed file = %v, want an error naming it", err)
	}
}
