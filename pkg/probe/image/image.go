// Package image builds kaic's probe image from a static linux kaic binary
// with go-containerregistry: no Dockerfile, no Docker build and no
// registry. The image holds only the binary; its entrypoint is
// `kaic probe`.
package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kaic-dev/kaic/pkg/atomicfile"
)

// Repository is the name of the probe image; its tag is derived from the
// binary, so a changed kaic gets a new tag and nodes never run a stale one.
const Repository = "kaic.dev/probe"

// BinaryPath is where the binary sits in the image.
const BinaryPath = "/kaic"

// epoch is the timestamp of every file and of the image, so the same
// binary always yields the same image digest.
var epoch = time.Unix(0, 0).UTC()

// ErrNotStatic is returned for a binary that needs a dynamic loader, which
// an image without a base layer does not have.
var ErrNotStatic = errors.New("binary is not statically linked (build it with CGO_ENABLED=0)")

// Reference returns the image reference for a binary's content.
// Entrypoint is the image's entrypoint: `kaic probe`, so containers give
// the mode and its flags as arguments (probe.Args).
var Entrypoint = []string{BinaryPath, "probe"}

func Reference(binary []byte) string {
	sum := sha256.Sum256(binary)
	return Repository + ":" + hex.EncodeToString(sum[:])[:16]
}

// Build assembles the probe image from a linux kaic binary.
func Build(binary []byte) (v1.Image, error) {
	if err := checkStatic(binary); err != nil {
		return nil, err
	}
	layerTar, err := rootfs(binary)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = "amd64", "linux"
	if m, err := elf.NewFile(bytes.NewReader(binary)); err == nil && m.Machine == elf.EM_AARCH64 {
		cfg.Architecture = "arm64"
	}
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.Entrypoint = slices.Clone(Entrypoint)
	cfg.Config.Env = []string{"PATH=/"}
	cfg.Config.User = "65534:65534"
	cfg.Config.Labels = map[string]string{"dev.kaic.image": "probe"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, err
	}
	return mutate.CreatedAt(img, v1.Time{Time: epoch})
}

// checkStatic refuses binaries that are not linux ELF executables without
// an interpreter.
func checkStatic(binary []byte) error {
	f, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		return fmt.Errorf("not a linux executable: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return ErrNotStatic
		}
	}
	return nil
}

// rootfs is the image's only layer: the binary, a writable /tmp and the
// passwd entry of the user it runs as.
func rootfs(binary []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := []struct {
		hdr  tar.Header
		body []byte
	}{
		{tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("root:x:0:0:root:/:/kaic\nnobody:x:65534:65534:nobody:/:/kaic\n")},
		{tar.Header{Name: "etc/group", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("root:x:0:\nnobody:x:65534:\n")},
		{tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil},
		{tar.Header{Name: BinaryPath[1:], Typeflag: tar.TypeReg, Mode: 0o755}, binary},
	}
	for _, e := range entries {
		h := e.hdr
		h.ModTime, h.Size, h.Format = epoch, int64(len(e.body)), tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteArchive writes img tagged ref as an archive `docker load` and
// kind's image loading accept.
func WriteArchive(img v1.Image, ref, path string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return atomicfile.WriteFunc(path, 0o644, func(w io.Writer) error {
		return tarball.Write(tag, img, w)
	})
}
