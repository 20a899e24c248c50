package fakegpu_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kaic-dev/kaic/internal/charttest"
	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/fetch"
	"github.com/kaic-dev/kaic/pkg/probe/fakegpu"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
)

const testImage = "kaic.dev/probe:0123456789abcdef"

// component is the built-in kaic-fake-gpu component with the given values.
func component(values map[string]any) profile.Component {
	return profile.Component{
		Name: "kaic-fake-gpu", Namespace: "kaic-fake-gpu",
		Helm:      &profile.HelmChart{Chart: "kaic://kaic-fake-gpu"},
		Values:    values,
		Readiness: &profile.Readiness{Timeout: profile.Duration{Duration: 2 * time.Minute}},
	}
}

func installer(t *testing.T, opts ...stack.Option) *stack.Installer {
	t.Helper()
	opts = append([]stack.Option{stack.WithCache(&fetch.Cache{Dir: t.TempDir()})}, opts...)
	in, err := stack.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestChartRendersOffline renders the embedded chart as kaic does without
// a cluster: the probe image kaic passes is what the DaemonSet runs, a
// missing image and a ServiceMonitor without its CRD fail clearly.
func TestChartRendersOffline(t *testing.T) {
	in := installer(t, stack.WithEmbeddedChartValues(map[string]any{"image": testImage}))
	imgs, err := in.Images(t.Context(), []profile.Component{component(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Image != testImage {
		t.Errorf("images %+v, want only %s", imgs, testImage)
	}
	// The component's own value wins over kaic's default.
	imgs, err = in.Images(t.Context(), []profile.Component{component(map[string]any{"image": "registry.example/probe:1"})})
	if err != nil || len(imgs) != 1 || imgs[0].Image != "registry.example/probe:1" {
		t.Errorf("images %+v %v, want the component's image", imgs, err)
	}

	_, err = installer(t).Images(t.Context(), []profile.Component{component(nil)})
	if err == nil || !strings.Contains(err.Error(), "image is required") {
		t.Errorf("without an image: %v", err)
	}
	_, err = in.Images(t.Context(), []profile.Component{component(map[string]any{"metrics": map[string]any{"serviceMonitor": true}})})
	if err == nil || !strings.Contains(err.Error(), "serves no monitoring.coreos.com/v1 ServiceMonitor") {
		t.Errorf("serviceMonitor true without the CRD: %v", err)
	}
}

// TestChartInstalls installs the embedded chart into the test control plane
// the way the install phase does and checks what the API server accepted.
func TestChartInstalls(t *testing.T) {
	env := testenv.Shared(t)
	cs := env.Clientset()
	ctx := t.Context()
	// Another test of this package may have created the DeviceClass.
	if err := cs.ResourceV1().DeviceClasses().Delete(ctx, fakegpu.DriverName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	in := installer(t, stack.WithKubeconfig(env.Kubeconfig, ""), stack.WithEmbeddedChartValues(map[string]any{"image": testImage}))
	comp := component(map[string]any{"devicesPerNode": 3})
	records, err := in.Install(ctx, []profile.Component{comp})
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	t.Cleanup(func() {
		if err := in.Uninstall(context.Background(), records); err != nil {
			t.Logf("uninstall: %v", err)
		}
	})

	class, err := cs.ResourceV1().DeviceClasses().Get(ctx, fakegpu.DriverName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := class.Spec.Selectors; len(s) != 1 || s[0].CEL == nil || s[0].CEL.Expression != `device.driver == "gpu.example.com"` {
		t.Errorf("DeviceClass selectors %+v", s)
	}
	ds, err := cs.AppsV1().DaemonSets("kaic-fake-gpu").Get(ctx, "kaic-fake-gpu", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctr := ds.Spec.Template.Spec.Containers[0]
	if ctr.Image != testImage || ctr.Args[0] != "dra-driver" || !slices.Contains(ctr.Args, "--devices=3") {
		t.Errorf("driver container %s %v", ctr.Image, ctr.Args)
	}
	if sc := ctr.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Errorf("driver does not run as root: %+v", sc)
	}
	var hostPaths []string
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil {
			hostPaths = append(hostPaths, v.HostPath.Path)
		}
	}
	for _, want := range []string{"/var/lib/kubelet/plugins", "/var/lib/kubelet/plugins_registry", "/var/run/cdi", fakegpu.DefaultStateDir} {
		if !slices.Contains(hostPaths, want) {
			t.Errorf("no hostPath %s in %v", want, hostPaths)
		}
	}
	env0 := map[string]string{}
	for _, e := range ctr.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env0[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env0["NODE_NAME"] != "spec.nodeName" || env0["POD_UID"] != "metadata.uid" {
		t.Errorf("downward API env %v", env0)
	}
	svc, err := cs.CoreV1().Services("kaic-fake-gpu").Get(ctx, "kaic-fake-gpu-metrics", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the example model's metrics endpoint kaic-fake-gpu/kaic-fake-gpu-metrics:9400: %v", err)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 9400 {
		t.Errorf("metrics service ports %+v", svc.Spec.Ports)
	}
	// The service account may publish slices and read claims.
	role, err := cs.RbacV1().ClusterRoles().Get(ctx, "kaic-fake-gpu", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var resources []string
	for _, r := range role.Rules {
		resources = append(resources, r.Resources...)
	}
	for _, want := range []string{"resourceslices", "resourceclaims", "nodes"} {
		if !slices.Contains(resources, want) {
			t.Errorf("ClusterRole lacks %s: %+v", want, role.Rules)
		}
	}
	// The control plane serves no ServiceMonitor CRD: that the install
	// succeeded shows serviceMonitor: auto left it out (the API server
	// would have refused the unknown kind).
}

// TestChartRendersDevicePluginMode: mode device-plugin runs the driver as
// a device plugin with the kubelet's device plugin and pod resources
// directories, and renders neither the DeviceClass nor the API access the
// DRA driver needs; an unknown mode fails the render.
func TestChartRendersDevicePluginMode(t *testing.T) {
	objs, err := charttest.RenderEmbedded(t, "kaic-fake-gpu", "kaic-fake-gpu", map[string]any{"image": testImage, "mode": "device-plugin"})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	var ds appsv1.DaemonSet
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
		if o.GetKind() == "DaemonSet" {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &ds); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, unwanted := range []string{"DeviceClass", "ClusterRole", "ClusterRoleBinding"} {
		if slices.Contains(kinds, unwanted) {
			t.Errorf("device-plugin mode renders a %s: %v", unwanted, kinds)
		}
	}
	ctr := ds.Spec.Template.Spec.Containers[0]
	for _, want := range []string{"--mode=device-plugin", "--resource-name=" + fakegpu.ResourceName} {
		if !slices.Contains(ctr.Args, want) {
			t.Errorf("driver args %v lack %s", ctr.Args, want)
		}
	}
	var hostPaths []string
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil {
			hostPaths = append(hostPaths, v.HostPath.Path)
		}
	}
	if want := []string{"/var/lib/kubelet/device-plugins", "/var/lib/kubelet/pod-resources", fakegpu.DefaultStateDir}; !slices.Equal(hostPaths, want) {
		t.Errorf("hostPaths %v, want %v", hostPaths, want)
	}
	var mounts []string
	for _, m := range ctr.VolumeMounts {
		mounts = append(mounts, m.MountPath)
	}
	if want := []string{"/var/lib/kubelet/device-plugins", "/var/lib/kubelet/pod-resources", fakegpu.DefaultStateDir}; !slices.Equal(mounts, want) {
		t.Errorf("mounts %v, want %v", mounts, want)
	}

	if _, err := charttest.RenderEmbedded(t, "kaic-fake-gpu", "kaic-fake-gpu", map[string]any{"image": testImage, "mode": "mig"}); err == nil || !strings.Contains(err.Error(), `mode must be dra or device-plugin, got "mig"`) {
		t.Errorf("an unknown mode rendered: %v", err)
	}
}

// The example accelerator model requests what the driver advertises in
// device-plugin mode.
func TestExampleModelRequestsTheDevicePluginResource(t *testing.T) {
	r, err := (&profile.Loader{}).LoadBytes("p.yaml", []byte("apiVersion: kaic.dev/v1alpha1\nkind: Profile\nmetadata: {name: p}\nspec:\n  kubernetesVersion: v1.37.0\n  cluster: {backend: existing}\n  accelerator: {model: example, allocation: device-plugin}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Profile.Spec.Accelerator.ResourceName; got != fakegpu.ResourceName {
		t.Errorf("the example model requests %q, kaic-fake-gpu advertises %q", got, fakegpu.ResourceName)
	}
}

// sharingValues turns time-slicing on for two of the eight devices.
func sharingValues(mode string) map[string]any {
	return map[string]any{"image": testImage, "mode": mode, "sharing": map[string]any{"strategy": "time-slicing", "replicas": 4, "devices": 2}}
}

// renderKinds renders the chart with values and returns its objects by
// kind and name.
func renderKinds(t *testing.T, values map[string]any) map[string]*unstructured.Unstructured {
	t.Helper()
	objs, err := charttest.RenderEmbedded(t, "kaic-fake-gpu", "kaic-fake-gpu", values)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		out[o.GetKind()+"/"+o.GetName()] = o
	}
	return out
}

func celOf(t *testing.T, o *unstructured.Unstructured) string {
	t.Helper()
	if o == nil {
		t.Fatal("DeviceClass not rendered")
	}
	var class resourceapi.DeviceClass
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &class); err != nil {
		t.Fatal(err)
	}
	if len(class.Spec.Selectors) != 1 || class.Spec.Selectors[0].CEL == nil {
		t.Fatalf("DeviceClass %s selectors %+v", class.Name, class.Spec.Selectors)
	}
	return class.Spec.Selectors[0].CEL.Expression
}

func driverArgs(t *testing.T, objs map[string]*unstructured.Unstructured) []string {
	t.Helper()
	var ds appsv1.DaemonSet
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs["DaemonSet/kaic-fake-gpu"].Object, &ds); err != nil {
		t.Fatal(err)
	}
	return ds.Spec.Template.Spec.Containers[0].Args
}

// With a sharing strategy in DRA mode the chart passes it to the driver,
// narrows the driver's DeviceClass to the exclusive devices and adds the
// shared devices' class, with the selectors the driver's own code states.
func TestChartRendersSharingInDRAMode(t *testing.T) {
	objs := renderKinds(t, sharingValues("dra"))
	if got, want := celOf(t, objs["DeviceClass/"+fakegpu.DriverName]), fakegpu.ExclusiveSelector(fakegpu.DriverName); got != want {
		t.Errorf("DeviceClass %s selects %q, want %q", fakegpu.DriverName, got, want)
	}
	if got, want := celOf(t, objs["DeviceClass/"+fakegpu.SharedDeviceClass]), fakegpu.SharedSelector(fakegpu.DriverName); got != want {
		t.Errorf("DeviceClass %s selects %q, want %q", fakegpu.SharedDeviceClass, got, want)
	}
	args := driverArgs(t, objs)
	for _, want := range []string{"--sharing-strategy=time-slicing", "--sharing-replicas=4", "--shared-devices=2"} {
		if !slices.Contains(args, want) {
			t.Errorf("driver args %v lack %s", args, want)
		}
	}

	// Without a strategy: one class of every device, no sharing flags.
	plain := renderKinds(t, map[string]any{"image": testImage})
	if got := celOf(t, plain["DeviceClass/"+fakegpu.DriverName]); got != `device.driver == "gpu.example.com"` {
		t.Errorf("DeviceClass selects %q without a strategy", got)
	}
	if plain["DeviceClass/"+fakegpu.SharedDeviceClass] != nil {
		t.Error("a shared DeviceClass without a strategy")
	}
	if args := driverArgs(t, plain); slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--shar") }) {
		t.Errorf("sharing flags without a strategy: %v", args)
	}

	for _, tc := range []struct {
		sharing map[string]any
		want    string
	}{
		{map[string]any{"strategy": "mps"}, `sharing.strategy must be none or time-slicing, got "mps"`},
		{map[string]any{"strategy": "time-slicing", "replicas": 1, "devices": 1}, "sharing.replicas must be at least 2"},
		{map[string]any{"strategy": "time-slicing", "replicas": 4, "devices": 9}, "sharing.devices must be between 1 and devicesPerNode (8), got 9"},
	} {
		_, err := charttest.RenderEmbedded(t, "kaic-fake-gpu", "kaic-fake-gpu", map[string]any{"image": testImage, "sharing": tc.sharing})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("sharing %v: %v, want %q", tc.sharing, err, tc.want)
		}
	}
}

// In device-plugin mode with a strategy the driver may read and patch
// nodes (its own node's sharing labels), and nothing else.
func TestChartRendersSharingInDevicePluginMode(t *testing.T) {
	objs := renderKinds(t, sharingValues("device-plugin"))
	if !slices.Contains(driverArgs(t, objs), "--sharing-strategy=time-slicing") {
		t.Errorf("driver args %v", driverArgs(t, objs))
	}
	role := objs["ClusterRole/kaic-fake-gpu"]
	if role == nil || objs["ClusterRoleBinding/kaic-fake-gpu"] == nil {
		t.Fatalf("no ClusterRole and binding to label the node: %v", slices.Collect(maps.Keys(objs)))
	}
	var r rbacv1.ClusterRole
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(role.Object, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Rules) != 1 || !slices.Equal(r.Rules[0].Resources, []string{"nodes"}) || !slices.Equal(r.Rules[0].Verbs, []string{"get", "patch"}) {
		t.Errorf("rules %+v, want get and patch of nodes only", r.Rules)
	}
	for k := range objs {
		if strings.HasPrefix(k, "DeviceClass/") {
			t.Errorf("device-plugin mode renders %s", k)
		}
	}
}
