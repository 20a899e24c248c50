package capi

import (
	"context"
	"fmt"
	"maps"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kaic-dev/kaic/pkg/ownership"
)

// ClusterExistsError is returned when the management cluster already has a
// Cluster of the profile's name that this run did not create. kaic neither
// changes nor deletes it.
type ClusterExistsError struct {
	Namespace, Name string
	// Owner says who its labels say created it.
	Owner string
}

func (e *ClusterExistsError) Error() string {
	return fmt.Sprintf("the management cluster already has Cluster %s/%s (created by %s), and this run did not create it; "+
		"kaic leaves it alone: set spec.cluster.capi.clusterName or spec.cluster.capi.namespace to another name", e.Namespace, e.Name, e.Owner)
}

// checkClusterOwner returns a *ClusterExistsError when a Cluster of that
// name exists without this run's id; nil when none exists or this run
// created it (a resumed run).
func (m *management) checkClusterOwner(ctx context.Context, ns, name, runID string) error {
	u, err := m.dynamic.Resource(clustersGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err), meta.IsNoMatchError(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading Cluster %s/%s: %w", ns, name, err)
	case ownership.CreatedBy(u.GetLabels(), runID):
		return nil
	}
	return &ClusterExistsError{Namespace: ns, Name: name, Owner: ownership.Owner(u.GetLabels())}
}

// label adds the ownership labels of runID to every object.
func label(objs []unstructured.Unstructured, runID string) {
	for i := range objs {
		labels := objs[i].GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		maps.Copy(labels, ownership.Labels(runID))
		objs[i].SetLabels(labels)
	}
}
