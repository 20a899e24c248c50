package kaic

import (
	"context"
	"fmt"

	"github.com/kaic-dev/kaic/pkg/stack"
)

// ImagesOptions say which profile's images to list and how to render it.
type ImagesOptions struct {
	// Profile is a built-in name or a file.
	Profile string
	// Charts renders components from local chart directories or archives
	// instead of their remote charts (component name to path).
	Charts map[string]string
	// Set holds COMPONENT.KEY=VALUE value overrides.
	Set []string
	// Cluster, when set, renders against that cluster's API versions.
	Cluster Target
}

// UsageError is a mistake in what the caller asked for (the CLI exits 2).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Images renders every chart of a profile's stack and lists the container
// images it would run. When some components cannot be rendered the images
// of the others are returned with the error.
func (c *Client) Images(ctx context.Context, o ImagesOptions) ([]stack.Image, error) {
	r, err := c.LoadProfile(o.Profile)
	if err != nil {
		return nil, err
	}
	local := make(map[string]string, len(o.Charts))
	for name, path := range o.Charts {
		local[name] = path
	}
	for i, comp := range r.Components {
		path, ok := local[comp.Name]
		if !ok {
			continue
		}
		if comp.Helm == nil {
			return nil, usageErrorf("--chart %s: component %s installs manifests, not a chart", comp.Name, comp.Name)
		}
		h := *comp.Helm
		h.Chart, h.Repo, h.Digest = path, "", ""
		r.Components[i].Helm = &h
		delete(local, comp.Name)
	}
	for name := range local {
		return nil, usageErrorf("--chart %s: the profile has no component %s", name, name)
	}
	overrides, err := stack.ParseSet(o.Set)
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	opts := []stack.Option{stack.WithOverrides(overrides), stack.WithLogger(c.logger)}
	if runsKaicCharts(r.Components) {
		probe, err := c.probeImage(r.Profile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, stack.WithEmbeddedChartValues(map[string]any{"image": probe.Ref}))
	}
	if o.Cluster.Kubeconfig != "" {
		data, err := kubeconfigOf(o.Cluster)
		if err != nil {
			return nil, err
		}
		opts = append(opts, stack.WithKubeconfig(data, o.Cluster.Context))
	}
	in, err := stack.New(opts...)
	if err != nil {
		return nil, err
	}
	images, err := in.Images(ctx, r.Components)
	if err != nil {
		return images, fmt.Errorf("some components could not be rendered, their images are missing: %w", err)
	}
	return images, nil
}
