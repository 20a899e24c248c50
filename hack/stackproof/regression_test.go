package main

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
)

func TestMain(m *testing.M) {
	logrus.SetOutput(io.Discard)
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithNodes(testenv.Node{Name: "kwok-stackproof-0"}))
}

// The Envoy Gateway pin kaic had before v1.9.1 cannot install beside the
// gateway-api component: v1.7.0's gateway-helm chart carries Gateway API
// v1.4.1's experimental CRDs in crds/, which Helm applies over the
// standard v1.7.0 CRDs; the API server refuses to drop a stored version
// and Gateway API's safe-upgrades policy refuses experimental CRDs over
// standard ones. The failure kaic reports must name the CRD in conflict,
// and the release must not be left behind.
func TestEnvoyGatewayV170PinConflictsWithGatewayAPI(t *testing.T) {
	env := testenv.Shared(t)
	cat, err := profile.LoadComponentCatalog(nil)
	if err != nil {
		t.Fatal(err)
	}
	gatewayAPI, ok := cat.Get("gateway-api")
	if !ok {
		t.Fatal("no built-in gateway-api component")
	}
	old := profile.Component{
		Name:      "envoy-gateway",
		Helm:      &profile.HelmChart{Chart: "oci://docker.io/envoyproxy/gateway-helm", Version: "v1.7.0", ReleaseName: "eg"},
		Namespace: "envoy-gateway-system",
		DependsOn: []string{"gateway-api"},
		Readiness: &profile.Readiness{Timeout: profile.Duration{Duration: time.Minute}, Deployments: []string{"envoy-gateway"}},
	}
	s, err := source(t.Context(), old, t.TempDir())
	var np *notProvableError
	if errors.As(err, &np) {
		t.Skipf("Envoy Gateway v1.7.0's chart cannot be had here: %s", np.reason)
	}
	if err != nil {
		t.Fatal(err)
	}

	in, err := stack.New(stack.WithKubeconfig(env.Kubeconfig, ""), stack.WithCache(nil))
	if err != nil {
		t.Fatal(err)
	}
	records, err := in.Install(t.Context(), []profile.Component{gatewayAPI, s.component})
	if err == nil {
		t.Fatal("Envoy Gateway v1.7.0 installed over the gateway-api component's CRDs, want a conflict")
	}
	t.Logf("kaic reports: %v", err)
	var ce *stack.ComponentError
	if !errors.As(err, &ce) || ce.Component != "envoy-gateway" {
		t.Fatalf("error %v, want envoy-gateway's", err)
	}
	for _, r := range records {
		if r.Component == "gateway-api" && r.Action == stack.ActionFailed {
			t.Fatalf("gateway-api failed: %s", r.Error)
		}
	}
	for _, want := range []string{
		"tcproutes.gateway.networking.k8s.io",                                             // its stored v1 would be dropped
		"httproutes.gateway.networking.k8s.io", "safe-upgrades.gateway.networking.k8s.io", // experimental over standard
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %s", want)
		}
	}
	if !strings.Contains(err.Error(), "rolled back") {
		t.Errorf("the error does not say the release was rolled back")
	}
}

// The charts stack-proof packages from Go modules carry the pinned version
// and a values.yaml filled as upstream's release fills it; a template
// variable it does not know stops it.
func TestPackageChart(t *testing.T) {
	src := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(src+"/"+name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Chart.yaml", "apiVersion: v2\nname: demo\nversion: v0.0.0-latest\nappVersion: latest\n")
	write("values.tmpl.yaml", "image: ${GatewayImage}\npullPolicy: ${GatewayImagePullPolicy}\nliteral: $HOME\n")
	dst := t.TempDir() + "/demo"
	if err := packageChart(src, dst, "v1.2.3", envoyGatewayVars); err != nil {
		t.Fatal(err)
	}
	chart, _ := os.ReadFile(dst + "/Chart.yaml")
	if !strings.Contains(string(chart), "version: v1.2.3") || !strings.Contains(string(chart), "appVersion: v1.2.3") {
		t.Errorf("Chart.yaml:\n%s\nwant version and appVersion v1.2.3", chart)
	}
	values, _ := os.ReadFile(dst + "/values.yaml")
	if want := "image: docker.io/envoyproxy/gateway:v1.2.3\npullPolicy: IfNotPresent\nliteral: $HOME\n"; string(values) != want {
		t.Errorf("values.yaml:\n%s\nwant:\n%s", values, want)
	}

	write("values.tmpl.yaml", "image: ${OtherImage}\n")
	err := packageChart(src, t.TempDir()+"/demo", "v1.2.3", envoyGatewayVars)
	if err == nil || !strings.Contains(err.Error(), "OtherImage") {
		t.Errorf("unknown template variable: %v, want an error naming it", err)
	}
}
