package kaic

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The probe image is assembled while the cluster is created: a binary no
// image can be made from fails the load, naming the binary, and every load
// of the image says so.
func TestProbeLoadFailsAtLoadWithTheReason(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "not-an-elf")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := New(WithProbeBinary(bin))
	images, err := c.probeLoad(ProbeImagePlan{Source: ProbeBuilt, Ref: "kaic.dev/probe:test"})
	if err != nil {
		t.Fatalf("probeLoad: %v", err)
	}
	if len(images) != 1 || images[0].Ref != "kaic.dev/probe:test" {
		t.Fatalf("images %+v", images)
	}
	for i := range 2 {
		err := images[0].WriteArchive(io.Discard)
		if err == nil || !strings.Contains(err.Error(), "building the probe image from "+bin) {
			t.Errorf("load %d: %v", i, err)
		}
	}
}

// A binary that makes an image loads as an archive, as often as asked.
func TestProbeLoadWritesTheArchive(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := New(WithProbeBinary(exe))
	images, err := c.probeLoad(ProbeImagePlan{Source: ProbeBuilt, Ref: "kaic.dev/probe:test"})
	if err != nil || len(images) != 1 {
		t.Fatalf("probeLoad: %v %+v", err, images)
	}
	for i := range 2 {
		var n countingWriter
		if err := images[0].WriteArchive(&n); err != nil || n == 0 {
			t.Errorf("load %d: %d bytes, %v", i, n, err)
		}
	}
}

type countingWriter int

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}
