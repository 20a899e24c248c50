package stack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/registry"
	repo "helm.sh/helm/v4/pkg/repo/v1"

	"github.com/kaic-dev/kaic/pkg/fetch"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// Source kinds of a chart.
const (
	SourceOCI      = "oci"
	SourceRepo     = "repo"
	SourceLocal    = "local"
	SourceEmbedded = "embedded"
)

// loadedChart is a chart ready to install, with where it came from.
type loadedChart struct {
	chart *chart.Chart
	// ref is the chart reference as the component declares it.
	ref  string
	kind string
	// digest is the sha256 of the chart archive (sha256:<hex>); empty for
	// a chart directory.
	digest string
	// contentHash identifies the chart's files, whatever the source; a
	// release whose content hash and values are unchanged is not upgraded.
	contentHash string
}

// DigestMismatchError reports a chart whose archive is not the one the
// component pins. Nothing of the component has been applied.
type DigestMismatchError struct {
	Chart string
	Want  string
	Got   string
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("chart %s has digest %s, but the component pins %s: refusing it, nothing was applied", e.Chart, e.Got, e.Want)
}

// VersionMismatchError reports a chart whose Chart.yaml version differs
// from the pinned version.
type VersionMismatchError struct {
	Chart string
	Want  string
	Got   string
}

func (e *VersionMismatchError) Error() string {
	return fmt.Sprintf("chart %s is version %s, but the component pins %s: refusing it, nothing was applied", e.Chart, e.Got, e.Want)
}

// ErrEmbeddedChartMissing is returned for a kaic://<name> chart that this
// build of kaic does not carry.
var ErrEmbeddedChartMissing = errors.New("embedded chart not in this kaic build")

// chartKind classifies a chart reference.
func chartKind(h *profile.HelmChart) string {
	switch {
	case strings.HasPrefix(h.Chart, profile.EmbeddedChartScheme):
		return SourceEmbedded
	case registry.IsOCI(h.Chart):
		return SourceOCI
	case h.Repo != "":
		return SourceRepo
	default:
		return SourceLocal
	}
}

// loadChart fetches, verifies and loads a component's chart. A digest or
// version that does not match the pin is an error before anything is
// applied.
func (in *Installer) loadChart(ctx context.Context, h *profile.HelmChart) (*loadedChart, error) {
	lc := &loadedChart{ref: h.Chart, kind: chartKind(h)}
	if lc.kind == SourceRepo {
		lc.ref = strings.TrimSuffix(h.Repo, "/") + "/" + h.Chart
	}
	var (
		archiveData []byte
		err         error
	)
	switch lc.kind {
	case SourceEmbedded:
		if h.Digest != "" {
			return nil, fmt.Errorf("chart %s: digest pinning does not apply to embedded charts, which are versioned with kaic", h.Chart)
		}
		lc.chart, err = in.loadEmbedded(strings.TrimPrefix(h.Chart, profile.EmbeddedChartScheme))
	case SourceOCI:
		archiveData, err = in.pullOCI(ctx, h)
	case SourceRepo:
		archiveData, err = in.pullRepo(ctx, h)
	case SourceLocal:
		lc.chart, archiveData, err = loadLocal(h)
	}
	if err != nil {
		return nil, err
	}
	if archiveData != nil {
		sum := sha256.Sum256(archiveData)
		lc.digest = "sha256:" + hex.EncodeToString(sum[:])
		if err := checkDigest(lc.ref, h.Digest, lc.digest); err != nil {
			return nil, err
		}
		lc.chart, err = loader.LoadArchive(bytes.NewReader(archiveData))
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", lc.ref, err)
		}
	}
	if err := lc.chart.Validate(); err != nil {
		return nil, fmt.Errorf("chart %s: %w", lc.ref, err)
	}
	if err := checkVersion(lc.ref, h.Version, lc.chart.Metadata.Version); err != nil {
		return nil, err
	}
	lc.contentHash = contentHash(lc.chart)
	return lc, nil
}

func checkDigest(ref, want, got string) error {
	if want == "" {
		return nil
	}
	w, err := fetch.NormalizeSHA256(want)
	if err != nil {
		return fmt.Errorf("chart %s: %w", ref, err)
	}
	if "sha256:"+w != got {
		return &DigestMismatchError{Chart: ref, Want: "sha256:" + w, Got: got}
	}
	return nil
}

// checkVersion compares an exact pinned version with the chart's; a range
// was already applied when the chart was chosen.
func checkVersion(ref, want, got string) error {
	if want == "" {
		return nil
	}
	wv, err := semver.StrictNewVersion(strings.TrimPrefix(want, "v"))
	if err != nil {
		return nil
	}
	gv, err := semver.NewVersion(got)
	if err != nil || !wv.Equal(gv) {
		return &VersionMismatchError{Chart: ref, Want: want, Got: got}
	}
	return nil
}

// contentHash hashes a chart's files in name order.
func contentHash(ch *chart.Chart) string {
	files := make([]string, 0, len(ch.Raw))
	byName := map[string][]byte{}
	for _, f := range ch.Raw {
		files = append(files, f.Name)
		byName[f.Name] = f.Data
	}
	sort.Strings(files)
	h := sha256.New()
	for _, name := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(byName[name]))
		h.Write(byName[name])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (in *Installer) loadEmbedded(name string) (*chart.Chart, error) {
	if name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("chart %s%s: want %s<directory name>", profile.EmbeddedChartScheme, name, profile.EmbeddedChartScheme)
	}
	if _, err := fs.Stat(in.embedded, path.Join(name, "Chart.yaml")); err != nil {
		return nil, fmt.Errorf("chart %s%s: %w (charts/%s/Chart.yaml is missing); install a kaic that ships it or point the component at a local chart directory", profile.EmbeddedChartScheme, name, ErrEmbeddedChartMissing, name)
	}
	sub, err := fs.Sub(in.embedded, name)
	if err != nil {
		return nil, err
	}
	var files []*archive.BufferedFile
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		files = append(files, &archive.BufferedFile{Name: p, Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("chart %s%s: %w", profile.EmbeddedChartScheme, name, err)
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("chart %s%s: %w", profile.EmbeddedChartScheme, name, err)
	}
	return ch, nil
}

// loadLocal loads a chart directory, or reads a chart archive for the
// caller to verify and load.
func loadLocal(h *profile.HelmChart) (*chart.Chart, []byte, error) {
	st, err := os.Stat(h.Chart)
	if err != nil {
		return nil, nil, fmt.Errorf("chart %s: %w", h.Chart, err)
	}
	if !st.IsDir() {
		data, err := os.ReadFile(h.Chart)
		if err != nil {
			return nil, nil, fmt.Errorf("chart %s: %w", h.Chart, err)
		}
		return nil, data, nil
	}
	if h.Digest != "" {
		return nil, nil, fmt.Errorf("chart %s: digest pinning needs a chart archive (.tgz), not a directory", h.Chart)
	}
	ch, err := loader.LoadDir(h.Chart)
	if err != nil {
		return nil, nil, fmt.Errorf("chart %s: %w", h.Chart, err)
	}
	return ch, nil, nil
}

// pullOCI returns the chart archive of an oci:// chart: from the download
// cache when its digest is pinned and cached, else from the registry.
func (in *Installer) pullOCI(ctx context.Context, h *profile.HelmChart) ([]byte, error) {
	if h.Digest != "" {
		if p, ok := in.cache.Lookup(h.Digest); ok {
			return os.ReadFile(p)
		}
	}
	rc, err := in.registryClient()
	if err != nil {
		return nil, err
	}
	ref := strings.TrimPrefix(h.Chart, "oci://")
	version := h.Version
	if version == "" {
		tags, err := rc.Tags(ref)
		if err != nil {
			return nil, fmt.Errorf("chart %s: listing versions: %w", h.Chart, err)
		}
		if len(tags) == 0 {
			return nil, fmt.Errorf("chart %s: the registry holds no versions", h.Chart)
		}
		version = tags[0]
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res, err := rc.Pull(ref+":"+strings.ReplaceAll(version, "+", "_"), registry.PullOptWithChart(true))
	if err != nil {
		return nil, fmt.Errorf("chart %s version %s: %w", h.Chart, version, err)
	}
	if h.Digest != "" {
		// Keep the pinned archive by its digest, so that later runs (and
		// kaic images offline) need no registry. An archive that is not
		// the pinned one is not stored; loadChart refuses it.
		if _, err := in.cache.Put(bytes.NewReader(res.Chart.Data), h.Digest); err != nil {
			var sumErr *fetch.ChecksumError
			if !errors.As(err, &sumErr) {
				in.logger.Warn("could not cache the chart archive", "chart", h.Chart, "version", version, "error", err)
			}
		}
	}
	return res.Chart.Data, nil
}

// pullRepo returns the chart archive of a classic repository chart. The
// archive is verified against the pinned digest, else against the digest
// the repository index lists.
func (in *Installer) pullRepo(ctx context.Context, h *profile.HelmChart) ([]byte, error) {
	base := strings.TrimSuffix(h.Repo, "/") + "/"
	entry, err := in.cache.Get(ctx, base+"index.yaml")
	if err != nil {
		return nil, fmt.Errorf("chart repository %s: %w", h.Repo, err)
	}
	idx, err := repo.LoadIndexFile(entry.Path)
	if err != nil {
		return nil, fmt.Errorf("chart repository %s: %w", h.Repo, err)
	}
	cv, err := idx.Get(h.Chart, h.Version)
	if err != nil {
		return nil, fmt.Errorf("chart %s version %q in %s: %w", h.Chart, h.Version, h.Repo, err)
	}
	if len(cv.URLs) == 0 {
		return nil, fmt.Errorf("chart %s %s in %s: the index lists no download URL", h.Chart, cv.Version, h.Repo)
	}
	baseURL, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("chart repository %s: %w", h.Repo, err)
	}
	rel, err := url.Parse(cv.URLs[0])
	if err != nil {
		return nil, fmt.Errorf("chart %s %s: %w", h.Chart, cv.Version, err)
	}
	chartURL := baseURL.ResolveReference(rel).String()
	want := h.Digest
	if want == "" {
		want = cv.Digest
	}
	var p string
	if want != "" {
		p, err = in.cache.Pinned(ctx, chartURL, want)
		var sumErr *fetch.ChecksumError
		if errors.As(err, &sumErr) {
			return nil, &DigestMismatchError{Chart: chartURL, Want: "sha256:" + sumErr.Want, Got: "sha256:" + sumErr.Got}
		}
	} else {
		var e *fetch.Entry
		e, err = in.cache.Get(ctx, chartURL)
		if e != nil {
			p = e.Path
		}
	}
	if err != nil {
		return nil, fmt.Errorf("chart %s %s: %w", h.Chart, cv.Version, err)
	}
	return os.ReadFile(p)
}

func (in *Installer) registryClient() (*registry.Client, error) {
	in.registryOnce.Do(func() {
		in.registry, in.registryErr = registry.NewClient(
			registry.ClientOptHTTPClient(in.cache.Client.HTTPClient()),
			registry.ClientOptEnableCache(true),
		)
	})
	return in.registry, in.registryErr
}
