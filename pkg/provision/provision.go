// Package provision turns a profile's cluster section into a reachable
// cluster and a kubeconfig in the run directory. Each backend (kind, capi,
// existing) lives in its own package and implements Provisioner; what a
// backend created is recorded so that teardown removes exactly that.
package provision

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/kaic-dev/kaic/pkg/progress"
)

// Record is what a provisioner did, kept in the run state (as the provision
// phase's outputs) so later phases can reach the cluster and teardown knows
// what to remove.
type Record map[string]string

// Keys of a Record every backend sets.
const (
	// KeyBackend is the backend name.
	KeyBackend = "backend"
	// KeyKubeconfig is the path of the kubeconfig in the run directory.
	KeyKubeconfig = "kubeconfig"
	// KeyContext is the kubeconfig context to use.
	KeyContext = "context"
	// KeyCreated is "true" when kaic created the cluster (and so may delete
	// it), "false" when it adopted one.
	KeyCreated = "created"
	// KeyClusterName names the cluster the backend created or adopted.
	KeyClusterName = "clusterName"
	// KeyRunID is the id of the run that created the cluster; the
	// cluster's nodes or objects carry it (ownership.RunIDLabel).
	KeyRunID = "runID"
	// KeyLoadedImages lists, comma-separated, the images kaic loaded into
	// the nodes of a cluster it created.
	KeyLoadedImages = "loadedImages"
)

// Image is an image kaic loads into the nodes of a cluster it creates, so
// that no node needs to pull it (kaic's probe image).
type Image struct {
	// Ref is the reference pods name it by.
	Ref string
	// WriteArchive writes it as an image archive (docker save format).
	WriteArchive func(w io.Writer) error
}

// Loaded says whether rec records ref among the images loaded into the
// cluster's nodes.
func (rec Record) Loaded(ref string) bool {
	return slices.Contains(strings.Split(rec[KeyLoadedImages], ","), ref)
}

// AddLoaded records that ref was loaded into the cluster's nodes.
func (rec Record) AddLoaded(ref string) {
	if rec.Loaded(ref) {
		return
	}
	if rec[KeyLoadedImages] == "" {
		rec[KeyLoadedImages] = ref
		return
	}
	rec[KeyLoadedImages] += "," + ref
}

// Paths are where in the run directory a provisioner writes.
type Paths struct {
	// Dir is the run directory: a backend keeps its own files (logs,
	// applied manifests, a management cluster's kubeconfig) under it.
	Dir string
	// Kubeconfig is the file the cluster's kubeconfig is written to.
	Kubeconfig string
}

// Provisioner creates or adopts a cluster.
type Provisioner interface {
	// Create creates (or adopts) the cluster and writes its kubeconfig to
	// paths.Kubeconfig. The record is returned even on error, so that what
	// was created before the failure can be torn down.
	Create(ctx context.Context, paths Paths, r progress.Steps) (Record, error)
	// Delete removes what Create recorded, and nothing else.
	Delete(ctx context.Context, rec Record, r progress.Steps) error
	// CollectLogs writes diagnostic logs of the cluster into dir.
	CollectLogs(ctx context.Context, rec Record, dir string) error
}

// ErrNotImplemented marks a backend or operation that kaic does not have yet.
var ErrNotImplemented = errors.New("not implemented yet")

// NotImplemented returns an error saying what is missing.
func NotImplemented(what string) error {
	return fmt.Errorf("%w: %s", ErrNotImplemented, what)
}
