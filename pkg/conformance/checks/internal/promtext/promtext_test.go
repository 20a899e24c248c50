package promtext

import (
	"strings"
	"testing"
)

func TestParseService(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Service
		err  bool
	}{
		{in: "monitoring/prometheus-operated:9090", want: Service{"monitoring", "prometheus-operated", "9090"}},
		{in: "kaic-fake-gpu/kaic-fake-gpu-metrics:metrics", want: Service{"kaic-fake-gpu", "kaic-fake-gpu-metrics", "metrics"}},
		{in: "prometheus-operated:9090", err: true},
		{in: "monitoring/prometheus-operated", err: true},
		{in: "/x:1", err: true},
		{in: "ns/:1", err: true},
	} {
		got, err := ParseService(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseService(%q) = %+v, %v; want %+v, error %t", tc.in, got, err, tc.want, tc.err)
		}
		if err == nil && got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
}

const exposition = `# HELP reqs Requests.
# TYPE reqs counter
reqs 10
# HELP util Utilization.
# TYPE util gauge
util{device="gpu-0",uuid="GPU-a"} 80
util{device="gpu-1",uuid="GPU-b"} 0
# HELP lat Latency.
# TYPE lat histogram
lat_bucket{le="0.1"} 9
lat_bucket{le="1"} 10
lat_bucket{le="+Inf"} 10
lat_sum 0.5
lat_count 10
`

func TestParse(t *testing.T) {
	samples, err := Parse([]byte(exposition))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range samples {
		got = append(got, s.String())
	}
	want := []string{
		`lat_count 10`, `lat_sum 0.5`,
		`lat_bucket{le="0.1"} 9`, `lat_bucket{le="1"} 10`, `lat_bucket{le="+Inf"} 10`,
		`reqs 10`,
		`util{device="gpu-0",uuid="GPU-a"} 80`, `util{device="gpu-1",uuid="GPU-b"} 0`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Parse:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := Named(samples, "util"); len(n) != 2 || n[0].Labels["device"] != "gpu-0" {
		t.Errorf("Named(util) = %v", n)
	}
	if names := Names(samples); strings.Join(names, ",") != "lat_bucket,lat_count,lat_sum,reqs,util" {
		t.Errorf("Names = %v", names)
	}
	if _, err := Parse([]byte("not a metric line {")); err == nil {
		t.Error("Parse accepted garbage")
	}
}
