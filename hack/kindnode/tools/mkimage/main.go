// Command mkimage assembles a container image from layer tarballs and writes
// it as an image archive that `docker load` and `ctr images import` accept.
//
//	mkimage -out x.tar -tag registry.k8s.io/pause:3.10 -layer pause.tar -entrypoint '["/pause"]'
package main

import (
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

type options struct {
	out, entrypoint, cmd, workdir, user, stopSignal string
	layers, envs, tags, labels                      list
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "", "output archive path")
	flag.StringVar(&o.entrypoint, "entrypoint", "", "entrypoint as a JSON array")
	flag.StringVar(&o.cmd, "cmd", "", "cmd as a JSON array")
	flag.StringVar(&o.workdir, "workdir", "", "working directory")
	flag.StringVar(&o.user, "user", "", "user[:group]")
	flag.StringVar(&o.stopSignal, "stopsignal", "", "stop signal, e.g. SIGRTMIN+3")
	flag.Var(&o.layers, "layer", "uncompressed layer tarball (repeatable, bottom first)")
	flag.Var(&o.envs, "env", "KEY=VALUE (repeatable)")
	flag.Var(&o.tags, "tag", "image reference (repeatable)")
	flag.Var(&o.labels, "label", "KEY=VALUE (repeatable)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.out == "" || len(o.tags) == 0 {
		return fmt.Errorf("-out and at least one -tag are required")
	}
	img := empty.Image
	for _, p := range o.layers {
		l, err := tarball.LayerFromFile(p, tarball.WithCompressionLevel(gzip.BestSpeed))
		if err != nil {
			return fmt.Errorf("layer %s: %w", p, err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	c := v1.Config{Env: o.envs, WorkingDir: o.workdir, User: o.user, StopSignal: o.stopSignal}
	for _, spec := range []struct {
		flag, value string
		dst         *[]string
	}{{"entrypoint", o.entrypoint, &c.Entrypoint}, {"cmd", o.cmd, &c.Cmd}} {
		if spec.value == "" {
			continue
		}
		if err := json.Unmarshal([]byte(spec.value), spec.dst); err != nil {
			return fmt.Errorf("-%s: %w", spec.flag, err)
		}
	}
	if len(o.labels) > 0 {
		c.Labels = map[string]string{}
		for _, kv := range o.labels {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("-label %q: want KEY=VALUE", kv)
			}
			c.Labels[k] = v
		}
	}
	cf.Config = c
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	refs := map[name.Reference]v1.Image{}
	for _, t := range o.tags {
		ref, err := name.NewTag(t)
		if err != nil {
			return err
		}
		refs[ref] = img
	}
	tmp := o.out + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, o.out)
}
