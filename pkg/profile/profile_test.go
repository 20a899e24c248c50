package profile_test

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// requirementLevels resolves requirement ids from kaic's built-in catalog.
func requirementLevels(version string) (map[string]string, error) {
	cat, err := conformance.Builtin(version)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, r := range cat.Requirements {
		out[r.ID] = string(r.Level)
	}
	return out, nil
}

func newLoader() *profile.Loader {
	return &profile.Loader{Requirements: requirementLevels}
}

func TestBuiltinProfilesLoad(t *testing.T) {
	l := newLoader()
	names := l.BuiltinNames()
	want := []string{"capi-aws-gpu", "capi-azure-gpu", "capi-docker", "capi-gcp-gpu", "existing", "kind-dra", "kind-nvidia"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("built-in profiles = %v, want %v", names, want)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			r, err := l.Load(name)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if r.Profile.Metadata.Name != name {
				t.Errorf("metadata.name = %q, want %q", r.Profile.Metadata.Name, name)
			}
			if r.Source != "builtin:"+name {
				t.Errorf("source = %q", r.Source)
			}
			if len(r.Digest) != 64 {
				t.Errorf("digest %q is not a sha256", r.Digest)
			}
			if _, err := profile.InstallOrder(r.Components); err != nil {
				t.Errorf("install order: %v", err)
			}
		})
	}
}

func TestKindDRADefaults(t *testing.T) {
	r, err := newLoader().Load("kind-dra")
	if err != nil {
		t.Fatal(err)
	}
	p := r.Profile
	if !p.IsSimulated() {
		t.Error("kind-dra must be marked simulated")
	}
	a := p.Spec.Accelerator
	if a.DRADriver != "gpu.example.com" || a.DeviceClass != "gpu.example.com" || a.DeviceEnvPrefix != "GPU_DEVICE_" {
		t.Errorf("example model not applied: %+v", a)
	}
	k := p.Spec.Cluster.Kind
	if k.NodeImage == "" || !strings.Contains(k.NodeImage, "@sha256:") {
		t.Errorf("node image %q is not pinned by digest", k.NodeImage)
	}
	if *k.Workers != 2 || k.Provider != "auto" {
		t.Errorf("kind defaults: workers=%d provider=%q", *k.Workers, k.Provider)
	}
	if p.Spec.Output.Dir != "kaic-out/kind-dra" {
		t.Errorf("output dir = %q", p.Spec.Output.Dir)
	}
	if got := p.Spec.Checks.Timeout.String(); got != "10m0s" {
		t.Errorf("check timeout = %s", got)
	}
	waves, err := profile.InstallOrder(r.Components)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, w := range waves {
		for _, c := range w {
			pos[c.Name] = i
		}
	}
	for _, dep := range [][2]string{{"kube-prometheus-stack", "prometheus-adapter"}, {"gateway-api", "envoy-gateway"}, {"cert-manager", "kuberay-operator"}, {"kube-prometheus-stack", "kaic-fake-gpu"}} {
		if pos[dep[0]] >= pos[dep[1]] {
			t.Errorf("%s (wave %d) must install before %s (wave %d)", dep[0], pos[dep[0]], dep[1], pos[dep[1]])
		}
	}
	if len(waves[0]) < 3 {
		t.Errorf("first wave %v: independent components should install together", names(waves[0]))
	}
}

func names(cs []profile.Component) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// TestBadProfiles feeds every file of testdata/profiles/bad to the loader
// and expects each line of the matching .want file in the error.
func TestBadProfiles(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "profiles", "bad")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 25 {
		t.Fatalf("only %d bad profiles in %s", len(files), dir)
	}
	l := newLoader()
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			wantData, err := os.ReadFile(strings.TrimSuffix(f, ".yaml") + ".want")
			if err != nil {
				t.Fatalf("every bad profile needs a .want file: %v", err)
			}
			_, err = l.Load(f)
			if err == nil {
				t.Fatal("loaded without error")
			}
			for _, want := range strings.Split(strings.TrimSpace(string(wantData)), "\n") {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q:\n%v", want, err)
				}
			}
		})
	}
}

func TestHugeFileRefused(t *testing.T) {
	f := filepath.Join(t.TempDir(), "huge.yaml")
	data := "apiVersion: kaic.dev/v1alpha1\nkind: Profile\nmetadata:\n  name: huge\n  description: \"" + strings.Repeat("x", profile.MaxFileSize) + "\"\n"
	if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := newLoader().Load(f)
	if err == nil || !strings.Contains(err.Error(), "larger than the 1048576 byte limit") {
		t.Fatalf("err = %v", err)
	}
}

func TestFieldErrorsCarryLines(t *testing.T) {
	src := `apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: lines
spec:
  kubernetesVersion: v1.37.0
  cluster:
    backend: kind
    kind:
      workers: 99
`
	_, err := newLoader().LoadBytes("p.yaml", []byte(src))
	var list profile.ErrorList
	if !errors.As(err, &list) || len(list) != 1 {
		t.Fatalf("err = %v", err)
	}
	e := list[0]
	if e.Line != 10 || e.Path != "spec.cluster.kind.workers" || e.Value != 99 {
		t.Errorf("error = %+v", e)
	}
	if got := e.Error(); got != "p.yaml:10: spec.cluster.kind.workers: must be >= 0 and <= 16, got 99" {
		t.Errorf("message = %q", got)
	}
}

func TestExtendsMergesByKey(t *testing.T) {
	src := `apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: mine
extends: kind-dra
spec:
  cluster:
    kind:
      workers: 1
  stack:
    components:
      - name: kueue
        version: 0.19.7
        values:
          controllerManager:
            replicas: 2
      - name: envoy-gateway
        disabled: true
      - name: envoy-gateway-class
        disabled: true
      - name: extra
        helm:
          chart: ./charts/extra
        dependsOn: [kueue]
  checks:
    optOuts:
      - id: virtualized_accelerator
        status: N/A
        notes: overridden note
`
	r, err := newLoader().LoadBytes("mine.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	p := r.Profile
	if p.Metadata.Name != "mine" || p.Spec.Cluster.Kind.Name != "kaic-dra" || *p.Spec.Cluster.Kind.Workers != 1 {
		t.Errorf("cluster not merged: name=%s kind=%+v", p.Metadata.Name, p.Spec.Cluster.Kind)
	}
	if p.Spec.Output.Dir != "kaic-out/mine" {
		t.Errorf("output dir = %q", p.Spec.Output.Dir)
	}
	byName := map[string]profile.Component{}
	for _, c := range r.Components {
		byName[c.Name] = c
	}
	if _, ok := byName["envoy-gateway"]; ok {
		t.Error("disabled component still resolved")
	}
	if _, ok := byName["cert-manager"]; !ok {
		t.Error("inherited component lost")
	}
	k := byName["kueue"]
	if k.ChartVersion() != "0.19.7" || k.Helm.Chart != "oci://registry.k8s.io/kueue/charts/kueue" || k.Namespace != "kueue-system" {
		t.Errorf("kueue override: %+v %+v", k, k.Helm)
	}
	if k.Values["controllerManager"] == nil {
		t.Errorf("values override lost: %v", k.Values)
	}
	if byName["extra"].Source != "profile" {
		t.Errorf("inline component source = %q", byName["extra"].Source)
	}
	var notes []string
	for _, o := range p.Spec.Checks.OptOuts {
		if o.ID == "virtualized_accelerator" {
			notes = append(notes, o.Notes)
		}
	}
	if len(notes) != 1 || notes[0] != "overridden note" {
		t.Errorf("opt-out not merged by id: %v", notes)
	}
	if len(p.Spec.Checks.OptOuts) != 4 {
		t.Errorf("opt-outs = %d, want the 4 of kind-dra", len(p.Spec.Checks.OptOuts))
	}
	// The built-in is untouched by the override.
	base, err := newLoader().Load("kind-dra")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range base.Components {
		if c.Name == "kueue" && c.ChartVersion() != "0.20.0" {
			t.Errorf("built-in kueue changed to %s", c.ChartVersion())
		}
	}
}

func TestMustOptOutWarns(t *testing.T) {
	src := `apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: warn
spec:
  kubernetesVersion: v1.37.0
  cluster:
    backend: existing
  checks:
    optOuts:
      - id: gang_scheduling
        status: N/A
        notes: no scheduler
      - id: cluster_autoscaling
        status: N/A
        notes: bare metal
`
	r, err := newLoader().LoadBytes("warn.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "gang_scheduling is a MUST") {
		t.Errorf("warnings = %q", r.Warnings)
	}
}

func TestInstallOrderCycle(t *testing.T) {
	comps := []profile.Component{
		{Name: "a", DependsOn: []string{"c"}},
		{Name: "b", DependsOn: []string{"a"}},
		{Name: "c", DependsOn: []string{"b"}},
		{Name: "d"},
	}
	_, err := profile.InstallOrder(comps)
	if err == nil || !strings.Contains(err.Error(), "a → c → b → a") {
		t.Fatalf("err = %v", err)
	}
}

func TestComponentCatalogRejectsBadFile(t *testing.T) {
	dir := t.TempDir()
	bad := "apiVersion: kaic.dev/v1alpha1\nkind: StackComponent\nmetadata:\n  name: other\nspec:\n  helm:\n    chart: oci://x.example/c\n"
	if err := os.WriteFile(filepath.Join(dir, "mine.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := profile.LoadComponentCatalog(os.DirFS(dir))
	if err == nil || !strings.Contains(err.Error(), `metadata.name: must match the file name "mine"`) || !strings.Contains(err.Error(), "helm.version: is required") {
		t.Fatalf("err = %v", err)
	}
}

func TestBuiltinComponentsArePinned(t *testing.T) {
	cat, err := profile.LoadComponentCatalog(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range cat.Names() {
		c, _ := cat.Get(name)
		if c.Pinned == "" {
			t.Errorf("%s: no pinned date", name)
		}
		if c.Description == "" {
			t.Errorf("%s: no description", name)
		}
		if c.Helm != nil && c.ChartVersion() == "" && !strings.HasPrefix(c.Helm.Chart, profile.EmbeddedChartScheme) {
			t.Errorf("%s: chart without a version", name)
		}
	}
}

// FuzzLoadBytes checks that no input makes the loader panic, and that what
// it accepts it describes consistently.
func FuzzLoadBytes(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "profiles", "bad", "*.yaml"))
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	l := newLoader()
	for _, name := range l.BuiltinNames() {
		data, _ := l.BuiltinBytes(name)
		f.Add(data)
	}
	f.Add([]byte("extends: kind-dra\napiVersion: kaic.dev/v1alpha1\nkind: Profile\nmetadata: {name: x}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := l.LoadBytes("fuzz.yaml", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if r.Profile == nil || r.Profile.Metadata.Name == "" || len(r.Digest) != 64 {
			t.Fatalf("accepted an incomplete profile: %+v", r)
		}
		if _, err := profile.InstallOrder(r.Components); err != nil {
			t.Fatalf("accepted a profile whose stack cannot be ordered: %v", err)
		}
	})
}

// TestResolvedProfileRoundTrips writes a resolved profile out and reads it
// back, as a resumed run or kaic down does: it must load to the same
// digest, including an emptied dependency list.
func TestResolvedProfileRoundTrips(t *testing.T) {
	src := `apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: roundtrip
extends: kind-dra
spec:
  stack:
    components:
      - name: kaic-fake-gpu
        dependsOn: []
      - name: kube-prometheus-stack
        disabled: true
      - name: prometheus-adapter
        disabled: true
      - name: kaic-probe-monitor
        disabled: true
`
	l := newLoader()
	r, err := l.LoadBytes("roundtrip.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	data, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.LoadBytes("profile.yaml", data)
	if err != nil {
		t.Fatalf("the resolved profile does not load again: %v\n%s", err, data)
	}
	if again.Digest != r.Digest {
		t.Errorf("digest changed on the round trip: %s -> %s", r.Digest, again.Digest)
	}
	for _, c := range again.Components {
		if c.Name == "kaic-fake-gpu" && len(c.DependsOn) != 0 {
			t.Errorf("kaic-fake-gpu depends on %v after the round trip", c.DependsOn)
		}
	}
}

// The settings of the checks that take them from spec.checks load into
// their fields and survive the resolved profile's round trip, set in full
// or in part.
func TestCheckSettings(t *testing.T) {
	src := `apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: vendor
extends: existing
spec:
  checks:
    serviceMetrics:
      prometheus: monitoring/kube-prometheus-stack-prometheus:http-web
      scrapeLabels:
        release: kube-prometheus-stack
        app.kubernetes.io/part-of: monitoring
      requests: 30
      collectionTimeout: 8m
    inference:
      gatewayClass: vendor-gateway
      ingressGatewayClass: vendor-inference
      endpointPickerImage: registry.example/epp:v1.5.0
      requests: 200
      tolerance: 2.5
      readyTimeout: 5m
      trafficTimeout: 90s
    sandboxing:
      runtimeClass: gvisor
    clusterAutoscaling:
      nodePoolSelector: "pool in (gpu),!spot"
      pendingTimeout: 4m
      scaleUpTimeout: 40m
      scaleDownTimeout: 1h
      stabilityWindow: 1m
    acceleratorMetrics:
      exporterTimeout: 2m
`
	l := newLoader()
	r, err := l.LoadBytes("vendor.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	c := r.Profile.Spec.Checks
	sm := c.ServiceMetrics
	if sm.Prometheus != "monitoring/kube-prometheus-stack-prometheus:http-web" || sm.ScrapeLabels["release"] != "kube-prometheus-stack" ||
		sm.ScrapeLabels["app.kubernetes.io/part-of"] != "monitoring" || sm.Requests == nil || *sm.Requests != 30 || sm.CollectionTimeout.Duration != 8*time.Minute {
		t.Errorf("serviceMetrics = %+v", sm)
	}
	in := c.Inference
	if in.GatewayClass != "vendor-gateway" || in.IngressGatewayClass != "vendor-inference" || in.EndpointPickerImage != "registry.example/epp:v1.5.0" || in.Requests == nil || *in.Requests != 200 || in.Tolerance == nil || *in.Tolerance != 2.5 ||
		in.ReadyTimeout.Duration != 5*time.Minute || in.TrafficTimeout.Duration != 90*time.Second {
		t.Errorf("inference = %+v", in)
	}
	if c.Sandboxing.RuntimeClass != "gvisor" {
		t.Errorf("sandboxing = %+v", c.Sandboxing)
	}
	ca := c.ClusterAutoscaling
	if ca.NodePoolSelector != "pool in (gpu),!spot" || ca.PendingTimeout.Duration != 4*time.Minute || ca.ScaleUpTimeout.Duration != 40*time.Minute ||
		ca.ScaleDownTimeout.Duration != time.Hour || ca.StabilityWindow.Duration != time.Minute {
		t.Errorf("clusterAutoscaling = %+v", ca)
	}
	if d := c.AcceleratorMetrics.ExporterTimeout.Duration; d != 2*time.Minute {
		t.Errorf("acceleratorMetrics.exporterTimeout = %s", d)
	}
	roundTrip(t, l, r)

	// In part: what is unset stays unset through the round trip (an empty
	// duration written out would not load again).
	partial := strings.Replace(src, src[strings.Index(src, "  checks:"):], "  checks:\n    inference:\n      tolerance: 4\n    clusterAutoscaling:\n      scaleUpTimeout: 1h\n", 1)
	r, err = l.LoadBytes("partial.yaml", []byte(partial))
	if err != nil {
		t.Fatal(err)
	}
	if tol := r.Profile.Spec.Checks.Inference.Tolerance; tol == nil || *tol != 4 {
		t.Errorf("an integer tolerance reads as %v", tol)
	}
	data := roundTrip(t, l, r)
	for _, unset := range []string{"serviceMetrics", "sandboxing", "readyTimeout", "pendingTimeout", "nodePoolSelector"} {
		if strings.Contains(string(data), unset) {
			t.Errorf("the resolved profile writes out the unset %s:\n%s", unset, data)
		}
	}
}

// roundTrip writes r out and loads it again, expecting the same digest,
// and returns what was written.
func roundTrip(t *testing.T, l *profile.Loader, r *profile.Resolved) []byte {
	t.Helper()
	data, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.LoadBytes("profile.yaml", data)
	if err != nil {
		t.Fatalf("the resolved profile does not load again: %v\n%s", err, data)
	}
	if again.Digest != r.Digest {
		t.Errorf("digest changed on the round trip: %s -> %s", r.Digest, again.Digest)
	}
	return data
}

// The existing profile shows its check settings as a commented example;
// uncommented, the example must load.
func TestExistingProfileCheckExample(t *testing.T) {
	l := newLoader()
	data, err := l.BuiltinBytes("existing")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	inExample := false
	for _, line := range strings.Split(string(data), "\n") {
		if line == "  # checks:" {
			inExample = true
		} else if inExample && !strings.HasPrefix(line, "  #") {
			inExample = false
		}
		if inExample {
			line = "  " + strings.TrimPrefix(line, "  # ")
		}
		out = append(out, line)
	}
	r, err := l.LoadBytes("existing-uncommented.yaml", []byte(strings.Join(out, "\n")))
	if err != nil {
		t.Fatalf("the commented check settings of the existing profile do not load: %v", err)
	}
	c := r.Profile.Spec.Checks
	if c.ServiceMetrics.Prometheus == "" || c.Inference.GatewayClass == "" || c.Sandboxing.RuntimeClass == "" || c.ClusterAutoscaling.NodePoolSelector == "" ||
		c.AcceleratorMetrics.ExporterTimeout.Duration != 8*time.Minute {
		t.Errorf("the example lacks a section: %+v", c)
	}
}

// Errors in a profile that extends another name the items the user wrote
// by their index in the user's file, at their line, and items inherited
// from the base profile by name.
func TestExtendsErrorsPointIntoTheUsersFile(t *testing.T) {
	src := `apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: mine
extends: kind-dra
spec:
  stack:
    components:
      - name: kueue
        version: 0.19.7
      - name: envoy-gateway
        disabled: true
      - name: extra
        helm:
          chart: ./charts/extra
        dependsOn: [nothing-here]
`
	_, err := newLoader().LoadBytes("mine.yaml", []byte(src))
	got := errorLines(t, err)
	want := map[string]int{
		"spec.stack.components[1]":              11, // envoy-gateway, disabled by the user
		"spec.stack.components[2].dependsOn[0]": 16, // extra's unknown dependency
	}
	for path, line := range want {
		if l, ok := got[path]; !ok || l != line {
			t.Errorf("no error at %s line %d; got %v", path, line, err)
		}
	}
	if !strings.Contains(err.Error(), "envoy-gateway is disabled, but built-in component envoy-gateway-class depends on it") {
		t.Errorf("err = %v, want the disabled dependency named", err)
	}
}

// DCGM serves used and free frame buffer memory and no capacity: the
// NVIDIA model names FB_FREE as free memory, never as the total.
func TestNVIDIAMetricsNameFreeMemoryAsFree(t *testing.T) {
	r, err := newLoader().Load("existing")
	if err != nil {
		t.Fatal(err)
	}
	m := r.Profile.Spec.Accelerator.Metrics
	if r.Profile.Spec.Accelerator.Model != "nvidia" || m == nil {
		t.Fatalf("existing: accelerator %+v, want the NVIDIA model with metrics", r.Profile.Spec.Accelerator)
	}
	if m.MemoryFree != "DCGM_FI_DEV_FB_FREE" || m.MemoryTotal != "" || m.MemoryUsed != "DCGM_FI_DEV_FB_USED" {
		t.Errorf("memory metrics used %q, free %q, total %q", m.MemoryUsed, m.MemoryFree, m.MemoryTotal)
	}
}

// The NVIDIA model finds the DCGM exporter's Service by the labels the
// GPU operator and dcgm-exporter's chart give it, and reads MIG
// instances' utilization from the graphics engine's activity, since DCGM
// serves no GPU_UTIL for them. A profile that names its own selectors
// keeps them, and the check's wait is bounded by default.
func TestNVIDIAMetricsFindTheExporterAndMIGUtilization(t *testing.T) {
	l := newLoader()
	r, err := l.Load("kind-nvidia")
	if err != nil {
		t.Fatal(err)
	}
	m := r.Profile.Spec.Accelerator.Metrics
	if strings.Join(m.ServiceSelectors, " ") != "app=nvidia-dcgm-exporter app.kubernetes.io/name=dcgm-exporter" {
		t.Errorf("service selectors %q", m.ServiceSelectors)
	}
	if m.PartitionUtilization != "DCGM_FI_PROF_GR_ENGINE_ACTIVE" || m.Utilization != "DCGM_FI_DEV_GPU_UTIL" {
		t.Errorf("utilization %q, of partitions %q", m.Utilization, m.PartitionUtilization)
	}
	if d := r.Profile.Spec.Checks.AcceleratorMetrics.ExporterTimeout.Duration; d != profile.DefaultExporterTimeout {
		t.Errorf("exporter timeout %s, want the default %s", d, profile.DefaultExporterTimeout)
	}
	own, err := l.LoadBytes("own.yaml", []byte(`apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: own
extends: kind-nvidia
spec:
  accelerator:
    metrics:
      serviceSelectors: [team=gpu-metrics]
`))
	if err != nil {
		t.Fatal(err)
	}
	om := own.Profile.Spec.Accelerator.Metrics
	if strings.Join(om.ServiceSelectors, " ") != "team=gpu-metrics" || om.Endpoint != "gpu-operator/nvidia-dcgm-exporter:9400" {
		t.Errorf("own selectors %q, endpoint %q", om.ServiceSelectors, om.Endpoint)
	}
	// The model's defaults are copied, not shared.
	om.ServiceSelectors[0] = "changed=yes"
	if again, _ := l.Load("kind-nvidia"); again.Profile.Spec.Accelerator.Metrics.ServiceSelectors[0] != "app=nvidia-dcgm-exporter" {
		t.Error("changing a profile's selectors changed the model's")
	}
}

// The inference checks' class and endpoint picker image are checked where
// they are written, each error naming its field.
func TestInferenceCheckSettingsAreValidated(t *testing.T) {
	src := `apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: mine
extends: kind-dra
spec:
  checks:
    inference:
      ingressGatewayClass: Not_A_Name
      endpointPickerImage: "registry.k8s.io/epp:v1 extra"
`
	_, err := newLoader().LoadBytes("mine.yaml", []byte(src))
	var list profile.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("err = %v, want an ErrorList", err)
	}
	got := map[string]bool{}
	for _, e := range list {
		got[e.Path] = true
	}
	for _, path := range []string{"spec.checks.inference.ingressGatewayClass", "spec.checks.inference.endpointPickerImage"} {
		if !got[path] {
			t.Errorf("no error at %s; got %v", path, err)
		}
	}
}

// errorLines returns the line of each field err, a profile.ErrorList,
// names.
func errorLines(t *testing.T, err error) map[string]int {
	t.Helper()
	var list profile.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("err = %v, want an ErrorList", err)
	}
	got := map[string]int{}
	for _, e := range list {
		got[e.Path] = e.Line
	}
	return got
}

// readiness.pods needs a selector that parses and selects something, a
// namespace that can exist and a count that is not negative; each problem
// is reported at its field and line.
func TestPodReadinessValidation(t *testing.T) {
	src := `apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: mine
extends: kind-dra
spec:
  stack:
    components:
      - name: extra
        helm:
          chart: ./charts/extra
        readiness:
          pods:
            - selector: app.kubernetes.io/name=prometheus
              minReady: 2
            - selector: ""
            - selector: "app in (a"
              namespace: Not_A_Label
              minReady: -1
`
	_, err := newLoader().LoadBytes("mine.yaml", []byte(src))
	const p = "spec.stack.components[0].readiness.pods"
	want := map[string]int{p + "[1].selector": 16, p + "[2].selector": 17, p + "[2].namespace": 18, p + "[2].minReady": 19}
	if got := errorLines(t, err); !maps.Equal(got, want) {
		t.Errorf("errors at %v, want exactly %v: %v", got, want, err)
	}

	// The same without the problems loads, and keeps what was declared.
	valid := strings.Split(src, "            - selector: \"\"")[0]
	r, err := newLoader().LoadBytes("mine.yaml", []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Profile.Spec.Stack.Components {
		if c.Name != "extra" {
			continue
		}
		if c.Readiness == nil || len(c.Readiness.Pods) != 1 || c.Readiness.Pods[0].Want() != 2 {
			t.Errorf("readiness = %+v, want one pods entry wanting 2", c.Readiness)
		}
		return
	}
	t.Error("component extra is missing")
}
