package stack

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	chart "helm.sh/helm/v4/pkg/chart/v2"

	"github.com/kaic-dev/kaic/pkg/profile"
)

// ChartMismatchError lists what a component declares that its chart or
// manifests do not have: readiness names no object carries, and values
// keys the chart's values.yaml does not know.
type ChartMismatchError struct {
	Component string
	// Source is the chart or manifest set checked.
	Source   string
	Problems []string
}

func (e *ChartMismatchError) Error() string {
	return fmt.Sprintf("component %s does not match %s: %s", e.Component, e.Source, strings.Join(e.Problems, "; "))
}

// CheckAgainstChart compares what a component declares with what it would
// install. Every CRD, Deployment, DaemonSet, APIService and webhook
// configuration its readiness names must be among the objects its chart
// renders (with the component's values, CRDs included) or its manifests
// hold; every key of its values, at any depth, must be a key of the chart's
// values.yaml or of a subchart's. A key beneath a map the chart leaves
// empty, or beneath a value that is not a map, is the chart's to accept. A
// readiness wait for an object that never comes times out only on a
// cluster, and a misspelt values key is silently ignored by Helm: this
// finds both before anything is installed. The chart is rendered on the
// client; nothing is sent to a cluster.
func (in *Installer) CheckAgainstChart(ctx context.Context, c profile.Component) error {
	ns := namespaceOf(c)
	var (
		rendered []ObjectRef
		source   string
		problems []string
	)
	switch {
	case c.Helm != nil:
		lc, err := in.loadChart(ctx, c.Helm)
		if err != nil {
			return err
		}
		source = fmt.Sprintf("chart %s %s", lc.chart.Metadata.Name, lc.chart.Metadata.Version)
		// Values first: rendering merges subcharts' values into the chart's.
		for _, k := range unknownValues(lc.chart, c.Values) {
			problems = append(problems, fmt.Sprintf("values key %s is not in the chart's values.yaml", k))
		}
		manifest, err := in.renderChart(ctx, c, lc, false)
		if err != nil {
			return err
		}
		rendered = manifestObjects(manifest, ns)
	case c.Manifests != nil:
		objs, err := in.loadManifests(ctx, c.Manifests)
		if err != nil {
			return err
		}
		source = "its manifests"
		for _, o := range objs {
			on := o.GetNamespace()
			if on == "" && namespacedGuess(o.GetKind()) {
				on = ns
			}
			rendered = append(rendered, ObjectRef{APIVersion: o.GetAPIVersion(), Kind: o.GetKind(), Namespace: on, Name: o.GetName()})
		}
	default:
		return nil
	}
	problems = append(unrenderedReadiness(c.Readiness, rendered, ns), problems...)
	if len(problems) == 0 {
		return nil
	}
	return &ChartMismatchError{Component: c.Name, Source: source, Problems: problems}
}

// unrenderedReadiness names the readiness objects missing from rendered.
func unrenderedReadiness(r *profile.Readiness, rendered []ObjectRef, ns string) []string {
	if r == nil {
		return nil
	}
	have := map[string]bool{}
	for _, o := range rendered {
		have[o.Kind+" "+o.Namespace+"/"+o.Name] = true
	}
	var out []string
	check := func(field, kind string, namespaced bool, names []string, kinds ...string) {
		for _, n := range names {
			on, name := "", n
			if namespaced {
				on, name = splitName(n, ns)
			}
			found := false
			for _, k := range append([]string{kind}, kinds...) {
				found = found || have[k+" "+on+"/"+name]
			}
			if !found {
				shown := name
				if namespaced {
					shown = on + "/" + name
				}
				out = append(out, fmt.Sprintf("readiness.%s names %s %s, which it never creates", field, kind, shown))
			}
		}
	}
	check("crds", "CustomResourceDefinition", false, r.CRDs)
	check("deployments", "Deployment", true, r.Deployments)
	check("daemonSets", "DaemonSet", true, r.DaemonSets)
	check("apiServices", "APIService", false, r.APIServices)
	check("webhooks", "ValidatingWebhookConfiguration", false, r.Webhooks, "MutatingWebhookConfiguration")
	return out
}

// unknownValues returns the keys of vals, as dotted paths, that ch's
// values do not have.
func unknownValues(ch *chart.Chart, vals map[string]any) []string {
	subcharts := map[string]*chart.Chart{}
	for _, d := range ch.Dependencies() {
		subcharts[d.Name()] = d
	}
	if ch.Metadata != nil {
		for _, d := range ch.Metadata.Dependencies {
			if sub, ok := subcharts[d.Name]; ok && d.Alias != "" {
				subcharts[d.Alias] = sub
			}
		}
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(vals)) {
		if k == "global" {
			continue
		}
		// Subcharts first: rendering copies their values into the parent's.
		sub, ok := subcharts[k]
		if !ok {
			if def, ok := ch.Values[k]; ok {
				out = append(out, unknownBeneath(k, def, vals[k])...)
			} else {
				out = append(out, k)
			}
			continue
		}
		sv, _ := vals[k].(map[string]any)
		// A dependency's condition is conventionally <name>.enabled.
		rest := map[string]any{}
		for sk, val := range sv {
			if sk != "enabled" {
				rest[sk] = val
			}
		}
		for _, p := range unknownValues(sub, rest) {
			out = append(out, k+"."+p)
		}
	}
	return out
}

// unknownBeneath compares an override with the chart's default at path.
func unknownBeneath(path string, def, over any) []string {
	dm, ok := def.(map[string]any)
	if !ok || len(dm) == 0 {
		return nil
	}
	om, ok := over.(map[string]any)
	if !ok {
		return nil
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(om)) {
		d, ok := dm[k]
		if !ok {
			out = append(out, path+"."+k)
			continue
		}
		out = append(out, unknownBeneath(path+"."+k, d, om[k])...)
	}
	return out
}
