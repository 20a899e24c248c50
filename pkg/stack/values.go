package stack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"helm.sh/helm/v4/pkg/strvals"

	"github.com/kaic-dev/kaic/pkg/profile"
)

// Overrides are --set values by component name, merged over the profile's
// values of that component.
type Overrides map[string]map[string]any

// ParseSet parses --set arguments of the form COMPONENT.KEY=VALUE, where
// KEY is a Helm --set path (a.b[0].c=v, lists in braces, commas for several
// values of one component).
func ParseSet(args []string) (Overrides, error) {
	out := Overrides{}
	for _, arg := range args {
		comp, rest, ok := strings.Cut(arg, ".")
		if !ok || comp == "" || strings.HasPrefix(rest, "=") || !strings.Contains(rest, "=") || strings.Index(arg, "=") < len(comp) {
			return nil, fmt.Errorf("--set %q: want COMPONENT.KEY=VALUE, e.g. kueue.controllerManager.replicas=2", arg)
		}
		if out[comp] == nil {
			out[comp] = map[string]any{}
		}
		if err := strvals.ParseInto(rest, out[comp]); err != nil {
			return nil, fmt.Errorf("--set %q: %w", arg, err)
		}
	}
	return out, nil
}

// componentValues returns the values a component is installed with: its
// values (component defaults already merged with the profile's overrides
// by the profile loader) with the --set overrides on top, normalised to
// what JSON can hold so that they compare equal to a stored release's.
func componentValues(c profile.Component, set Overrides) (map[string]any, error) {
	merged := mergeMaps(c.Values, set[c.Name])
	return normalize(merged)
}

// values are the values Install uses for a component: componentValues over
// the embedded charts' defaults (WithEmbeddedChartValues) for a kaic://
// chart.
func (in *Installer) values(c profile.Component) (map[string]any, error) {
	if c.Helm != nil && strings.HasPrefix(c.Helm.Chart, profile.EmbeddedChartScheme) && len(in.embeddedValues) > 0 {
		c.Values = mergeMaps(in.embeddedValues, c.Values)
	}
	return componentValues(c, in.set)
}

// mergeMaps returns base with over merged into it: maps merge key by key,
// anything else in over replaces what base has. Neither input is modified.
func mergeMaps(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if bm, ok := out[k].(map[string]any); ok {
			if om, ok := v.(map[string]any); ok {
				out[k] = mergeMaps(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

func normalize(v map[string]any) (map[string]any, error) {
	if v == nil {
		return map[string]any{}, nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	out := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	return out, nil
}

// sameValues reports whether two value trees are equal once normalised.
func sameValues(a, b map[string]any) bool {
	na, err1 := normalize(a)
	nb, err2 := normalize(b)
	if err1 != nil || err2 != nil {
		return false
	}
	ja, _ := json.Marshal(na)
	jb, _ := json.Marshal(nb)
	return bytes.Equal(ja, jb)
}
