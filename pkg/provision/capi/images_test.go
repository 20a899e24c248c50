package capi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/provision"
)

func TestSetPreloadImages(t *testing.T) {
	obj := func(apiVersion, kind, name string, spec map[string]any) unstructured.Unstructured {
		return unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": map[string]any{"name": name}, "spec": spec}}
	}
	objs := []unstructured.Unstructured{
		obj("infrastructure.cluster.x-k8s.io/v1beta1", "DockerMachineTemplate", "cp",
			map[string]any{"template": map[string]any{"spec": map[string]any{"preLoadImages": []any{"a:1", "kaic.dev/probe:x"}}}}),
		obj("infrastructure.cluster.x-k8s.io/v1beta2", "DockerMachinePoolTemplate", "pool",
			map[string]any{"template": map[string]any{"spec": map[string]any{"template": map[string]any{}}}}),
		obj("infrastructure.cluster.x-k8s.io/v1beta2", "AWSMachineTemplate", "aws", map[string]any{"template": map[string]any{"spec": map[string]any{}}}),
		obj("example.com/v1", "DockerMachineTemplate", "other-group", map[string]any{}),
	}
	changed, err := setPreloadImages(objs, []string{"kaic.dev/probe:x", "b:2"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"DockerMachineTemplate cp", "DockerMachinePoolTemplate pool"}; !slices.Equal(changed, want) {
		t.Errorf("changed %v, want %v", changed, want)
	}
	if got, _, _ := unstructured.NestedStringSlice(objs[0].Object, "spec", "template", "spec", "preLoadImages"); !slices.Equal(got, []string{"a:1", "kaic.dev/probe:x", "b:2"}) {
		t.Errorf("machine template preloads %v: the existing images first, each once", got)
	}
	if got, _, _ := unstructured.NestedStringSlice(objs[1].Object, "spec", "template", "spec", "template", "preLoadImages"); !slices.Equal(got, []string{"kaic.dev/probe:x", "b:2"}) {
		t.Errorf("machine pool template preloads %v", got)
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(objs[2].Object, "spec", "template", "spec", "preLoadImages"); found {
		t.Errorf("an AWS machine template got preLoadImages")
	}
	bad := []unstructured.Unstructured{obj("infrastructure.cluster.x-k8s.io/v1beta1", "DockerMachineTemplate", "bad",
		map[string]any{"template": map[string]any{"spec": map[string]any{"preLoadImages": "not-a-list"}}})}
	if _, err := setPreloadImages(bad, []string{"x"}); err == nil || !strings.Contains(err.Error(), "DockerMachineTemplate bad") {
		t.Errorf("err = %v, want one naming the template", err)
	}
}

// engineStandIn answers the Docker engine API's image load on a unix
// socket, for tests of what kaic sends; TestEngineLoadIntoDocker talks to
// the real engine.
type engineStandIn struct {
	socket string
	mu     sync.Mutex
	bodies []string
	answer string
}

func (e *engineStandIn) loaded() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.bodies)
}

func standInEngine(t *testing.T) *engineStandIn {
	t.Helper()
	dir, err := os.MkdirTemp("", "engine")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &engineStandIn{socket: filepath.Join(dir, "docker.sock"), answer: `{"stream":"Loaded image: x\n"}`}
	l, err := net.Listen("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/images/load" || r.Header.Get("Content-Type") != "application/x-tar" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		body, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.bodies = append(e.bodies, string(body))
		answer := e.answer
		e.mu.Unlock()
		io.WriteString(w, answer)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return e
}

func TestEngineLoadReportsTheEnginesError(t *testing.T) {
	e := standInEngine(t)
	e.answer = `{"errorDetail":{"message":"unexpected EOF"},"error":"unexpected EOF"}`
	getenv := func(k string) string {
		if k == "DOCKER_HOST" {
			return "unix://" + e.socket
		}
		return ""
	}
	img := provision.Image{Ref: "kaic.dev/probe:x", WriteArchive: func(w io.Writer) error { _, err := io.WriteString(w, "tar"); return err }}
	err := loadIntoEngine(t.Context(), getenv, []provision.Image{img}, progress.ForPhase(progress.Discard, "provision"))
	if err == nil || !strings.Contains(err.Error(), "kaic.dev/probe:x") || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("err = %v, want the engine's error with the image", err)
	}
	for _, host := range []string{"ssh://me@host", "npipe:////./pipe/docker_engine"} {
		if _, _, err := engineClient(func(k string) string {
			if k == "DOCKER_HOST" {
				return host
			}
			return ""
		}); err == nil || !strings.Contains(err.Error(), "unix:// or tcp://") {
			t.Errorf("DOCKER_HOST %s: err = %v", host, err)
		}
	}
}

// TestEngineLoadIntoDocker loads an image into this machine's Docker engine
// through its API, as kaic does before Cluster API's Docker provider
// creates machines, and finds it there.
func TestEngineLoadIntoDocker(t *testing.T) {
	client, endpoint, err := engineClient(os.Getenv)
	if err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if resp, err := client.Get("http://docker/_ping"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no Docker engine at %s: %v", endpoint, err)
		}
		t.Skipf("no Docker engine at %s: %v", endpoint, err)
	} else {
		resp.Body.Close()
	}
	ref := "kaic.test/preload:" + rand.String(8)
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	pi := provision.Image{Ref: ref, WriteArchive: func(w io.Writer) error { return tarball.Write(tag, img, w) }}
	if err := loadIntoEngine(ctx, os.Getenv, []provision.Image{pi}, progress.ForPhase(progress.Discard, "provision")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, "http://docker/images/"+ref+"?force=1", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	resp, err := client.Get("http://docker/images/" + ref + "/json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the engine does not know %s after the load: %s %s", ref, resp.Status, body)
	}
	digest, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte(digest.String())) {
		t.Errorf("the engine's %s is not the image loaded (config %s): %s", ref, digest, body)
	}

	// An archive the engine cannot read is an error naming the image.
	broken := provision.Image{Ref: "kaic.test/broken:1", WriteArchive: func(w io.Writer) error { _, err := fmt.Fprint(w, "not a tar archive"); return err }}
	if err := loadIntoEngine(ctx, os.Getenv, []provision.Image{broken}, progress.ForPhase(progress.Discard, "provision")); err == nil || !strings.Contains(err.Error(), "kaic.test/broken:1") {
		t.Errorf("a broken archive: err = %v", err)
	}
}
