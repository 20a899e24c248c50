// Package image builds kaic's probe image from a static linux kaic binary
// with go-containerregistry: no Dockerfile, no Docker build and no
// registry. The image holds only the binary; its entrypoint is
// `kaic probe`.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
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

// ErrNotStatic is returned for a binary that needs a dynamic loader kaic
// cannot take from this machine (it was built for another architecture, or
// a library it needs is not here).
var ErrNotStatic = errors.New("binary is dynamically linked and its libraries cannot be taken from this machine (build it with CGO_ENABLED=0)")

// Entrypoint is the image's entrypoint: `kaic probe`, so containers give
// the mode and its flags as arguments (probe.Args).
var Entrypoint = []string{BinaryPath, "probe"}

// Reference returns the image reference for a binary's content.
func Reference(binary []byte) string {
	sum := sha256.Sum256(binary)
	return Repository + ":" + hex.EncodeToString(sum[:])[:16]
}

// Build assembles the probe image from a linux kaic binary. A static binary
// is the image's only program. A dynamically linked one (a kaic built with
// cgo, as `go install` does where a C compiler is present) gets the loader
// and the shared libraries it names, taken from this machine, which must
// then be a linux machine of the binary's architecture.
func Build(binary []byte) (v1.Image, error) {
	return build(binary, "/")
}

// build is Build with the libraries of a dynamic binary looked up under root.
func build(binary []byte, root string) (v1.Image, error) {
	arch, libs, err := inspect(binary, root)
	if err != nil {
		return nil, err
	}
	layerTar, err := rootfs(binary, libs)
	if err != nil {
		return nil, err
	}
	// An image archive holds gzipped layers. The layer is compressed once,
	// at the fastest level, and kept: its digest, its size and the archive
	// streamed to each node would otherwise gzip the binary again each.
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed), tarball.WithCompressedCaching)
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
	cfg.Architecture, cfg.OS = arch, "linux"
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.Entrypoint = slices.Clone(Entrypoint)
	cfg.Config.Env = []string{"PATH=/"}
	if dirs := libraryDirs(libs); dirs != "" {
		cfg.Config.Env = append(cfg.Config.Env, "LD_LIBRARY_PATH="+dirs)
	}
	cfg.Config.User = "65534:65534"
	cfg.Config.Labels = map[string]string{"dev.kaic.image": "probe"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, err
	}
	return mutate.CreatedAt(img, v1.Time{Time: epoch})
}

// Platform returns the platform a linux binary runs on (linux/amd64,
// linux/arm64).
func Platform(binary []byte) (v1.Platform, error) {
	f, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		return v1.Platform{}, fmt.Errorf("not a linux executable: %w", err)
	}
	defer f.Close()
	arch, ok := goarch[f.Machine]
	if !ok {
		return v1.Platform{}, fmt.Errorf("a linux executable for %s, which the probe image does not support (amd64, arm64)", f.Machine)
	}
	return v1.Platform{OS: "linux", Architecture: arch}, nil
}

// goarch maps the ELF machines kaic is released for to Go's names.
var goarch = map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64"}

// sharedFile is a file of a dynamic binary's runtime: where the image
// holds it, and its content.
type sharedFile struct {
	path string // absolute, in the image
	data []byte
}

// inspect returns the binary's architecture and, for a dynamic binary, its
// loader and the shared libraries it needs (transitively), read under root.
func inspect(binary []byte, root string) (string, []sharedFile, error) {
	f, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		return "", nil, fmt.Errorf("not a linux executable: %w", err)
	}
	defer f.Close()
	arch, ok := goarch[f.Machine]
	if !ok {
		return "", nil, fmt.Errorf("a linux executable for %s, which the probe image does not support (amd64, arm64)", f.Machine)
	}
	interp := ""
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return "", nil, fmt.Errorf("reading the binary's loader name: %w", err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if interp == "" {
		return arch, nil, nil
	}
	if runtime.GOOS != "linux" || goarch[hostMachine()] != arch {
		return "", nil, fmt.Errorf("%w: it is built for linux/%s, this machine is %s/%s", ErrNotStatic, arch, runtime.GOOS, runtime.GOARCH)
	}
	files, err := collectLibraries(f, interp, root)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrNotStatic, err)
	}
	return arch, files, nil
}

// hostMachine is the ELF machine of this process's architecture.
func hostMachine() elf.Machine {
	for m, a := range goarch {
		if a == runtime.GOARCH {
			return m
		}
	}
	return elf.EM_NONE
}

// librarySearch is where shared libraries are looked for, in order: the
// multiarch directories of Debian-like systems, then the classic ones.
func librarySearch() []string {
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[runtime.GOARCH]
	return []string{"/lib/" + triplet, "/usr/lib/" + triplet, "/lib64", "/usr/lib64", "/lib", "/usr/lib"}
}

// collectLibraries reads the loader and every library the binary needs,
// following the libraries' own needs, from under root.
func collectLibraries(f *elf.File, interp, root string) ([]sharedFile, error) {
	read := func(p string) ([]byte, error) {
		return os.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
	}
	loader, err := read(interp)
	if err != nil {
		return nil, fmt.Errorf("its loader %s: %w", interp, err)
	}
	files := []sharedFile{{path: interp, data: loader}}
	seen := map[string]bool{path.Base(interp): true}
	queue, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("reading the libraries it needs: %w", err)
	}
	for len(queue) > 0 {
		lib := queue[0]
		queue = queue[1:]
		if seen[lib] {
			continue
		}
		seen[lib] = true
		var found *sharedFile
		for _, dir := range librarySearch() {
			p := path.Join(dir, lib)
			if data, err := read(p); err == nil {
				found = &sharedFile{path: p, data: data}
				break
			}
		}
		if found == nil {
			return nil, fmt.Errorf("library %s not found in %s", lib, strings.Join(librarySearch(), ", "))
		}
		files = append(files, *found)
		lf, err := elf.NewFile(bytes.NewReader(found.data))
		if err != nil {
			return nil, fmt.Errorf("library %s: %w", found.path, err)
		}
		more, err := lf.ImportedLibraries()
		lf.Close()
		if err != nil {
			return nil, fmt.Errorf("library %s: %w", found.path, err)
		}
		queue = append(queue, more...)
	}
	return files, nil
}

// libraryDirs is the LD_LIBRARY_PATH of an image holding libs: the
// directories of its libraries (the loader's own is found by its path).
func libraryDirs(libs []sharedFile) string {
	var dirs []string
	for _, l := range libs[min(1, len(libs)):] {
		if d := path.Dir(l.path); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return strings.Join(dirs, ":")
}

// rootfs is the image's only layer: the binary, a writable /tmp and the
// passwd entry of the user it runs as.
func rootfs(binary []byte, libs []sharedFile) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	type entry struct {
		hdr  tar.Header
		body []byte
	}
	entries := []entry{
		{tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("root:x:0:0:root:/:/kaic\nnobody:x:65534:65534:nobody:/:/kaic\n")},
		{tar.Header{Name: "etc/group", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("root:x:0:\nnobody:x:65534:\n")},
		{tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil},
		{tar.Header{Name: BinaryPath[1:], Typeflag: tar.TypeReg, Mode: 0o755}, binary},
	}
	dirs := map[string]bool{"etc": true, "tmp": true}
	for _, l := range libs {
		rel := strings.TrimPrefix(l.path, "/")
		var parents []string
		for d := path.Dir(rel); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			entries = append(entries, entry{tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil})
		}
		entries = append(entries, entry{tar.Header{Name: rel, Typeflag: tar.TypeReg, Mode: 0o755}, l.data})
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
	if _, err := name.NewTag(ref); err != nil {
		return err // before the file is created
	}
	return atomicfile.WriteFunc(path, 0o644, func(w io.Writer) error {
		return WriteArchiveTo(img, ref, w)
	})
}

// WriteArchiveTo writes img tagged ref to w as WriteArchive does.
func WriteArchiveTo(img v1.Image, ref string, w io.Writer) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.Write(tag, img, w)
}
