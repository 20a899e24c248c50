//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/pkg/probe"
)

// offlineProfile is the overlay the offline suite runs, relative to the
// repository root (kaic runs there, so the overlay's relative image archive
// paths resolve).
const offlineProfile = "e2e/testdata/kind-dra-offline.yaml"

// offlineUnverifiable are the MUST requirements the offline stack cannot
// serve, with the reason.
var offlineUnverifiable = map[string]string{}

// capSysResource is CAP_SYS_RESOURCE's bit in a capability set.
const capSysResource = 24

// shownOffline are the SHOULD requirements whose capability the offline
// stack has, each with what its transcript must show: kaic-fake-gpu
// time-slices two devices per node, so the holders of one device must
// have seen it in their containers; the endpoint picker built from source
// must have steered requests to the model server it saw idle.
var shownOffline = map[string]string{
	"gpu_sharing":                "the holders of one shared device saw that same device",
	"advanced_inference_ingress": "requests to an InferencePool went to the model server its endpoint picker found idle, and followed when the loads were swapped",
}

// scrapedByStack are the requirements whose probe pods the stack's
// PodMonitor (component kaic-probe-monitor) scrapes: their transcripts must
// name it, or they created a monitor of their own and waited for it to
// reach Prometheus.
var scrapedByStack = []string{"ai_service_metrics", "pod_autoscaling"}

// stackMonitorShown is what their transcripts say of it.
const stackMonitorShown = "PodMonitor monitoring/kaic-probe"

// hostShouldFailures are the SHOULD requirements this host keeps from
// passing, with the reason and what the check's output then says.
func hostShouldFailures(t *testing.T) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		hex, ok := strings.CutPrefix(l, "CapBnd:")
		if !ok {
			continue
		}
		var bnd uint64
		if _, err := fmt.Sscanf(strings.TrimSpace(hex), "%x", &bnd); err != nil {
			t.Fatalf("CapBnd %q: %v", hex, err)
		}
		if bnd&(1<<capSysResource) == 0 {
			out["workload_sandboxing"] = [2]string{
				"this host's capability bounding set lacks CAP_SYS_RESOURCE, and gVisor's containerd shim sets its own oom_score_adj to -999, which the kernel refuses without it, so no gVisor pod starts on a kind node here (hack/kindnode/README.md, host findings)",
				"failed to set OOM Score on shim",
			}
		}
	}
	return out
}

// offline is the setup shared by the offline tests.
type offline struct {
	root, kaic, checklists, out string
	cluster                     string
	nodes                       int
	network                     string
}

func setupOffline(t *testing.T) *offline {
	t.Helper()
	return setupOfflineProfile(t, offlineProfile)
}

// setupOfflineProfile is setupOffline for another offline profile (a path
// relative to the repository root).
func setupOfflineProfile(t *testing.T, offlineProfile string) *offline {
	t.Helper()
	if os.Getenv("KAIC_E2E_OFFLINE") != "1" {
		t.Skip("offline kind e2e: run make e2e-offline (it builds the node and probe images and sets KAIC_E2E_OFFLINE=1)")
	}
	root := repoRoot(t)
	o := &offline{
		root:       root,
		kaic:       envOr("KAIC_BIN", filepath.Join(root, "bin", "kaic")),
		checklists: envOr("KAIC_CHECKLIST_DIR", filepath.Join(root, "..", "shared", "checklists")),
		out:        envOr("KAIC_E2E_OUT", filepath.Join(root, "kaic-out", "e2e-offline")),
		network:    envOr("KIND_EXPERIMENTAL_DOCKER_NETWORK", "kind"),
	}
	data, err := os.ReadFile(filepath.Join(root, offlineProfile))
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Spec struct {
			Cluster struct {
				Kind struct {
					Name          string   `json:"name"`
					Workers       *int     `json:"workers"`
					ImageArchives []string `json:"imageArchives"`
				} `json:"kind"`
			} `json:"cluster"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &p); err != nil {
		t.Fatalf("%s: %v", offlineProfile, err)
	}
	k := p.Spec.Cluster.Kind
	if k.Name == "" || k.Workers == nil {
		t.Fatalf("%s: expected spec.cluster.kind.name and workers", offlineProfile)
	}
	// kaic builds and loads the probe image itself: no profile lists it.
	if i := slices.IndexFunc(k.ImageArchives, func(a string) bool { return strings.Contains(filepath.Base(a), "probe") }); i >= 0 {
		t.Fatalf("%s lists the probe image's archive %s: kaic up loads the probe image itself", offlineProfile, k.ImageArchives[i])
	}
	o.cluster, o.nodes = k.Name, 1+*k.Workers
	if got := clusterContainers(t, o.cluster); len(got) > 0 {
		t.Fatalf("containers of a kind cluster %s are already there (%q): remove them first (kaic down <run dir>, or docker rm -f)", o.cluster, got)
	}
	return o
}

// probeImage is the probe image kaic's plan says a run of profile uses: one
// kaic builds from its own binary and loads into the nodes.
func (o *offline) probeImage(t *testing.T, ctx context.Context, profile string) string {
	t.Helper()
	r := run(t, ctx, o.root, o.kaic, "plan", "-p", profile, "-o", "json")
	if r.code != 0 {
		t.Fatalf("kaic plan: exit %d\n%s", r.code, r.output())
	}
	var pl struct {
		ProbeImage struct{ Ref, Source string } `json:"probeImage"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &pl); err != nil {
		t.Fatalf("kaic plan -o json: %v", err)
	}
	if !strings.HasPrefix(pl.ProbeImage.Ref, "kaic.dev/probe:") || pl.ProbeImage.Source != "built" {
		t.Fatalf("plan's probe image %+v, want one kaic builds (kaic.dev/probe:<tag>)", pl.ProbeImage)
	}
	return pl.ProbeImage.Ref
}

// runDir is a fresh run directory for one test.
func (o *offline) runDir(t *testing.T, name string) string {
	dir := filepath.Join(o.out, name)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// downOnFailure tears the cluster down if the test ends with it still
// there, so a failed run leaves nothing behind either.
func (o *offline) downOnFailure(t *testing.T, dir string) {
	t.Cleanup(func() {
		if len(clusterContainers(t, o.cluster)) == 0 {
			return
		}
		t.Errorf("cluster %s still exists at the end of the test: running kaic down %s", o.cluster, dir)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		r := run(t, ctx, o.root, o.kaic, "down", dir)
		if r.code != 0 {
			t.Errorf("kaic down: exit %d\n%s", r.code, r.output())
		}
	})
}

type runState struct {
	Phases []struct {
		Name    string            `json:"name"`
		Status  string            `json:"status"`
		Error   string            `json:"error"`
		Outputs map[string]string `json:"outputs"`
	} `json:"phases"`
}

func readState(t *testing.T, dir string) runState {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s runState
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("state.json: %v", err)
	}
	return s
}

func (s runState) phase(t *testing.T, name string) (status string, outputs map[string]string) {
	t.Helper()
	for _, p := range s.Phases {
		if p.Name == name {
			return p.Status, p.Outputs
		}
	}
	t.Fatalf("state.json has no phase %s", name)
	return "", nil
}

// checkResult is the part of results/<id>.json the test reads.
type checkResult struct {
	ID       string `json:"id"`
	TestName string `json:"testName"`
	Category string `json:"category"`
	Level    string `json:"level"`
	Status   string `json:"status"`
}

func readResults(t *testing.T, dir string) []checkResult {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no check results in %s (%v)", dir, err)
	}
	var out []checkResult
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r checkResult
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, r)
	}
	return out
}

// TestOfflineUpValidateDown is the whole offline run: kaic up creates the
// cluster from the locally built node image and loads the probe image; a
// probe pod runs from it; the evidence is there; kaic validate says exactly
// why it refuses the run; kaic down leaves nothing behind.
func TestOfflineUpValidateDown(t *testing.T) {
	o := setupOffline(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	// The probe image kaic up builds from this kaic binary and loads.
	probeRef := o.probeImage(t, ctx, offlineProfile)

	networkBefore := networkExists(t, o.network)
	dir := o.runDir(t, "up")
	o.downOnFailure(t, dir)

	up := run(t, ctx, o.root, o.kaic, "up", "-p", offlineProfile, "--out", dir, "--checklist-dir", o.checklists)
	if err := os.WriteFile(filepath.Join(o.out, "up.log"), []byte(up.output()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("kaic up took %s", up.took.Round(time.Second))
	state := readState(t, dir)
	status, rec := state.phase(t, "provision")
	if status != "succeeded" {
		t.Fatalf("provision phase %s (kaic up exit %d)\n%s", status, up.code, up.output())
	}
	if rec["clusterName"] != o.cluster || rec["created"] != "true" || rec["nodeProvider"] != "docker" {
		t.Errorf("provision record = %v, want cluster %s created by kaic with the docker provider", rec, o.cluster)
	}
	if rec["kubeconfig"] != filepath.Join(dir, "kubeconfig") {
		t.Errorf("kubeconfig recorded at %q, want it in the run directory", rec["kubeconfig"])
	}
	for _, want := range []string{
		fmt.Sprintf("loading %s into %d nodes: ok", probeRef, o.nodes),
		fmt.Sprintf("waiting for %d node(s) Ready: ok", o.nodes),
		// The engine runs on this host: the profile's image archives are
		// mounted into the nodes and imported from there.
		"image archives mounted read-only into every node",
	} {
		if !strings.Contains(up.output(), want) {
			t.Errorf("kaic up output lacks %q", want)
		}
	}
	for _, unwanted := range []string{"streaming those instead", "streaming them instead"} {
		if strings.Contains(up.output(), unwanted) {
			t.Errorf("kaic up output says %q: a node did not see its mounted image archives", unwanted)
		}
	}

	// What the checks decided, and what kaic up must have made of it.
	_, verifyOut := state.phase(t, "verify")
	results := readResults(t, verifyOut["results"])
	var unverified []checkResult
	for _, res := range results {
		if res.Level == "MUST" && res.Status != "pass" && res.Status != "N/A" {
			unverified = append(unverified, res)
		}
	}
	// On this stack every requirement with a check passes, but for those
	// the overlay cannot serve offline (said here, and in the overlay).
	for _, u := range unverified {
		if why, ok := offlineUnverifiable[u.ID]; ok {
			t.Logf("%s is not verified offline, as expected: %s", u.ID, why)
			continue
		}
		t.Errorf("MUST requirement %s is %s on the offline stack (see %s)", u.ID, u.Status, filepath.Join(dir, "v1.37", "kaic-kind-dra-offline", "tests", u.TestName, "output.md"))
	}
	hostFailures := hostShouldFailures(t)
	expectedFailures := 0
	// The tests of SHOULD requirements this host makes fail: the
	// validator rightly rejects evidence that holds them.
	var hostFailedTests []string
	for _, res := range results {
		output := filepath.Join(dir, "v1.37", "kaic-kind-dra-offline", "tests", res.TestName, "output.md")
		if shown, ok := shownOffline[res.ID]; ok {
			if res.Status != "pass" {
				t.Errorf("%s is %q on the offline stack, which has what it needs (see %s)", res.ID, res.Status, output)
			} else if data, err := os.ReadFile(output); err != nil || !strings.Contains(string(data), shown) {
				t.Errorf("%s passed without showing %q (see %s): %v", res.ID, shown, output, err)
			}
		}
		if slices.Contains(scrapedByStack, res.ID) {
			if data, err := os.ReadFile(output); err != nil || !strings.Contains(string(data), stackMonitorShown) {
				t.Errorf("%s did not use the stack's probe monitor (%q not in %s): %v", res.ID, stackMonitorShown, output, err)
			}
		}
		if res.Level != "SHOULD" || res.Status != "fail" {
			continue
		}
		if why, ok := hostFailures[res.ID]; ok {
			if md, err := os.ReadFile(output); err != nil || !strings.Contains(string(md), why[1]) {
				t.Errorf("SHOULD requirement %s failed, but not with %q, as this host makes it (see %s)", res.ID, why[1], output)
				continue
			}
			t.Logf("%s fails on this host, as expected: %s", res.ID, why[0])
			expectedFailures++
			hostFailedTests = append(hostFailedTests, res.TestName)
			continue
		}
		t.Errorf("SHOULD requirement %s failed on the offline stack (see %s)", res.ID, output)
	}
	if len(unverified) > 0 {
		var ids []string
		for _, u := range unverified {
			ids = append(ids, u.ID)
		}
		t.Logf("MUST requirements not verified: %s", strings.Join(ids, ", "))
		if up.code != 3 {
			t.Errorf("kaic up exit %d, want 3 (checks failed) with %d MUST requirement(s) unverified", up.code, len(unverified))
		}
		// The reason kaic up gives names each of them.
		reason := ""
		for _, l := range strings.Split(up.output(), "\n") {
			if strings.HasPrefix(l, "Error: phase verify failed:") {
				reason = l
			}
		}
		if reason == "" {
			t.Errorf("kaic up output has no 'Error: phase verify failed:' line")
		}
		for _, id := range ids {
			if !strings.Contains(reason, id) {
				t.Errorf("kaic up's reason %q does not name %s", reason, id)
			}
		}
	} else if expectedFailures > 0 && up.code != 3 {
		t.Errorf("kaic up exit %d, want 3 (checks failed) with %d SHOULD requirement(s) failing on this host", up.code, expectedFailures)
	} else if expectedFailures == 0 && up.code != 0 {
		t.Errorf("kaic up exit %d with every MUST requirement verified\n%s", up.code, up.output())
	}

	t.Run("nodes Ready", func(t *testing.T) {
		client := clientFor(t, rec["kubeconfig"])
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes.Items) != o.nodes {
			t.Errorf("%d nodes, want %d", len(nodes.Items), o.nodes)
		}
		for _, n := range nodes.Items {
			if !nodeReady(&n) {
				t.Errorf("node %s is not Ready", n.Name)
			}
			if n.Status.NodeInfo.KubeletVersion != "v1.37.2" {
				t.Errorf("node %s runs kubelet %s, want v1.37.2", n.Name, n.Status.NodeInfo.KubeletVersion)
			}
		}
	})

	t.Run("probe pod from the loaded image", func(t *testing.T) {
		client := clientFor(t, rec["kubeconfig"])
		ns := "kaic-e2e-probe"
		if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// One pod holds two simulated devices; one holds none.
		with := probePod(ns, "with-devices", probeRef, map[string]string{"GPU_DEVICE_0": "sim-0", "GPU_DEVICE_1": "sim-1"})
		without := probePod(ns, "without-devices", probeRef, nil)
		for _, p := range []*corev1.Pod{with, without} {
			if _, err := client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		cases := []struct {
			pod  string
			want map[string]string
		}{
			{"with-devices", map[string]string{"ACCELERATOR_COUNT": "2", "DEVICES": "sim-0,sim-1", "ACCELERATOR_FOUND": ""}},
			{"without-devices", map[string]string{"ACCELERATOR_COUNT": "0", "ACCELERATOR_MISSING": ""}},
		}
		for _, c := range cases {
			log := podLog(t, ctx, client, ns, c.pod)
			t.Logf("%s log:\n%s", c.pod, log)
			got := probe.ParseResults(log)
			for k, v := range c.want {
				if gv, ok := got[k]; !ok || gv != v {
					t.Errorf("%s: RESULT %s = %q (present %t), want %q", c.pod, k, gv, ok, v)
				}
			}
		}
	})

	t.Run("pods on different nodes reach each other", func(t *testing.T) {
		if o.nodes < 2 {
			t.Skip("the overlay has one node")
		}
		client := clientFor(t, rec["kubeconfig"])
		ns := "kaic-e2e-net"
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil || len(nodes.Items) < 2 {
			t.Fatalf("want two nodes: %v", err)
		}
		serverNode, clientNode := nodes.Items[0].Name, nodes.Items[1].Name
		if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		server := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "server", Namespace: ns, Labels: map[string]string{"app": "e2e-server"}},
			Spec: corev1.PodSpec{
				NodeName:    serverNode,
				Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				Containers: []corev1.Container{{
					Name:            "serve",
					Image:           probeRef,
					ImagePullPolicy: corev1.PullNever,
					Args:            []string{"serve", "--addr", ":8080", "--backend", "e2e-server"},
					Env: []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{
						FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"},
					}}},
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				}},
			},
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e-server", Namespace: ns},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "e2e-server"},
				Ports:    []corev1.ServicePort{{Port: 8080}},
			},
		}
		// curl from the Debian image the node image preloads (it runs the
		// node image's pod network daemon): by service name, so cluster DNS,
		// the service and the route between the nodes all take part.
		url := "http://e2e-server." + ns + ".svc.cluster.local:8080/"
		curl := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: ns},
			Spec: corev1.PodSpec{
				NodeName:      clientNode,
				Tolerations:   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name:            "curl",
					Image:           "kaic.local/debian:bookworm",
					ImagePullPolicy: corev1.PullNever,
					Command:         []string{"curl", "-sS", "-m", "5", "--retry", "30", "--retry-all-errors", "--retry-delay", "2", url},
				}},
			},
		}
		if _, err := client.CoreV1().Pods(ns).Create(ctx, server, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.CoreV1().Pods(ns).Create(ctx, curl, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		log := podLog(t, ctx, client, ns, "client")
		t.Logf("client on %s got from %s:\n%s", clientNode, url, log)
		// curl's retries (the server may still be starting) go to the same
		// log; the answer is the last line.
		lines := strings.Split(strings.TrimSpace(log), "\n")
		var id struct{ Backend, Node string }
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &id); err != nil {
			t.Fatalf("the client got no identity from the server: %v", err)
		}
		if id.Backend != "e2e-server" || id.Node != serverNode {
			t.Errorf("answered by backend %q on node %q, want e2e-server on %s", id.Backend, id.Node, serverNode)
		}
	})

	t.Run("evidence", func(t *testing.T) {
		ev := verifyOut["evidence"]
		if ev != filepath.Join(dir, "v1.37", "kaic-kind-dra-offline") {
			t.Fatalf("evidence directory %q, want <out>/v1.37/kaic-kind-dra-offline", ev)
		}
		files := []string{"PRODUCT.yaml", "junit.xml", "results.json", "e2e.log", "report.html"}
		for _, res := range results {
			if res.Status != "N/A" {
				files = append(files, filepath.Join("tests", res.TestName, "output.md"))
			}
		}
		for _, f := range files {
			st, err := os.Stat(filepath.Join(ev, f))
			if err != nil {
				t.Errorf("evidence: %v", err)
			} else if st.Size() == 0 {
				t.Errorf("evidence: %s is empty", f)
			}
		}
	})

	t.Run("validate names every unverified MUST requirement", func(t *testing.T) {
		v := run(t, ctx, o.root, o.kaic, "validate", "--allow-simulated", dir)
		t.Logf("kaic validate:\n%s", v.output())
		var errs []string
		for _, l := range strings.Split(v.output(), "\n") {
			if rest, ok := strings.CutPrefix(l, "ERROR"); ok {
				errs = append(errs, strings.TrimSpace(rest))
			}
		}
		if len(unverified) == 0 && len(hostFailedTests) == 0 {
			if v.code != 0 || len(errs) > 0 {
				t.Fatalf("kaic validate: exit %d, errors %q; every MUST requirement passed", v.code, errs)
			}
			return
		}
		if len(unverified) == 0 {
			// Every MUST passed; the only errors are the failing tests of
			// the SHOULD requirements this host keeps from passing, and
			// each of those tests is named.
			if v.code != 1 {
				t.Errorf("kaic validate exit %d, want 1: the evidence holds the failing test(s) %s", v.code, strings.Join(hostFailedTests, ", "))
			}
			named := map[string]bool{}
			for _, e := range errs {
				ok := false
				for _, name := range hostFailedTests {
					if strings.Contains(e, "test "+name+" ") || strings.Contains(e, "test "+name+"/") {
						ok, named[name] = true, true
					}
				}
				if !ok {
					t.Errorf("kaic validate error %q is not about a test this host makes fail (%s)", e, strings.Join(hostFailedTests, ", "))
				}
			}
			for _, name := range hostFailedTests {
				if !named[name] {
					t.Errorf("kaic validate does not name the failing test %s: %q", name, errs)
				}
			}
			return
		}
		if v.code != 1 {
			t.Errorf("kaic validate exit %d, want 1 (the submission would be rejected)", v.code)
		}
		if want := fmt.Sprintf("the submission would be rejected with %d error(s)", len(errs)); !strings.Contains(v.output(), want) {
			t.Errorf("kaic validate output lacks %q", want)
		}
		// Every error is about an unverified MUST requirement, and each of
		// them is named with the status it must have.
		paths := map[string]bool{}
		for _, u := range unverified {
			path := "spec." + u.Category + "." + u.ID
			paths[path] = true
			// "" for a requirement without a check yet, "Not Implemented"
			// for a failed one.
			found := slices.ContainsFunc(errs, func(e string) bool {
				return strings.HasPrefix(e, path+": MUST requirement has status ") && strings.HasSuffix(e, `; it must be "Implemented"`)
			})
			if !found {
				t.Errorf("kaic validate does not report that %s (%s) must be Implemented", path, u.Status)
			}
		}
		// A failed check's tests are failing tests in junit.xml, which a
		// submission may not hold: errors about those belong to it too, as
		// do those about the SHOULD tests this host makes fail.
		failing := map[string]bool{}
		for _, u := range unverified {
			failing[u.TestName] = true
		}
		for _, name := range hostFailedTests {
			failing[name] = true
		}
		for _, e := range errs {
			path, _, _ := strings.Cut(e, ":")
			if paths[path] {
				continue
			}
			if rest, ok := strings.CutPrefix(e, "junit.xml: test "); ok {
				test, _, _ := strings.Cut(strings.Fields(rest)[0], "/")
				if failing[test] {
					continue
				}
			}
			t.Errorf("kaic validate reports an error not about an unverified MUST requirement: %q", e)
		}
	})

	// Teardown, and what it leaves.
	volumes := clusterVolumes(t, o.cluster)
	if len(volumes) == 0 {
		t.Errorf("the node containers of %s have no volume: expected kind's /var volume", o.cluster)
	}
	if !networkBefore {
		if rec["networkCreated"] != o.network {
			t.Errorf("network %s did not exist before kaic up, but the record says networkCreated=%q", o.network, rec["networkCreated"])
		}
	}
	o.downLeavesNothing(t, ctx, dir, volumes, networkBefore)
}

// downLeavesNothing runs kaic down on dir and requires that it removed the
// cluster's containers and volumes, and the kind network unless that
// existed before the run, which it must leave in place.
func (o *offline) downLeavesNothing(t *testing.T, ctx context.Context, dir string, volumes []string, networkBefore bool) {
	t.Helper()
	var networks []string
	if !networkBefore {
		networks = []string{o.network}
	}
	down := run(t, ctx, o.root, o.kaic, "down", dir)
	if down.code != 0 {
		t.Fatalf("kaic down: exit %d\n%s", down.code, down.output())
	}
	if l := remaining(t, o.cluster, volumes, networks); !l.empty() {
		t.Errorf("kaic down left %s", l)
	}
	if networkBefore && !networkExists(t, o.network) {
		t.Errorf("kaic down removed network %s, which existed before the run", o.network)
	}
}

// TestOfflineProvisionInterrupted interrupts kaic provision while kind is
// creating the cluster; kaic down then removes what was created.
func TestOfflineProvisionInterrupted(t *testing.T) {
	o := setupOffline(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	networkBefore := networkExists(t, o.network)
	dir := o.runDir(t, "interrupted")
	o.downOnFailure(t, dir)

	var log safeBuffer
	cmd := exec.CommandContext(ctx, o.kaic, "provision", "-p", offlineProfile, "--out", dir)
	cmd.Dir = o.root
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt once the node container runs and kubeadm is at work.
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
		return strings.Contains(log.String(), "Starting control-plane") && len(clusterContainers(t, o.cluster)) > 0, nil
	})
	if err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("kind never reached 'Starting control-plane': %v\n%s", err, log.String())
	}
	volumes := clusterVolumes(t, o.cluster)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = cmd.Wait()
	t.Logf("kaic provision ended %s after SIGINT: %v\n%s", time.Since(start).Round(100*time.Millisecond), err, log.String())
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("kaic provision exit %d after SIGINT, want 130", code)
	}
	status, rec := readState(t, dir).phase(t, "provision")
	if status != "interrupted" {
		t.Errorf("provision phase %s, want interrupted", status)
	}
	if rec["clusterName"] != o.cluster || rec["created"] != "true" {
		t.Errorf("provision record = %v, want cluster %s created by kaic", rec, o.cluster)
	}
	if len(clusterContainers(t, o.cluster)) == 0 {
		t.Fatalf("the half-created cluster is already gone: nothing for kaic down to do (interrupted too late or too early)")
	}

	o.downLeavesNothing(t, ctx, dir, volumes, networkBefore)
}

func clientFor(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// probePod runs `kaic probe devices` from the probe image, which the node
// must already hold (it is never pulled).
func probePod(ns, name, image string, env map[string]string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name:            "probe",
				Image:           image,
				ImagePullPolicy: corev1.PullNever,
				Args:            []string{"devices", "--env-prefix", "GPU_DEVICE_"},
			}},
		},
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: k, Value: env[k]})
	}
	return p
}

// podLog waits for the pod to finish and returns its log.
func podLog(t *testing.T, ctx context.Context, client kubernetes.Interface, ns, name string) string {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		pod, err = client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed, nil
	})
	if err != nil {
		status, _ := json.MarshalIndent(pod.Status, "", "  ")
		t.Fatalf("pod %s did not finish: %v\n%s", name, err, status)
	}
	if pod.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod %s %s", name, pod.Status.Phase)
	}
	data, err := client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs of %s: %v", name, err)
	}
	return string(data)
}
