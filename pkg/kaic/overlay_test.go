package kaic_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// offlineDeclaration is one line of the offline overlay's list of
// differences: "#   <what>: <reason>", where what is a spec path
// (spec.kubernetesVersion), a component (cert-manager) or a substitution
// (prometheus-adapter -> kaic-metrics-adapter).
var offlineDeclaration = regexp.MustCompile(`^#   (\S[^:]*?): (\S.*)$`)

// TestOfflineOverlayDeclaresEveryDifference keeps the offline e2e honest
// about what it proves: its profile may differ from kind-dra only in where
// images and charts come from, and in the differences its header lists,
// each with a reason. A difference the list does not name, or a listed one
// that no longer exists, fails.
func TestOfflineOverlayDeclaresEveryDifference(t *testing.T) {
	overlay, text := repoFile(t, "e2e", "testdata", "kind-dra-offline.yaml")
	declared := map[string]string{}
	substituted, substitutes := map[string]string{}, map[string]string{}
	inList := false
	for _, line := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(line, "# Differences from kind-dra") {
			inList = true
			continue
		}
		if !inList {
			continue
		}
		if !strings.HasPrefix(line, "#") {
			break
		}
		m := offlineDeclaration.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		what, reason := m[1], m[2]
		if from, to, ok := strings.Cut(what, " -> "); ok {
			for _, n := range strings.Split(from, ", ") {
				substituted[n] = reason
			}
			for _, n := range strings.Split(to, ", ") {
				substitutes[n] = reason
			}
			continue
		}
		declared[what] = reason
	}
	if len(declared)+len(substituted) == 0 {
		t.Fatal("the offline overlay has no list of differences (a comment block starting \"# Differences from kind-dra\")")
	}

	loader := kaic.NewLoader()
	base, err := loader.Load("kind-dra")
	if err != nil {
		t.Fatal(err)
	}
	off, err := loader.Load(overlay)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	var undeclared []string

	// The spec outside the stack, path by path.
	specPaths := func(p *profile.Profile) map[string]string {
		s := p.Spec
		s.Stack = profile.Stack{}
		return flatten(t, s, "spec")
	}
	bs, os_ := specPaths(base.Profile), specPaths(off.Profile)
	for _, path := range unionKeys(bs, os_) {
		if bs[path] == os_[path] || sourceOnlyPath(path) {
			continue
		}
		if key := declaredPrefix(declared, path); key != "" {
			used[key] = true
			continue
		}
		undeclared = append(undeclared, fmt.Sprintf("%s: %s in kind-dra, %s offline", path, bs[path], os_[path]))
	}

	// The stack, component by component.
	byName := func(cs []profile.Component) map[string]profile.Component {
		m := map[string]profile.Component{}
		for _, c := range cs {
			m[c.Name] = c
		}
		return m
	}
	bc, oc := byName(base.Components), byName(off.Components)
	for name, c := range bc {
		o, ok := oc[name]
		switch {
		case !ok:
			if _, ok := substituted[name]; !ok {
				undeclared = append(undeclared, name+": not installed offline, and no substitution names it")
			}
			used["->"+name] = true
		case !reflect.DeepEqual(withoutSources(t, c), withoutSources(t, o)):
			if _, ok := declared[name]; ok {
				used[name] = true
				continue
			}
			undeclared = append(undeclared, name+": differs offline beyond image and chart sources")
		}
	}
	for name := range oc {
		if _, ok := bc[name]; ok {
			continue
		}
		if _, ok := declared[name]; ok {
			used[name] = true
			continue
		}
		if _, ok := substitutes[name]; !ok {
			undeclared = append(undeclared, name+": installed only offline, and no substitution names it")
		}
		used["->"+name] = true
	}
	sort.Strings(undeclared)
	for _, u := range undeclared {
		t.Errorf("undeclared difference from kind-dra: %s", u)
	}
	for what := range declared {
		if !used[what] {
			t.Errorf("the overlay declares %q, which does not differ any more: drop it", what)
		}
	}
	for n := range substituted {
		if !used["->"+n] {
			t.Errorf("the overlay substitutes %s, which it installs anyway", n)
		}
	}
	for n := range substitutes {
		if !used["->"+n] {
			t.Errorf("the overlay names %s as a substitute, but kind-dra has it too", n)
		}
	}
}

// sourceOnlyPath reports spec paths that only say where images come from,
// or name the run (cluster name, output, the product's metadata).
func sourceOnlyPath(path string) bool {
	for _, p := range []string{"spec.cluster.kind.nodeImage", "spec.cluster.kind.imageArchives", "spec.cluster.kind.name", "spec.output.", "spec.product."} {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

func declaredPrefix(declared map[string]string, path string) string {
	for k := range declared {
		if path == k || strings.HasPrefix(path, k+".") || strings.HasPrefix(path, k+"[") {
			return k
		}
	}
	return ""
}

// withoutSources is a component with where its chart and images come from
// blanked out: the chart reference, repository, digest, and image values.
func withoutSources(t *testing.T, c profile.Component) any {
	t.Helper()
	if c.Helm != nil {
		h := *c.Helm
		h.Chart, h.Repo, h.Digest = "", "", ""
		c.Helm = &h
	}
	c.Source, c.Description = "", ""
	var v map[string]any
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if values, ok := v["values"].(map[string]any); ok {
		dropImageKeys(values)
	}
	return v
}

var imageKeys = []string{"image", "imageRegistry", "imageNamespace", "repository", "tag", "pullPolicy", "registry"}

func dropImageKeys(m map[string]any) {
	for k, v := range m {
		if slices.Contains(imageKeys, k) {
			delete(m, k)
			continue
		}
		if sub, ok := v.(map[string]any); ok {
			dropImageKeys(sub)
			if len(sub) == 0 {
				delete(m, k)
			}
		}
	}
}

func flatten(t *testing.T, v any, prefix string) map[string]string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var generic any
	if err := json.Unmarshal(data, &generic); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(v any, p string)
	walk = func(v any, p string) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(e, p+"."+k)
			}
		case []any:
			for i, e := range x {
				walk(e, fmt.Sprintf("%s[%d]", p, i))
			}
		default:
			b, _ := json.Marshal(x)
			out[p] = string(b)
		}
	}
	walk(generic, prefix)
	return out
}

func unionKeys(a, b map[string]string) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range []map[string]string{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

// TestDevicePluginOverlayMatchesTheOffline keeps the device-plugin e2e
// profile honest: it restates kind-dra-offline's cluster and monitoring
// (a profile extends only built-ins), so those must stay the same, and
// kaic-fake-gpu differs only in running as a device plugin of the
// profile's resource.
func TestDevicePluginOverlayMatchesTheOffline(t *testing.T) {
	dra, _ := repoFile(t, "e2e", "testdata", "kind-dra-offline.yaml")
	dp, _ := repoFile(t, "e2e", "testdata", "kind-device-plugin-offline.yaml")
	loader := kaic.NewLoader()
	off, err := loader.Load(dra)
	if err != nil {
		t.Fatal(err)
	}
	plug, err := loader.Load(dp)
	if err != nil {
		t.Fatal(err)
	}
	a := plug.Profile.Spec.Accelerator
	if !a.DevicePlugin() || a.ResourceName != "example.com/gpu" {
		t.Errorf("accelerator %+v, want kaic-fake-gpu's device plugin (example.com/gpu)", a)
	}
	offSpec, dpSpec := off.Profile.Spec, plug.Profile.Spec
	if offSpec.KubernetesVersion != dpSpec.KubernetesVersion || offSpec.Checks.Timeout != dpSpec.Checks.Timeout {
		t.Errorf("kubernetesVersion %s / %s, checks.timeout %s / %s: the two offline profiles differ",
			offSpec.KubernetesVersion, dpSpec.KubernetesVersion, offSpec.Checks.Timeout, dpSpec.Checks.Timeout)
	}
	ok, pk := *offSpec.Cluster.Kind, *dpSpec.Cluster.Kind
	for _, archive := range pk.ImageArchives {
		if !slices.Contains(ok.ImageArchives, archive) {
			t.Errorf("image archive %s is not one of kind-dra-offline's", archive)
		}
	}
	ok.ImageArchives, pk.ImageArchives = nil, nil
	if !reflect.DeepEqual(ok, pk) {
		t.Errorf("the kind clusters differ:\n%+v\n%+v", ok, pk)
	}
	byName := func(cs []profile.Component) map[string]profile.Component {
		m := map[string]profile.Component{}
		for _, c := range cs {
			m[c.Name] = c
		}
		return m
	}
	oc, pc := byName(off.Components), byName(plug.Components)
	for _, name := range []string{"prometheus-operator-crds", "prometheus-operator", "kaic-metrics-adapter"} {
		if !reflect.DeepEqual(oc[name], pc[name]) {
			t.Errorf("%s differs from kind-dra-offline's:\n%+v\n%+v", name, oc[name], pc[name])
		}
	}
	fake := pc["kaic-fake-gpu"]
	values := map[string]any{}
	for k, v := range fake.Values {
		values[k] = v
	}
	if values["mode"] != "device-plugin" || values["resourceName"] != a.ResourceName {
		t.Errorf("kaic-fake-gpu values %v, want mode device-plugin and resourceName %s", fake.Values, a.ResourceName)
	}
	delete(values, "mode")
	delete(values, "resourceName")
	delete(values, "devicesPerNode")
	fake.Values = values
	want := oc["kaic-fake-gpu"]
	delete(want.Values, "devicesPerNode")
	if !reflect.DeepEqual(withoutSources(t, want), withoutSources(t, fake)) {
		t.Errorf("kaic-fake-gpu differs from kind-dra-offline's beyond its mode:\n%+v\n%+v", want, fake)
	}
	for name := range pc {
		if _, ok := oc[name]; !ok {
			t.Errorf("%s is installed only by the device-plugin profile", name)
		}
	}
}

// The offline e2e's sandbox is one thing named in three places: the
// runtime handler the node image's containerd serves (hack/kindnode), the
// RuntimeClass the gvisor component creates for it, and the RuntimeClass
// workload_sandboxing is told to test.
func TestOfflineSandboxRuntimeClassIsTheNodeImages(t *testing.T) {
	overlay, _ := repoFile(t, "e2e", "testdata", "kind-dra-offline.yaml")
	off, err := kaic.NewLoader().Load(overlay)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(off.Components, func(c profile.Component) bool { return c.Name == "gvisor" })
	if i < 0 {
		t.Fatal("the offline profile installs no gvisor component")
	}
	name, handler := off.Components[i].Values["name"], off.Components[i].Values["handler"]
	if want := off.Profile.Spec.Checks.Sandboxing.RuntimeClass; name != want {
		t.Errorf("the gvisor component creates RuntimeClass %v, but workload_sandboxing tests %q", name, want)
	}
	_, containerd := repoFile(t, "hack", "kindnode", "files", "containerd-runsc.toml")
	if section := fmt.Sprintf("containerd.runtimes.%v]", handler); !strings.Contains(string(containerd), section) {
		t.Errorf("the node image's containerd has no runtime handler %v (no %q in hack/kindnode/files/containerd-runsc.toml)", handler, section)
	}
}
