package pipeline

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

func sampleState() *State {
	return &State{
		SchemaVersion: StateSchemaVersion,
		KaicVersion:   "v0.1.0",
		Profile:       ProfileRef{Name: "kind-dra", Digest: ProfileDigest([]byte("kind: Profile\n"))},
		Created:       t0,
		Updated:       t0.Add(2 * time.Minute),
		Phases: []PhaseState{
			{Name: PhaseProvision, Status: StatusSucceeded, Start: t0, End: t0.Add(90500 * time.Millisecond),
				Duration: 90500 * time.Millisecond, Outputs: Outputs{"kubeconfig": "/run/kubeconfig", "cluster": "kaic"}},
			{Name: PhaseInstall, Status: StatusInterrupted, Start: t0.Add(time.Minute), End: t0.Add(2 * time.Minute),
				Duration: time.Minute, Error: "phase install interrupted (received SIGINT): context canceled"},
			{Name: PhaseVerify, Status: StatusPending},
		},
	}
}

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	want := sampleState()
	if err := SaveState(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip changed the state:\ngot  %+v\nwant %+v", got, want)
	}

	raw, err := os.ReadFile(filepath.Join(dir, StateFileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, fragment := range []string{
		`"schemaVersion": 1`,
		`"digest": "sha256:`,
		`"duration": "1m30.5s"`,
		`"kubeconfig": "/run/kubeconfig"`,
		`"status": "interrupted"`,
	} {
		if !strings.Contains(string(raw), fragment) {
			t.Errorf("state.json lacks %s:\n%s", fragment, raw)
		}
	}
	// A pending phase has no times, duration or outputs to show.
	pending := string(raw[strings.Index(string(raw), `"name": "verify"`):])
	for _, absent := range []string{"start", "end", "duration", "outputs"} {
		if strings.Contains(pending, `"`+absent+`"`) {
			t.Errorf("pending phase records %q:\n%s", absent, pending)
		}
	}
	if info, err := os.Stat(filepath.Join(dir, StateFileName)); err != nil || info.Mode().Perm() != 0o644 {
		t.Errorf("state.json mode = %v (%v), want 0644", info.Mode().Perm(), err)
	}
}

func TestProfileDigest(t *testing.T) {
	// sha256 of the empty input.
	if got, want := ProfileDigest(nil), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; got != want {
		t.Errorf("ProfileDigest(nil) = %s, want %s", got, want)
	}
	if ProfileDigest([]byte("a")) == ProfileDigest([]byte("b")) {
		t.Error("different profiles share a digest")
	}
}

func TestLoadStateErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		kind    error
		message string
	}{
		{"empty", "", ErrCorruptState, "file is empty"},
		{"not json", "kind: Profile\n", ErrCorruptState, "invalid character"},
		{"truncated", `{"schemaVersion": 1, "phases": [`, ErrCorruptState, "unexpected end of JSON input"},
		{"no version", `{"kaicVersion": "v1"}`, ErrCorruptState, "schemaVersion is missing"},
		{"zero version", `{"schemaVersion": 0}`, ErrCorruptState, "schemaVersion 0 is not valid"},
		{"future version", `{"schemaVersion": 99, "phases": "a future layout"}`, ErrUnsupportedStateVersion,
			"schema version 99 is newer than this kaic reads (1); use a newer kaic"},
		{"wrong type", `{"schemaVersion": 1, "phases": {}}`, ErrCorruptState, "cannot unmarshal"},
		{"unknown status", `{"schemaVersion": 1, "phases": [{"name": "install", "status": "done"}]}`, ErrCorruptState,
			`phases[0] (install): unknown status "done"`},
		{"duplicate phase", `{"schemaVersion": 1, "phases": [{"name": "a", "status": "pending"}, {"name": "a", "status": "pending"}]}`,
			ErrCorruptState, `phases[1]: phase "a" is recorded twice`},
		{"nameless phase", `{"schemaVersion": 1, "phases": [{"status": "pending"}]}`, ErrCorruptState, "phases[0].name is empty"},
		{"bad duration", `{"schemaVersion": 1, "phases": [{"name": "a", "status": "failed", "duration": "soon"}]}`,
			ErrCorruptState, `phase "a": duration: time: invalid duration "soon"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, StateFileName)
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadState(dir)
			if err == nil {
				t.Fatal("LoadState succeeded")
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("error %q does not match %v", err, tt.kind)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Errorf("error %q does not say %q", err, tt.message)
			}
			var sfe *StateFileError
			if !errors.As(err, &sfe) || sfe.Path != path {
				t.Errorf("error %v is not a *StateFileError for %s", err, path)
			}
		})
	}

	_, err := LoadState(t.TempDir())
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing state.json: error %v does not match fs.ErrNotExist", err)
	}
}

func TestSaveStateReplacesAndCleansUp(t *testing.T) {
	dir := t.TempDir()
	for i := range 3 {
		s := sampleState()
		s.KaicVersion = "v" + string(rune('1'+i))
		if err := SaveState(dir, s); err != nil {
			t.Fatal(err)
		}
	}
	got, err := LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.KaicVersion != "v3" {
		t.Errorf("kaicVersion = %q, want the last saved v3", got.KaicVersion)
	}
	assertOnlyFiles(t, dir, StateFileName)
}

func assertOnlyFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("%s holds %v, want %v (temporary files left behind?)", dir, names, want)
	}
}
