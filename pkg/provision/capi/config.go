package capi

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/util/version"
	clusterctlv1 "sigs.k8s.io/cluster-api/cmd/clusterctl/api/v1alpha3"
	clusterctlconfig "sigs.k8s.io/cluster-api/cmd/clusterctl/client/config"
	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/pkg/profile"
)

// CertManagerRepository is the key of CAPIProviders.Repositories that
// replaces where clusterctl reads cert-manager's manifest from.
const CertManagerRepository = "cert-manager"

// Keys clusterctl reads from its configuration besides variables.
const (
	configKeyProviders       = "providers"
	configKeyCertManager     = "cert-manager"
	configKeyImages          = "images"
	configKeyOverridesFolder = "overridesFolder"
	configKeyGitHubToken     = "github-token"
)

// componentFiles are the file names clusterctl expects in a provider
// release, by provider kind.
var componentFiles = map[string]string{
	"core":           "core-components.yaml",
	"bootstrap":      "bootstrap-components.yaml",
	"controlPlane":   "control-plane-components.yaml",
	"infrastructure": "infrastructure-components.yaml",
}

// providerTypes maps the profile's provider kinds to clusterctl's.
var providerTypes = map[string]clusterctlv1.ProviderType{
	"core":           clusterctlv1.CoreProviderType,
	"bootstrap":      clusterctlv1.BootstrapProviderType,
	"controlPlane":   clusterctlv1.ControlPlaneProviderType,
	"infrastructure": clusterctlv1.InfrastructureProviderType,
}

// configReader is the clusterctl configuration kaic serves in-process
// instead of clusterctl.yaml and the environment: the profile's variables,
// its provider repository overrides and cert-manager's location. Nothing
// else leaks in, so a run does what its profile says on any machine.
type configReader struct {
	mu     sync.Mutex
	values map[string]string
}

var _ clusterctlconfig.Reader = (*configReader)(nil)

// Init does nothing: everything is set when the reader is built.
func (r *configReader) Init(context.Context, string) error { return nil }

// Get returns a variable or configuration value.
func (r *configReader) Get(key string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.values[key]; ok {
		return v, nil
	}
	return "", fmt.Errorf("%s is not set: add it to spec.cluster.capi.variables", key)
}

// Set overrides a value; clusterctl sets the template's implicit variables
// (CLUSTER_NAME, NAMESPACE, …) this way.
func (r *configReader) Set(key, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.values[key] = value
}

// UnmarshalKey decodes a structured value; an absent key leaves out
// untouched, as clusterctl expects.
func (r *configReader) UnmarshalKey(key string, out any) error {
	r.mu.Lock()
	v, ok := r.values[key]
	r.mu.Unlock()
	if !ok {
		return nil
	}
	return yaml.Unmarshal([]byte(v), out)
}

// has reports whether key has a value.
func (r *configReader) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.values[key]
	return ok
}

// providerEntry is one element of clusterctl's "providers" list.
type providerEntry struct {
	Name string                    `json:"name"`
	URL  string                    `json:"url"`
	Type clusterctlv1.ProviderType `json:"type"`
}

// certManagerEntry is clusterctl's "cert-manager" configuration.
type certManagerEntry struct {
	URL     string `json:"url,omitempty"`
	Version string `json:"version,omitempty"`
}

// newConfigReader builds the configuration for a profile. vars are the
// resolved template variables; overridesDir is where clusterctl may look
// for local overrides (a directory of the run, never the user's config).
func newConfigReader(c *profile.CAPICluster, vars map[string]string, overridesDir string, getenv func(string) string) (*configReader, error) {
	r := &configReader{values: maps.Clone(vars)}
	if r.values == nil {
		r.values = map[string]string{}
	}
	providers, err := providerOverrides(c)
	if err != nil {
		return nil, err
	}
	data, err := yaml.Marshal(providers)
	if err != nil {
		return nil, err
	}
	r.values[configKeyProviders] = string(data)
	r.values[configKeyImages] = "{}"
	r.values[configKeyOverridesFolder] = overridesDir
	if loc, ok := c.Providers.Repositories[CertManagerRepository]; ok {
		cm, err := certManagerLocation(loc)
		if err != nil {
			return nil, err
		}
		data, err := yaml.Marshal(cm)
		if err != nil {
			return nil, err
		}
		r.values[configKeyCertManager] = string(data)
	}
	if token := getenv("GITHUB_TOKEN"); token != "" {
		// Only used when a provider comes from GitHub releases: it lifts
		// the anonymous rate limit.
		r.values[configKeyGitHubToken] = token
	}
	return r, nil
}

// providerOverrides turns the profile's repository overrides into
// clusterctl provider entries. A key names a provider (kubeadm stands for
// both the bootstrap and control plane providers) or its manifest label
// (bootstrap-kubeadm, control-plane-kubeadm, infrastructure-docker).
func providerOverrides(c *profile.CAPICluster) ([]providerEntry, error) {
	used := map[string]bool{CertManagerRepository: true}
	var entries []providerEntry
	for _, ref := range providerRefs(c) {
		label := clusterctlv1.ManifestLabel(ref.name, providerTypes[ref.kind])
		key := label
		loc, ok := c.Providers.Repositories[key]
		if !ok {
			key = ref.name
			loc, ok = c.Providers.Repositories[key]
		}
		if !ok {
			continue
		}
		used[key] = true
		url, err := repositoryURL(loc, label, ref.version, componentFiles[ref.kind])
		if err != nil {
			return nil, fmt.Errorf("spec.cluster.capi.providers.repositories.%s: %w", key, err)
		}
		entries = append(entries, providerEntry{Name: ref.name, URL: url, Type: providerTypes[ref.kind]})
	}
	var unused []string
	for key := range c.Providers.Repositories {
		if !used[key] {
			unused = append(unused, key)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		return nil, fmt.Errorf("spec.cluster.capi.providers.repositories: %s match no provider of the profile (keys are provider names, manifest labels such as bootstrap-kubeadm, or %s)", strings.Join(unused, ", "), CertManagerRepository)
	}
	return entries, nil
}

// repositoryURL is the components URL clusterctl reads a provider from.
// An http(s) location is used as is. A local location (a path or file://
// URL) is a directory in clusterctl's layout, <dir>/<label>/<version>/, or
// the <label> directory itself, or the components file.
func repositoryURL(location, label, version, file string) (string, error) {
	if strings.HasPrefix(location, "https://") || strings.HasPrefix(location, "http://") {
		return location, nil
	}
	path, err := localPath(location)
	if err != nil {
		return "", err
	}
	if strings.HasSuffix(path, ".yaml") {
		if _, err := os.Stat(path); err != nil {
			return "", err
		}
		return "file://" + path, nil
	}
	base, err := labelDir(path, label)
	if err != nil {
		return "", err
	}
	if version == "" {
		// clusterctl picks the newest release whose metadata matches its
		// contract.
		version = "latest"
	} else if _, err := os.Stat(filepath.Join(base, version, file)); err != nil {
		return "", fmt.Errorf("no %s for %s %s in %s", file, label, version, base)
	}
	return "file://" + filepath.Join(base, version, file), nil
}

// certManagerLocation is cert-manager's configuration for a local or
// remote location; for a local directory the newest version in it is used.
func certManagerLocation(location string) (certManagerEntry, error) {
	const file = "cert-manager.yaml"
	if strings.HasPrefix(location, "https://") || strings.HasPrefix(location, "http://") {
		return certManagerEntry{URL: location}, nil
	}
	path, err := localPath(location)
	if err != nil {
		return certManagerEntry{}, err
	}
	base, err := labelDir(path, CertManagerRepository)
	if err != nil {
		return certManagerEntry{}, err
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return certManagerEntry{}, err
	}
	var newest *version.Version
	var newestName string
	for _, e := range entries {
		v, err := version.ParseSemantic(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(base, e.Name(), file)); err != nil {
			continue
		}
		if newest == nil || v.GreaterThan(newest) {
			newest, newestName = v, e.Name()
		}
	}
	if newest == nil {
		return certManagerEntry{}, fmt.Errorf("spec.cluster.capi.providers.repositories.%s: no <version>/%s in %s", CertManagerRepository, file, base)
	}
	return certManagerEntry{URL: "file://" + filepath.Join(base, newestName, file), Version: newestName}, nil
}

// localPath makes a location an absolute path.
func localPath(location string) (string, error) {
	path := strings.TrimPrefix(location, "file://")
	if path == "" {
		return "", fmt.Errorf("empty repository location")
	}
	return filepath.Abs(path)
}

// labelDir finds the directory holding a provider's versions.
func labelDir(path, label string) (string, error) {
	if st, err := os.Stat(filepath.Join(path, label)); err == nil && st.IsDir() {
		return filepath.Join(path, label), nil
	}
	if filepath.Base(path) == label {
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			return path, nil
		}
	}
	return "", fmt.Errorf("%s has no %s directory (layout: <dir>/%s/<version>/<components>.yaml)", path, label, label)
}

// missingVariables returns the names a template needs that the reader
// cannot serve; defaults from ${VAR:=default} count as served.
func missingVariables(r *configReader, needed map[string]*string) []string {
	var missing []string
	for name, def := range needed {
		if def == nil && !r.has(name) {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	return missing
}
