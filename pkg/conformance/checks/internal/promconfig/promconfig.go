// Package promconfig shortens what a metrics check waits for after it
// creates a ServiceMonitor or PodMonitor, on a Prometheus that kaic's own
// stack installed and on no other.
//
// prometheus-operator writes a new scrape configuration into a Secret at
// once, but Prometheus reads it from that Secret's volume, which the
// kubelet rewrites only when it next syncs the pod: at its periodic
// resync, up to about 90 s later with the default one-minute sync period
// and its jitter (kubernetes/kubernetes#30189). Any change to the pod
// makes the kubelet sync it, and its Secret volumes with it, at once. So
// while a check waits, Refresh sets an annotation on the pods of every
// Prometheus that a Helm release of kaic's created (the release's labels
// say managed-by kaic) and leaves every other Prometheus alone: on a
// cluster whose monitoring kaic did not install, the check waits for the
// kubelet's own sync, as that cluster's users do.
package promconfig

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/ownership"
)

// Annotation is the annotation Refresh sets on a Prometheus pod: the time
// of its latest change, so that every change is a new value.
const Annotation = "kaic.dev/refresh-config"

// Interval is how often Refresh changes the annotation while a check
// waits; each change costs one PATCH per pod.
const Interval = 5 * time.Second

// Prometheuses is prometheus-operator's Prometheus resource.
var Prometheuses = schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: "prometheuses"}

// The annotations Helm sets on every object of a release, and the labels
// of the Secrets it keeps each release revision in.
const (
	releaseNameAnnotation      = "meta.helm.sh/release-name"
	releaseNamespaceAnnotation = "meta.helm.sh/release-namespace"
	helmOwnerLabel             = "owner"
	helmNameLabel              = "name"
	helmVersionLabel           = "version"
)

// podNameLabel is the label prometheus-operator puts on the pods of a
// Prometheus, naming it.
const podNameLabel = "operator.prometheus.io/name"

// Server is a Prometheus found on the cluster and whether kaic may touch
// its pods.
type Server struct {
	Namespace, Name string
	// Release is the Helm release that created it, namespace/name, or
	// empty.
	Release string
	// Owner says who created it: who the labels of the release's latest
	// revision name (ownership.Owner), or why that is not known.
	Owner string
	// Kaics is true when the object's labels, or else its release's, say
	// kaic created it.
	Kaics bool
	// Pods are the pods of its StatefulSets, when kaic's.
	Pods []string
}

func (s Server) String() string { return s.Namespace + "/" + s.Name }

// Find lists the cluster's Prometheus objects and, for each, who created
// it; for those a Helm release of kaic's created, it lists their pods:
// pods labelled with the Prometheus's name whose controlling StatefulSet
// the Prometheus controls.
func Find(ctx context.Context, env *conformance.Env) ([]Server, error) {
	list, err := env.Dynamic.Resource(Prometheuses).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil // prometheus-operator's API is not served
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", Prometheuses.GroupResource(), err)
	}
	var out []Server
	for _, p := range list.Items {
		s := Server{Namespace: p.GetNamespace(), Name: p.GetName(), Owner: "neither labelled as kaic's nor created by a Helm release"}
		name, ns := p.GetAnnotations()[releaseNameAnnotation], p.GetAnnotations()[releaseNamespaceAnnotation]
		switch {
		case p.GetLabels()[ownership.ManagedByLabel] == ownership.ManagedBy:
			// Applied by kaic as a manifest, its labels its own.
			s.Owner, s.Kaics = ownership.Owner(p.GetLabels()), true
		case name != "" && ns != "":
			s.Release = ns + "/" + name
			owner, err := releaseLabels(ctx, env, ns, name)
			switch {
			case err != nil:
				return nil, err
			case owner == nil:
				s.Owner = "its Helm release " + s.Release + " is not found"
			default:
				s.Owner = "Helm release " + s.Release + " of " + ownership.Owner(owner)
				s.Kaics = owner[ownership.ManagedByLabel] == ownership.ManagedBy
			}
		}
		if s.Kaics {
			if s.Pods, err = pods(ctx, env, s.Namespace, s.Name, p.GetUID()); err != nil {
				return nil, err
			}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

// releaseLabels returns the labels of a Helm release's latest revision, or
// nil if there is none. Only the metadata of the Secrets Helm keeps the
// revisions in is read, not the releases they hold.
func releaseLabels(ctx context.Context, env *conformance.Env, namespace, release string) (map[string]string, error) {
	selector := labels.Set{helmOwnerLabel: "helm", helmNameLabel: release}.String()
	if env.Config == nil {
		return nil, fmt.Errorf("no client configuration to read Secret metadata with")
	}
	client, err := metadata.NewForConfig(env.Config)
	if err != nil {
		return nil, err
	}
	list, err := client.Resource(corev1.SchemeGroupVersion.WithResource("secrets")).Namespace(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("listing the Secrets of Helm release %s/%s: %w", namespace, release, err)
	}
	latest, version := map[string]string(nil), -1
	for _, m := range list.Items {
		if v, err := strconv.Atoi(m.Labels[helmVersionLabel]); err == nil && v > version {
			latest, version = m.Labels, v
		}
	}
	if version < 0 {
		return nil, nil
	}
	if latest == nil {
		latest = map[string]string{}
	}
	return latest, nil
}

// pods lists the pods of the Prometheus uid: labelled with its name and
// controlled by a StatefulSet it controls.
func pods(ctx context.Context, env *conformance.Env, namespace, name string, uid types.UID) ([]string, error) {
	list, err := env.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.Set{podNameLabel: name}.String()})
	if err != nil {
		return nil, fmt.Errorf("listing the pods of Prometheus %s/%s: %w", namespace, name, err)
	}
	owned := map[string]bool{}
	var out []string
	for _, p := range list.Items {
		ref := metav1.GetControllerOf(&p)
		if ref == nil || ref.Kind != "StatefulSet" {
			continue
		}
		ok, seen := owned[ref.Name]
		if !seen {
			sts, err := env.Client.AppsV1().StatefulSets(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("getting StatefulSet %s/%s of pod %s: %w", namespace, ref.Name, p.Name, err)
			}
			c := metav1.GetControllerOf(sts)
			ok = sts.UID == ref.UID && c != nil && c.UID == uid
			owned[ref.Name] = ok
		}
		if ok {
			out = append(out, p.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Refresh looks for the Prometheus servers of kaic's stack and, until the
// returned stop is called (or the check ends), changes an annotation on
// their pods every Interval so that the kubelet rewrites their
// configuration volume at once. stop removes the annotation and may be
// called more than once. Where there is nothing of kaic's to refresh, or
// it cannot be found, Refresh only says so: the check then waits for the
// kubelet's own sync.
func Refresh(t *conformance.T, env *conformance.Env) (stop func()) {
	servers, err := Find(t.Context(), env)
	if err != nil {
		t.Logf("finding the Prometheus servers kaic's stack installed: %v; the check waits for the kubelet to rewrite the configuration at its own sync (up to about 90 s)", err)
		return func() {}
	}
	type target struct{ namespace, pod string }
	var targets []target
	for _, s := range servers {
		if !s.Kaics {
			t.Logf("Prometheus %s is not kaic's (%s): left alone; its pod reads a new configuration when the kubelet next syncs it (up to about 90 s)", s, s.Owner)
			continue
		}
		if len(s.Pods) == 0 {
			t.Logf("Prometheus %s was installed by kaic (%s) but has no pod to refresh", s, s.Owner)
			continue
		}
		t.Logf("Prometheus %s was installed by kaic (%s): while the check waits, annotation %s on its pod(s) %s changes every %s, so that the kubelet rewrites the configuration prometheus-operator updated at once rather than at its next periodic sync",
			s, s.Owner, Annotation, strings.Join(s.Pods, ", "), Interval)
		for _, p := range s.Pods {
			targets = append(targets, target{s.Namespace, p})
		}
	}
	if len(targets) == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	patches, failures := 0, 0
	var firstErr error
	// annotate sets the annotation to value (nil removes it) on every
	// pod and counts the changes made; only the annotating goroutine and,
	// after it ended, stop call it.
	annotate := func(ctx context.Context, value any) (changed int) {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{Annotation: value}}})
		for _, tg := range targets {
			_, err := env.Client.CoreV1().Pods(tg.namespace).Patch(ctx, tg.pod, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: conformance.FieldManager})
			switch {
			case err == nil:
				changed++
			case ctx.Err() == nil:
				failures++
				if firstErr == nil {
					firstErr = fmt.Errorf("pod %s/%s: %w", tg.namespace, tg.pod, err)
				}
			}
		}
		return changed
	}
	wg.Go(func() {
		tick := time.NewTicker(Interval)
		defer tick.Stop()
		for {
			patches += annotate(ctx, time.Now().UTC().Format(time.RFC3339Nano))
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 10*time.Second)
			defer cancel()
			if firstErr != nil {
				t.Logf("annotating the Prometheus pods failed %d time(s), first: %v", failures, firstErr)
			}
			removed := annotate(ctx, nil)
			t.Logf("annotation %s changed %d time(s) on the Prometheus pods, then removed from %d of %d", Annotation, patches, removed, len(targets))
		})
	}
	t.Cleanup(func(context.Context) { stop() })
	return stop
}
