package ownership

import (
	"testing"
	"time"
)

func TestNewRunIDIsValidAndUnique(t *testing.T) {
	now := time.Date(2026, 12, 3, 23, 0, 0, 0, time.FixedZone("x", -3*3600))
	a, b := NewRunID(now), NewRunID(now)
	if a == b {
		t.Fatalf("two run ids are equal: %s", a)
	}
	for _, id := range []string{a, b} {
		if err := ValidRunID(id); err != nil {
			t.Error(err)
		}
		if id[:8] != "20261204" {
			t.Errorf("run id %s: want the UTC date 20261204 first", id)
		}
	}
	for _, bad := range []string{"", "x", "20261204-XYZ", "20261204-8f3a91c2 "} {
		if ValidRunID(bad) == nil {
			t.Errorf("ValidRunID(%q) accepted it", bad)
		}
	}
}

func TestCreatedBy(t *testing.T) {
	mine := Labels("20261203-00000001")
	cases := []struct {
		name   string
		labels map[string]string
		run    string
		want   bool
		owner  string
	}{
		{"this run", mine, "20261203-00000001", true, "kaic run 20261203-00000001"},
		{"another run", mine, "20261203-00000002", false, "kaic run 20261203-00000001"},
		{"no run id asked", mine, "", false, "kaic run 20261203-00000001"},
		{"helm", map[string]string{ManagedByLabel: "Helm"}, "20261203-00000001", false, "Helm"},
		{"kaic without id", map[string]string{ManagedByLabel: "kaic"}, "20261203-00000001", false, "kaic (no run id)"},
		{"nothing", nil, "20261203-00000001", false, "not labelled as managed by any tool"},
	}
	for _, c := range cases {
		if got := CreatedBy(c.labels, c.run); got != c.want {
			t.Errorf("%s: CreatedBy = %v, want %v", c.name, got, c.want)
		}
		if got := Owner(c.labels); got != c.owner {
			t.Errorf("%s: Owner = %q, want %q", c.name, got, c.owner)
		}
	}
}
