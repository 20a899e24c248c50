package profile

//go:generate go run ../../hack/featuregates

import (
	"sort"
	"strings"
	"sync"
)

// featureGate is a feature gate's state at one Kubernetes minor.
type featureGate struct {
	Stage   string // ALPHA, BETA, GA or DEPRECATED
	Default bool   // enabled when not set
	Locked  bool   // locked to Default: setting the other value is rejected
}

// featureGatesByMinor holds the decoded featureGateTable, indexed by
// minor-featureGateFirstMinor.
var featureGatesByMinor = sync.OnceValue(func() []map[string]featureGate {
	byMinor := make([]map[string]featureGate, featureGateLastMinor-featureGateFirstMinor+1)
	for i := range byMinor {
		byMinor[i] = map[string]featureGate{}
	}
	for _, row := range featureGateTable {
		for i, tok := range strings.Fields(row[1]) {
			if g, ok := decodeFeatureGate(tok); ok && i < len(byMinor) {
				byMinor[i][row[0]] = g
			}
		}
	}
	return byMinor
})

// decodeFeatureGate decodes one token of featureGateTable ("B+", "G+!", "-").
func decodeFeatureGate(tok string) (featureGate, bool) {
	if len(tok) < 2 {
		return featureGate{}, false
	}
	var g featureGate
	switch tok[0] {
	case 'A':
		g.Stage = "ALPHA"
	case 'B':
		g.Stage = "BETA"
	case 'G':
		g.Stage = "GA"
	case 'D':
		g.Stage = "DEPRECATED"
	default:
		return featureGate{}, false
	}
	g.Default = tok[1] == '+'
	g.Locked = len(tok) > 2 && tok[2] == '!'
	return g, true
}

// featureGatesOf returns the gates of Kubernetes 1.minor, nil outside the table's
// range.
func featureGatesOf(minor int) map[string]featureGate {
	if minor < featureGateFirstMinor || minor > featureGateLastMinor {
		return nil
	}
	return featureGatesByMinor()[minor-featureGateFirstMinor]
}

// lookupFeatureGate returns the state of the feature gate name in Kubernetes
// 1.minor. Names are case-sensitive, as in the components' --feature-gates
// flag; ok is false when that minor does not know the gate.
func lookupFeatureGate(minor int, name string) (featureGate, bool) {
	g, ok := featureGatesOf(minor)[name]
	return g, ok
}

// closestGate returns the gate of Kubernetes 1.minor nearest to name,
// ignoring case, for a "did you mean" hint: the one with the smallest edit
// distance, at most 3, ties broken alphabetically. It returns "" when no gate
// is that close.
func closestGate(minor int, name string) string {
	const maxDistance = 3
	lower := strings.ToLower(name)
	best, bestDist := "", maxDistance+1
	for gate := range featureGatesOf(minor) {
		if d := len(gate) - len(name); d > maxDistance || d < -maxDistance {
			continue
		}
		d := editDistance(lower, strings.ToLower(gate))
		if d < bestDist || (d == bestDist && gate < best) {
			best, bestDist = gate, d
		}
	}
	return best
}

// FeatureGates returns the sorted names of the feature gates Kubernetes
// 1.minor accepts, nil for a minor outside the supported range.
func FeatureGates(minor int) []string {
	gates := featureGatesOf(minor)
	if gates == nil {
		return nil
	}
	names := make([]string, 0, len(gates))
	for name := range gates {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
