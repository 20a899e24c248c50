package image

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Binary is a kaic binary the probe image is built from.
type Binary struct {
	// Name says where it came from, for messages.
	Name string
	Data []byte
}

// Built is the probe image of one or more binaries: one image, or an index
// of one image per platform.
type Built struct {
	// Image is set for a single binary, Index for several.
	Image v1.Image
	Index v1.ImageIndex
	// Platforms are the platforms it holds, in the order given.
	Platforms []string
	// Tag is derived from the binaries' content.
	Tag string
}

// BuildAll builds the probe image of binaries: an image for one binary, an
// index of one image per platform for several. Two binaries for the same
// platform, or a platform in want that no binary is built for, are errors.
func BuildAll(binaries []Binary, want []string) (*Built, error) {
	if len(binaries) == 0 {
		return nil, errors.New("no binary to build the probe image from")
	}
	b := &Built{}
	byPlatform := map[string]string{}
	var adds []mutate.IndexAddendum
	h := sha256.New()
	for _, bin := range binaries {
		p, err := Platform(bin.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", bin.Name, err)
		}
		ps := p.OS + "/" + p.Architecture
		if prev, dup := byPlatform[ps]; dup {
			return nil, fmt.Errorf("%s and %s are both built for %s: give one binary per platform", prev, bin.Name, ps)
		}
		byPlatform[ps] = bin.Name
		img, err := Build(bin.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", bin.Name, err)
		}
		b.Platforms = append(b.Platforms, ps)
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		sum := sha256.Sum256(bin.Data)
		h.Write(sum[:])
		if len(binaries) == 1 {
			b.Image = img
		}
	}
	for _, w := range want {
		if !slices.Contains(b.Platforms, w) {
			return nil, fmt.Errorf("--platform %s: no binary is built for it (have %s): give a kaic binary cross-compiled for it with --binary (CGO_ENABLED=0 GOOS=%s GOARCH=%s go build ./cmd/kaic)",
				w, strings.Join(b.Platforms, ", "), osOf(w), archOf(w))
		}
	}
	if len(want) > 0 && len(want) != len(b.Platforms) {
		return nil, fmt.Errorf("binaries are given for %s but --platform asks for %s", strings.Join(b.Platforms, ", "), strings.Join(want, ", "))
	}
	if b.Image != nil {
		b.Tag = strings.TrimPrefix(Reference(binaries[0].Data), Repository+":")
		return b, nil
	}
	b.Index = mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.DockerManifestList), adds...)
	b.Tag = hex.EncodeToString(h.Sum(nil))[:16]
	return b, nil
}

func osOf(platform string) string   { o, _, _ := strings.Cut(platform, "/"); return o }
func archOf(platform string) string { _, a, _ := strings.Cut(platform, "/"); return a }

// Digest is the digest of what Push writes.
func (b *Built) Digest() (v1.Hash, error) {
	if b.Index != nil {
		return b.Index.Digest()
	}
	return b.Image.Digest()
}

// PushOptions say how Push reaches the registry.
type PushOptions struct {
	// Keychain finds the credentials (default: the Docker config file and
	// its credential helpers, as docker login writes them).
	Keychain authn.Keychain
	// Transport is the HTTP transport (default: go-containerregistry's).
	Transport http.RoundTripper
	// Insecure allows plain HTTP and TLS certificates that are not
	// verified, for a local registry.
	Insecure bool
}

// PushError is a push the registry refused.
type PushError struct {
	Ref    string
	Reason string
	Err    error
}

func (e *PushError) Error() string {
	msg := "pushing the probe image to " + e.Ref + ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *PushError) Unwrap() error { return e.Err }

// Push writes b to ref with the credentials the keychain has for its
// registry and returns the pushed reference by digest. A ref without a tag
// gets b's content-derived tag. Pushing the same image again writes nothing
// new and returns the same digest.
func Push(ctx context.Context, ref string, b *Built, o PushOptions) (name.Digest, error) {
	var nameOpts []name.Option
	if o.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	if !hasTagOrDigest(ref) {
		ref += ":" + b.Tag
	}
	tag, err := name.NewTag(ref, nameOpts...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("%s: not an image reference with a tag: %w", ref, err)
	}
	keychain := o.Keychain
	if keychain == nil {
		keychain = authn.DefaultKeychain
	}
	rt := o.Transport
	if rt == nil {
		t := remote.DefaultTransport.(*http.Transport).Clone()
		if o.Insecure {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with --insecure, for a local registry
		}
		rt = t
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(keychain), remote.WithTransport(rt)}
	if b.Index != nil {
		err = remote.WriteIndex(tag, b.Index, opts...)
	} else {
		err = remote.Write(tag, b.Image, opts...)
	}
	if err != nil {
		return name.Digest{}, describePushError(tag, err)
	}
	d, err := b.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	return tag.Context().Digest(d.String()), nil
}

// describePushError says what a refused push means for the user.
func describePushError(tag name.Tag, err error) error {
	registry := tag.RegistryStr()
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized:
			return &PushError{Ref: tag.String(), Err: err,
				Reason: fmt.Sprintf("the registry %s refused the credentials (kaic uses those of `docker login %s`, from the Docker config file or its credential helper)", registry, registry)}
		case http.StatusForbidden:
			return &PushError{Ref: tag.String(), Err: err,
				Reason: fmt.Sprintf("the credentials for %s may not push to %s", registry, tag.RepositoryStr())}
		}
	}
	return &PushError{Ref: tag.String(), Reason: "the push failed", Err: err}
}

// hasTagOrDigest says whether ref names a tag or a digest after its
// repository (a registry port is not a tag).
func hasTagOrDigest(ref string) bool {
	last := ref[strings.LastIndex(ref, "/")+1:]
	return strings.ContainsAny(last, ":@")
}
