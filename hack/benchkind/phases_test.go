package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeState(t *testing.T, phases string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte(`{"phases":[`+phases+`]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

const (
	provisionDone = `{"name":"provision","status":"succeeded","start":"2026-12-04T20:00:00Z","end":"2026-12-04T20:01:30Z"}`
	installDone   = `{"name":"install","status":"succeeded","start":"2026-12-04T20:01:30Z","end":"2026-12-04T20:02:25Z"}`
)

// A check that fails (kaic up exit 3) leaves verify failed but ended and
// the report phase pending: the phases that ran are still measured.
func TestPhaseTimesAfterAFailedCheck(t *testing.T) {
	dir := writeState(t, provisionDone+","+installDone+`,
		{"name":"verify","status":"failed","start":"2026-12-04T20:02:25Z","end":"2026-12-04T20:03:56Z","outputs":{"results":"r"}},
		{"name":"report","status":"pending"}`)
	got, results, err := phaseTimes(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Duration{"provision": 90 * time.Second, "install": 55 * time.Second, "verify": 91 * time.Second}
	for name, d := range want {
		if got[name] != d {
			t.Errorf("phase %s took %s, want %s", name, got[name], d)
		}
	}
	if _, ok := got["report"]; ok || results != "r" {
		t.Errorf("phases %v, results %q: want no report phase and results r", got, results)
	}
}

// A phase that did not run to its end is no measurement.
func TestPhaseTimesRefusesAnUnfinishedRun(t *testing.T) {
	for name, phases := range map[string]string{
		"install pending":    provisionDone + `,{"name":"install","status":"pending"}`,
		"verify interrupted": provisionDone + "," + installDone + `,{"name":"verify","status":"failed","start":"2026-12-04T20:02:25Z"}`,
	} {
		if _, _, err := phaseTimes(writeState(t, phases)); err == nil || !strings.Contains(err.Error(), "of kaic up is") {
			t.Errorf("%s: error %v, want one naming the unfinished phase", name, err)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{[]time.Duration{40 * time.Second}, 40 * time.Second},
		{[]time.Duration{50 * time.Second, 38 * time.Second, 45 * time.Second}, 45 * time.Second},
		{[]time.Duration{50 * time.Second, 38 * time.Second, 45 * time.Second, 40 * time.Second}, 42500 * time.Millisecond},
	} {
		in := slices.Clone(c.in)
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %s, want %s", c.in, got, c.want)
		}
		if !slices.Equal(in, c.in) {
			t.Errorf("median reordered its argument: %v, was %v", c.in, in)
		}
	}
}

// Components are timed from the first one's start and ordered by when
// they ended; one that never started or ended is left out.
func TestComponentTimes(t *testing.T) {
	dir := writeState(t, provisionDone+","+installDone)
	releases := `{"components":[
		{"component":"kueue","action":"installed","dependsOn":["cert-manager"],"started":"2026-12-04T20:01:40Z","finished":"2026-12-04T20:02:20Z"},
		{"component":"cert-manager","action":"installed","started":"2026-12-04T20:01:30Z","finished":"2026-12-04T20:01:40Z"},
		{"component":"gateway-api","action":"applied","started":"2026-12-04T20:01:31Z","finished":"2026-12-04T20:01:33.5Z"},
		{"component":"traefik","action":"not-started"}]}`
	if err := os.WriteFile(filepath.Join(dir, "releases.json"), []byte(releases), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := componentTimes(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []componentTime{
		{Component: "gateway-api", Action: "applied", StartS: 1, Seconds: 2.5},
		{Component: "cert-manager", Action: "installed", StartS: 0, Seconds: 10},
		{Component: "kueue", Action: "installed", DependsOn: []string{"cert-manager"}, StartS: 10, Seconds: 40},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Component != w.Component || g.Action != w.Action || g.StartS != w.StartS || g.Seconds != w.Seconds || !slices.Equal(g.DependsOn, w.DependsOn) {
			t.Errorf("component %d = %+v, want %+v", i, g, w)
		}
	}
}
