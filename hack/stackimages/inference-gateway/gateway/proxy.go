package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// maxBody bounds the request and response bodies the proxy buffers.
const maxBody = 4 << 20

// proxy serves the Gateways of the class: it routes by the accepted
// HTTPRoutes and, for an InferencePool backend, forwards to the endpoint
// the pool's endpoint picker chooses.
type proxy struct {
	table   atomic.Pointer[table]
	pickers *pickers
	// members lists a pool's ready endpoints ("ip:port"), for failing open.
	members func(ctx context.Context, p pool) ([]string, error)
	// serviceHost is where a Service's port is reached.
	serviceHost func(ns, name string, port int) string
	client      *http.Client
	// pickTimeout bounds the picker's answer to a request.
	pickTimeout time.Duration
	log         *slog.Logger
}

func newProxy(members func(context.Context, pool) ([]string, error), clusterDomain string, log *slog.Logger) *proxy {
	p := &proxy{
		pickers: &pickers{},
		members: members,
		serviceHost: func(ns, name string, port int) string {
			return net.JoinHostPort(name+"."+ns+".svc."+clusterDomain, strconv.Itoa(port))
		},
		client:      &http.Client{Timeout: 60 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		pickTimeout: 10 * time.Second,
		log:         log,
	}
	p.table.Store(&table{})
	return p
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := p.table.Load()
	rt, ru, ok := t.lookup(r)
	if !ok {
		http.Error(w, "no HTTPRoute matches "+r.Host+r.URL.Path, http.StatusNotFound)
		return
	}
	b, ok := pick(ru.Backends, nil)
	if !ok {
		// A rule whose backends are all invalid or weightless answers 500,
		// as the Gateway API asks.
		http.Error(w, "HTTPRoute "+rt.Namespace+"/"+rt.Name+" has no usable backend", http.StatusInternalServerError)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	switch b.Kind {
	case kindService:
		status, h, out, err := p.forward(r, p.serviceHost(b.Namespace, b.Name, b.Port), body, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		reply(w, status, h, out, nil)
	case kindInferencePool:
		pl, ok := t.Pools[b.Namespace+"/"+b.Name]
		if !ok {
			http.Error(w, "InferencePool "+b.Namespace+"/"+b.Name+" not found", http.StatusInternalServerError)
			return
		}
		p.servePool(w, r, pl, body)
	}
}

// servePool asks the pool's endpoint picker where the request goes and
// forwards it there. When the picker cannot be asked, the pool's
// failureMode decides: FailOpen forwards to a ready member, FailClose
// answers 503.
func (p *proxy) servePool(w http.ResponseWriter, r *http.Request, pl pool, body []byte) {
	ctx, cancel := context.WithTimeout(r.Context(), p.pickTimeout)
	defer cancel()
	x, err := p.pickers.open(ctx, pl.Picker)
	var d decision
	if err == nil {
		defer x.close()
		d, err = x.request(r, body)
	}
	if err == nil && d.Immediate != nil {
		reply(w, d.Immediate.Status, nil, d.Immediate.Body, nil)
		return
	}
	if err == nil && len(d.Endpoints) == 0 {
		err = fmt.Errorf("the picker named no endpoint")
	}
	if err != nil {
		p.log.Warn("endpoint picker failed", "pool", pl.Namespace+"/"+pl.Name, "picker", pl.Picker, "failOpen", pl.FailOpen, "err", err)
		if !pl.FailOpen {
			http.Error(w, "the endpoint picker of InferencePool "+pl.Namespace+"/"+pl.Name+" did not answer (failureMode FailClose): "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		members, merr := p.members(r.Context(), pl)
		if merr != nil || len(members) == 0 {
			http.Error(w, fmt.Sprintf("InferencePool %s/%s has no ready endpoint (%v)", pl.Namespace, pl.Name, merr), http.StatusServiceUnavailable)
			return
		}
		status, h, out, ferr := p.forward(r, members[rand.IntN(len(members))], body, nil)
		if ferr != nil {
			http.Error(w, ferr.Error(), http.StatusBadGateway)
			return
		}
		reply(w, status, h, out, nil)
		return
	}
	var status int
	var h http.Header
	var out []byte
	var served string
	for _, ep := range d.Endpoints { // the first that answers, as with retries
		served = ep
		if status, h, out, err = p.forward(r, ep, d.Body, d.SetHeaders); err == nil {
			break
		}
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out, set, rerr := x.response(served, status, h, out)
	if rerr != nil {
		p.log.Warn("endpoint picker did not take the response", "pool", pl.Namespace+"/"+pl.Name, "err", rerr)
	}
	p.log.Debug("routed by the endpoint picker", "pool", pl.Namespace+"/"+pl.Name, "endpoint", served, "status", status)
	reply(w, status, h, out, set)
}

// forward sends r with body to host ("host:port") and returns the answer.
func (p *proxy) forward(r *http.Request, host string, body []byte, set map[string]string) (int, http.Header, []byte, error) {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+host+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	for k, vs := range r.Header {
		if hopByHop(k) {
			continue
		}
		out.Header[k] = append([]string(nil), vs...)
	}
	for k, v := range set {
		if strings.HasPrefix(k, ":") || hopByHop(k) || strings.EqualFold(k, "content-length") {
			continue
		}
		out.Header.Set(k, v)
	}
	out.Host = r.Host
	out.Header.Set("X-Forwarded-Host", r.Host)
	resp, err := p.client.Do(out)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("forwarding to %s: %w", host, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("reading the answer of %s: %w", host, err)
	}
	return resp.StatusCode, resp.Header, data, nil
}

func reply(w http.ResponseWriter, status int, h http.Header, body []byte, set map[string]string) {
	for k, vs := range h {
		if hopByHop(k) || strings.EqualFold(k, "content-length") {
			continue
		}
		w.Header()[k] = vs
	}
	for k, v := range set {
		if strings.HasPrefix(k, ":") || hopByHop(k) || strings.EqualFold(k, "content-length") {
			continue
		}
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func hopByHop(k string) bool {
	switch http.CanonicalHeaderKey(k) {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}
