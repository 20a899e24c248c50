package profile

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/kaic-dev/kaic/stacks"
)

// componentFile is the on-disk form of a built-in stack component.
type componentFile struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Metadata   Metadata  `json:"metadata"`
	Spec       Component `json:"spec"`
}

// ComponentCatalog holds built-in stack components by name.
type ComponentCatalog struct {
	byName map[string]Component
}

// LoadComponentCatalog reads every <name>.yaml of fsys as a stack component.
// A nil fsys reads kaic's built-in stacks.
func LoadComponentCatalog(fsys fs.FS) (*ComponentCatalog, error) {
	if fsys == nil {
		fsys = stacks.FS
	}
	files, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, err
	}
	cat := &ComponentCatalog{byName: map[string]Component{}}
	var errs ErrorList
	for _, f := range files {
		data, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, err
		}
		c, err := parseComponent("stacks/"+f, data)
		var list ErrorList
		if err != nil && !errors.As(err, &list) {
			return nil, err
		}
		errs = append(errs, list...)
		if want := strings.TrimSuffix(f, ".yaml"); c.Name != want {
			errs = append(errs, &FieldError{File: "stacks/" + f, Path: "metadata.name", Message: fmt.Sprintf("must match the file name %q", want), Value: c.Name, HasValue: true})
			continue
		}
		if err == nil {
			cat.byName[c.Name] = c
		}
	}
	return cat, errs.errOrNil()
}

func parseComponent(file string, data []byte) (Component, error) {
	doc, err := parseDocument(file, data, &componentFile{})
	if err != nil {
		return Component{}, err
	}
	var cf componentFile
	if err := decodeInto(doc.value, &cf); err != nil {
		return Component{}, fmt.Errorf("%s: %w", file, err)
	}
	errs := &fieldErrors{file: file, lines: doc.lines}
	if cf.APIVersion != APIVersion {
		errs.invalid("apiVersion", cf.APIVersion, "must be %s", APIVersion)
	}
	if cf.Kind != ComponentKind {
		errs.invalid("kind", cf.Kind, "must be %s", ComponentKind)
	}
	if cf.Spec.Name != "" && cf.Spec.Name != cf.Metadata.Name {
		errs.invalid("spec.name", cf.Spec.Name, "must be empty or equal metadata.name")
	}
	c := cf.Spec
	c.Name = cf.Metadata.Name
	if c.Description == "" {
		c.Description = cf.Metadata.Description
	}
	c.Source = "builtin"
	if c.Supports != nil {
		c.Supports.Version = c.ChartVersion()
	}
	validateComponentDefinition(errs, "spec", c)
	return c, errs.list.errOrNil()
}

// Names lists the catalog's components, sorted.
func (c *ComponentCatalog) Names() []string {
	out := make([]string, 0, len(c.byName))
	for n := range c.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Get returns a built-in component by name.
func (c *ComponentCatalog) Get(name string) (Component, bool) {
	comp, ok := c.byName[name]
	return comp, ok
}

// resolveComponent turns a profile's component entry into a full
// definition: a built-in with the entry's overrides, or the inline entry.
func (c *ComponentCatalog) resolveComponent(entry Component) (Component, bool) {
	if entry.Helm != nil || entry.Manifests != nil {
		entry.Source = "profile"
		return entry, true
	}
	base, ok := c.byName[entry.Name]
	if !ok {
		return entry, false
	}
	out := base
	out.Helm = cloneHelm(base.Helm)
	if entry.Version != "" {
		out.Version = entry.Version
		if out.Helm != nil {
			out.Helm.Version = entry.Version
		}
	}
	if entry.Namespace != "" {
		out.Namespace = entry.Namespace
	}
	if entry.Values != nil {
		out.Values = mergeValues(base.Values, entry.Values, "").(map[string]any)
	}
	if entry.DependsOn != nil {
		out.DependsOn = entry.DependsOn
	}
	if entry.Readiness != nil {
		out.Readiness = entry.Readiness
	}
	if entry.Description != "" {
		out.Description = entry.Description
	}
	if entry.Supports != nil {
		s := *entry.Supports
		s.Version = out.ChartVersion()
		out.Supports = &s
	}
	return out, true
}

func cloneHelm(h *HelmChart) *HelmChart {
	if h == nil {
		return nil
	}
	c := *h
	return &c
}

// ChartVersion is the version a component installs.
func (c Component) ChartVersion() string {
	if c.Helm != nil && c.Helm.Version != "" {
		return c.Helm.Version
	}
	return c.Version
}

// ReleaseName is the Helm release name of a chart component.
func (c Component) ReleaseName() string {
	if c.Helm != nil && c.Helm.ReleaseName != "" {
		return c.Helm.ReleaseName
	}
	return c.Name
}

// InstallOrder sorts components so that each comes after its dependencies,
// grouped in waves whose members may install concurrently. Names within a
// wave are sorted, so the order is stable. A cycle is an error naming it.
func InstallOrder(components []Component) ([][]Component, error) {
	byName := map[string]Component{}
	for _, c := range components {
		byName[c.Name] = c
	}
	if cycle := findCycle(components); cycle != nil {
		return nil, fmt.Errorf("dependency cycle: %s", strings.Join(cycle, " → "))
	}
	done := map[string]bool{}
	var waves [][]Component
	for len(done) < len(byName) {
		var wave []Component
		for _, c := range components {
			if done[c.Name] {
				continue
			}
			ready := true
			for _, d := range c.DependsOn {
				if _, known := byName[d]; known && !done[d] {
					ready = false
					break
				}
			}
			if ready {
				wave = append(wave, c)
			}
		}
		if len(wave) == 0 {
			return nil, fmt.Errorf("dependency order: no component can start")
		}
		sort.Slice(wave, func(i, j int) bool { return wave[i].Name < wave[j].Name })
		for _, c := range wave {
			done[c.Name] = true
		}
		waves = append(waves, wave)
	}
	return waves, nil
}

// findCycle returns the first dependency cycle found, as the names along it
// with the first repeated at the end, or nil.
func findCycle(components []Component) []string {
	deps := map[string][]string{}
	names := make([]string, 0, len(components))
	for _, c := range components {
		deps[c.Name] = c.DependsOn
		names = append(names, c.Name)
	}
	sort.Strings(names)
	const (
		unvisited = iota
		onStack
		finished
	)
	state := map[string]int{}
	var stack []string
	var visit func(string) []string
	visit = func(n string) []string {
		state[n] = onStack
		stack = append(stack, n)
		for _, d := range deps[n] {
			if _, known := deps[d]; !known {
				continue
			}
			switch state[d] {
			case onStack:
				for i, s := range stack {
					if s == d {
						return append(append([]string{}, stack[i:]...), d)
					}
				}
			case unvisited:
				if c := visit(d); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = finished
		return nil
	}
	for _, n := range names {
		if state[n] == unvisited {
			if c := visit(n); c != nil {
				return c
			}
		}
	}
	return nil
}

// isLocalChart reports whether a chart reference is a local path.
func isLocalChart(h *HelmChart) bool {
	return h.Repo == "" && !strings.HasPrefix(h.Chart, "oci://") && (strings.HasPrefix(h.Chart, "/") || strings.HasPrefix(h.Chart, ".") || path.Ext(h.Chart) == ".tgz")
}
