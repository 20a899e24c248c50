package devicepod

import (
	"context"
	"fmt"

	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/dynamic-resource-allocation/cel"

	"github.com/kaic-dev/kaic/pkg/conformance"
)

// Selectors compiles the CEL selectors of class as the scheduler does.
func Selectors(class *resourcev1.DeviceClass) ([]cel.CompilationResult, error) {
	compiler := cel.GetCompiler(cel.Features{EnableConsumableCapacity: true})
	var out []cel.CompilationResult
	for i, s := range class.Spec.Selectors {
		if s.CEL == nil {
			continue
		}
		expr := compiler.CompileCELExpression(s.CEL.Expression, cel.Options{})
		if expr.Error != nil {
			return nil, fmt.Errorf("selector %d: %v", i, expr.Error)
		}
		out = append(out, expr)
	}
	return out, nil
}

// Admits evaluates compiled selectors against device d of driver; a
// selector that fails to evaluate admits nothing.
func Admits(ctx context.Context, exprs []cel.CompilationResult, driver string, d resourcev1.Device) (bool, error) {
	for i, expr := range exprs {
		ok, _, err := expr.DeviceMatches(ctx, cel.Device{Driver: driver, AllowMultipleAllocations: d.AllowMultipleAllocations, Attributes: d.Attributes, Capacity: d.Capacity})
		if err != nil {
			return false, fmt.Errorf("selector %d on device %s: %v", i, d.Name, err)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// FreeForPods counts what pods of the model can get now: the devices of
// the driver on Ready nodes that the model's DeviceClass admits (its
// selectors evaluated as the scheduler does) and no ResourceClaim holds;
// in device-plugin mode the free units of the extended resource. A check
// uses it to decide whether its tests' pods can all hold devices at
// once. When the class cannot be read or evaluated it counts none, and
// says why, so that the caller takes the way that needs the fewest.
func FreeForPods(t *conformance.T, env *conformance.Env) (int, string) {
	if DevicePlugin(env) {
		n := 0
		for _, units := range freeDevicePlugin(t, env) {
			n += len(units)
		}
		return n, ""
	}
	free, _, why := classFree(t, env)
	return countAll(free), why
}

// classFree lists, per Ready node, the devices of the driver that the
// model's DeviceClass admits (its selectors evaluated as the scheduler
// does) and no ResourceClaim holds, and all those it admits, held or not.
// When the class cannot be read or evaluated it lists none and says why.
func classFree(t *conformance.T, env *conformance.Env) (free, admitted map[string][]Device, why string) {
	admitted, why = classAdmitted(t, env)
	if why != "" {
		return nil, nil, why
	}
	held := heldDevices(t, env)
	free = map[string][]Device{}
	for node, devs := range admitted {
		for _, d := range devs {
			if !held[d] {
				free[node] = append(free[node], d)
			}
		}
	}
	return free, admitted, ""
}

// classAdmitted lists, per Ready node, the devices of the driver that the
// model's DeviceClass admits, held or not. When the class cannot be read
// or evaluated it lists none and says why.
func classAdmitted(t *conformance.T, env *conformance.Env) (map[string][]Device, string) {
	acc := env.Accelerator
	class, err := env.DRA().DeviceClasses().Get(t.Context(), acc.DeviceClass, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Sprintf("reading DeviceClass %s: %v", acc.DeviceClass, err)
	}
	exprs, err := Selectors(class)
	if err != nil {
		return nil, fmt.Sprintf("DeviceClass %s: %v", acc.DeviceClass, err)
	}
	list, err := env.DRA().ResourceSlices().List(t.Context(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorDriver, acc.DRADriver).String(),
	})
	if err != nil {
		t.Fatalf("listing ResourceSlices: %v", err)
	}
	ready := ReadyNodes(t, env)
	admitted := map[string][]Device{}
	for _, s := range list.Items {
		if s.Spec.NodeName == nil || !ready[*s.Spec.NodeName] {
			continue
		}
		for _, d := range s.Spec.Devices {
			ok, err := Admits(t.Context(), exprs, acc.DRADriver, d)
			if err != nil {
				return nil, fmt.Sprintf("DeviceClass %s: %v", acc.DeviceClass, err)
			}
			if ok {
				admitted[*s.Spec.NodeName] = append(admitted[*s.Spec.NodeName], Device{Driver: acc.DRADriver, Pool: s.Spec.Pool.Name, Name: d.Name})
			}
		}
	}
	return admitted, ""
}

// StartTogether decides whether the pods of tests that hold need devices
// between them start at once: when FreeForPods counts at least need, it
// says so as a step and reports true, and the caller starts them all;
// otherwise it says why not and reports false, and each test starts its
// pods in its turn. tests names them ("the claim-sharing tests").
func StartTogether(t *conformance.T, env *conformance.Env, need int, tests string) bool {
	count, why := FreeForPods(t, env)
	what := freeUnits(env, count)
	if count < need {
		if why != "" {
			why = " (" + why + ")"
		}
		t.Logf("%d %s free%s, fewer than the %d held at once by %s: each test starts its pods in its turn", count, what, why, need, tests)
		return false
	}
	t.Step("Start the pods of %s at once: %d %s are free, enough for the %d they hold together", tests, count, what, need)
	return true
}

// freeUnits names count of what FreeForPods counts: devices of the
// model's DeviceClass, or units of its extended resource.
func freeUnits(env *conformance.Env, count int) string {
	unit := "device"
	if DevicePlugin(env) {
		unit = "unit"
	}
	if count != 1 {
		unit += "s"
	}
	if DevicePlugin(env) {
		return unit + " of " + Source(env)
	}
	return unit + " of DeviceClass " + env.Accelerator.DeviceClass
}
