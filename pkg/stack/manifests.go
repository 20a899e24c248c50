package stack

import (
	"archive/zip"
	"context"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/kaic-dev/kaic/pkg/ownership"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// defaultGoProxy is the first proxy of $GOPROXY that is a URL.
func defaultGoProxy() string {
	for _, p := range strings.FieldsFunc(os.Getenv("GOPROXY"), func(r rune) bool { return r == ',' || r == '|' }) {
		if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
			return strings.TrimSuffix(p, "/")
		}
	}
	return "https://proxy.golang.org"
}

// loadManifests reads every document of a component's manifests: pinned
// URLs, files, and directories of Go modules verified against their go.sum
// hash.
func (in *Installer) loadManifests(ctx context.Context, m *profile.Manifests) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	add := func(source string, data []byte) error {
		o, err := decodeObjects(data)
		if err != nil {
			return fmt.Errorf("%s: %w", source, err)
		}
		objs = append(objs, o...)
		return nil
	}
	for _, u := range m.URLs {
		p, err := in.cache.Pinned(ctx, u.URL, u.SHA256)
		if err != nil {
			return nil, err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if err := add(u.URL, data); err != nil {
			return nil, err
		}
	}
	for _, f := range m.Files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if err := add(f, data); err != nil {
			return nil, err
		}
	}
	for _, mod := range m.Modules {
		files, err := in.moduleFiles(ctx, mod)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if err := add(mod.Path+"@"+mod.Version+"/"+f.name, f.data); err != nil {
				return nil, err
			}
		}
	}
	return objs, nil
}

// ModuleHashMismatchError reports a module zip whose go.sum hash is not the
// one the component pins. Nothing of the component has been applied.
type ModuleHashMismatchError struct {
	Module, Version string
	// URL is where the zip came from.
	URL       string
	Want, Got string
}

func (e *ModuleHashMismatchError) Error() string {
	return fmt.Sprintf("module %s@%s from %s has hash %s, but the component pins %s: refusing it, nothing was applied", e.Module, e.Version, e.URL, e.Got, e.Want)
}

type namedData struct {
	name string
	data []byte
}

// moduleFiles downloads a module zip from the Go module proxy, checks it
// against the pinned h1: hash and returns the *.yaml files of mod.Dir (not
// recursive), in name order.
func (in *Installer) moduleFiles(ctx context.Context, mod profile.ModuleManifest) ([]namedData, error) {
	escPath, err := module.EscapePath(mod.Path)
	if err != nil {
		return nil, err
	}
	escVer, err := module.EscapeVersion(mod.Version)
	if err != nil {
		return nil, err
	}
	u := in.goProxy + "/" + escPath + "/@v/" + escVer + ".zip"
	entry, err := in.cache.Get(ctx, u)
	if err != nil {
		return nil, err
	}
	sum, err := dirhash.HashZip(entry.Path, dirhash.Hash1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	if sum != mod.Sum {
		shown := u
		if pu, err := url.Parse(u); err == nil {
			shown = pu.Redacted()
		}
		return nil, &ModuleHashMismatchError{Module: mod.Path, Version: mod.Version, URL: shown, Want: mod.Sum, Got: sum}
	}
	zr, err := zip.OpenReader(entry.Path)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	prefix := mod.Path + "@" + mod.Version + "/" + strings.Trim(mod.Dir, "/") + "/"
	var out []namedData
	for _, f := range zr.File {
		rel, ok := strings.CutPrefix(f.Name, prefix)
		if !ok || strings.Contains(rel, "/") || (path.Ext(rel) != ".yaml" && path.Ext(rel) != ".yml") || slices.Contains(mod.Exclude, rel) {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, namedData{name: rel, data: data})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("module %s@%s has no YAML files in %s", mod.Path, mod.Version, mod.Dir)
	}
	slices.SortFunc(out, func(a, b namedData) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// applyComponentManifests applies a manifests component with server-side
// apply and waits until kstatus reports every object current and the
// declared conditions hold.
func (in *Installer) applyComponentManifests(ctx context.Context, c profile.Component, rec *Record) error {
	ns := namespaceOf(c)
	rec.Namespace = ns
	objs, err := in.loadManifests(ctx, c.Manifests)
	if err != nil {
		return err
	}
	cl, err := in.target()
	if err != nil {
		return err
	}
	timeout := in.timeout(c)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	// CRDs first, and established before the objects that use them.
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int { return applyRank(a) - applyRank(b) })
	if c.Namespace != "" {
		nsObj := &unstructured.Unstructured{}
		nsObj.SetAPIVersion("v1")
		nsObj.SetKind("Namespace")
		nsObj.SetName(c.Namespace)
		if _, err := in.apply(wctx, cl, nsObj, ""); err != nil {
			return err
		}
	}
	var refs []ObjectRef
	crdsPending := false
	for _, o := range objs {
		if crdsPending && o.GetKind() != "CustomResourceDefinition" {
			if err := in.waitCurrent(wctx, refs); err != nil {
				return in.notReady(ctx, "CRDs of "+c.Name, timeout, err, refs, "")
			}
			cl.resetMapper()
			crdsPending = false
		}
		ref, err := in.apply(wctx, cl, o, ns)
		if err != nil {
			return err
		}
		refs = append(refs, ref)
		rec.Objects = refs
		in.record(*rec)
		if o.GetKind() == "CustomResourceDefinition" {
			crdsPending = true
		}
	}
	rec.Action = ActionApplied
	if err := in.waitCurrent(wctx, refs); err != nil {
		return in.notReady(ctx, fmt.Sprintf("manifests of %s (%d objects)", c.Name, len(refs)), timeout, err, refs, "")
	}
	if crdsPending {
		// Only now are the CRDs established: discovery read while they
		// were not (by this or a concurrent install) would leave their
		// kinds unknown to the components that use them next.
		cl.resetMapper()
	}
	if err := in.waitDeclared(wctx, c, ns); err != nil {
		return in.notReady(ctx, fmt.Sprintf("manifests of %s", c.Name), timeout, err, nil, "")
	}
	return nil
}

func applyRank(u *unstructured.Unstructured) int {
	switch u.GetKind() {
	case "CustomResourceDefinition":
		return 0
	case "Namespace":
		return 1
	}
	return 2
}

// apply server-side applies one object under the kaic field manager,
// forcing conflicts over fields of objects the run created, which carry its
// labels. An object that exists without the run's labels was there before:
// it is not changed, and its ref says it is pre-existing.
func (in *Installer) apply(ctx context.Context, cl *cluster, o *unstructured.Unstructured, ns string) (ObjectRef, error) {
	gvk := o.GroupVersionKind()
	m, err := cl.resourceFor(gvk, ns)
	if err != nil {
		return ObjectRef{}, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
	}
	ref := ObjectRef{APIVersion: o.GetAPIVersion(), Kind: o.GetKind(), Name: o.GetName()}
	var res dynamic.ResourceInterface = cl.dynamic.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if o.GetNamespace() == "" {
			o.SetNamespace(ns)
		}
		ref.Namespace = o.GetNamespace()
		res = cl.dynamic.Resource(m.Resource).Namespace(ref.Namespace)
	}
	live, err := res.Get(ctx, o.GetName(), metav1.GetOptions{})
	switch {
	case err == nil && !ownership.CreatedBy(live.GetLabels(), in.runID):
		ref.PreExisting, ref.Owner = true, ownership.Owner(live.GetLabels())
		in.logger.Info("object existed before: left as it is", "object", ref.String(), "owner", ref.Owner)
		return ref, nil
	case err != nil && !apierrors.IsNotFound(err):
		return ref, fmt.Errorf("reading %s: %w", ref, err)
	case err == nil && live.GetDeletionTimestamp() != nil:
		// Still being deleted (a teardown of this run, a CRD whose
		// instances are being cleaned up): applying now would only
		// change an object about to disappear.
		if err := waitGone(ctx, res, o.GetName(), deletionWait); err != nil {
			return ref, fmt.Errorf("%s is being deleted and is still there: %w", ref, err)
		}
	}
	labels := o.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, ownership.Labels(in.runID))
	o.SetLabels(labels)
	if _, err := res.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return ref, fmt.Errorf("applying %s: %w", ref, err)
	}
	return ref, nil
}

// deletionWait bounds the wait for an object being deleted to be gone
// before it is applied again.
const deletionWait = 2 * time.Minute

// waitGone waits until the object name is gone.
func waitGone(ctx context.Context, res dynamic.ResourceInterface, name string, limit time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, limit, true, func(ctx context.Context) (bool, error) {
		_, err := res.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return true, nil
		case err != nil:
			return false, err
		}
		return false, nil
	})
}

// waitCurrent waits until kstatus computes every object as current.
func (in *Installer) waitCurrent(ctx context.Context, refs []ObjectRef) error {
	cl, err := in.target()
	if err != nil {
		return err
	}
	var pending []string
	err = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pending = pending[:0]
		for _, ref := range refs {
			live, err := cl.get(ctx, ref)
			if err != nil {
				pending = append(pending, fmt.Sprintf("%s: %v", ref, err))
				continue
			}
			res, err := computeStatus(live)
			if err != nil {
				pending = append(pending, fmt.Sprintf("%s: %v", ref, err))
			} else if res.Status != status.CurrentStatus {
				pending = append(pending, fmt.Sprintf("%s: %s %s", ref, res.Status, res.Message))
			}
		}
		return len(pending) == 0, nil
	})
	if err != nil && len(pending) > 0 {
		return fmt.Errorf("%w: %s", err, strings.Join(pending, "; "))
	}
	return err
}

// deleteObjects deletes the recorded objects the run created, in reverse
// apply order; objects already gone are fine. Objects recorded as
// pre-existing, and objects whose labels no longer name run runID, are
// left alone.
func (in *Installer) deleteObjects(ctx context.Context, component, runID string, refs []ObjectRef) error {
	cl, err := in.target()
	if err != nil {
		return err
	}
	var errs []string
	kept := 0
	for i := len(refs) - 1; i >= 0; i-- {
		ref := refs[i]
		if ref.PreExisting {
			kept++
			continue
		}
		m, err := cl.resourceFor(schemaGVK(ref), ref.Namespace)
		if meta.IsNoMatchError(err) {
			continue // its CRD is gone, and the object with it
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", ref, err))
			continue
		}
		var res dynamic.ResourceInterface = cl.dynamic.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			res = cl.dynamic.Resource(m.Resource).Namespace(ref.Namespace)
		}
		live, err := res.Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("reading %s: %v", ref, err))
			continue
		}
		if !ownership.CreatedBy(live.GetLabels(), runID) {
			in.steps.Notef("%s: %s is labelled as %s's, not run %s's: left alone", component, ref, ownership.Owner(live.GetLabels()), runID)
			continue
		}
		policy := metav1.DeletePropagationBackground
		pre := metav1.Preconditions{UID: ptrTo(live.GetUID())}
		err = res.Delete(ctx, ref.Name, metav1.DeleteOptions{PropagationPolicy: &policy, Preconditions: &pre})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Sprintf("deleting %s: %v", ref, err))
		}
	}
	if kept > 0 {
		in.steps.Notef("%s: %d object(s) that were there before the apply left alone", component, kept)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func ptrTo[T any](v T) *T { return &v }
