package testenv

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/kaic-dev/kaic/pkg/draapi"
)

// Attributes and capacity of every fake accelerator device.
const (
	FakeGPUModel         = "kaic-fake-gpu"
	FakeGPUDriverVersion = "1.0.0"
	FakeGPUMemory        = "80Gi"
)

// kwokNodeAnnotation marks the nodes kwok manages.
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// FakeGPUSlice returns the ResourceSlice that describes count fake devices
// of driver on node: one pool named after the node, devices gpu-0 …
// gpu-<count-1>, each with attributes index (int), uuid (string), model
// (string) and driverVersion (version), and 80Gi of memory capacity.
func FakeGPUSlice(node, driver string, count int) *resourcev1.ResourceSlice {
	devices := make([]resourcev1.Device, count)
	for i := range devices {
		devices[i] = resourcev1.Device{
			Name: fmt.Sprintf("gpu-%d", i),
			Attributes: map[resourcev1.QualifiedName]resourcev1.DeviceAttribute{
				"index":         {IntValue: ptr.To(int64(i))},
				"uuid":          {StringValue: ptr.To(fakeGPUUUID(node, i))},
				"model":         {StringValue: ptr.To(FakeGPUModel)},
				"driverVersion": {VersionValue: ptr.To(FakeGPUDriverVersion)},
			},
			Capacity: map[resourcev1.QualifiedName]resourcev1.DeviceCapacity{
				"memory": {Value: resource.MustParse(FakeGPUMemory)},
			},
		}
	}
	return &resourcev1.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: node + "-" + driver},
		Spec: resourcev1.ResourceSliceSpec{
			Driver:   driver,
			NodeName: ptr.To(node),
			Pool:     resourcev1.ResourcePool{Name: node, Generation: 1, ResourceSliceCount: 1},
			Devices:  devices,
		},
	}
}

// fakeGPUUUID derives a stable, UUID-shaped identifier from node and index
// so that reruns publish identical slices.
func fakeGPUUUID(node string, index int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d", node, index))
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
}

// DeviceClassFor returns a DeviceClass called name that selects every
// device of driver.
func DeviceClassFor(name, driver string) *resourcev1.DeviceClass {
	return &resourcev1.DeviceClass{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: resourcev1.DeviceClassSpec{
			Selectors: []resourcev1.DeviceSelector{{
				CEL: &resourcev1.CELDeviceSelector{Expression: fmt.Sprintf("device.driver == %q", driver)},
			}},
		},
	}
}

// CreateDeviceClass creates a DeviceClass called name that selects the
// environment's fake accelerators, at the newest version of
// resource.k8s.io the API server serves.
func (e *Env) CreateDeviceClass(ctx context.Context, name string) (*resourcev1.DeviceClass, error) {
	class, err := e.DRA().DeviceClasses().Create(ctx, DeviceClassFor(name, e.DRADriver), metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create DeviceClass %s: %w", name, err)
	}
	return class, nil
}

// registerNodes creates the simulated nodes with their status (the API
// server keeps status on node creation), waits until they are Ready and
// schedulable and publishes their ResourceSlices through dra.
func registerNodes(ctx context.Context, client kubernetes.Interface, dra *draapi.Client, nodes []Node, driver string) error {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
		if _, err := client.CoreV1().Nodes().Create(ctx, kwokNode(n), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create node %s: %w", n.Name, err)
		}
	}
	if err := waitForNodesSchedulable(ctx, client, names); err != nil {
		return err
	}
	for _, n := range nodes {
		if n.GPUs == 0 {
			continue
		}
		if _, err := dra.ResourceSlices().Create(ctx, FakeGPUSlice(n.Name, driver, n.GPUs), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("publish ResourceSlice for node %s: %w", n.Name, err)
		}
	}
	return nil
}

func kwokNode(n Node) *corev1.Node {
	labels := map[string]string{
		corev1.LabelHostname:   n.Name,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: runtime.GOARCH,
		"type":                 "kwok",
	}
	for k, v := range n.Labels {
		labels[k] = v
	}
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	for k, v := range n.Allocatable {
		resources[k] = v
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        n.Name,
			Labels:      labels,
			Annotations: map[string]string{kwokNodeAnnotation: "fake"},
		},
		Status: corev1.NodeStatus{
			Allocatable: resources,
			Capacity:    resources.DeepCopy(),
		},
	}
}

// AddNodes registers more simulated nodes, as [WithNodes] does at start
// (kwok must run), and returns once they are Ready and schedulable and
// their ResourceSlices are published. They are not added to e.Nodes;
// remove them with [Env.RemoveNodes].
func (e *Env) AddNodes(ctx context.Context, nodes ...Node) error {
	if len(e.cfg.nodes) == 0 {
		return fmt.Errorf("no kwok runs in this environment to keep nodes Ready (start it with WithNodes)")
	}
	return registerNodes(ctx, e.clientset, e.DRA(), nodes, e.DRADriver)
}

// RemoveNodes deletes simulated nodes added with [Env.AddNodes] and their
// ResourceSlices; nodes already gone are no error.
func (e *Env) RemoveNodes(ctx context.Context, nodes ...Node) error {
	var errs []error
	for _, n := range nodes {
		if n.GPUs > 0 {
			slice := FakeGPUSlice(n.Name, e.DRADriver, n.GPUs).Name
			if err := e.clientset.ResourceV1().ResourceSlices().Delete(ctx, slice, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete ResourceSlice %s: %w", slice, err))
			}
		}
		if err := e.clientset.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete node %s: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}
