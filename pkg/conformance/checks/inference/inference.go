// Package inference verifies the inference-serving requirements through
// the Gateway API:
//
//   - ai_inference: a Gateway of an Accepted GatewayClass is Programmed;
//     an HTTPRoute splitting traffic 80/20 between two probe backends and
//     one routing on an OpenAI-style header (x-model) are Accepted with
//     their references resolved, and requests sent through the Gateway
//     follow the weights (within a binomial tolerance) and the header
//     exactly; a route to a Service that does not exist is not resolved.
//   - advanced_inference_ingress: when the Gateway API Inference Extension
//     (InferencePool) is served, the check runs an InferencePool of two
//     probe pods passing for vLLM model servers and the pool's endpoint
//     picker (the Inference Extension's own); an HTTPRoute to the pool is
//     Accepted and resolved and the pool Accepted by the Gateway; with one
//     model server reporting a deep queue and a full KV cache and the other
//     idle, OpenAI-style completion requests through the Gateway go to the
//     idle one, and follow when the loads are swapped; a route to a missing
//     pool is not resolved. A picker that never gets ready leaves the check
//     not verified; a Gateway that does not route where the ready picker
//     points fails it.
//
// Requests are sent by a probe pod (`kaic probe request`) to the
// implementation's Service for the Gateway and read from its log, so the
// traffic tests need nodes that run containers.
package inference

import (
	"fmt"
	"time"

	"github.com/kaic-dev/kaic/pkg/conformance"
)

// Requirement ids of the checks.
const (
	ID        = "ai_inference"
	IngressID = "advanced_inference_ingress"
)

// ModelHeader is the OpenAI-style header the header route matches: the
// model a request asks for.
const ModelHeader = "x-model"

// Options override what the checks find on the cluster.
type Options struct {
	// GatewayClass to use; empty picks the first Accepted one by name.
	GatewayClass string
	// IngressGatewayClass, if set, is advanced_inference_ingress's class
	// instead of GatewayClass.
	IngressGatewayClass string
	// EndpointPickerImage is the endpoint picker advanced_inference_ingress
	// runs for its InferencePool (default DefaultEndpointPickerImage).
	EndpointPickerImage string
	// Requests is how many requests each traffic test sends (default 100).
	Requests int
	// Tolerance is how far, in standard deviations of the binomial
	// distribution, the weighted split may be from the weights (default 3:
	// 80±12 of 100).
	Tolerance float64
	// ReadyTimeout bounds each wait for the controller: the Gateway to be
	// Programmed, a route's status, the backends to be available (default
	// 3m).
	ReadyTimeout time.Duration
	// TrafficTimeout bounds each request pod, from creation to its report
	// (default 3m).
	TrafficTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Requests <= 0 {
		o.Requests = 100
	}
	if o.EndpointPickerImage == "" {
		o.EndpointPickerImage = DefaultEndpointPickerImage
	}
	if o.Tolerance <= 0 {
		o.Tolerance = 3
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 3 * time.Minute
	}
	if o.TrafficTimeout <= 0 {
		o.TrafficTimeout = 3 * time.Minute
	}
	return o
}

// Check returns the ai_inference check with default options.
func Check() conformance.Check { return CheckWith(Options{}) }

// CheckWith returns the ai_inference check with o.
func CheckWith(o Options) conformance.Check {
	o = o.withDefaults()
	return conformance.NewCheck(ID, func(t *conformance.T, env *conformance.Env) { runInference(t, env, o) })
}

// Names of the objects the ai_inference check creates.
const (
	gatewayName    = "inference-gateway"
	backendA       = "model-a"
	backendB       = "model-b"
	weightA        = 80
	weightB        = 20
	weightedRoute  = "weighted-split"
	headerRoute    = "header-match"
	missingRoute   = "missing-backend"
	missingService = "no-such-backend"
	weightedHost   = "weighted.inference.kaic.test"
	headerHost     = "header.inference.kaic.test"
	missingHost    = "missing.inference.kaic.test"
)

func runInference(t *conformance.T, env *conformance.Env, o Options) {
	gatewayAPIServed(t, env)
	class := findGatewayClass(t, env, o.GatewayClass)
	t.Step("Run backends %s and %s: probe pods answering with their backend's name, each behind a Service", backendA, backendB)
	startBackend(t, env, backend{Name: backendA, Identity: backendA})
	startBackend(t, env, backend{Name: backendB, Identity: backendB})
	gw := createGateway(t, env, gatewayName, class, o.ReadyTimeout)

	t.Run("WeightedTrafficSplitting", func(t *conformance.T) {
		t.Step("Route host %s to %s and %s weighted %d/%d", weightedHost, backendA, backendB, weightA, weightB)
		t.Apply(routeObject(weightedRoute, gatewayName, weightedHost, map[string]any{
			"backendRefs": []any{serviceRef(backendA, weightA), serviceRef(backendB, weightB)},
		}))
		waitRouteResolved(t, env, httpRoutesGVR, weightedRoute, gatewayName, o.ReadyTimeout)
		t.Run("TrafficFollowsWeights", func(t *conformance.T) {
			waitBackends(t, env, o.ReadyTimeout, backendA, backendB)
			url := gatewayURL(t, env, gw)
			rep := sendRequests(t, env, "requests-weighted", url, o.Requests, o.TrafficTimeout, "Host:"+weightedHost)
			expectOnly(t, rep, backendA, backendB)
			ok, why := splitVerdict(rep.Backends[backendA], rep.Requests, weightA, weightA+weightB, o.Tolerance)
			if !ok {
				t.Fatalf("backend %s (weight %d of %d) got %s", backendA, weightA, weightA+weightB, why)
			}
			t.Logf("backend %s got %s; backend %s got %d", backendA, why, backendB, rep.Backends[backendB])
			t.Shown("a Gateway split %d requests between two model servers by the HTTPRoute's weights %d/%d", rep.Requests, weightA, weightB)
		})
	})

	t.Run("HeaderBasedRouting", func(t *conformance.T) {
		t.Step("Route host %s to %s when header %s is %s, else to %s", headerHost, backendB, ModelHeader, backendB, backendA)
		t.Apply(routeObject(headerRoute, gatewayName, headerHost,
			map[string]any{
				"matches":     []any{map[string]any{"headers": []any{map[string]any{"type": "Exact", "name": ModelHeader, "value": backendB}}}},
				"backendRefs": []any{serviceRef(backendB, 1)},
			},
			map[string]any{"backendRefs": []any{serviceRef(backendA, 1)}},
		))
		waitRouteResolved(t, env, httpRoutesGVR, headerRoute, gatewayName, o.ReadyTimeout)
		t.Run("TrafficFollowsHeader", func(t *conformance.T) {
			waitBackends(t, env, o.ReadyTimeout, backendA, backendB)
			url := gatewayURL(t, env, gw)
			// The two pods' requests are independent: they run at once.
			with := startRequests(t, env, "requests-header", url, "", o.Requests, 0, "Host:"+headerHost, ModelHeader+":"+backendB)
			without := startRequests(t, env, "requests-no-header", url, "", o.Requests, 0, "Host:"+headerHost)
			expectAll(t, with.report(t, o.TrafficTimeout), backendB, fmt.Sprintf("with header %s: %s", ModelHeader, backendB))
			expectAll(t, without.report(t, o.TrafficTimeout), backendA, "without header "+ModelHeader)
			if !t.Failed() {
				t.Shown("routed by the %s header to the model server it names", ModelHeader)
			}
		})
	})

	t.Run("UnresolvedBackendRejected", func(t *conformance.T) {
		t.Step("Route host %s to Service %s, which does not exist: the controller must not resolve it", missingHost, missingService)
		t.Apply(routeObject(missingRoute, gatewayName, missingHost, map[string]any{"backendRefs": []any{serviceRef(missingService, 1)}}))
		c := waitRouteUnresolved(t, env, missingRoute, gatewayName, o.ReadyTimeout)
		if c.Reason != "BackendNotFound" {
			t.Errorf("HTTPRoute %s to a missing Service is %s, want reason BackendNotFound", missingRoute, c)
		}
	})
}
