package conformance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kaic-dev/kaic/pkg/fetch"
)

// DefaultBaseURL is where the official checklists are published.
const DefaultBaseURL = "https://raw.githubusercontent.com/cncf/k8s-ai-conformance/main/docs/"

// ChecklistFileName returns the official checklist file name of a version,
// e.g. "AIConformance-1.36.yaml".
func ChecklistFileName(version string) string {
	return "AIConformance-" + strings.TrimPrefix(version, "v") + ".yaml"
}

// Source says where to read the official checklist of a version. The first
// of File, Dir and BaseURL that is set wins; with none set the checklist is
// downloaded from DefaultBaseURL.
type Source struct {
	// File is the checklist file itself.
	File string
	// Dir holds AIConformance-<version>.yaml.
	Dir string
	// CacheDir keeps downloaded checklists; the default is
	// ${XDG_CACHE_HOME:-~/.cache}/kaic/checklists.
	CacheDir string
	// BaseURL is the URL prefix the file name is appended to.
	BaseURL string
	// Client downloads the checklist; nil means fetch.New().
	Client *fetch.Client
	// Offline uses the cached copy without any request.
	Offline bool
}

// ReadChecklist returns the bytes of the official checklist of version as
// resolved by src, and a description of where they came from. A download
// that fails for lack of network falls back to the last good copy in the
// cache, and the description says so.
func ReadChecklist(ctx context.Context, version string, src Source) ([]byte, string, error) {
	v, _, err := normalizeVersion(version)
	if err != nil {
		return nil, "", err
	}
	name := ChecklistFileName(v)
	switch {
	case src.File != "":
		b, err := os.ReadFile(src.File)
		if err != nil {
			return nil, "", fmt.Errorf("reading checklist: %w", err)
		}
		return b, src.File, nil
	case src.Dir != "":
		path := filepath.Join(src.Dir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, "", fmt.Errorf("reading checklist: %w", err)
		}
		return b, path, nil
	}

	base := src.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	url := strings.TrimSuffix(base, "/") + "/" + name
	cacheDir := src.CacheDir
	if cacheDir == "" {
		dir, err := fetch.DefaultDir()
		if err != nil {
			return nil, "", err
		}
		cacheDir = filepath.Join(dir, "checklists")
	}
	cache := &fetch.Cache{Dir: cacheDir, Client: src.Client, Offline: src.Offline}
	entry, err := cache.Get(ctx, url)
	if err != nil {
		return nil, "", fmt.Errorf("getting the %s checklist: %w", v, err)
	}
	b, err := os.ReadFile(entry.Path)
	if err != nil {
		return nil, "", fmt.Errorf("reading cached checklist: %w", err)
	}
	origin := url
	if entry.Status == fetch.Cached {
		why := "offline"
		if entry.Err != nil {
			why = "server unreachable: " + entry.Err.Error()
		}
		origin = fmt.Sprintf("%s (cached copy from %s; %s)", url, entry.Updated.Format(time.RFC3339), why)
	}
	return b, origin, nil
}

// Load reads the official checklist of version (see Source) and returns its
// catalog, descriptions included. It fails if the checklist disagrees with
// the built-in table; see FromChecklist.
func Load(ctx context.Context, version string, src Source) (Catalog, error) {
	data, origin, err := ReadChecklist(ctx, version, src)
	if err != nil {
		return Catalog{}, err
	}
	cl, err := ParseChecklist(data)
	if err != nil {
		return Catalog{}, fmt.Errorf("%s: %w", origin, err)
	}
	return FromChecklist(version, cl, origin)
}

// FromChecklist returns the catalog described by a parsed official
// checklist, after checking it against the built-in table of version: every
// id must be known, none may be missing, and each must have the built-in
// category and level. A disagreement is a *MismatchError. origin is recorded
// as the catalog's Source.
func FromChecklist(version string, cl *Checklist, origin string) (Catalog, error) {
	builtin, err := Builtin(version)
	if err != nil {
		return Catalog{}, err
	}
	mismatch := &MismatchError{Version: builtin.Version, Source: origin}
	if kv, ok := cl.Meta("kubernetesVersion"); ok && !sameMinor(kv, builtin.Version) {
		mismatch.Problems = append(mismatch.Problems,
			fmt.Sprintf("metadata.kubernetesVersion is %q, want v%s", kv, builtin.Version))
	}

	cat := Catalog{Version: builtin.Version, Source: origin}
	found := map[string]bool{}
	for _, category := range cl.Spec {
		for _, item := range category.Items {
			found[item.ID] = true
			want, ok := builtin.Requirement(item.ID)
			switch {
			case !ok:
				mismatch.Problems = append(mismatch.Problems,
					fmt.Sprintf("unknown id %q (%s, %s)", item.ID, category.Name, item.Level))
				continue
			case want.Category != category.Name:
				mismatch.Problems = append(mismatch.Problems,
					fmt.Sprintf("id %q is in category %q, built-in %q", item.ID, category.Name, want.Category))
			}
			if item.Level != want.Level {
				mismatch.Problems = append(mismatch.Problems,
					fmt.Sprintf("id %q has level %q, built-in %s", item.ID, item.Level, want.Level))
			}
			cat.Requirements = append(cat.Requirements, Requirement{
				ID:          item.ID,
				Category:    category.Name,
				Level:       item.Level,
				Description: item.Description,
			})
		}
	}
	for _, r := range builtin.Requirements {
		if !found[r.ID] {
			mismatch.Problems = append(mismatch.Problems,
				fmt.Sprintf("missing id %q (%s, %s)", r.ID, r.Category, r.Level))
		}
	}
	if len(mismatch.Problems) > 0 {
		return Catalog{}, mismatch
	}
	return cat, nil
}

// sameMinor reports whether a kubernetesVersion such as "v1.35" or
// "v1.35.3" belongs to conformance version "1.35".
func sameMinor(kubernetesVersion, version string) bool {
	v := strings.TrimPrefix(strings.TrimSpace(kubernetesVersion), "v")
	return v == version || strings.HasPrefix(v, version+".")
}

// MismatchError reports an official checklist that disagrees with the
// built-in catalog, which usually means the checklist was updated and kaic's
// table needs the same change.
type MismatchError struct {
	Version  string
	Source   string
	Problems []string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("checklist %s does not match kaic's built-in catalog for v%s (has the official checklist changed?): %s",
		e.Source, e.Version, strings.Join(e.Problems, "; "))
}
