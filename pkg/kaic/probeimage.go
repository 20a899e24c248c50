package kaic

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/probe/image"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/provision"
)

// Where a run's probe image comes from (ProbeImagePlan.Source).
const (
	// ProbeFromProfile: the profile's spec.checks.probeImage.
	ProbeFromProfile = "profile"
	// ProbeBuilt: kaic builds it from its own binary and loads it into the
	// nodes of a cluster it creates.
	ProbeBuilt = "built"
	// ProbePublished: the image published for this kaic release.
	ProbePublished = "published"
)

// ProbeImagePlan is the probe image a run's check pods and kaic's own
// charts run, and where it comes from.
type ProbeImagePlan struct {
	Ref    string `json:"ref"`
	Source string `json:"source"`
	// Binary is the kaic binary a built image is made from.
	Binary string `json:"binary,omitempty"`
}

// ProbeImageError says why a run has no probe image its cluster's nodes can
// run, and how to give it one. It is raised before anything touches the
// cluster.
type ProbeImageError struct {
	Backend profile.Backend
	Reason  string
}

func (e *ProbeImageError) Error() string {
	return fmt.Sprintf("no probe image for the %s cluster: %s; push one where the nodes can pull it with "+
		"`kaic probe image --push REGISTRY/kaic-probe` and set spec.checks.probeImage to the reference it prints "+
		"(or, for a kind cluster kaic did not create, `kaic probe image --output probe.tar` and `kind load image-archive probe.tar`, "+
		"then set spec.checks.probeImage to the reference it printed)", e.Backend, e.Reason)
}

// WithProbeBinary sets the kaic binary kaic builds the probe image from for
// clusters it loads the image into (default: the running binary), e.g. a
// linux build when kaic itself runs on another system.
func WithProbeBinary(path string) Option {
	return func(c *Client) { c.probeBinary = path }
}

// WithPublishedProbeImage sets the probe image published for this kaic's
// release: runs use it where kaic cannot load its own image into the nodes
// and the profile names none. A development build has none.
func WithPublishedProbeImage(ref string) Option {
	return func(c *Client) { c.publishedProbe = ref }
}

// probeImage says which probe image a run of p uses: the profile's
// spec.checks.probeImage, else the image kaic builds from its binary where
// the backend loads it into the nodes, else the image published for this
// release. A development build on a cluster kaic cannot load images into,
// with no image in the profile, has none: a *ProbeImageError.
func (c *Client) probeImage(p *profile.Profile) (ProbeImagePlan, error) {
	if ref := p.Spec.Checks.ProbeImage; ref != "" {
		return ProbeImagePlan{Ref: ref, Source: ProbeFromProfile}, nil
	}
	b, err := backendOf(p)
	if err != nil {
		return ProbeImagePlan{}, err
	}
	if b.loadsImages != nil && b.loadsImages(p) {
		bin, err := c.probeBinaryContent()
		if err != nil {
			return ProbeImagePlan{}, err
		}
		// A kaic for another system (macOS, say) cannot be the image's
		// program: say so now, not when the cluster is up.
		if _, err := image.Platform(bin.data); err != nil {
			return ProbeImagePlan{}, fmt.Errorf("the probe image is built from %s, which is %v: give a linux build of kaic with --probe-binary (CGO_ENABLED=0 GOOS=linux go build ./cmd/kaic)", bin.path, err)
		}
		return ProbeImagePlan{Ref: image.Reference(bin.data), Source: ProbeBuilt, Binary: bin.path}, nil
	}
	if c.publishedProbe != "" {
		return ProbeImagePlan{Ref: c.publishedProbe, Source: ProbePublished}, nil
	}
	return ProbeImagePlan{}, &ProbeImageError{Backend: p.Spec.Cluster.Backend,
		Reason: fmt.Sprintf("this kaic (%s) is a development build, for which no probe image is published, and kaic loads its own image only into clusters it creates with kind or Cluster API on Docker", c.version)}
}

// binaryContent is the kaic binary the probe image is built from.
type binaryContent struct {
	path string
	data []byte
}

// probeBinaryContent reads the probe binary once per client.
func (c *Client) probeBinaryContent() (*binaryContent, error) {
	c.probeOnce.Do(func() {
		path := c.probeBinary
		if path == "" {
			exe, err := os.Executable()
			if err != nil {
				c.probeErr = fmt.Errorf("finding kaic's own binary to build the probe image from: %w", err)
				return
			}
			path = exe
		}
		data, err := os.ReadFile(path)
		if err != nil {
			c.probeErr = fmt.Errorf("reading the binary to build the probe image from: %w", err)
			return
		}
		c.probeBin = &binaryContent{path: path, data: data}
	})
	return c.probeBin, c.probeErr
}

// probeLoad is the provision.Image of a built probe image: it is assembled
// when a backend loads it, so that a binary that cannot make an image fails
// the provision phase with the reason, before any pod names the tag.
func (c *Client) probeLoad(pi ProbeImagePlan) ([]provision.Image, error) {
	if pi.Source != ProbeBuilt {
		return nil, nil
	}
	bin, err := c.probeBinaryContent()
	if err != nil {
		return nil, err
	}
	// The image is assembled while the cluster is being created (seconds
	// of hashing a binary of over 100 MB); loading it waits for it.
	var img v1.Image
	var buildErr error
	built := make(chan struct{})
	go func() {
		defer close(built)
		if img, buildErr = image.Build(bin.data); buildErr != nil {
			buildErr = fmt.Errorf("building the probe image from %s: %w", bin.path, buildErr)
		}
	}()
	return []provision.Image{{
		Ref: pi.Ref,
		WriteArchive: func(w io.Writer) error {
			<-built
			if buildErr != nil {
				return buildErr
			}
			return image.WriteArchiveTo(img, pi.Ref, w)
		},
	}}, nil
}

// probeState is the client's cache of the probe binary.
type probeState struct {
	probeBinary    string
	publishedProbe string
	probeOnce      sync.Once
	probeBin       *binaryContent
	probeErr       error
}

// ensureProbeLoaded loads the run's built probe image into the nodes of the
// cluster the provision phase created, unless that phase or an earlier
// install already loaded it: a later `kaic install` or `kaic verify` by
// another kaic binary names another tag, which the nodes must then hold.
func (r *run) ensureProbeLoaded(ctx context.Context, rc *pipeline.RunContext) error {
	if r.probe.Source != ProbeBuilt {
		return nil
	}
	p := r.resolved.Profile
	b, err := backendOf(p)
	if err != nil || b.loadImages == nil {
		return err
	}
	state := rc.State()
	prov := state.Phase(pipeline.PhaseProvision)
	if prov == nil || prov.Outputs[provision.KeyCreated] != "true" {
		return nil // no cluster of this run: runCluster says so
	}
	rec := provision.Record(maps.Clone(prov.Outputs))
	if inst := state.Phase(pipeline.PhaseInstall); inst != nil {
		for _, ref := range strings.Split(inst.Outputs[provision.KeyLoadedImages], ",") {
			if ref != "" {
				rec.AddLoaded(ref)
			}
		}
	}
	if rec.Loaded(r.probe.Ref) {
		return nil
	}
	images, err := r.c.probeLoad(r.probe)
	if err != nil {
		return err
	}
	if err := b.loadImages(ctx, p, rec, images, rc); err != nil {
		return err
	}
	return rc.SetOutput(provision.KeyLoadedImages, r.probe.Ref)
}
