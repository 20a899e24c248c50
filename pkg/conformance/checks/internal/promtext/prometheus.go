package promtext

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// OperatedLabel marks the Service prometheus-operator creates for every
// Prometheus it runs (prometheus-operated), which selects its pods.
const OperatedLabel = "operated-prometheus"

// apiAnswer is the envelope of Prometheus' HTTP API.
type apiAnswer struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

// API sends GET path?params to the HTTP API of the Prometheus behind prom,
// through the service proxy, and returns the answer's data.
func API(ctx context.Context, client kubernetes.Interface, prom Service, path string, params url.Values) (json.RawMessage, error) {
	body, err := Get(ctx, client, prom, path, params)
	if err != nil {
		return nil, err
	}
	var a apiAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("%s answered no Prometheus API response: %w (%.200q)", path, err, body)
	}
	if a.Status != "success" {
		return nil, fmt.Errorf("%s answered %s: %s %s", path, a.Status, a.ErrorType, a.Error)
	}
	return a.Data, nil
}

// Target is what Prometheus says of one scrape target.
type Target struct {
	Labels     map[string]string `json:"labels"`
	ScrapePool string            `json:"scrapePool"`
	ScrapeURL  string            `json:"scrapeUrl"`
	Health     string            `json:"health"`
	LastError  string            `json:"lastError"`
	LastScrape string            `json:"lastScrape"`
}

func (tg Target) String() string {
	s := fmt.Sprintf("target %s is %s", tg.ScrapeURL, tg.Health)
	if tg.LastError != "" {
		s += " (last error: " + tg.LastError + ")"
	}
	return s
}

// ActiveTargets lists the active scrape targets of the Prometheus behind
// prom.
func ActiveTargets(ctx context.Context, client kubernetes.Interface, prom Service) ([]Target, error) {
	raw, err := API(ctx, client, prom, "/api/v1/targets", url.Values{"state": {"active"}})
	if err != nil {
		return nil, err
	}
	var d struct {
		ActiveTargets []Target `json:"activeTargets"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("decoding the targets: %w", err)
	}
	return d.ActiveTargets, nil
}

// OperatedServices lists the Prometheus query APIs prometheus-operator
// runs (Services labelled OperatedLabel=true), by namespace and name, each
// on its port web (or its first port).
func OperatedServices(ctx context.Context, client kubernetes.Interface) ([]Service, error) {
	list, err := client.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{OperatedLabel: "true"}).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("listing Services labelled %s=true: %w", OperatedLabel, err)
	}
	sort.Slice(list.Items, func(i, j int) bool {
		return list.Items[i].Namespace+"/"+list.Items[i].Name < list.Items[j].Namespace+"/"+list.Items[j].Name
	})
	out := make([]Service, 0, len(list.Items))
	for _, s := range list.Items {
		port := "web"
		if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == port }) && len(s.Spec.Ports) > 0 {
			port = strconv.Itoa(int(s.Spec.Ports[0].Port))
		}
		out = append(out, Service{Namespace: s.Namespace, Name: s.Name, Port: port})
	}
	return out, nil
}

// PoolTargets says, for a failure, what the Prometheus behind prom does
// with the scrape pools whose names start with pool (prometheus-operator
// names them podMonitor/<namespace>/<name>/<endpoint> and
// serviceMonitor/…): no such pool (its configuration does not have the
// monitor yet), or each target's health and last error.
func PoolTargets(ctx context.Context, client kubernetes.Interface, prom Service, pool string) string {
	targets, err := ActiveTargets(ctx, client, prom)
	if err != nil {
		return fmt.Sprintf("Prometheus %s: its targets are unknown: %v", prom, err)
	}
	return poolState(prom, pool, targets)
}

// poolState is PoolTargets' sentence for the targets Prometheus prom has.
func poolState(prom Service, pool string, targets []Target) string {
	var states []string
	for _, tg := range targets {
		if strings.HasPrefix(tg.ScrapePool, pool) {
			states = append(states, tg.String())
		}
	}
	if len(states) == 0 {
		return fmt.Sprintf("Prometheus %s has no target in scrape pool %s* among its %d active targets", prom, pool, len(targets))
	}
	return fmt.Sprintf("Prometheus %s scrapes pool %s*: %s", prom, pool, strings.Join(states, "; "))
}
