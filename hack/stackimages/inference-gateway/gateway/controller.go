package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"sort"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

var (
	gatewayClassesGVR = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"}
	gatewaysGVR       = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}
	httpRoutesGVR     = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}
	inferencePoolsGVR = schema.GroupVersionResource{Group: "inference.networking.k8s.io", Version: "v1", Resource: "inferencepools"}
	servicesGVR       = schema.GroupVersionResource{Version: "v1", Resource: "services"}
)

const (
	gatewayGroup   = "gateway.networking.k8s.io"
	inferenceGroup = "inference.networking.k8s.io"
)

// controller writes the status of the Gateway API objects of its class and
// gives the proxy its routing table.
type controller struct {
	dyn        dynamic.Interface
	name       string // controllerName of the GatewayClasses it owns
	listenPort int    // the one HTTP listener port Gateways may ask for
	// service is the proxy's own Service (namespace/name): its cluster IP
	// is every Gateway's address.
	serviceNS, serviceName string
	clusterDomain          string
	proxy                  *proxy
	log                    *slog.Logger

	listers map[schema.GroupVersionResource]cache.GenericLister
	now     func() time.Time
}

// run watches the resources and reconciles after every change until ctx
// ends.
func (c *controller) run(ctx context.Context) error {
	factory := dynamicinformer.NewDynamicSharedInformerFactory(c.dyn, 10*time.Minute)
	trigger := make(chan struct{}, 1)
	notify := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}
	c.listers = map[schema.GroupVersionResource]cache.GenericLister{}
	for _, gvr := range []schema.GroupVersionResource{gatewayClassesGVR, gatewaysGVR, httpRoutesGVR, inferencePoolsGVR, servicesGVR} {
		inf := factory.ForResource(gvr)
		if _, err := inf.Informer().AddEventHandler(handler); err != nil {
			return err
		}
		c.listers[gvr] = inf.Lister()
	}
	factory.Start(ctx.Done())
	for gvr, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("the cache of %s did not sync", gvr.Resource)
		}
	}
	c.log.Info("watching", "controllerName", c.name)
	notify()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-trigger:
		case <-time.After(30 * time.Second):
		}
		if err := c.reconcile(ctx); err != nil {
			c.log.Warn("reconcile", "err", err)
			time.Sleep(time.Second)
			notify()
		}
	}
}

func (c *controller) list(gvr schema.GroupVersionResource) []*unstructured.Unstructured {
	objs, err := c.listers[gvr].List(labels.Everything())
	if err != nil {
		return nil
	}
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		if u, ok := o.(*unstructured.Unstructured); ok {
			out = append(out, u.DeepCopy())
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].GetNamespace() != out[j].GetNamespace() {
			return out[i].GetNamespace() < out[j].GetNamespace()
		}
		return out[i].GetName() < out[j].GetName()
	})
	return out
}

func (c *controller) get(gvr schema.GroupVersionResource, ns, name string) (*unstructured.Unstructured, bool) {
	var o any
	var err error
	if ns == "" {
		o, err = c.listers[gvr].Get(name)
	} else {
		o, err = c.listers[gvr].ByNamespace(ns).Get(name)
	}
	if err != nil {
		return nil, false
	}
	u, ok := o.(*unstructured.Unstructured)
	return u, ok
}

// gatewayInfo is an accepted Gateway of the class.
type gatewayInfo struct {
	obj        *unstructured.Unstructured
	allowedAll bool // listeners accept routes from every namespace
}

func (c *controller) reconcile(ctx context.Context) error {
	classes := map[string]bool{}
	for _, gc := range c.list(gatewayClassesGVR) {
		if str(gc.Object, "spec", "controllerName") != c.name {
			continue
		}
		classes[gc.GetName()] = true
		if err := c.setConditions(ctx, gatewayClassesGVR, gc, []any{c.condition(gc, "Accepted", true, "Accepted", "handled by "+c.name)}); err != nil {
			return err
		}
	}

	address := ""
	if svc, ok := c.get(servicesGVR, c.serviceNS, c.serviceName); ok {
		if ip := str(svc.Object, "spec", "clusterIP"); ip != "" && ip != "None" {
			address = ip
		}
	}
	gateways := map[string]gatewayInfo{} // namespace/name
	for _, gw := range c.list(gatewaysGVR) {
		if !classes[str(gw.Object, "spec", "gatewayClassName")] || gw.GetDeletionTimestamp() != nil {
			continue
		}
		ok, all, why := c.listenersSupported(gw)
		var conds []any
		switch {
		case !ok:
			conds = []any{c.condition(gw, "Accepted", false, "UnsupportedValue", why), c.condition(gw, "Programmed", false, "Invalid", why)}
		case address == "":
			conds = []any{c.condition(gw, "Accepted", true, "Accepted", ""), c.condition(gw, "Programmed", false, "AddressNotAssigned", "Service "+c.serviceNS+"/"+c.serviceName+" has no cluster IP yet")}
		default:
			conds = []any{c.condition(gw, "Accepted", true, "Accepted", ""), c.condition(gw, "Programmed", true, "Programmed", "served by "+c.serviceNS+"/"+c.serviceName)}
			gateways[gw.GetNamespace()+"/"+gw.GetName()] = gatewayInfo{obj: gw, allowedAll: all}
		}
		status := map[string]any{"conditions": conds}
		if address != "" {
			status["addresses"] = []any{map[string]any{"type": "IPAddress", "value": address}}
		}
		if err := c.setStatus(ctx, gatewaysGVR, gw, status); err != nil {
			return err
		}
	}

	t := &table{Pools: map[string]pool{}}
	poolParents := map[string]map[string]bool{} // pool namespace/name → gateway namespace/name
	for _, rt := range c.list(httpRoutesGVR) {
		r, parents, pools := c.evaluateRoute(rt, gateways)
		if len(parents) == 0 {
			continue
		}
		if err := c.setRouteParents(ctx, rt, parents); err != nil {
			return err
		}
		if r != nil {
			t.Routes = append(t.Routes, *r)
			for _, p := range pools {
				if poolParents[p] == nil {
					poolParents[p] = map[string]bool{}
				}
				for _, ps := range parents {
					poolParents[p][ps.gateway] = true
				}
			}
		}
	}
	for key, gws := range poolParents {
		ns, name := splitKey(key)
		obj, ok := c.get(inferencePoolsGVR, ns, name)
		if !ok {
			continue
		}
		p, resolved, why := c.poolOf(obj)
		if resolved {
			t.Pools[key] = p
		}
		if err := c.setPoolParents(ctx, obj.DeepCopy(), gws, gateways, resolved, why); err != nil {
			return err
		}
	}
	c.proxy.table.Store(t)
	return nil
}

// listenersSupported says whether every listener is HTTP on the proxy's
// port, and whether they all accept routes from every namespace.
func (c *controller) listenersSupported(gw *unstructured.Unstructured) (ok, all bool, why string) {
	ls, _, _ := unstructured.NestedSlice(gw.Object, "spec", "listeners")
	all = len(ls) > 0
	for _, l := range ls {
		m, _ := l.(map[string]any)
		port, _, _ := unstructured.NestedInt64(m, "port")
		if str(m, "protocol") != "HTTP" || port != int64(c.listenPort) {
			return false, false, fmt.Sprintf("listener %s: only HTTP on port %d is served", str(m, "name"), c.listenPort)
		}
		if str(m, "allowedRoutes", "namespaces", "from") != "All" {
			all = false
		}
	}
	return len(ls) > 0, all, "no listeners"
}

// parentResult is a route's status for one Gateway of the class.
type parentResult struct {
	gateway  string // namespace/name
	ref      map[string]any
	accepted bool
	reason   string // of Accepted when false
	resolved bool
	rreason  string // of ResolvedRefs
	message  string
}

// evaluateRoute returns the route's routing entry (nil unless some Gateway
// of the class accepts it), its status per Gateway of the class, and the
// InferencePools (namespace/name) it forwards to.
func (c *controller) evaluateRoute(rt *unstructured.Unstructured, gateways map[string]gatewayInfo) (*route, []parentResult, []string) {
	refs, _, _ := unstructured.NestedSlice(rt.Object, "spec", "parentRefs")
	var parents []parentResult
	for _, pr := range refs {
		m, _ := pr.(map[string]any)
		if g := str(m, "group"); g != "" && g != gatewayGroup {
			continue
		}
		if k := str(m, "kind"); k != "" && k != "Gateway" {
			continue
		}
		ns := str(m, "namespace")
		if ns == "" {
			ns = rt.GetNamespace()
		}
		key := ns + "/" + str(m, "name")
		gw, ok := gateways[key]
		if !ok {
			continue
		}
		res := parentResult{gateway: key, ref: m, accepted: true}
		if ns != rt.GetNamespace() && !gw.allowedAll {
			res.accepted, res.reason, res.message = false, "NotAllowedByListeners", "the Gateway's listeners accept routes from their own namespace only"
		}
		parents = append(parents, res)
	}
	if len(parents) == 0 {
		return nil, nil, nil
	}
	r := route{Namespace: rt.GetNamespace(), Name: rt.GetName()}
	for _, h := range sliceOf(rt.Object, "spec", "hostnames") {
		if s, ok := h.(string); ok {
			r.Hostnames = append(r.Hostnames, s)
		}
	}
	resolved, rreason, message := true, "ResolvedRefs", ""
	var pools []string
	for _, ru := range sliceOf(rt.Object, "spec", "rules") {
		rm, _ := ru.(map[string]any)
		var out rule
		for _, mt := range sliceOf(rm, "matches") {
			mm, _ := mt.(map[string]any)
			x := match{PathType: str(mm, "path", "type"), PathValue: str(mm, "path", "value"), Headers: map[string]string{}}
			for _, h := range sliceOf(mm, "headers") {
				hm, _ := h.(map[string]any)
				if t := str(hm, "type"); t == "" || t == "Exact" {
					x.Headers[str(hm, "name")] = str(hm, "value")
				}
			}
			out.Matches = append(out.Matches, x)
		}
		for _, br := range sliceOf(rm, "backendRefs") {
			bm, _ := br.(map[string]any)
			b, ok, reason, why := c.resolveBackend(rt.GetNamespace(), bm)
			if !ok {
				if resolved {
					resolved, rreason, message = false, reason, why
				}
				b.Kind = "" // requests for it get 500
			} else if b.Kind == kindInferencePool {
				pools = append(pools, b.Namespace+"/"+b.Name)
			}
			out.Backends = append(out.Backends, b)
		}
		r.Rules = append(r.Rules, out)
	}
	accepted := false
	for i := range parents {
		parents[i].resolved, parents[i].rreason = resolved, rreason
		if parents[i].message == "" {
			parents[i].message = message
		}
		accepted = accepted || parents[i].accepted
	}
	if !accepted {
		return nil, parents, nil
	}
	return &r, parents, pools
}

// resolveBackend checks one backendRef: a Service or InferencePool of the
// route's namespace that exists.
func (c *controller) resolveBackend(routeNS string, m map[string]any) (backend, bool, string, string) {
	weight := int64(1)
	if w, found, _ := unstructured.NestedInt64(m, "weight"); found {
		weight = w
	}
	b := backend{Namespace: routeNS, Name: str(m, "name"), Weight: int(weight)}
	if ns := str(m, "namespace"); ns != "" && ns != routeNS {
		return b, false, "RefNotPermitted", "backends in other namespaces are not served"
	}
	group, kind := str(m, "group"), str(m, "kind")
	switch {
	case group == "" && (kind == "" || kind == "Service"):
		b.Kind = kindService
		port, _, _ := unstructured.NestedInt64(m, "port")
		b.Port = int(port)
		if _, ok := c.get(servicesGVR, routeNS, b.Name); !ok {
			return b, false, "BackendNotFound", "Service " + b.Name + " not found"
		}
		if b.Port == 0 {
			return b, false, "UnsupportedValue", "Service " + b.Name + ": port is required"
		}
	case group == inferenceGroup && kind == "InferencePool":
		b.Kind = kindInferencePool
		if _, ok := c.get(inferencePoolsGVR, routeNS, b.Name); !ok {
			return b, false, "BackendNotFound", "InferencePool " + b.Name + " not found"
		}
	default:
		return b, false, "InvalidKind", fmt.Sprintf("backend kind %s/%s is not served", group, kind)
	}
	return b, true, "", ""
}

// poolOf reads an InferencePool: resolved when its endpoint picker's
// Service exists.
func (c *controller) poolOf(obj *unstructured.Unstructured) (pool, bool, string) {
	p := pool{Namespace: obj.GetNamespace(), Name: obj.GetName(), Selector: map[string]string{}}
	sel, _, _ := unstructured.NestedStringMap(obj.Object, "spec", "selector", "matchLabels")
	for k, v := range sel {
		p.Selector[k] = v
	}
	if ports := sliceOf(obj.Object, "spec", "targetPorts"); len(ports) > 0 {
		n, _, _ := unstructured.NestedInt64(ports[0].(map[string]any), "number")
		p.TargetPort = int(n)
	}
	p.FailOpen = str(obj.Object, "spec", "endpointPickerRef", "failureMode") == "FailOpen"
	kind := str(obj.Object, "spec", "endpointPickerRef", "kind")
	name := str(obj.Object, "spec", "endpointPickerRef", "name")
	port, _, _ := unstructured.NestedInt64(obj.Object, "spec", "endpointPickerRef", "port", "number")
	if kind != "" && kind != "Service" {
		return p, false, "endpointPickerRef kind " + kind + " is not served"
	}
	if _, ok := c.get(servicesGVR, obj.GetNamespace(), name); !ok {
		return p, false, "endpoint picker Service " + name + " not found"
	}
	p.Picker = net.JoinHostPort(name+"."+obj.GetNamespace()+".svc."+c.clusterDomain, strconv.FormatInt(port, 10))
	return p, true, ""
}

func (c *controller) setRouteParents(ctx context.Context, rt *unstructured.Unstructured, results []parentResult) error {
	var keep []any
	for _, p := range sliceOf(rt.Object, "status", "parents") {
		if m, _ := p.(map[string]any); str(m, "controllerName") != c.name {
			keep = append(keep, p)
		}
	}
	old := map[string][]any{}
	for _, p := range sliceOf(rt.Object, "status", "parents") {
		m, _ := p.(map[string]any)
		old[str(m, "parentRef", "namespace")+"/"+str(m, "parentRef", "name")] = sliceOf(m, "conditions")
	}
	for _, r := range results {
		ref := map[string]any{"group": gatewayGroup, "kind": "Gateway", "name": r.ref["name"]}
		if ns, ok := r.ref["namespace"]; ok {
			ref["namespace"] = ns
		}
		if sn, ok := r.ref["sectionName"]; ok {
			ref["sectionName"] = sn
		}
		prev := old[str(ref, "namespace")+"/"+str(ref, "name")]
		reason := "Accepted"
		if !r.accepted {
			reason = r.reason
		}
		conds := []any{
			c.conditionFrom(prev, rt, "Accepted", r.accepted, reason, r.message),
			c.conditionFrom(prev, rt, "ResolvedRefs", r.resolved, r.rreason, r.message),
		}
		keep = append(keep, map[string]any{"parentRef": ref, "controllerName": c.name, "conditions": conds})
	}
	return c.setStatus(ctx, httpRoutesGVR, rt, merged(rt, "parents", keep))
}

func (c *controller) setPoolParents(ctx context.Context, obj *unstructured.Unstructured, gws map[string]bool, ours map[string]gatewayInfo, resolved bool, why string) error {
	var keep []any
	old := map[string][]any{}
	for _, p := range sliceOf(obj.Object, "status", "parents") {
		m, _ := p.(map[string]any)
		key := str(m, "parentRef", "namespace") + "/" + str(m, "parentRef", "name")
		if _, mine := ours[key]; mine && str(m, "parentRef", "kind") == "Gateway" {
			old[key] = sliceOf(m, "conditions")
			continue
		}
		keep = append(keep, p)
	}
	keys := make([]string, 0, len(gws))
	for k := range gws {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		ns, name := splitKey(key)
		reason, msg := "ResolvedRefs", ""
		if !resolved {
			reason, msg = "InvalidExtensionRef", why
		}
		keep = append(keep, map[string]any{
			"parentRef": map[string]any{"group": gatewayGroup, "kind": "Gateway", "namespace": ns, "name": name},
			"conditions": []any{
				c.conditionFrom(old[key], obj, "Accepted", true, "Accepted", ""),
				c.conditionFrom(old[key], obj, "ResolvedRefs", resolved, reason, msg),
			},
		})
	}
	return c.setStatus(ctx, inferencePoolsGVR, obj, merged(obj, "parents", keep))
}

func merged(u *unstructured.Unstructured, field string, v []any) map[string]any {
	status, _, _ := unstructured.NestedMap(u.Object, "status")
	if status == nil {
		status = map[string]any{}
	}
	status[field] = v
	return status
}

func (c *controller) setConditions(ctx context.Context, gvr schema.GroupVersionResource, u *unstructured.Unstructured, conds []any) error {
	return c.setStatus(ctx, gvr, u, merged(u, "conditions", conds))
}

// setStatus writes status unless the object already has it.
func (c *controller) setStatus(ctx context.Context, gvr schema.GroupVersionResource, u *unstructured.Unstructured, status map[string]any) error {
	cur, _, _ := unstructured.NestedMap(u.Object, "status")
	if reflect.DeepEqual(normalize(cur), normalize(status)) {
		return nil
	}
	u = u.DeepCopy()
	u.Object["status"] = status
	var err error
	if u.GetNamespace() == "" {
		_, err = c.dyn.Resource(gvr).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	} else {
		_, err = c.dyn.Resource(gvr).Namespace(u.GetNamespace()).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	}
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // the watch brings the newer object
	}
	if err != nil {
		return fmt.Errorf("status of %s %s/%s: %w", gvr.Resource, u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

// normalize makes numbers comparable across a JSON round trip.
func normalize(m map[string]any) any {
	if m == nil {
		return nil
	}
	u := &unstructured.Unstructured{Object: m}
	return u.DeepCopy().Object
}

func (c *controller) condition(u *unstructured.Unstructured, typ string, ok bool, reason, msg string) map[string]any {
	return c.conditionFrom(sliceOf(u.Object, "status", "conditions"), u, typ, ok, reason, msg)
}

// conditionFrom builds a condition, keeping the transition time of the
// previous one of its type when its status is unchanged.
func (c *controller) conditionFrom(prev []any, u *unstructured.Unstructured, typ string, ok bool, reason, msg string) map[string]any {
	status := "False"
	if ok {
		status = "True"
	}
	if msg == "" {
		msg = reason
	}
	ts := c.now().UTC().Format(time.RFC3339)
	for _, p := range prev {
		if m, _ := p.(map[string]any); str(m, "type") == typ && str(m, "status") == status {
			if t := str(m, "lastTransitionTime"); t != "" {
				ts = t
			}
		}
	}
	return map[string]any{"type": typ, "status": status, "reason": reason, "message": msg, "observedGeneration": u.GetGeneration(), "lastTransitionTime": ts}
}

func str(m map[string]any, path ...string) string {
	s, _, _ := unstructured.NestedString(m, path...)
	return s
}

func sliceOf(m map[string]any, path ...string) []any {
	s, _, _ := unstructured.NestedSlice(m, path...)
	return s
}

func splitKey(key string) (string, string) {
	for i := range len(key) {
		if key[i] == '/' {
			return key[:i], key[i+1:]
		}
	}
	return "", key
}
