package inference

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conditions"
)

// The test control plane runs no Gateway API implementation, so these
// tests run a stand-in: a loop that writes the statuses a controller
// would (GatewayClass Accepted, Gateway Programmed with a Service labelled
// as Envoy Gateway labels its own, routes Accepted with ResolvedRefs
// computed from whether their backends exist, InferencePools Accepted by
// the Gateways that route to them). It forwards no traffic: the traffic
// tests skip on kwok nodes. Each class below names a controller that
// behaves in one way.
const (
	standInController    = "kaic.dev/stand-in"                  // does all of the above
	neverPrograms        = "kaic.dev/stand-in-never-programs"   // accepts its class, never programs Gateways
	ignoresRoutes        = "kaic.dev/stand-in-ignores-routes"   // programs Gateways, never evaluates routes
	resolvesEverything   = "kaic.dev/stand-in-resolves-blindly" // resolves routes without looking at backends
	standInGatewaysNS    = "stand-in-gateways"
	standInGatewayClass  = "stand-in"
	unprogrammedClass    = "stand-in-unprogrammed"
	routelessClass       = "stand-in-routeless"
	blindClass           = "stand-in-blind"
	unacceptedClass      = "nobody-runs-this"
	unacceptedController = "kaic.dev/nobody"
)

var standInControllers = []string{standInController, neverPrograms, ignoresRoutes, resolvesEverything}

type standIn struct {
	dyn    dynamic.Interface
	client kubernetes.Interface
	// gatewayNS is where the Services of Gateways go.
	gatewayNS string
}

// startStandIn creates the stand-in's GatewayClasses and runs its loop
// until the test binary ends (the shared control plane outlives t).
func startStandIn(t *testing.T, env *testenv.Env) {
	t.Helper()
	s := &standIn{dyn: env.Dynamic(), client: env.Clientset(), gatewayNS: standInGatewaysNS}
	ctx := context.Background()
	if _, err := s.client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.gatewayNS}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for class, controller := range map[string]string{
		standInGatewayClass: standInController,
		unprogrammedClass:   neverPrograms,
		routelessClass:      ignoresRoutes,
		blindClass:          resolvesEverything,
		unacceptedClass:     unacceptedController,
	} {
		createGatewayClass(t, env, class, controller)
	}
	// The classes are Accepted before any test looks at them, as a
	// controller installed before the checks run would have them.
	deadline := time.Now().Add(30 * time.Second)
	for err := s.reconcile(t.Context()); err != nil; err = s.reconcile(t.Context()) {
		if time.Now().After(deadline) {
			t.Fatalf("the stand-in gateway controller's first pass: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	go func() {
		last := ""
		for {
			err := s.reconcile(ctx)
			if err != nil && err.Error() != last {
				fmt.Printf("stand-in gateway controller: %v\n", err)
			}
			last = fmt.Sprint(err)
			time.Sleep(200 * time.Millisecond)
		}
	}()
}

func createGatewayClass(t *testing.T, env *testenv.Env, name, controller string) {
	t.Helper()
	gc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": GatewayGroupVersion, "kind": "GatewayClass",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"controllerName": controller},
	}}
	if _, err := env.Dynamic().Resource(gatewayClassesGVR).Create(t.Context(), gc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func standInCondition(u *unstructured.Unstructured, ct, status, reason string) map[string]any {
	return map[string]any{
		"type": ct, "status": status, "reason": reason, "message": "set by the test's stand-in controller",
		"observedGeneration": u.GetGeneration(), "lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
	}
}

// sameConditions compares conditions by what the checks read.
func sameConditions(a, b []conditions.Condition) bool {
	key := func(cs []conditions.Condition) []string {
		var out []string
		for _, c := range cs {
			out = append(out, fmt.Sprintf("%s/%s/%s/%d", c.Type, c.Status, c.Reason, c.ObservedGeneration))
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

func (s *standIn) reconcile(ctx context.Context) error {
	classes, err := s.dyn.Resource(gatewayClassesGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	controllerOf := map[string]string{}
	for i := range classes.Items {
		gc := &classes.Items[i]
		controller, _, _ := unstructured.NestedString(gc.Object, "spec", "controllerName")
		if !slices.Contains(standInControllers, controller) {
			continue
		}
		controllerOf[gc.GetName()] = controller
		want := []any{standInCondition(gc, "Accepted", "True", "Accepted")}
		if err := s.setStatus(ctx, gatewayClassesGVR, gc, "conditions", want); err != nil {
			return err
		}
	}
	gateways, err := s.dyn.Resource(gatewaysGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	gatewayController := map[string]string{} // namespace/name → controller
	for i := range gateways.Items {
		gw := &gateways.Items[i]
		class, _, _ := unstructured.NestedString(gw.Object, "spec", "gatewayClassName")
		controller, ok := controllerOf[class]
		if !ok || gw.GetDeletionTimestamp() != nil {
			continue
		}
		gatewayController[gw.GetNamespace()+"/"+gw.GetName()] = controller
		if controller == neverPrograms {
			want := []any{standInCondition(gw, "Accepted", "True", "Accepted"), standInCondition(gw, "Programmed", "False", "Pending")}
			if err := s.setStatus(ctx, gatewaysGVR, gw, "conditions", want); err != nil {
				return err
			}
			continue
		}
		if err := s.ensureService(ctx, gw); err != nil {
			return err
		}
		want := []any{standInCondition(gw, "Accepted", "True", "Accepted"), standInCondition(gw, "Programmed", "True", "Programmed")}
		if err := s.setStatus(ctx, gatewaysGVR, gw, "conditions", want); err != nil {
			return err
		}
	}
	routes, err := s.dyn.Resource(httpRoutesGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range routes.Items {
		if err := s.reconcileRoute(ctx, &routes.Items[i], gatewayController); err != nil {
			return err
		}
	}
	return nil
}

// ensureService creates the Service an implementation would put in front
// of gw, labelled the way Envoy Gateway labels its own.
func (s *standIn) ensureService(ctx context.Context, gw *unstructured.Unstructured) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:      "stand-in-" + gw.GetNamespace() + "-" + gw.GetName(),
			Namespace: s.gatewayNS,
			Labels:    map[string]string{envoyOwningGatewayName: gw.GetName(), envoyOwningGatewayNamespace: gw.GetNamespace()},
		},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: listenerPort}}},
	}
	if len(svc.Name) > 63 {
		svc.Name = svc.Name[:63]
	}
	_, err := s.client.CoreV1().Services(s.gatewayNS).Create(ctx, svc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func (s *standIn) reconcileRoute(ctx context.Context, route *unstructured.Unstructured, gatewayController map[string]string) error {
	parents, _, _ := unstructured.NestedSlice(route.Object, "spec", "parentRefs")
	var statuses []any
	var want [][]conditions.Condition
	var pools []string
	for _, p := range parents {
		m, _ := p.(map[string]any)
		gw, _ := m["name"].(string)
		controller, ok := gatewayController[route.GetNamespace()+"/"+gw]
		if !ok || controller == ignoresRoutes {
			continue
		}
		resolved, reason, routePools, err := s.resolve(ctx, route, controller == resolvesEverything)
		if err != nil {
			return err
		}
		status := "False"
		if resolved {
			status = "True"
			pools = append(pools, routePools...)
		}
		conds := []any{standInCondition(route, "Accepted", "True", "Accepted"), standInCondition(route, "ResolvedRefs", status, reason)}
		statuses = append(statuses, map[string]any{
			"parentRef":      map[string]any{"group": GatewayGroup, "kind": "Gateway", "name": gw},
			"controllerName": controller,
			"conditions":     conds,
		})
		want = append(want, conditions.In(map[string]any{"conditions": conds}))
		for _, pool := range pools {
			if err := s.acceptPool(ctx, route.GetNamespace(), pool, gw); err != nil {
				return err
			}
		}
	}
	if len(statuses) == 0 {
		return nil
	}
	if len(want) == 1 && sameConditions(parentStatus(route, parentName(statuses[0])), want[0]) {
		return nil
	}
	if err := unstructured.SetNestedSlice(route.Object, statuses, "status", "parents"); err != nil {
		return err
	}
	_, err := s.dyn.Resource(httpRoutesGVR).Namespace(route.GetNamespace()).UpdateStatus(ctx, route, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func parentName(status any) string {
	name, _, _ := unstructured.NestedString(status.(map[string]any), "parentRef", "name")
	return name
}

// resolve reports whether every backendRef of route exists, the reason of
// ResolvedRefs and the InferencePools it references.
func (s *standIn) resolve(ctx context.Context, route *unstructured.Unstructured, blindly bool) (bool, string, []string, error) {
	rules, _, _ := unstructured.NestedSlice(route.Object, "spec", "rules")
	var pools []string
	for _, r := range rules {
		refs, _, _ := unstructured.NestedSlice(r.(map[string]any), "backendRefs")
		for _, ref := range refs {
			m := ref.(map[string]any)
			name, _ := m["name"].(string)
			kind, _ := m["kind"].(string)
			var err error
			switch kind {
			case "", "Service":
				_, err = s.client.CoreV1().Services(route.GetNamespace()).Get(ctx, name, metav1.GetOptions{})
			case "InferencePool":
				pools = append(pools, name)
				_, err = s.dyn.Resource(inferencePoolsGVR).Namespace(route.GetNamespace()).Get(ctx, name, metav1.GetOptions{})
			default:
				return false, "InvalidKind", nil, nil
			}
			if blindly {
				continue
			}
			if apierrors.IsNotFound(err) {
				return false, "BackendNotFound", nil, nil
			} else if err != nil {
				return false, "", nil, err
			}
		}
	}
	return true, "ResolvedRefs", pools, nil
}

// acceptPool records that Gateway gw accepts the InferencePool.
func (s *standIn) acceptPool(ctx context.Context, ns, name, gw string) error {
	pools := s.dyn.Resource(inferencePoolsGVR).Namespace(ns)
	pool, err := pools.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	conds := []any{standInCondition(pool, "Accepted", "True", "Accepted"), standInCondition(pool, "ResolvedRefs", "True", "ResolvedRefs")}
	if sameConditions(parentStatus(pool, gw), conditions.In(map[string]any{"conditions": conds})) {
		return nil
	}
	parents := []any{map[string]any{
		"parentRef":  map[string]any{"group": GatewayGroup, "kind": "Gateway", "name": gw, "namespace": ns},
		"conditions": conds,
	}}
	if err := unstructured.SetNestedSlice(pool.Object, parents, "status", "parents"); err != nil {
		return err
	}
	_, err = pools.UpdateStatus(ctx, pool, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// setStatus sets status.<field> of u unless its conditions already say
// the same.
func (s *standIn) setStatus(ctx context.Context, gvr schema.GroupVersionResource, u *unstructured.Unstructured, field string, conds []any) error {
	if sameConditions(conditions.Of(u), conditions.In(map[string]any{"conditions": conds})) {
		return nil
	}
	if err := unstructured.SetNestedSlice(u.Object, conds, "status", field); err != nil {
		return err
	}
	var err error
	if u.GetNamespace() == "" {
		_, err = s.dyn.Resource(gvr).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	} else {
		_, err = s.dyn.Resource(gvr).Namespace(u.GetNamespace()).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	}
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
