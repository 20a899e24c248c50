package profile

import (
	"slices"
	"strings"
	"testing"
)

func TestFeatureGateTableWellFormed(t *testing.T) {
	minors := featureGateLastMinor - featureGateFirstMinor + 1
	if minors < 1 {
		t.Fatalf("bad minor range %d..%d", featureGateFirstMinor, featureGateLastMinor)
	}
	for i, row := range featureGateTable {
		if i > 0 && featureGateTable[i-1][0] >= row[0] {
			t.Errorf("table not sorted or has duplicates at %q", row[0])
		}
		toks := strings.Fields(row[1])
		if len(toks) != minors {
			t.Errorf("%s: %d tokens, want %d", row[0], len(toks), minors)
		}
		known := false
		for _, tok := range toks {
			if tok == "-" {
				continue
			}
			known = true
			if _, ok := decodeFeatureGate(tok); !ok || len(tok) > 3 || (len(tok) == 3 && tok[2] != '!') || (tok[1] != '+' && tok[1] != '-') {
				t.Errorf("%s: bad token %q", row[0], tok)
			}
		}
		if !known {
			t.Errorf("%s: unknown in every minor", row[0])
		}
	}
	for m := featureGateFirstMinor; m <= featureGateLastMinor; m++ {
		if n := len(FeatureGates(m)); n < 150 {
			t.Errorf("1.%d: only %d gates", m, n)
		}
	}
}

func TestLookupFeatureGate(t *testing.T) {
	type want struct {
		known bool
		gate  featureGate
	}
	unknown := want{}
	alpha := func(def bool) want { return want{true, featureGate{Stage: "ALPHA", Default: def}} }
	beta := func(def bool) want { return want{true, featureGate{Stage: "BETA", Default: def}} }
	ga := func(locked bool) want { return want{true, featureGate{Stage: "GA", Default: true, Locked: locked}} }

	tests := []struct {
		name string
		want map[int]want // minor -> expected
	}{
		// Beta in 1.33, GA in 1.34, locked to true from 1.35.
		{"DynamicResourceAllocation", map[int]want{33: beta(false), 34: ga(false), 35: ga(true), 36: ga(true), 37: ga(true)}},
		// Alpha in 1.33, beta (on by default) in 1.34-1.35, GA and locked from 1.36.
		{"DRAAdminAccess", map[int]want{33: alpha(false), 34: beta(true), 35: beta(true), 36: ga(true), 37: ga(true)}},
		// Only in 1.37.
		{"APIServerWebhookAuthenticationToken", map[int]want{33: unknown, 34: unknown, 35: unknown, 36: unknown, 37: alpha(false)}},
		// Removed in 1.37.
		{"APIServerTracing", map[int]want{33: beta(true), 34: ga(true), 36: ga(true), 37: unknown}},
		// Declared by component-base/featuregate itself.
		{"AllAlpha", map[int]want{33: alpha(false), 37: alpha(false)}},
		{"AllBeta", map[int]want{33: beta(false), 37: beta(false)}},
		// client-go's gates: the unversioned map form in 1.33-1.34.
		{"WatchListClient", map[int]want{33: beta(false), 34: beta(false), 35: beta(true), 37: beta(true)}},
		// component-base/logs.
		{"LoggingBetaOptions", map[int]want{33: beta(true), 37: beta(true)}},
		// Names are case-sensitive.
		{"dynamicresourceallocation", map[int]want{33: unknown, 37: unknown}},
		{"NotARealFeatureGateAtAll", map[int]want{33: unknown, 34: unknown, 35: unknown, 36: unknown, 37: unknown}},
	}
	for _, tt := range tests {
		for minor, w := range tt.want {
			g, ok := lookupFeatureGate(minor, tt.name)
			if ok != w.known || g != w.gate {
				t.Errorf("lookupFeatureGate(%d, %q) = %+v, %t; want %+v, %t", minor, tt.name, g, ok, w.gate, w.known)
			}
			if got := slices.Contains(FeatureGates(minor), tt.name); got != w.known {
				t.Errorf("FeatureGates(%d) contains %q = %t, want %t", minor, tt.name, got, w.known)
			}
		}
	}
}

func TestFeatureGatesOutOfRange(t *testing.T) {
	for _, minor := range []int{0, featureGateFirstMinor - 1, featureGateLastMinor + 1} {
		if got := FeatureGates(minor); got != nil {
			t.Errorf("FeatureGates(%d) = %d names, want nil", minor, len(got))
		}
		if _, ok := lookupFeatureGate(minor, "AllAlpha"); ok {
			t.Errorf("lookupFeatureGate(%d, AllAlpha) known", minor)
		}
		if got := closestGate(minor, "AllAlpah"); got != "" {
			t.Errorf("closestGate(%d, AllAlpah) = %q, want empty", minor, got)
		}
	}
}

func TestFeatureGatesSorted(t *testing.T) {
	for m := featureGateFirstMinor; m <= featureGateLastMinor; m++ {
		names := FeatureGates(m)
		if !slices.IsSorted(names) {
			t.Errorf("FeatureGates(%d) not sorted", m)
		}
		for _, n := range names {
			if _, ok := lookupFeatureGate(m, n); !ok {
				t.Errorf("FeatureGates(%d) lists %q but lookup fails", m, n)
			}
		}
	}
}

func TestClosestGate(t *testing.T) {
	tests := []struct {
		minor      int
		name, want string
	}{
		{37, "DRAAdminAcess", "DRAAdminAccess"},
		{33, "DRAAdminAcess", "DRAAdminAccess"},
		{37, "dynamicresourceallocation", "DynamicResourceAllocation"},
		{35, "DynamicResourceAlocaton", "DynamicResourceAllocation"},
		{37, "DynamicResourceAllocation", "DynamicResourceAllocation"},
		// The 1.37-only gate has no near match in 1.33.
		{33, "APIServerWebhookAuthenticationToken", ""},
		{37, "APIServerWebhookAuthenticationTokn", "APIServerWebhookAuthenticationToken"},
		{37, "NotARealFeatureGateAtAll", ""},
		{37, "", ""},
	}
	for _, tt := range tests {
		if got := closestGate(tt.minor, tt.name); got != tt.want {
			t.Errorf("closestGate(%d, %q) = %q, want %q", tt.minor, tt.name, got, tt.want)
		}
	}
}
