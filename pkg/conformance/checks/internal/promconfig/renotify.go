package promconfig

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kaic-dev/kaic/pkg/conformance"
)

// RenotifyAnnotation is the annotation Renotify sets on the check's own
// ServiceMonitor or PodMonitor: the time of the last change.
const RenotifyAnnotation = "kaic.dev/renotify"

// RenotifyInterval is how often Renotify changes it.
var RenotifyInterval = 10 * time.Second

// Renotify changes an annotation on the check's own monitor (resource
// gvr, name in the check's namespace) every RenotifyInterval, the first
// time one interval after it is called, until the returned stop is called
// or the check ends.
//
// prometheus-operator drops the event of a monitor created in a namespace
// its namespace informer has not seen yet (it logs that the namespace
// does not exist and enqueues no Prometheus), and a new namespace alone
// sends it no event: the monitor then stays out of the configuration
// until something else changes. A check creates its monitor moments after
// its namespace, so on a loaded cluster that happens. Each change of the
// monitor is a new event, which the operator handles once its informer
// has caught up. Only the check's own object is touched, on any cluster.
func Renotify(t *conformance.T, env *conformance.Env, gvr schema.GroupVersionResource, name string) (stop func()) {
	if env.Dynamic == nil {
		return func() {}
	}
	monitors := env.Dynamic.Resource(gvr).Namespace(env.Namespace)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	changes := 0
	var firstErr error
	wg.Go(func() {
		tick := time.NewTicker(RenotifyInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{RenotifyAnnotation: time.Now().UTC().Format(time.RFC3339Nano)}}})
			_, err := monitors.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: conformance.FieldManager})
			switch {
			case err == nil:
				changes++
			case ctx.Err() == nil && firstErr == nil:
				firstErr = err
			}
		}
	})
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			if changes > 0 {
				t.Logf("annotation %s changed %d time(s) on %s %s, so that prometheus-operator saw it again", RenotifyAnnotation, changes, gvr.Resource, name)
			}
			if firstErr != nil {
				t.Logf("changing annotation %s on %s %s failed: %v", RenotifyAnnotation, gvr.Resource, name, firstErr)
			}
		})
	}
	t.Cleanup(func(context.Context) { stop() })
	return stop
}
