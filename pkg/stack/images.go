package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	kubefake "helm.sh/helm/v4/pkg/kube/fake"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"

	"github.com/kaic-dev/kaic/pkg/profile"
)

// Image is a container image a stack would run, with the components that
// use it.
type Image struct {
	Image      string   `json:"image"`
	Components []string `json:"components"`
}

// Images renders every component (charts with the values Install would
// use, manifests as they are) and lists the container images of their
// pod templates, sorted. With a cluster (WithKubeconfig) charts render
// against its real capabilities through a server-side dry run; without one
// they render offline with Helm's default capabilities. Remote charts need
// the network, or a cached copy of a pinned chart. A component that cannot
// be rendered is reported in the joined error; the others are still
// listed.
func (in *Installer) Images(ctx context.Context, components []profile.Component) ([]Image, error) {
	byImage := map[string]map[string]bool{}
	var errs []error
	for _, c := range components {
		imgs, err := in.componentImages(ctx, c)
		if err != nil {
			errs = append(errs, &ComponentError{Component: c.Name, Err: err})
		}
		for _, img := range imgs {
			if byImage[img] == nil {
				byImage[img] = map[string]bool{}
			}
			byImage[img][c.Name] = true
		}
	}
	out := make([]Image, 0, len(byImage))
	for img, comps := range byImage {
		names := make([]string, 0, len(comps))
		for n := range comps {
			names = append(names, n)
		}
		sort.Strings(names)
		out = append(out, Image{Image: img, Components: names})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Image < out[j].Image })
	return out, errors.Join(errs...)
}

func (in *Installer) componentImages(ctx context.Context, c profile.Component) ([]string, error) {
	switch {
	case c.Helm != nil:
		manifest, err := in.render(ctx, c, len(in.kubeconfig) > 0)
		if err != nil {
			return nil, err
		}
		objs, err := decodeObjects([]byte(manifest))
		if err != nil {
			return nil, err
		}
		return imagesOf(objs), nil
	case c.Manifests != nil:
		objs, err := in.loadManifests(ctx, c.Manifests)
		if err != nil {
			return nil, err
		}
		return imagesOf(objs), nil
	}
	return nil, nil
}

// render templates a component's chart as Install would, hooks included:
// against the cluster when server is set, else on the client alone.
func (in *Installer) render(ctx context.Context, c profile.Component, server bool) (string, error) {
	lc, err := in.loadChart(ctx, c.Helm)
	if err != nil {
		return "", err
	}
	return in.renderChart(ctx, c, lc, server)
}

func (in *Installer) renderChart(ctx context.Context, c profile.Component, lc *loadedChart, server bool) (string, error) {
	vals, err := in.values(c)
	if err != nil {
		return "", err
	}
	ns := namespaceOf(c)
	var cfg *action.Configuration
	strategy := action.DryRunClient
	if server {
		if cfg, err = in.helmConfig(ns); err != nil {
			return "", err
		}
		strategy = action.DryRunServer
	} else {
		cfg = action.NewConfiguration(action.ConfigurationSetLogger(in.logger.Handler()))
		cfg.Releases = storage.Init(driver.NewMemory())
		cfg.KubeClient = &kubefake.PrintingKubeClient{Out: io.Discard}
		cfg.Capabilities = common.DefaultCapabilities.Copy()
	}
	act := action.NewInstall(cfg)
	act.ReleaseName, act.Namespace = c.ReleaseName(), ns
	act.DryRunStrategy = strategy
	act.Replace = true
	act.IncludeCRDs = true
	if strategy == action.DryRunServer {
		// The release may already be installed: render it as an upgrade
		// would, without the name check failing.
		act.CreateNamespace = false
	}
	r, err := act.RunWithContext(ctx, lc.chart, vals)
	if err != nil {
		return "", fmt.Errorf("rendering chart %s: %w", lc.ref, err)
	}
	rel, ok := r.(*release.Release)
	if !ok {
		return "", fmt.Errorf("rendering chart %s: unexpected release type %T", lc.ref, r)
	}
	var b strings.Builder
	b.WriteString(rel.Manifest)
	for _, h := range rel.Hooks {
		b.WriteString("\n---\n")
		b.WriteString(h.Manifest)
	}
	return b.String(), nil
}

// imagesOf collects the image of every container, init container and
// ephemeral container found anywhere in the objects, so that pod templates
// of workloads and of custom resources are covered alike.
func imagesOf[T interface{ UnstructuredContent() map[string]any }](objs []T) []string {
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, child := range t {
				if k == "containers" || k == "initContainers" || k == "ephemeralContainers" {
					if list, ok := child.([]any); ok {
						for _, item := range list {
							if m, ok := item.(map[string]any); ok {
								if img, ok := m["image"].(string); ok && img != "" {
									seen[img] = true
								}
							}
						}
					}
				}
				walk(child)
			}
		case []any:
			for _, child := range t {
				walk(child)
			}
		}
	}
	for _, o := range objs {
		walk(o.UnstructuredContent())
	}
	out := make([]string, 0, len(seen))
	for img := range seen {
		out = append(out, img)
	}
	sort.Strings(out)
	return out
}
