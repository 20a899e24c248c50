package draapi

import (
	"context"
	"fmt"

	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
)

// Client reads and writes the DRA objects of one cluster at one version
// of resource.k8s.io, taking and returning the v1 Go types. Its methods
// have the shape of client-go's typed clients, so that
// client.ResourceV1().ResourceClaims(ns).Get(...) becomes
// dra.ResourceClaims(ns).Get(...).
type Client struct {
	dynamic dynamic.Interface
	api     API
	// err, when set, is the error of every request: no usable version.
	err error
}

// NewClient returns a client that sends its requests through dyn to the
// version api names. When api names none, every request fails with
// api.Err().
func NewClient(dyn dynamic.Interface, api API) *Client {
	c := &Client{dynamic: dyn, api: api, err: api.Err()}
	if c.err == nil && dyn == nil {
		c.err = fmt.Errorf("no client of the cluster to reach %s with", api.Version)
	}
	return c
}

// ClientFor discovers the version to use with d and returns a client of
// it; a failed discovery is the error of every request.
func ClientFor(d discovery.ServerGroupsInterface, dyn dynamic.Interface) *Client {
	api, err := Discover(d)
	c := NewClient(dyn, api)
	if err != nil {
		c.err = err
	}
	return c
}

// Err is the error every request of the client fails with, or nil: the
// cluster serves no version kaic can use, or discovery failed.
func (c *Client) Err() error { return c.err }

// API is the API the client uses.
func (c *Client) API() API { return c.api }

// Version is the version the client sends requests to; empty when the
// cluster serves none kaic can use.
func (c *Client) Version() Version { return c.api.Version }

// DeviceClasses are the cluster's DeviceClasses.
func (c *Client) DeviceClasses() *Resource[resourcev1.DeviceClass, resourcev1.DeviceClassList] {
	return newResource[resourcev1.DeviceClass, resourcev1.DeviceClassList](c, "deviceclasses", "")
}

// ResourceSlices are the cluster's ResourceSlices.
func (c *Client) ResourceSlices() *Resource[resourcev1.ResourceSlice, resourcev1.ResourceSliceList] {
	return newResource[resourcev1.ResourceSlice, resourcev1.ResourceSliceList](c, "resourceslices", "")
}

// ResourceClaims are the ResourceClaims of namespace; metav1.NamespaceAll
// lists and watches those of every namespace.
func (c *Client) ResourceClaims(namespace string) *Resource[resourcev1.ResourceClaim, resourcev1.ResourceClaimList] {
	return newResource[resourcev1.ResourceClaim, resourcev1.ResourceClaimList](c, "resourceclaims", namespace)
}

// ResourceClaimTemplates are the ResourceClaimTemplates of namespace.
func (c *Client) ResourceClaimTemplates(namespace string) *Resource[resourcev1.ResourceClaimTemplate, resourcev1.ResourceClaimTemplateList] {
	return newResource[resourcev1.ResourceClaimTemplate, resourcev1.ResourceClaimTemplateList](c, "resourceclaimtemplates", namespace)
}

// Resource is one resource of resource.k8s.io, in one namespace for
// namespaced resources. T is its v1 Go type and L the list's; pointers to
// both are runtime.Objects.
type Resource[T, L any] struct {
	client  dynamic.ResourceInterface
	version Version
	err     error
}

func newResource[T, L any](c *Client, resource, namespace string) *Resource[T, L] {
	r := &Resource[T, L]{version: c.api.Version, err: c.err}
	if r.err == nil {
		nri := c.dynamic.Resource(c.api.Version.GroupVersion().WithResource(resource))
		if namespace != "" {
			r.client = nri.Namespace(namespace)
		} else {
			r.client = nri
		}
	}
	return r
}

// Get returns the object called name.
func (r *Resource[T, L]) Get(ctx context.Context, name string, opts metav1.GetOptions) (*T, error) {
	if r.err != nil {
		return nil, r.err
	}
	u, err := r.client.Get(ctx, name, opts)
	if err != nil {
		return nil, err
	}
	return r.decode(u)
}

// List lists the objects opts select. The field selectors of
// ResourceSlices (resourcev1.ResourceSliceSelectorDriver, NodeName) are
// the same in every version.
func (r *Resource[T, L]) List(ctx context.Context, opts metav1.ListOptions) (*L, error) {
	if r.err != nil {
		return nil, r.err
	}
	list, err := r.client.List(ctx, opts)
	if err != nil {
		return nil, err
	}
	out := new(L)
	if err := FromVersion(list.UnstructuredContent(), r.version, any(out).(runtime.Object)); err != nil {
		return nil, err
	}
	return out, nil
}

// Watch watches the objects opts select; the events carry *T (error events
// keep their *metav1.Status).
func (r *Resource[T, L]) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	if r.err != nil {
		return nil, r.err
	}
	w, err := r.client.Watch(ctx, opts)
	if err != nil {
		return nil, err
	}
	return watch.Filter(w, func(ev watch.Event) (watch.Event, bool) {
		u, ok := ev.Object.(*unstructured.Unstructured)
		if !ok {
			return ev, true
		}
		obj, err := r.decode(u)
		if err != nil {
			return watch.Event{Type: watch.Error, Object: &metav1.Status{
				Status: metav1.StatusFailure, Reason: metav1.StatusReasonInternalError, Message: err.Error(),
			}}, true
		}
		ev.Object = any(obj).(runtime.Object)
		return ev, true
	}), nil
}

// Create creates obj and returns it as the server stored it.
func (r *Resource[T, L]) Create(ctx context.Context, obj *T, opts metav1.CreateOptions) (*T, error) {
	u, err := r.encode(obj)
	if err != nil {
		return nil, err
	}
	created, err := r.client.Create(ctx, u, opts)
	if err != nil {
		return nil, err
	}
	return r.decode(created)
}

// Update replaces obj.
func (r *Resource[T, L]) Update(ctx context.Context, obj *T, opts metav1.UpdateOptions) (*T, error) {
	u, err := r.encode(obj)
	if err != nil {
		return nil, err
	}
	updated, err := r.client.Update(ctx, u, opts)
	if err != nil {
		return nil, err
	}
	return r.decode(updated)
}

// UpdateStatus replaces the status of obj (of a ResourceClaim: its
// allocation and whom it is reserved for).
func (r *Resource[T, L]) UpdateStatus(ctx context.Context, obj *T, opts metav1.UpdateOptions) (*T, error) {
	u, err := r.encode(obj)
	if err != nil {
		return nil, err
	}
	updated, err := r.client.UpdateStatus(ctx, u, opts)
	if err != nil {
		return nil, err
	}
	return r.decode(updated)
}

// Delete deletes the object called name.
func (r *Resource[T, L]) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	if r.err != nil {
		return r.err
	}
	return r.client.Delete(ctx, name, opts)
}

func (r *Resource[T, L]) encode(obj *T) (*unstructured.Unstructured, error) {
	if r.err != nil {
		return nil, r.err
	}
	return ToVersion(any(obj).(runtime.Object), r.version)
}

func (r *Resource[T, L]) decode(u *unstructured.Unstructured) (*T, error) {
	out := new(T)
	if err := FromVersion(u.Object, r.version, any(out).(runtime.Object)); err != nil {
		return nil, err
	}
	return out, nil
}
