package accelmetrics

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/promtext"
)

// The profile fields the exporter's location and the wait for it come
// from, named in what the check says.
const (
	endpointField  = "spec.accelerator.metrics.endpoint"
	selectorsField = "spec.accelerator.metrics.serviceSelectors"
	timeoutField   = "spec.checks.acceleratorMetrics.exporterTimeout"
)

// locate returns the exporter's Service to scrape once it has a ready
// endpoint. Right after the stack is installed the exporter may not be
// deployed yet (the GPU operator counts as ready once its CRD is and
// deploys the DCGM exporter afterwards), so it watches, for up to
// o.ExporterTimeout in all, for the Service and then for a ready endpoint
// of it. The Service is the one the model names or, when that does not
// exist, one the model's selectors find in any namespace: never assumed
// silently, the transcript says which was used.
func locate(t *conformance.T, env *conformance.Env, n names, o Options) promtext.Service {
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), o.ExporterTimeout)
	defer cancel()
	svc := findService(ctx, t, env, n, o, start)
	waitReady(ctx, t, env, svc, o, start)
	return svc
}

// findService returns the configured Service if it exists, else the first
// Service the model's selectors find, waiting for either to appear.
func findService(ctx context.Context, t *conformance.T, env *conformance.Env, n names, o Options, start time.Time) promtext.Service {
	want := n.endpoint
	_, err := env.Client.CoreV1().Services(want.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
	if err == nil {
		return want
	}
	if !apierrors.IsNotFound(err) {
		t.Fatalf("getting the metrics exporter's Service %s/%s: %v", want.Namespace, want.Name, err)
	}
	selectors, err := parseSelectors(n.selectors)
	if err != nil {
		t.Fatalf("%s: %v", selectorsField, err)
	}
	what := lookingFor(want, n.selectors)
	t.Step("Wait up to %s (%s) for %s", o.ExporterTimeout, timeoutField, what)

	// Without selectors only the named Service can do; with them any
	// namespace may hold the exporter, and label selectors cannot say
	// "this label or that one", so the watch covers every Service.
	services := env.Client.CoreV1().Services(metav1.NamespaceAll)
	fieldSelector := ""
	if len(selectors) == 0 {
		services = env.Client.CoreV1().Services(want.Namespace)
		fieldSelector = conformance.NameSelector(want.Name)
	}
	var found promtext.Service
	var how string
	unusable := map[string]bool{}
	_, err = conformance.UntilWithSync(ctx, conformance.ListWatch(services.List, services.Watch, fieldSelector, ""), &corev1.Service{}, nil,
		func(event watch.Event) (bool, error) {
			s, ok := event.Object.(*corev1.Service)
			if !ok || event.Type == watch.Deleted {
				return false, nil
			}
			if s.Namespace == want.Namespace && s.Name == want.Name {
				found = want
				return true, nil
			}
			for i, sel := range selectors {
				if !sel.Matches(labels.Set(s.Labels)) {
					continue
				}
				port, ok := servicePort(s, want.Port)
				if !ok {
					unusable[fmt.Sprintf("%s/%s (labelled %s) has no port %s and more than one other (%s)", s.Namespace, s.Name, n.selectors[i], want.Port, portList(s))] = true
					return false, nil
				}
				found = promtext.Service{Namespace: s.Namespace, Name: s.Name, Port: port}
				how = "labelled " + n.selectors[i]
				return true, nil
			}
			return false, nil
		})
	if err != nil {
		msg := fmt.Sprintf("waited %s (%s is %s) for %s; none appeared: the accelerator model's exporter is not installed, or its Service is elsewhere: set %s to namespace/service:port of the Service that serves it",
			time.Since(start).Round(time.Second), timeoutField, o.ExporterTimeout, what, endpointField)
		if len(unusable) > 0 {
			msg += "; Services found but not used: " + strings.Join(slices.Sorted(maps.Keys(unusable)), "; ")
		}
		if !conformance.CutShort(ctx, err) {
			msg += fmt.Sprintf(" (%v)", err)
		}
		t.Fatalf("%s", msg)
	}
	if found == want {
		t.Logf("Service %s/%s appeared after %s", want.Namespace, want.Name, time.Since(start).Round(time.Second))
		return found
	}
	t.Observe("metrics exporter found by its labels", map[string]string{
		"configured (" + endpointField + ")": want.String() + " (does not exist)",
		"used":                               found.String() + " (" + how + ")",
	})
	t.Logf("Service %s/%s (%s) does not exist; using Service %s/%s, %s, port %s, which the model's selectors (%s) find. Set %s to %s to name it.",
		want.Namespace, want.Name, endpointField, found.Namespace, found.Name, how, found.Port, selectorsField, endpointField, found)
	return found
}

// lookingFor says what findService waits for.
func lookingFor(want promtext.Service, selectors []string) string {
	s := fmt.Sprintf("the metrics exporter's Service %s/%s (%s)", want.Namespace, want.Name, endpointField)
	if len(selectors) > 0 {
		s += fmt.Sprintf(" or a Service labelled %s (%s) in any namespace", strings.Join(selectors, " or "), selectorsField)
	}
	return s
}

func parseSelectors(in []string) ([]labels.Selector, error) {
	out := make([]labels.Selector, 0, len(in))
	for _, s := range in {
		sel, err := labels.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		if sel.Empty() {
			return nil, fmt.Errorf("%q selects every Service", s)
		}
		out = append(out, sel)
	}
	return out, nil
}

// servicePort returns the port of s named or numbered port, else its only
// port.
func servicePort(s *corev1.Service, port string) (string, bool) {
	for _, p := range s.Spec.Ports {
		if p.Name == port || strconv.Itoa(int(p.Port)) == port {
			return port, true
		}
	}
	if len(s.Spec.Ports) == 1 {
		if p := s.Spec.Ports[0]; p.Name != "" {
			return p.Name, true
		}
		return strconv.Itoa(int(s.Spec.Ports[0].Port)), true
	}
	return "", false
}

func portList(s *corev1.Service) string {
	var out []string
	for _, p := range s.Spec.Ports {
		out = append(out, fmt.Sprintf("%s/%d", p.Name, p.Port))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// waitReady waits until the Service has a ready endpoint on its port and
// none that is not ready (the pods of a per-node exporter come up one by
// one, and a scrape sees only the ready ones). When the bound passes with
// some endpoint ready, it says which are not and goes on: the devices of
// their nodes then have no series.
func waitReady(ctx context.Context, t *conformance.T, env *conformance.Env, svc promtext.Service, o Options, start time.Time) {
	service, eps, err := promtext.Endpoints(ctx, env.Client, svc)
	if err != nil {
		t.Fatalf("finding the endpoints of the metrics exporter %s: %v", svc, err)
	}
	ready, notReady := countReady(eps)
	if ready > 0 && notReady == 0 {
		return
	}
	portName := ""
	for _, p := range service.Spec.Ports {
		if p.Name == svc.Port || strconv.Itoa(int(p.Port)) == svc.Port {
			portName = p.Name
		}
	}
	t.Logf("Service %s has %d ready and %d not ready endpoints: waiting for its exporter pods to be ready", svc, ready, notReady)
	err = conformance.UntilServiceSlices(ctx, env.Client, svc.Namespace, svc.Name, func(seen map[string]*discoveryv1.EndpointSlice) bool {
		ready, notReady = 0, 0
		for _, s := range seen {
			r, n := readyOn(s, portName)
			ready, notReady = ready+r, notReady+n
		}
		return ready > 0 && notReady == 0
	})
	waited := time.Since(start).Round(time.Second)
	switch {
	case err == nil:
		t.Logf("Service %s has %d ready endpoints after %s", svc, ready, waited)
	case ready > 0:
		t.Logf("after %s (%s is %s), Service %s has %d ready and %d not ready endpoints: scraping the ready ones", waited, timeoutField, o.ExporterTimeout, svc, ready, notReady)
	default:
		msg := fmt.Sprintf("waited %s (%s is %s) for a ready endpoint of Service %s: it has no ready endpoint (%d not ready): no exporter pod is running and ready",
			waited, timeoutField, o.ExporterTimeout, svc, notReady)
		if !conformance.CutShort(ctx, err) {
			msg += fmt.Sprintf(" (%v)", err)
		}
		t.Fatalf("%s", msg)
	}
}

// countReady counts the ready and not ready endpoints.
func countReady(eps []promtext.Endpoint) (ready, notReady int) {
	for _, e := range eps {
		if e.Ready {
			ready++
		} else {
			notReady++
		}
	}
	return ready, notReady
}

// readyOn counts the slice's ready and not ready endpoints serving the
// port called portName, as promtext.Endpoints does.
func readyOn(s *discoveryv1.EndpointSlice, portName string) (ready, notReady int) {
	if !slices.ContainsFunc(s.Ports, func(p discoveryv1.EndpointPort) bool {
		return p.Port != nil && (p.Name == nil && portName == "" || p.Name != nil && *p.Name == portName)
	}) {
		return 0, 0
	}
	for _, e := range s.Endpoints {
		switch {
		case len(e.Addresses) == 0:
		case e.Conditions.Ready == nil || *e.Conditions.Ready:
			ready++
		default:
			notReady++
		}
	}
	return ready, notReady
}
