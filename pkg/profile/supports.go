package profile

import (
	"fmt"
	"strconv"
	"strings"
)

// Supports states the Kubernetes minors a component's pinned version
// supports, as its upstream says, and where upstream says so.
type Supports struct {
	// Kubernetes is a range of minors: "1.33-1.36", or "1.33+" when
	// upstream states only a lower bound.
	Kubernetes string `json:"kubernetes"`
	// Source is where upstream states it (a URL, or a file of the release).
	Source string `json:"source"`
	// Checked is the date the statement was read (YYYY-MM-DD).
	Checked string `json:"checked"`
	// Version is the component version the statement is about; a profile
	// that installs another version gets no range. Set by the loader from
	// the built-in's pinned version.
	Version string `json:"-"`
}

// minorRange is a parsed Supports.Kubernetes; max 0 means no upper bound.
type minorRange struct{ min, max int }

// parseMinor reads "1.36", "v1.36" or "v1.36.2" as the minor 36.
func parseMinor(s string) (int, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	parts := strings.Split(s, ".")
	if len(parts) < 2 || parts[0] != "1" {
		return 0, fmt.Errorf("%q is not a Kubernetes 1.x version", s)
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a Kubernetes 1.x version", s)
	}
	return n, nil
}

func parseRange(s string) (minorRange, error) {
	if lo, ok := strings.CutSuffix(strings.TrimSpace(s), "+"); ok {
		n, err := parseMinor(lo)
		return minorRange{min: n}, err
	}
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return minorRange{}, fmt.Errorf("want a range of minors such as 1.33-1.36 or 1.33+")
	}
	a, err := parseMinor(lo)
	if err != nil {
		return minorRange{}, err
	}
	b, err := parseMinor(hi)
	if err != nil {
		return minorRange{}, err
	}
	if b < a {
		return minorRange{}, fmt.Errorf("the range ends before it starts")
	}
	return minorRange{min: a, max: b}, nil
}

// Covers reports whether the range includes the minor of version (v1.37.0,
// 1.37); an unparsable range or version is an error.
func (s Supports) Covers(version string) (bool, error) {
	r, err := parseRange(s.Kubernetes)
	if err != nil {
		return false, err
	}
	m, err := parseMinor(version)
	if err != nil {
		return false, err
	}
	return m >= r.min && (r.max == 0 || m <= r.max), nil
}

// Minors is the range for people: "1.33–1.36" or "1.33 and later".
func (s Supports) Minors() string {
	r, err := parseRange(s.Kubernetes)
	if err != nil {
		return s.Kubernetes
	}
	if r.max == 0 {
		return fmt.Sprintf("1.%d and later", r.min)
	}
	return fmt.Sprintf("1.%d–1.%d", r.min, r.max)
}

// StatedSupport is the support range stated for the version the component
// installs, or nil: none is stated, or it is about another version (a
// profile that overrides a built-in's version).
func (c Component) StatedSupport() *Supports {
	if s := c.Supports; s != nil && (s.Version == "" || s.Version == c.ChartVersion()) {
		return s
	}
	return nil
}

// SupportGap is a component whose stated range leaves out the profile's
// Kubernetes version.
type SupportGap struct {
	Component  string   `json:"component"`
	Version    string   `json:"version"`
	Kubernetes string   `json:"kubernetes"`
	Supports   Supports `json:"supports"`
}

func (g SupportGap) String() string {
	return fmt.Sprintf("%s %s supports Kubernetes %s (%s, read %s); the profile runs %s",
		g.Component, g.Version, g.Supports.Minors(), g.Supports.Source, g.Supports.Checked, g.Kubernetes)
}

// SupportGaps lists the components whose stated support range leaves out
// kubernetesVersion. Components without a statement, or installing another
// version than the one the statement is about, are not judged.
func SupportGaps(kubernetesVersion string, components []Component) []SupportGap {
	if kubernetesVersion == "" {
		return nil
	}
	var gaps []SupportGap
	for _, c := range components {
		s := c.StatedSupport()
		if s == nil {
			continue
		}
		if ok, err := s.Covers(kubernetesVersion); err == nil && !ok {
			gaps = append(gaps, SupportGap{Component: c.Name, Version: c.ChartVersion(), Kubernetes: kubernetesVersion, Supports: *s})
		}
	}
	return gaps
}
