package kaic

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/evidence"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/provision/capi"
)

// Plan is a dry run of a profile.
type Plan struct {
	Profile   *profile.Profile `json:"profile"`
	Source    string           `json:"source"`
	Digest    string           `json:"digest"`
	Simulated bool             `json:"simulated"`
	Cluster   Cluster          `json:"cluster"`
	// Accelerators says how the checks' pods get accelerators.
	Accelerators Accelerators `json:"accelerators"`
	Releases     []Release    `json:"releases"`
	Checks       []Check      `json:"checks"`
	// ProbeImage is the image check pods and kaic's own charts run.
	ProbeImage ProbeImagePlan `json:"probeImage"`
	Warnings   []string       `json:"warnings,omitempty"`
	// SupportGaps are the components whose upstream-stated Kubernetes
	// range leaves out the profile's version (also in Warnings).
	SupportGaps []profile.SupportGap `json:"supportGaps,omitempty"`
}

// Cluster is what the provision phase would create or adopt.
type Cluster struct {
	Backend profile.Backend `json:"backend"`
	// KindConfig is the kind cluster configuration (kind backend).
	KindConfig string `json:"kindConfig,omitempty"`
	// CAPI is the Cluster API plan (capi backend).
	CAPI *capi.Plan `json:"capi,omitempty"`
	// Existing names the kubeconfig and context adopted (existing backend).
	Existing *profile.ExistingCluster `json:"existing,omitempty"`
}

// Accelerators is how the checks' pods get and observe accelerators.
type Accelerators struct {
	Model string `json:"model"`
	// Allocation is dra or device-plugin.
	Allocation string `json:"allocation"`
	// ResourceName is the extended resource pods request (device-plugin).
	ResourceName string `json:"resourceName,omitempty"`
	// DRADriver and DeviceClass serve the pods' claims (dra), and the
	// checks whose requirement is DRA itself in either mode.
	DRADriver   string `json:"draDriver,omitempty"`
	DeviceClass string `json:"deviceClass,omitempty"`
	// Evidence is how a container proves it holds a device.
	Evidence string `json:"evidence"`
}

// String says it in one line.
func (a Accelerators) String() string {
	if a.Allocation == profile.AllocationDevicePlugin {
		return fmt.Sprintf("model %s, allocated by a device plugin: pods request %s; a container holds a device when it sees %s", a.Model, a.ResourceName, a.Evidence)
	}
	return fmt.Sprintf("model %s, allocated through DRA: claims of DeviceClass %s (driver %s); a container holds a device when it sees %s", a.Model, a.DeviceClass, a.DRADriver, a.Evidence)
}

func acceleratorsOf(a profile.Accelerator) Accelerators {
	out := Accelerators{Model: a.Model, Allocation: a.Allocation, DRADriver: a.DRADriver, DeviceClass: a.DeviceClass}
	if a.DevicePlugin() {
		out.ResourceName = a.ResourceName
	}
	var ways []string
	if a.DeviceEnvPrefix != "" {
		ways = append(ways, "environment variables "+a.DeviceEnvPrefix+"*")
	}
	if a.DeviceGlob != "" {
		ways = append(ways, "device files "+a.DeviceGlob)
	}
	out.Evidence = strings.Join(ways, " or ")
	return out
}

// Release is one stack component as it would be installed.
type Release struct {
	// Wave is the install wave: components of one wave install concurrently
	// once every earlier wave is ready.
	Wave      int      `json:"wave"`
	Name      string   `json:"name"`
	Type      string   `json:"type"` // helm or manifests
	Chart     string   `json:"chart,omitempty"`
	Repo      string   `json:"repo,omitempty"`
	Version   string   `json:"version,omitempty"`
	Digest    string   `json:"digest,omitempty"`
	Namespace string   `json:"namespace,omitempty"`
	DependsOn []string `json:"dependsOn,omitempty"`
	Source    string   `json:"source"`
	Sources   []string `json:"sources,omitempty"` // manifests: where they come from
	// Supports is the Kubernetes range upstream states for this version
	// ("1.33–1.36"), empty when none is recorded.
	Supports string `json:"supports,omitempty"`
}

// Check is one requirement of the conformance version and what the run
// would do about it.
type Check struct {
	ID       string `json:"id"`
	Category string `json:"category"`
	Level    string `json:"level"`
	TestName string `json:"testName"`
	// Action is run, N/A (opted out, not run) or skip (excluded).
	Action string `json:"action"`
	Notes  string `json:"notes,omitempty"`
}

// Actions a check can be planned for.
const (
	ActionRun  = "run"
	ActionNA   = "N/A"
	ActionSkip = "skip"
)

// NewLoader returns the profile loader every command uses: built-in
// profiles and stacks, requirement ids checked against kaic's catalog.
func NewLoader() *profile.Loader {
	return &profile.Loader{Requirements: RequirementLevels}
}

// RequirementLevels maps a conformance version's requirement ids to levels.
func RequirementLevels(version string) (map[string]string, error) {
	cat, err := conformance.Builtin(version)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(cat.Requirements))
	for _, r := range cat.Requirements {
		out[r.ID] = string(r.Level)
	}
	return out, nil
}

// buildPlan computes the plan of a loaded profile; getenv reads the
// environment variables Cluster API variables refer to.
func buildPlan(r *profile.Resolved, getenv func(string) string) (*Plan, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	p := r.Profile
	pl := &Plan{Profile: p, Source: r.Source, Digest: r.Digest, Simulated: p.IsSimulated(), Warnings: append([]string{}, r.Warnings...)}
	pl.Cluster.Backend = p.Spec.Cluster.Backend
	pl.Accelerators = acceleratorsOf(p.Spec.Accelerator)
	b, err := backendOf(p)
	if err != nil {
		return nil, err
	}
	warnings, err := b.plan(p, getenv, &pl.Cluster)
	if err != nil {
		return nil, err
	}
	pl.Warnings = append(pl.Warnings, warnings...)
	waves, err := profile.InstallOrder(r.Components)
	if err != nil {
		return nil, err
	}
	for i, wave := range waves {
		for _, c := range wave {
			pl.Releases = append(pl.Releases, release(i+1, c))
		}
	}
	pl.SupportGaps = profile.SupportGaps(p.Spec.KubernetesVersion, r.Components)
	for _, g := range pl.SupportGaps {
		pl.Warnings = append(pl.Warnings, g.String())
	}
	checks, err := planChecks(p)
	if err != nil {
		return nil, err
	}
	pl.Checks = checks
	if pl.Simulated {
		pl.Warnings = append(pl.Warnings, "accelerators are simulated: the evidence of this run demonstrates kaic and the stack, it is not certification evidence")
	}
	if logo := p.Spec.Product.ProductLogoURL; logo != "" && !strings.HasPrefix(logo, "[") && !evidence.LogoFormat(logo) {
		pl.Warnings = append(pl.Warnings, fmt.Sprintf("spec.product.productLogoUrl %q is not an SVG, EPS or AI file, the formats the submission instructions ask for: kaic validate will refuse it", logo))
	}
	if ph := p.Spec.Product.Placeholders(); len(ph) > 0 {
		pl.Warnings = append(pl.Warnings, "PRODUCT.yaml metadata still has placeholders or empty values: "+strings.Join(ph, ", "))
	}
	return pl, nil
}

func release(wave int, c profile.Component) Release {
	rel := Release{Wave: wave, Name: c.Name, Namespace: c.Namespace, DependsOn: c.DependsOn, Source: c.Source, Version: c.ChartVersion()}
	if s := c.StatedSupport(); s != nil {
		rel.Supports = s.Minors()
	}
	if h := c.Helm; h != nil {
		rel.Type = "helm"
		rel.Chart, rel.Repo, rel.Digest = h.Chart, h.Repo, h.Digest
		if rel.Name != c.ReleaseName() {
			rel.Name = c.Name + " (release " + c.ReleaseName() + ")"
		}
		return rel
	}
	rel.Type = "manifests"
	if m := c.Manifests; m != nil {
		for _, u := range m.URLs {
			rel.Sources = append(rel.Sources, u.URL)
		}
		rel.Sources = append(rel.Sources, m.Files...)
		for _, mod := range m.Modules {
			rel.Sources = append(rel.Sources, fmt.Sprintf("%s@%s/%s", mod.Path, mod.Version, mod.Dir))
		}
	}
	return rel
}

func planChecks(p *profile.Profile) ([]Check, error) {
	cat, err := conformance.Builtin(p.Spec.ConformanceVersion)
	if err != nil {
		return nil, err
	}
	include := toSet(p.Spec.Checks.Include)
	exclude := toSet(p.Spec.Checks.Exclude)
	optOut := map[string]profile.OptOut{}
	for _, o := range p.Spec.Checks.OptOuts {
		optOut[o.ID] = o
	}
	out := make([]Check, 0, len(cat.Requirements))
	for _, req := range cat.Requirements {
		c := Check{ID: req.ID, Category: req.Category, Level: string(req.Level), TestName: conformance.TestName(req.ID), Action: ActionRun}
		switch o, ok := optOut[req.ID]; {
		case ok:
			c.Action, c.Notes = ActionNA, o.Notes
		case exclude[req.ID]:
			c.Action, c.Notes = ActionSkip, "excluded by spec.checks.exclude"
		case len(include) > 0 && !include[req.ID]:
			c.Action, c.Notes = ActionSkip, "not in spec.checks.include"
		case p.Spec.Accelerator.DevicePlugin():
			c.Notes = devicePluginNotes[req.ID]
		}
		out = append(out, c)
	}
	order := map[string]int{}
	for i, c := range conformance.Categories() {
		order[c] = i
	}
	sort.SliceStable(out, func(i, j int) bool { return order[out[i].Category] < order[out[j].Category] })
	return out, nil
}

// devicePluginNotes say what a check does differently when accelerators
// are allocated by a device plugin.
var devicePluginNotes = map[string]string{
	"dra_support":               "DRA itself: needs the DRA API and the model's DeviceClass",
	"gpu_sharing":               "verified only where node labels declare shared units",
	"driver_runtime_management": "driver version from node labels; not verified without",
	"accelerator_metrics":       "devices per node from allocatable and exporter series",
}

func toSet(ids []string) map[string]bool {
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out
}
