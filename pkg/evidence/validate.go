package evidence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kaic-dev/kaic/pkg/conformance"
)

// Finding is one problem Validate found, located in PRODUCT.yaml or an
// artifact.
type Finding struct {
	// Where is a field path (metadata.vendorName, spec.security.secure_accelerator_access)
	// or a file.
	Where   string `json:"where"`
	Message string `json:"message"`
}

func (f Finding) String() string { return f.Where + ": " + f.Message }

// Validation is the outcome of Validate.
type Validation struct {
	// Product is the PRODUCT.yaml checked, Version its conformance version.
	Product string `json:"product"`
	Version string `json:"version"`
	// Errors make the submission fail; Warnings do not.
	Errors   []Finding `json:"errors"`
	Warnings []Finding `json:"warnings"`
}

// OK reports whether the submission would pass.
func (v *Validation) OK() bool { return len(v.Errors) == 0 }

func (v *Validation) errorf(where, format string, args ...any) {
	v.Errors = append(v.Errors, Finding{where, fmt.Sprintf(format, args...)})
}

// kaicOnlyf reports a rule of kaic's own, stricter than the CNCF
// validator: an error, or a warning under CNCFCompat.
func (c *validator) kaicOnlyf(where, format string, args ...any) {
	if c.opts.CNCFCompat {
		c.v.warnf(where, "not a CNCF rule, so only a warning with --cncf-compat: "+format, args...)
		return
	}
	c.v.errorf(where, format, args...)
}

func (v *Validation) warnf(where, format string, args ...any) {
	v.Warnings = append(v.Warnings, Finding{where, fmt.Sprintf(format, args...)})
}

// ValidateOptions tune Validate.
type ValidateOptions struct {
	// Online also checks that URLs answer and that vendorName is a CNCF
	// member, as the CNCF validator does.
	Online bool
	// Client makes the online requests; nil uses a client with a 30 s
	// timeout.
	Client *http.Client
	// LandscapeURL is the CNCF landscape file listing the members
	// (default DefaultLandscapeURL).
	LandscapeURL string
	// AllowSimulated turns the error about simulated accelerators into a
	// warning.
	AllowSimulated bool
	// CNCFCompat applies exactly the CNCF validator's rules: kaic's own
	// (simulated accelerators, symbolic links) become warnings saying so.
	// The size bound stays: it protects kaic, not the submission.
	CNCFCompat bool
}

// DefaultLandscapeURL lists the CNCF members vendorName must be one of.
const DefaultLandscapeURL = "https://raw.githubusercontent.com/cncf/landscape/master/landscape.yml"

// ValidatorUserAgent is the User-Agent of online checks, the CNCF
// validator's.
const ValidatorUserAgent = "CNCF-K8s-AI-Conformance-Validator/1.0 (+https://github.com/cncf/k8s-ai-conformance)"

// requiredMetadata are the metadata fields the CNCF validator requires.
var requiredMetadata = []string{
	"kubernetesVersion", "platformName", "platformVersion", "vendorName", "websiteUrl",
	"documentationUrl", "productLogoUrl", "description", "contactEmailAddress", "k8sConformanceUrl",
}

var (
	versionInPath      = regexp.MustCompile(`(?:^|/)(v\d+\.\d+)/`)
	kubernetesMinor    = regexp.MustCompile(`^v?(1\.\d+)(?:\.\d+)?$`)
	k8sConformanceURL  = regexp.MustCompile(`^https://github\.com/cncf/k8s-conformance/tree/(master|main)/v\d+\.\d+/[^/]+/?$`)
	leadingProductPath = regexp.MustCompile(`^(v\d+\.\d+)/([^/]+)/(.*)$`)
	validStatuses      = []string{StatusImplemented, StatusNotImplemented, StatusPartiallyImplemented, StatusNA}
)

// LogoFormat reports whether a logo URL names an SVG, EPS or AI file, the
// formats the submission instructions ask for, by the extension of its path.
func LogoFormat(raw string) bool {
	p := raw
	if u, err := url.Parse(raw); err == nil && u.Path != "" {
		p = u.Path
	}
	switch strings.ToLower(path.Ext(p)) {
	case ".svg", ".eps", ".ai":
		return true
	}
	return false
}

// autoTestedRequirements map requirement ids to the official suite's test
// the CNCF validator looks for when evidence names no test.
var autoTestedRequirements = map[string]string{
	"secure_accelerator_access": "TestSecureAcceleratorAccess",
	"gang_scheduling":           "TestGangScheduling",
	"cluster_autoscaling":       "TestAcceleratorClusterAutoscaling",
}

// conditionalMustRequirements may be N/A with notes although MUST.
var conditionalMustRequirements = map[string]bool{"cluster_autoscaling": true}

// hybridVerificationMinMinor is the first minor whose auto-tested
// requirements should cite test artifacts.
const hybridVerificationMinMinor = 37

// FindProduct returns the PRODUCT.yaml that arg names: the file itself, a
// directory holding it, or a run directory holding exactly one
// v<X.Y>/<dir>/PRODUCT.yaml.
func FindProduct(arg string) (string, error) {
	st, err := os.Stat(arg)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return arg, nil
	}
	if _, err := os.Stat(filepath.Join(arg, ProductFile)); err == nil {
		return filepath.Join(arg, ProductFile), nil
	}
	matches, _ := filepath.Glob(filepath.Join(arg, "v*.*", "*", ProductFile))
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("%s holds no %s, nor v<X.Y>/<product>/%s", arg, ProductFile, ProductFile)
	case 1:
		return matches[0], nil
	}
	return "", fmt.Errorf("%s holds several submissions (%s): name one", arg, strings.Join(matches, ", "))
}

// Validate checks a PRODUCT.yaml and the local evidence it references
// against the CNCF submission rules: the schema of its version (taken from
// its path, vX.Y/<dir>/PRODUCT.yaml), metadata, statuses, MUST levels, N/A
// notes, evidence files, and the test artifacts junit.xml, results.json
// and e2e.log, whose referenced tests must exist and pass. The error is
// for a file that cannot be read at all.
func Validate(ctx context.Context, productPath string, opts ValidateOptions) (*Validation, error) {
	data, err := readEvidence(productPath)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(productPath)
	if err != nil {
		return nil, err
	}
	v := &Validation{Product: productPath}
	m := versionInPath.FindStringSubmatch(filepath.ToSlash(abs))
	if m != nil {
		v.Version = strings.TrimPrefix(m[1], "v")
	}
	cl, err := conformance.ParseChecklist(data)
	if err != nil {
		v.errorf(ProductFile, "%v", err)
		return v, nil
	}
	if m == nil { // not under vX.Y/<product>/: the metadata may say it
		kv, ok := cl.Meta("kubernetesVersion")
		if !ok || !kubernetesMinor.MatchString(kv) {
			v.errorf(productPath, "cannot tell the conformance version: the path must look like vX.Y/<product>/PRODUCT.yaml, or metadata.kubernetesVersion must say it")
			return v, nil
		}
		v.Version = kubernetesMinor.FindStringSubmatch(kv)[1]
		v.warnf(productPath, "not under vX.Y/<product>/: the version, %s, is taken from metadata.kubernetesVersion; a submission must be placed under v%s/<product>/", v.Version, v.Version)
	}
	schema, err := conformance.Builtin(v.Version)
	if err != nil {
		v.errorf(productPath, "no checklist for v%s: %v", v.Version, err)
		return v, nil
	}
	c := &validator{v: v, opts: opts, ctx: ctx, dir: filepath.Dir(abs), ownDir: filepath.Base(filepath.Dir(abs)),
		version: v.Version, artifacts: map[string]*artifact{}}
	if opts.Client != nil {
		c.client = opts.Client
	} else {
		c.client = &http.Client{Timeout: 30 * time.Second}
	}
	c.metadata(cl)
	c.spec(cl, schema)
	c.simulated(cl)
	if !opts.Online {
		v.warnf("online checks", "skipped: that URLs answer and that vendorName is a CNCF member (run with --online)")
	}
	return v, nil
}

type validator struct {
	v       *Validation
	opts    ValidateOptions
	ctx     context.Context
	client  *http.Client
	dir     string // the product directory
	ownDir  string
	version string
	// artifacts are parsed test artifacts by path relative to dir.
	artifacts map[string]*artifact
}

type artifact struct {
	outcomes *TestOutcomes
	err      error
}

func (c *validator) metadata(cl *conformance.Checklist) {
	required := map[string]bool{}
	for _, key := range requiredMetadata {
		required[key], required[snakeCase(key)] = true, true
	}
	for _, f := range cl.Metadata {
		where := "metadata." + f.Key
		if f.Tag != "" && f.Tag != "!!str" && f.Tag != "!!null" {
			c.v.errorf(where, "%s is not a string (YAML reads it as %s): quote it", f.Value, strings.TrimPrefix(f.Tag, "!!"))
		}
		if !required[f.Key] && strings.TrimSpace(f.Value) != "" && isPlaceholder(f.Value) {
			c.v.errorf(where, "is the placeholder %q", f.Value)
		}
	}
	for _, key := range requiredMetadata {
		where := "metadata." + key
		val, ok := cl.Meta(key)
		if !ok {
			val, ok = cl.Meta(snakeCase(key))
		}
		switch {
		case !ok:
			c.v.errorf(where, "missing required field")
			continue
		case strings.TrimSpace(val) == "":
			c.v.errorf(where, "is empty")
			continue
		case isPlaceholder(val):
			c.v.errorf(where, "is the placeholder %q", val)
			continue
		}
		if key == "k8sConformanceUrl" && !k8sConformanceURL.MatchString(val) {
			c.v.errorf(where, "%q does not match %s", val, k8sConformanceURL)
			continue
		}
		if key == "productLogoUrl" && !LogoFormat(val) {
			c.kaicOnlyf(where, "%q is not an SVG, EPS or AI file (.svg, .eps, .ai): the submission instructions ask for the logo in one of these formats", val)
		}
		if c.opts.Online && strings.HasPrefix(val, "http") {
			if err := c.reachable(val); err != nil {
				c.v.errorf(where, "%s is not reachable: %v", val, err)
			}
		}
		if key == "vendorName" && c.opts.Online {
			c.checkMember(val)
		}
	}
}

func (c *validator) spec(cl *conformance.Checklist, schema conformance.Catalog) {
	categories := map[string]*conformance.ChecklistCategory{}
	for i := range cl.Spec {
		categories[cl.Spec[i].Name] = &cl.Spec[i]
	}
	minor := 0
	_, _ = fmt.Sscanf(c.version, "1.%d", &minor)
	for _, req := range schema.Requirements {
		where := "spec." + req.Category + "." + req.ID
		cat := categories[req.Category]
		if cat == nil {
			c.v.errorf("spec."+req.Category, "missing category (needed for %s)", req.ID)
			continue
		}
		i := slices.IndexFunc(cat.Items, func(it conformance.ChecklistItem) bool { return it.ID == req.ID })
		if i < 0 {
			c.v.errorf(where, "missing requirement id %s", req.ID)
			continue
		}
		item := cat.Items[i]
		if req.Level == conformance.Should && item.Status == "" && len(item.Evidence) == 0 {
			continue
		}
		if !slices.Contains(validStatuses, item.Status) {
			c.v.errorf(where, "status %q is not one of %q", item.Status, validStatuses)
		}
		notes := strings.TrimSpace(item.Notes)
		if req.Level == conformance.Must && item.Status != StatusImplemented {
			if conditionalMustRequirements[req.ID] && item.Status == StatusNA && notes != "" {
				c.v.warnf(where, "MUST requirement is N/A: accepted for this conditional requirement by the current CNCF validator (it needs the justification in notes); older validators reject it")
			} else {
				c.v.errorf(where, "MUST requirement has status %q; it must be %q", item.Status, StatusImplemented)
			}
		}
		if item.Status == StatusNA && notes == "" {
			c.v.errorf(where, "status N/A needs notes explaining why")
		}
		hasArtifact := false
		for _, ev := range item.Evidence {
			if c.evidence(where, req.ID, item.Status, ev) {
				hasArtifact = true
			}
		}
		if _, auto := autoTestedRequirements[req.ID]; auto && minor >= hybridVerificationMinMinor && item.Status == StatusImplemented && !hasArtifact {
			c.v.warnf(where, "including test artifacts (e2e.log, junit.xml, or results.json) as evidence is recommended for this automatically tested requirement")
		}
	}
}

// evidence checks one evidence entry and reports whether it is a test
// artifact.
func (c *validator) evidence(where, id, status, ev string) bool {
	ev = strings.TrimSpace(ev)
	if ev == "" {
		c.v.errorf(where, "empty evidence entry")
		return false
	}
	if strings.HasPrefix(ev, "http://") || strings.HasPrefix(ev, "https://") {
		if c.opts.Online {
			if err := c.reachable(ev); err != nil {
				c.v.errorf(where, "evidence %s is not reachable: %v", ev, err)
			}
		}
		return false
	}
	ref, fragment, _ := strings.Cut(strings.TrimPrefix(ev, "file://"), "#")
	ref = strings.TrimPrefix(ref, "./")
	if m := leadingProductPath.FindStringSubmatch(ref); m != nil {
		if m[1] != "v"+c.version {
			c.v.errorf(where, "evidence %s points into another version's directory (%s, this submission is v%s): the CNCF validator treats it as another product directory", ev, m[1], c.version)
			return false
		}
		if m[2] != c.ownDir {
			c.v.errorf(where, "evidence %s points into another product's directory (%s)", ev, m[2])
			return false
		}
		ref = m[3]
	}
	clean := path.Clean(ref)
	if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		c.v.errorf(where, "evidence %s escapes the product directory", ev)
		return false
	}
	full := filepath.Join(c.dir, filepath.FromSlash(clean))
	data, err := readEvidence(full)
	var link *symlinkError
	if errors.As(err, &link) {
		c.kaicOnlyf(where, "evidence file %s: %v", clean, err)
		if !c.opts.CNCFCompat {
			return false
		}
		data, err = readEvidenceFollowing(full)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			c.v.errorf(where, "evidence file %s does not exist", clean)
		} else {
			c.v.errorf(where, "evidence file %s: %v", clean, err)
		}
		return false
	}
	a, isArtifact := c.artifact(clean, data)
	if !isArtifact {
		if fragment != "" {
			c.v.warnf(where, "evidence %s names test %s, but %s is not a junit.xml, results.json or e2e.log that could be checked", ev, fragment, path.Base(clean))
		}
		return false
	}
	if a.err != nil {
		return true // reported once with the file
	}
	test := fragment
	if test == "" {
		test = autoTestedRequirements[id]
	}
	if test == "" {
		return true
	}
	switch s, ok := a.outcomes.Lookup(test); {
	case !ok:
		c.v.errorf(where, "%s has no test %s", clean, test)
	case s == conformance.Failed:
		c.v.errorf(where, "test %s failed in %s", test, clean)
	case s == conformance.Skipped && status == StatusImplemented:
		c.v.errorf(where, "test %s was skipped in %s, but the requirement is %s", test, clean, StatusImplemented)
	}
	return true
}

// artifact parses a test artifact once, reporting a malformed file and
// every failing test in it.
func (c *validator) artifact(rel string, data []byte) (*artifact, bool) {
	if a, ok := c.artifacts[rel]; ok {
		return a, true
	}
	o, isArtifact, err := parseArtifact(path.Base(rel), data)
	if !isArtifact {
		return nil, false
	}
	a := &artifact{outcomes: o, err: err}
	c.artifacts[rel] = a
	if err != nil {
		c.v.errorf(rel, "cannot be parsed: %v", err)
		return a, true
	}
	if len(o.Order) == 0 && len(o.Status) == 0 {
		c.v.errorf(rel, "holds no test results")
	}
	if o.PackageFailed {
		c.v.errorf(rel, "reports a failure outside any test (a go test -json event with no test name)")
	}
	for _, name := range o.Failed() {
		c.v.errorf(rel, "test %s failed (a submission's test artifacts may hold no failing test)", name)
	}
	return a, true
}

// simulated reports evidence that comes from simulated accelerators.
func (c *validator) simulated(cl *conformance.Checklist) {
	var sources []string
	for rel, a := range c.artifacts {
		if a.outcomes != nil && a.outcomes.Properties[PropertySimulated] == "true" {
			sources = append(sources, rel+" property "+PropertySimulated+"=true")
		}
	}
	for _, cat := range cl.Spec {
		for _, it := range cat.Items {
			if strings.Contains(it.Notes, "SIMULATED ACCELERATORS") {
				sources = append(sources, "notes of "+it.ID)
				break
			}
		}
	}
	if len(sources) == 0 {
		return
	}
	slices.Sort(sources)
	if len(sources) > 2 {
		sources = append(sources[:2], "…")
	}
	msg := "the evidence comes from simulated accelerators (" + strings.Join(sources, ", ") + "): a demonstration, not certification evidence"
	if c.opts.AllowSimulated {
		c.v.warnf("evidence", "%s", msg)
	} else {
		c.kaicOnlyf("evidence", "%s", msg)
	}
}

func (c *validator) reachable(url string) error {
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	try := func(method string) (int, error) {
		req, err := http.NewRequestWithContext(ctx, method, url, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("User-Agent", ValidatorUserAgent)
		resp, err := c.client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	code, err := try(http.MethodHead)
	if err == nil && code < 400 {
		return nil
	}
	code, err = try(http.MethodGet)
	if err != nil {
		return err
	}
	if code >= 400 {
		return fmt.Errorf("HTTP %d", code)
	}
	return nil
}

func (c *validator) checkMember(vendor string) {
	url := c.opts.LandscapeURL
	if url == "" {
		url = DefaultLandscapeURL
	}
	members, err := c.members(url)
	if err != nil {
		c.v.errorf("metadata.vendorName", "cannot read the CNCF members from %s: %v", url, err)
		return
	}
	if !members[vendor] {
		c.v.errorf("metadata.vendorName", "%q is not a CNCF member listed in the landscape (the name must match exactly)", vendor)
	}
}

// members reads the item names of category "CNCF Members" in landscape.yml.
func (c *validator) members(url string) (map[string]bool, error) {
	req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", ValidatorUserAgent)
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode >= 400 {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var doc struct {
		Landscape []struct {
			Name          string `yaml:"name"`
			Subcategories []struct {
				Items []struct {
					Name string `yaml:"name"`
				} `yaml:"items"`
			} `yaml:"subcategories"`
		} `yaml:"landscape"`
	}
	if err := yaml.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&doc); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, cat := range doc.Landscape {
		if cat.Name != "CNCF Members" {
			continue
		}
		for _, sub := range cat.Subcategories {
			for _, it := range sub.Items {
				name := strings.TrimSuffix(strings.TrimSuffix(it.Name, " (member)"), " (supporter)")
				out[name] = true
			}
		}
	}
	return out, nil
}

// snakeCase turns platformName into platform_name.
func snakeCase(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// MaxEvidenceBytes bounds every file kaic validate reads: a submission's
// PRODUCT.yaml and artifacts are kilobytes to a few megabytes.
const MaxEvidenceBytes = 64 << 20

// readEvidence reads a submission's file: a regular file, not a symlink,
// device or FIFO (the file itself and every directory under the product
// directory are what a reviewer sees in the pull request), no larger than
// MaxEvidenceBytes. kaic is stricter here than the CNCF validator.
func readEvidence(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return nil, &symlinkError{}
	}
	return readRegular(path, fi)
}

// symlinkError is evidence that is a symbolic link: the CNCF validator
// follows it, kaic refuses it unless told to apply only the CNCF rules.
type symlinkError struct{}

func (*symlinkError) Error() string {
	return "is a symbolic link: a submission holds regular files only (kaic is stricter than the CNCF validator here)"
}

// readEvidenceFollowing reads what a symbolic link points at, with the
// same bounds as readEvidence.
func readEvidenceFollowing(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	return readRegular(path, fi)
}

func readRegular(path string, fi os.FileInfo) ([]byte, error) {
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("is not a regular file: a submission holds regular files only (kaic is stricter than the CNCF validator here)")
	}
	if fi.Size() > MaxEvidenceBytes {
		return nil, fmt.Errorf("is %d bytes, over the %d MiB kaic reads (kaic is stricter than the CNCF validator here)", fi.Size(), MaxEvidenceBytes>>20)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxEvidenceBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxEvidenceBytes {
		return nil, fmt.Errorf("grew past the %d MiB kaic reads while it was read", MaxEvidenceBytes>>20)
	}
	return data, nil
}
