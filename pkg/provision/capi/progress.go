package capi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"
	clusterctl "sigs.k8s.io/cluster-api/cmd/clusterctl/client"

	"github.com/kaic-dev/kaic/pkg/atomicfile"
	"github.com/kaic-dev/kaic/pkg/conditions"
	"github.com/kaic-dev/kaic/pkg/progress"
)

// negativeConditions are v1beta2 condition types that are True while
// something is in progress or wrong; every other type is True when good.
var negativeConditions = map[string]bool{
	"Deleting": true, "Paused": true, "RollingOut": true, "ScalingUp": true,
	"ScalingDown": true, "Remediating": true, "Updating": true,
}

// conditionsOf reads an object's v1beta2 conditions, by type.
func conditionsOf(obj *unstructured.Unstructured) []conditions.Condition {
	out := conditions.Of(obj)
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// conditionSummary says which conditions hold and which wait, and why.
func conditionSummary(obj *unstructured.Unstructured) string {
	var ready, waiting, busy []string
	for _, c := range conditionsOf(obj) {
		switch {
		case negativeConditions[c.Type] && c.Status == string(metav1.ConditionTrue):
			busy = append(busy, c.Type+because(c))
		case negativeConditions[c.Type]:
		case c.Status == string(metav1.ConditionTrue):
			ready = append(ready, c.Type)
		default:
			waiting = append(waiting, c.Type+because(c))
		}
	}
	var parts []string
	if len(ready) > 0 {
		parts = append(parts, "ready: "+strings.Join(ready, ", "))
	}
	if len(busy) > 0 {
		parts = append(parts, "in progress: "+strings.Join(busy, "; "))
	}
	if len(waiting) > 0 {
		parts = append(parts, "waiting: "+strings.Join(waiting, "; "))
	}
	if len(parts) == 0 {
		return "no conditions reported yet"
	}
	return strings.Join(parts, "; ")
}

// because renders a condition's reason and the first line of its message.
func because(c conditions.Condition) string {
	msg, _, _ := strings.Cut(strings.TrimSpace(c.Message), "\n")
	msg = strings.TrimPrefix(msg, "* ")
	if len(msg) > 160 {
		msg = msg[:157] + "..."
	}
	switch {
	case c.Reason != "" && msg != "":
		return fmt.Sprintf(" (%s: %s)", c.Reason, msg)
	case c.Reason != "":
		return " (" + c.Reason + ")"
	case msg != "":
		return " (" + msg + ")"
	}
	return ""
}

func isTrue(obj *unstructured.Unstructured, conditionType string) bool {
	for _, c := range conditionsOf(obj) {
		if c.Type == conditionType {
			return c.Status == string(metav1.ConditionTrue)
		}
	}
	return false
}

func nestedInt(obj *unstructured.Unstructured, fields ...string) int64 {
	v, _, _ := unstructured.NestedInt64(obj.Object, fields...)
	return v
}

// progressLines describes the cluster's objects, one line per object
// (machines summed up in one line), keyed so that only changes are told.
func progressLines(cluster *unstructured.Unstructured, controlPlanes, deployments, machines []*unstructured.Unstructured) map[string]string {
	lines := map[string]string{}
	phase, _, _ := unstructured.NestedString(cluster.Object, "status", "phase")
	if phase == "" {
		phase = "Pending"
	}
	lines["cluster"] = fmt.Sprintf("cluster %s: %s; %s", cluster.GetName(), phase, conditionSummary(cluster))
	for _, cp := range controlPlanes {
		lines["cp/"+cp.GetName()] = fmt.Sprintf("control plane %s: %d/%d machines ready; %s", cp.GetName(),
			nestedInt(cp, "status", "readyReplicas"), nestedInt(cp, "spec", "replicas"), conditionSummary(cp))
	}
	for _, md := range deployments {
		lines["md/"+md.GetName()] = fmt.Sprintf("machine deployment %s: %d/%d machines available; %s", md.GetName(),
			nestedInt(md, "status", "availableReplicas"), nestedInt(md, "spec", "replicas"), conditionSummary(md))
	}
	if len(machines) > 0 {
		phases := map[string]int{}
		var stuck []string
		for _, m := range machines {
			p, _, _ := unstructured.NestedString(m.Object, "status", "phase")
			if p == "" {
				p = "Pending"
			}
			phases[p]++
			if p != "Running" && len(stuck) < 3 {
				for _, c := range conditionsOf(m) {
					if !negativeConditions[c.Type] && c.Status != string(metav1.ConditionTrue) {
						stuck = append(stuck, m.GetName()+": "+c.Type+because(c))
						break
					}
				}
			}
		}
		var counts []string
		for p, n := range phases {
			counts = append(counts, fmt.Sprintf("%d %s", n, p))
		}
		sort.Strings(counts)
		line := "machines: " + strings.Join(counts, ", ")
		if len(stuck) > 0 {
			line += "; waiting: " + strings.Join(stuck, "; ")
		}
		lines["machines"] = line
	}
	return lines
}

// serves reports whether the management cluster serves a resource.
func (m *management) serves(gvr schema.GroupVersionResource) bool {
	_, err := m.mapper.KindFor(gvr)
	return err == nil
}

// waitAvailable watches the Cluster, its control plane, machine
// deployments and machines until the Cluster's Available condition is
// True, telling what is ready, what waits and why whenever that changes.
func (m *management) waitAvailable(ctx context.Context, ns, name string, timeout time.Duration, r progress.Steps) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}
	byName := dynamicinformer.NewFilteredDynamicSharedInformerFactory(m.dynamic, 0, ns, func(o *metav1.ListOptions) {
		o.FieldSelector = "metadata.name=" + name
	})
	byLabel := dynamicinformer.NewFilteredDynamicSharedInformerFactory(m.dynamic, 0, ns, func(o *metav1.ListOptions) {
		o.LabelSelector = clusterNameLabel + "=" + name
	})
	defer func() {
		cancel()
		byName.Shutdown()
		byLabel.Shutdown()
	}()
	clusterInformer := byName.ForResource(clustersGVR).Informer()
	if _, err := clusterInformer.AddEventHandler(handler); err != nil {
		return err
	}
	synced := []cache.InformerSynced{clusterInformer.HasSynced}
	stores := map[schema.GroupVersionResource]cache.Store{}
	for _, gvr := range []schema.GroupVersionResource{controlPlanesGVR, machineDeploymentsGVR, machinesGVR} {
		if !m.serves(gvr) {
			continue
		}
		inf := byLabel.ForResource(gvr).Informer()
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
		stores[gvr] = inf.GetStore()
		synced = append(synced, inf.HasSynced)
	}
	byName.Start(ctx.Done())
	byLabel.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("watching cluster %s/%s: %w", ns, name, context.Cause(ctx))
	}
	told := map[string]string{}
	var waiting []string
	for {
		obj, exists, err := clusterInformer.GetStore().GetByKey(ns + "/" + name)
		if err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("cluster %s/%s does not exist (deleted while kaic waited?)", ns, name)
		}
		cluster := obj.(*unstructured.Unstructured)
		lines := progressLines(cluster, listOf(stores[controlPlanesGVR]), listOf(stores[machineDeploymentsGVR]), listOf(stores[machinesGVR]))
		keys := make([]string, 0, len(lines))
		for k := range lines {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		waiting = waiting[:0]
		for _, k := range keys {
			if told[k] != lines[k] {
				r.Notef("%s", lines[k])
				told[k] = lines[k]
			}
			if strings.Contains(lines[k], "waiting: ") {
				waiting = append(waiting, lines[k])
			}
		}
		if isTrue(cluster, "Available") {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if parent.Err() != nil {
				return parent.Err()
			}
			return fmt.Errorf("cluster %s/%s is not available after %s: %s", ns, name, timeout, strings.Join(waiting, " | "))
		}
	}
}

func listOf(store cache.Store) []*unstructured.Unstructured {
	if store == nil {
		return nil
	}
	var out []*unstructured.Unstructured
	for _, o := range store.List() {
		if u, ok := o.(*unstructured.Unstructured); ok {
			out = append(out, u)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

// deleteCluster deletes the Cluster object and waits, through a watch,
// until it is gone: Cluster API removes the machines and infrastructure
// first and the Cluster's finalizer last.
func (m *management) deleteCluster(ctx context.Context, ns, name string, timeout time.Duration, r progress.Steps) error {
	res := m.dynamic.Resource(clustersGVR).Namespace(ns)
	err := res.Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		r.Notef("cluster %s/%s is already gone", ns, name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting cluster %s/%s: %w", ns, name, err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	selector := "metadata.name=" + name
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return res.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return res.Watch(ctx, o)
		},
	}
	var last string
	_, err = watchtools.UntilWithSync(waitCtx, lw, &unstructured.Unstructured{},
		func(store cache.Store) (bool, error) { return len(store.List()) == 0, nil },
		func(ev watch.Event) (bool, error) {
			switch ev.Type {
			case watch.Deleted:
				return true, nil
			case watch.Modified, watch.Added:
				if u, ok := ev.Object.(*unstructured.Unstructured); ok {
					line := fmt.Sprintf("cluster %s being deleted: %s", name, conditionSummary(u))
					if line != last {
						r.Notef("%s", line)
						last = line
					}
				}
			}
			return false, nil
		})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, watchtools.ErrWatchClosed) || waitCtx.Err() != nil {
			return fmt.Errorf("cluster %s/%s is still there after %s: %s", ns, name, timeout, last)
		}
		return fmt.Errorf("waiting for cluster %s/%s to be deleted: %w", ns, name, err)
	}
	return nil
}

// writeKubeconfig fetches the workload cluster's kubeconfig through
// clusterctl and writes it into dir, readable by the user only.
func (p *Provisioner) writeKubeconfig(ctx context.Context, cc clusterctl.Client, m *management, path string) (string, string, error) {
	c := p.Profile.Spec.Cluster.CAPI
	data, err := cc.GetKubeconfig(ctx, clusterctl.GetKubeconfigOptions{
		Kubeconfig:          clusterctl.Kubeconfig{Path: m.kubeconfig, Context: m.context},
		Namespace:           c.Namespace,
		WorkloadClusterName: c.ClusterName,
	})
	if err != nil {
		return "", "", fmt.Errorf("kubeconfig of cluster %s: %w", c.ClusterName, err)
	}
	cfg, err := clientcmd.Load([]byte(data))
	if err != nil {
		return "", "", fmt.Errorf("kubeconfig of cluster %s: %w", c.ClusterName, err)
	}
	if err := atomicfile.Write(path, []byte(data), 0o600); err != nil {
		return "", "", err
	}
	return path, cfg.CurrentContext, nil
}

// dumpObjects writes the cluster's Cluster API objects, status included.
func (m *management) dumpObjects(ctx context.Context, ns, name, path string) error {
	var objs []unstructured.Unstructured
	if c, err := m.dynamic.Resource(clustersGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
		objs = append(objs, *c)
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	for _, gvr := range []schema.GroupVersionResource{controlPlanesGVR, machineDeploymentsGVR, machinesGVR} {
		if !m.serves(gvr) {
			continue
		}
		list, err := m.dynamic.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: clusterNameLabel + "=" + name})
		if err != nil {
			return err
		}
		objs = append(objs, list.Items...)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return writeManifest(path, objs)
}
