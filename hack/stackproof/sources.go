package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/pkg/profile"
)

// moduleChart is where a component's upstream chart is published inside a
// Go module, so that the module proxy serves the chart's sources at the
// pinned version.
type moduleChart struct {
	module string
	dir    string
	// vars fill values.tmpl.yaml as upstream's release does when it
	// packages the chart; nil when the chart has a values.yaml of its own.
	vars func(version string) map[string]string
}

// envoyGatewayVars are the variables Envoy Gateway's release fills into
// its charts' values.tmpl.yaml: the gateway image at the release's tag and
// its pull policy.
func envoyGatewayVars(version string) map[string]string {
	return map[string]string{
		"GatewayImage":           "docker.io/envoyproxy/gateway:" + version,
		"GatewayImagePullPolicy": "IfNotPresent",
	}
}

// moduleCharts maps built-in components to the module holding their chart.
// A component not listed here is installed as kaic installs it when its
// chart is kaic's own or its manifests come from a module, and is not
// provable here otherwise.
var moduleCharts = map[string]moduleChart{
	"envoy-gateway": {module: "github.com/envoyproxy/gateway", dir: "charts/gateway-helm", vars: envoyGatewayVars},
	"kueue":         {module: "sigs.k8s.io/kueue", dir: "charts/kueue"},
	"cert-manager":  {module: "github.com/cert-manager/cert-manager", dir: "deploy/charts/cert-manager"},
}

// notProvableError says why a component cannot be installed from its
// upstream chart here.
type notProvableError struct{ reason string }

func (e *notProvableError) Error() string { return e.reason }

func notProvable(format string, args ...any) error {
	return &notProvableError{reason: fmt.Sprintf(format, args...)}
}

// sourced is a component as stack-proof installs it, with where its chart
// came from when that is not where the component points.
type sourced struct {
	component profile.Component
	from      string
}

// source returns c with its chart swapped for the module's copy, packaged
// into workDir, or c itself when kaic installs it from a module or its own
// charts already. A component that cannot be installed from its upstream
// chart here gets a *notProvableError.
func source(ctx context.Context, c profile.Component, workDir string) (sourced, error) {
	if c.Manifests != nil {
		if len(c.Manifests.URLs) > 0 || len(c.Manifests.Files) > 0 {
			return sourced{}, notProvable("manifests from URLs or files, not from a Go module")
		}
		return sourced{component: c}, nil
	}
	if c.Helm == nil {
		return sourced{}, notProvable("neither a chart nor manifests")
	}
	if strings.HasPrefix(c.Helm.Chart, profile.EmbeddedChartScheme) {
		return sourced{component: c}, nil
	}
	mc, ok := moduleCharts[c.Name]
	if !ok {
		where := c.Helm.Chart
		if c.Helm.Repo != "" {
			where = "the Helm repository " + c.Helm.Repo
		} else if strings.HasPrefix(where, "oci://") {
			where = "the OCI registry " + strings.TrimPrefix(where, "oci://")
		}
		return sourced{}, notProvable("chart only in %s, not reachable offline", where)
	}
	version := c.Helm.Version
	if !strings.HasPrefix(version, "v") {
		version = "v" + version
	}
	modDir, err := downloadModule(ctx, mc.module, version)
	if err != nil {
		return sourced{}, err
	}
	chartDir := filepath.Join(modDir, filepath.FromSlash(mc.dir))
	where := mc.module + "@" + version + "/" + mc.dir
	if _, err := os.Stat(filepath.Join(chartDir, "Chart.yaml")); err != nil {
		if _, terr := os.Stat(filepath.Join(chartDir, "Chart.template.yaml")); terr == nil {
			return sourced{}, notProvable("%s holds only the chart's template (Chart.template.yaml); the published chart is built by upstream's release tooling", where)
		}
		return sourced{}, notProvable("%s holds no chart", where)
	}
	dst := filepath.Join(workDir, c.Name)
	if err := packageChart(chartDir, dst, c.Helm.Version, mc.vars); err != nil {
		return sourced{}, fmt.Errorf("packaging %s: %w", where, err)
	}
	swapped := c
	h := *c.Helm
	h.Chart, h.Repo, h.Digest = dst, "", ""
	swapped.Helm = &h
	return sourced{component: swapped, from: where}, nil
}

// downloadModule fetches a module through the Go module proxy and returns
// its directory in the module cache. A version the proxy does not serve
// makes the component not provable here.
func downloadModule(ctx context.Context, module, version string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GO111MODULE=on")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %v: %s", module, version, runErr, strings.TrimSpace(stderr.String()))
	}
	if info.Error != "" || info.Dir == "" {
		msg := info.Error
		if strings.Contains(msg, "not available") || strings.Contains(msg, "404") || strings.Contains(msg, "410") || strings.Contains(msg, "403") {
			return "", notProvable("the Go module proxy does not serve %s@%s", module, version)
		}
		return "", notProvable("%s@%s could not be downloaded: %s", module, version, firstLine(msg))
	}
	return info.Dir, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// packageChart copies the chart at src to dst as upstream's release
// packages it: Chart.yaml carries the released version, and a values.yaml
// is made from values.tmpl.yaml with vars filled in. A variable the
// template uses that vars do not set is an error.
func packageChart(src, dst, version string, vars func(string) map[string]string) error {
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		return err
	}
	chartFile := filepath.Join(dst, "Chart.yaml")
	data, err := os.ReadFile(chartFile)
	if err != nil {
		return err
	}
	var meta map[string]any
	if err := yaml.Unmarshal(data, &meta); err != nil {
		return fmt.Errorf("reading Chart.yaml: %w", err)
	}
	meta["version"], meta["appVersion"] = version, version
	if data, err = yaml.Marshal(meta); err != nil {
		return err
	}
	if err := os.WriteFile(chartFile, data, 0o644); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(src, "values.yaml")); err == nil {
		return nil
	}
	tmpl, err := os.ReadFile(filepath.Join(src, "values.tmpl.yaml"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if vars == nil {
		return errors.New("values.tmpl.yaml needs filling, but no variables are known for it")
	}
	known := vars(version)
	var missing []string
	values := templateVar.ReplaceAllStringFunc(string(tmpl), func(ref string) string {
		name := templateVar.FindStringSubmatch(ref)[1]
		v, ok := known[name]
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return fmt.Errorf("values.tmpl.yaml uses %s, which upstream's release sets and stack-proof does not know", strings.Join(missing, ", "))
	}
	return os.WriteFile(filepath.Join(dst, "values.yaml"), []byte(values), 0o644)
}

// templateVar is a ${NAME} of a values.tmpl.yaml.
var templateVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
