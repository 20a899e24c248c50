package accelmetrics

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
	"github.com/kaic-dev/kaic/pkg/probe"
)

// In device-plugin mode no ResourceSlice lists the devices: the nodes'
// allocatable says how many units of the model's extended resource each
// node has, and the exporter's series say which devices it has. The
// per-device subtests then ask of every node that advertises the
// resource a series for each of its units; the workload's device is the
// one the load pod says it loaded.

// units lists, per Ready node, how many units of the extended resource it
// advertises.
func units(t *conformance.T, env *conformance.Env) map[string]int {
	inv := devicepod.Inventory(t, env)
	out := make(map[string]int, len(inv))
	var rows []string
	for _, node := range slices.Sorted(maps.Keys(inv)) {
		out[node] = len(inv[node])
		rows = append(rows, fmt.Sprintf("%s: %d", node, len(inv[node])))
	}
	t.Observe("allocatable "+env.Accelerator.ResourceName+" of Ready nodes", strings.Join(rows, "\n"))
	if len(out) == 0 {
		t.Fatalf("no Ready node advertises allocatable %s: the device plugin is not running or not registered with the kubelet", env.Accelerator.ResourceName)
	}
	return out
}

// seriesDevices are the devices the metric's series name on each node that
// advertises the resource, by their device label.
func seriesDevices(sc *scrape, metric, label string, nodes map[string]int) []device {
	seen := map[device]bool{}
	var out []device
	for _, s := range sc.named(metric) {
		v, ok := deviceLabel(s, label)
		node := s.nodeName()
		if _, advertises := nodes[node]; !ok || !advertises {
			continue
		}
		d := device{node: node, name: v}
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// perNode checks, in device-plugin mode, that the kind's series carry the
// device label and that every node advertising the resource has a series
// for each of its units. Fewer devices with series than units is not
// verified rather than failed: a device plugin may advertise one device
// as several units (time-slicing), which the API does not say. It
// returns why the kind is not verified, or "".
func perNode(t *conformance.T, env *conformance.Env, n names, sc *scrape, nodes map[string]int, kind, name string, pattern *regexp.Regexp) (notVerified string) {
	label := n.deviceLabel
	labelDesc := "device label " + label
	if label == "" {
		labelDesc = "a device label (" + strings.Join(DeviceLabels, ", ") + ")"
	}
	res := env.Accelerator.ResourceName
	metrics := pick(sc, name, pattern, label)
	t.Step("Check that every %s series carries %s and every node advertising %s has one for each of its units", kind, labelDesc, res)
	if len(metrics) == 0 {
		t.Fatalf("the exporter %s serves no per-device %s series (none whose name matches %s with %s); it serves: %s",
			n.endpoint, kind, pattern, labelDesc, strings.Join(promtextNames(sc), ", "))
	}
	var fewer []string
	for _, metric := range metrics {
		got := sc.named(metric)
		if len(got) == 0 {
			t.Errorf("the exporter %s serves no %s series %s; it serves: %s", n.endpoint, kind, metric, strings.Join(promtextNames(sc), ", "))
			continue
		}
		var unlabelled, rows []string
		for _, s := range got {
			rows = append(rows, s.String())
			if _, ok := deviceLabel(s, label); !ok {
				unlabelled = append(unlabelled, s.Series())
			}
		}
		t.Observe("series "+metric, strings.Join(rows, "\n"))
		if len(unlabelled) > 0 {
			t.Errorf("%d of %d %s series lack %s, so they cannot be attributed to an accelerator: %s",
				len(unlabelled), len(got), metric, labelDesc, strings.Join(unlabelled, "; "))
		}
		perNode := map[string][]string{}
		for _, d := range seriesDevices(sc, metric, label, nodes) {
			perNode[d.node] = append(perNode[d.node], d.name)
		}
		var missing []string
		for _, node := range slices.Sorted(maps.Keys(nodes)) {
			switch have, want := len(perNode[node]), nodes[node]; {
			case have == 0:
				missing = append(missing, fmt.Sprintf("%s (%d %s)", node, want, res))
			case have < want:
				fewer = append(fewer, fmt.Sprintf("%s advertises %d %s, %s has series for %d device(s) there (%s)", node, want, res, metric, have, strings.Join(perNode[node], ", ")))
			}
		}
		if len(missing) > 0 {
			t.Errorf("%d of %d nodes advertising %s have no %s series: %s", len(missing), len(nodes), res, metric, strings.Join(missing, ", "))
		} else if len(fewer) == 0 {
			t.Logf("every node advertising %s has a %s series for each of its units", res, metric)
		}
	}
	if len(fewer) == 0 || t.Failed() {
		return ""
	}
	return strings.Join(fewer, "; ") + "; a device plugin may advertise one device as several units (time-slicing), which the API does not say, so a device without a series cannot be told from a shared one"
}

// loadedDevice reads which device the load pod put its load on: the
// probe's LOAD_DEVICES line, the only place that names it in
// device-plugin mode.
func loadedDevice(t *conformance.T, env *conformance.Env, pod *corev1.Pod) device {
	ctx, cancel := context.WithTimeout(t.Context(), devicepod.ProbeTimeout)
	defer cancel()
	var logs string
	err := conformance.PollUntilContextCancel(ctx, poll, true, func(ctx context.Context) (bool, error) {
		raw, err := env.Client.CoreV1().Pods(env.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			return false, nil
		}
		logs = string(raw)
		_, ok := probe.ParseResults(logs)["LOAD_DEVICES"]
		return ok, nil
	})
	t.Observe("output of "+pod.Name, strings.TrimSpace(logs))
	if err != nil {
		t.Fatalf("pod %s printed no LOAD_DEVICES line within %s", pod.Name, devicepod.ProbeTimeout)
	}
	loaded := probe.ParseResults(logs)["LOAD_DEVICES"]
	if loaded == "" || strings.Contains(loaded, ",") {
		t.Fatalf("pod %s, which requests one %s, loaded devices %q, want exactly one", pod.Name, env.Accelerator.ResourceName, loaded)
	}
	return device{node: pod.Spec.NodeName, name: loaded}
}

// otherHolders lists the nodes where pods other than the load pod request
// the extended resource: which of their devices those pods hold the API
// does not say, so their series may change.
func otherHolders(t *conformance.T, env *conformance.Env) map[string]int64 {
	return devicepod.Used(t, env, func(p *corev1.Pod) bool { return p.Namespace == env.Namespace && p.Name == loadPod })
}
