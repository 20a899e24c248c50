package capi

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/provision"
)

var clusterClassesTestGVR = schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "clusterclasses"}

// TestClusterClassAgainstControlPlane provisions a profile naming a
// ClusterClass: kaic refuses a class the management cluster lacks before
// applying anything, and otherwise applies one topology Cluster whose
// machine deployments include the GPU pool with its autoscaler
// annotations (Cluster API's topology controller, which would expand it,
// does not run here).
func TestClusterClassAgainstControlPlane(t *testing.T) {
	// A control plane of its own: TestProvisionerAgainstControlPlane
	// expects Init to find no providers installed.
	env := testenv.New(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	dyn := env.Dynamic()
	repo := writeRepository(t)
	ns := "capi-cc-" + rand.String(5)
	name := "cc-" + rand.String(5)
	newProvisioner := func() *Provisioner {
		p := &Provisioner{
			RunID:           testRunID,
			Profile:         testProfile(t, env.KubeconfigPath, repo, ns, name, map[string]string{"GPU_MACHINE_CLASS": "accelerated"}),
			Getenv:          func(string) string { return "" },
			ProviderTimeout: time.Minute,
			ClusterTimeout:  2 * time.Minute,
		}
		p.Profile.Spec.Cluster.CAPI.ClusterClass = "kaic-class"
		p.Profile.Spec.Cluster.CAPI.Flavor = ""
		p.Profile.Spec.Cluster.CAPI.GPUPool.Taints = []profile.Taint{{Key: "kaic.dev/accelerator", Value: "example", Effect: "NoSchedule"}}
		return p
	}

	t.Run("a ClusterClass the management cluster lacks is named and nothing is applied", func(t *testing.T) {
		rec, err := newProvisioner().Create(ctx, pathsIn(t.TempDir()), &notes{})
		if err == nil || !strings.Contains(err.Error(), "ClusterClass "+ns+"/kaic-class does not exist") {
			t.Fatalf("err = %v", err)
		}
		var missing *MissingVariablesError
		if errors.As(err, &missing) {
			t.Errorf("a missing class is not a missing variable: %v", err)
		}
		if rec[provision.KeyCreated] != "false" {
			t.Errorf("record = %v", rec)
		}
		if _, err := dyn.Resource(clustersGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			t.Errorf("Cluster %s was applied although its class is missing", name)
		}
	})

	t.Run("the Cluster is a topology of the class with the GPU pool as a machine deployment", func(t *testing.T) {
		// The class lives in the cluster's namespace, so that exists first.
		nsObj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
		if _, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Create(ctx, nsObj, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		class := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "ClusterClass",
			"metadata": map[string]any{"name": "kaic-class", "namespace": ns},
			"spec":     map[string]any{},
		}}
		if _, err := dyn.Resource(clusterClassesTestGVR).Namespace(ns).Create(ctx, class, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		r := &notes{}
		done := make(chan error, 1)
		var rec provision.Record
		go func() {
			var err error
			rec, err = newProvisioner().Create(ctx, pathsIn(t.TempDir()), r)
			done <- err
		}()
		var cluster *unstructured.Unstructured
		waitFor(t, "the topology Cluster", func() bool {
			c, err := dyn.Resource(clustersGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			cluster = c
			return err == nil
		})
		if ref, _, _ := unstructured.NestedString(cluster.Object, "spec", "topology", "classRef", "name"); ref != "kaic-class" {
			t.Errorf("classRef = %q", ref)
		}
		if v, _, _ := unstructured.NestedString(cluster.Object, "spec", "topology", "version"); v != "v1.36.3" {
			t.Errorf("topology version = %q", v)
		}
		mds, _, _ := unstructured.NestedSlice(cluster.Object, "spec", "topology", "workers", "machineDeployments")
		if len(mds) != 2 {
			t.Fatalf("machine deployments = %v, want the workers and the GPU pool", mds)
		}
		worker, pool := mds[0].(map[string]any), mds[1].(map[string]any)
		if worker["class"] != "default-worker" || worker["name"] != "md-0" {
			t.Errorf("worker machine deployment = %v", worker)
		}
		if pool["class"] != "accelerated" || pool["name"] != "accel" {
			t.Errorf("GPU pool machine deployment = %v", pool)
		}
		ann, _, _ := unstructured.NestedStringMap(pool, "metadata", "annotations")
		if ann[annotationMinSize] != "1" || ann[annotationMaxSize] != "2" || ann["capacity.cluster-autoscaler.kubernetes.io/gpu-count"] != "8" {
			t.Errorf("GPU pool annotations = %v", ann)
		}
		labels, _, _ := unstructured.NestedStringMap(pool, "metadata", "labels")
		if labels["kaic.dev/accelerator"] != "example" {
			t.Errorf("GPU pool labels = %v", labels)
		}
		if _, err := dyn.Resource(machineDeploymentsGVR).Namespace(ns).Get(ctx, name+"-accel", metav1.GetOptions{}); err == nil {
			t.Errorf("a standalone GPU pool MachineDeployment was applied beside the topology")
		}
		// The bootstrap template is the class's: kaic adds none and says
		// what then reaches the pool's Nodes.
		if _, err := dyn.Resource(kubeadmConfigTemplatesGVR).Namespace(ns).Get(ctx, name+"-accel", metav1.GetOptions{}); err == nil {
			t.Errorf("a GPU pool KubeadmConfigTemplate was applied beside the topology")
		}
		if _, ok := r.find("GPU pool labels kaic.dev/accelerator reach its Nodes only if worker class accelerated of ClusterClass kaic-class sets them"); !ok {
			t.Errorf("no note that the class decides whether the pool's labels reach its Nodes: %v", r.lines)
		}
		if _, ok := r.find("GPU pool taints kaic.dev/accelerator=example:NoSchedule reach its Nodes only if worker class accelerated"); !ok {
			t.Errorf("no note that the class decides whether the pool's taints reach its Nodes: %v", r.lines)
		}

		// Let Create finish as Cluster API would: available, with a kubeconfig.
		secret := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Secret",
			"metadata":   map[string]any{"name": name + "-kubeconfig", "namespace": ns, "labels": map[string]any{clusterNameLabel: name}},
			"type":       "cluster.x-k8s.io/secret",
			"stringData": map[string]any{"value": string(env.Kubeconfig)},
		}}
		if _, err := dyn.Resource(secretsGVR).Namespace(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		setConditions(t, ctx, dyn, ns, name, map[string]any{"type": "Available", "status": "True", "reason": "Available"})
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Create: %v; notes: %v", err, r.lines)
			}
		case <-time.After(time.Minute):
			t.Fatalf("Create did not return; notes: %v", r.lines)
		}
		if err := newProvisioner().Delete(ctx, rec, &notes{}); err != nil {
			t.Errorf("Delete: %v", err)
		}
	})
}
