package promtext

import (
	"strings"
	"testing"
)

func TestPoolState(t *testing.T) {
	prom := Service{Namespace: "monitoring", Name: "prometheus-operated", Port: "web"}
	pool := "podMonitor/ns/autoscaled-probe/"
	others := []Target{{ScrapePool: "serviceMonitor/ns/autoscaled-probe/0", ScrapeURL: "http://10.0.0.9:8080/metrics", Health: "up"}}
	got := poolState(prom, pool, others)
	if want := "Prometheus monitoring/prometheus-operated:web has no target in scrape pool podMonitor/ns/autoscaled-probe/* among its 1 active targets"; got != want {
		t.Errorf("without the pool:\n got %q\nwant %q", got, want)
	}
	ours := append(others,
		Target{ScrapePool: pool + "0", ScrapeURL: "http://10.0.0.7:8080/metrics", Health: "down", LastError: "connection refused"},
		Target{ScrapePool: pool + "0", ScrapeURL: "http://10.0.0.8:8080/metrics", Health: "unknown"})
	got = poolState(prom, pool, ours)
	for _, want := range []string{
		"Prometheus monitoring/prometheus-operated:web scrapes pool podMonitor/ns/autoscaled-probe/*: ",
		"target http://10.0.0.7:8080/metrics is down (last error: connection refused); target http://10.0.0.8:8080/metrics is unknown",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("with the pool: %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "10.0.0.9") {
		t.Errorf("another pool's target is named: %q", got)
	}
}
