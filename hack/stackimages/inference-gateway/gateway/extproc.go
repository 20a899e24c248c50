package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

// Keys of the endpoint picker protocol (the Gateway API Inference
// Extension's docs/proposals/004-endpoint-picker-protocol): the picker
// names the chosen endpoints ("ip:port[,ip:port…]") in a request header and
// in dynamic metadata under the envoy.lb namespace; the data plane reports
// the endpoint that served the response in the same namespace.
const (
	destinationNamespace = "envoy.lb"
	destinationKey       = "x-gateway-destination-endpoint"
	servedKey            = "x-gateway-destination-endpoint-served"
)

// pickers holds one gRPC connection per endpoint picker address.
type pickers struct {
	// plaintext dials without TLS (tests); the endpoint picker serves TLS
	// with a self-signed certificate by default, which is not verified, as
	// the Inference Extension's reference gateway configurations do.
	plaintext bool

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func (p *pickers) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	creds := credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the picker's certificate is self-signed
	if p.plaintext {
		creds = insecure.NewCredentials()
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	if p.conns == nil {
		p.conns = map[string]*grpc.ClientConn{}
	}
	p.conns[addr] = c
	return c, nil
}

// decision is what the picker answered for a request.
type decision struct {
	// Endpoints are the chosen "ip:port"s, in order.
	Endpoints []string
	// SetHeaders are headers to set on the upstream request.
	SetHeaders map[string]string
	// Body is the body to send upstream.
	Body []byte
	// Immediate, if set, is the answer to give the client instead.
	Immediate *immediate
}

type immediate struct {
	Status int
	Body   []byte
}

// exchange is one request's ext_proc stream.
type exchange struct {
	stream extprocv3.ExternalProcessor_ProcessClient
	cancel context.CancelFunc
}

// open starts an ext_proc stream to the picker at addr.
func (p *pickers) open(ctx context.Context, addr string) (*exchange, error) {
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	s, err := extprocv3.NewExternalProcessorClient(c).Process(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	return &exchange{stream: s, cancel: cancel}, nil
}

// close ends the stream: the picker sees the end of the request.
func (x *exchange) close() {
	_ = x.stream.CloseSend()
	go func() {
		defer x.cancel()
		for {
			if _, err := x.stream.Recv(); err != nil {
				return
			}
		}
	}()
}

func headerMap(pseudo [][2]string, h http.Header) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for _, kv := range pseudo {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
	}
	for k, vs := range h {
		for _, v := range vs {
			m.Headers = append(m.Headers, &corev3.HeaderValue{Key: strings.ToLower(k), RawValue: []byte(v)})
		}
	}
	return m
}

// request sends the request's headers and body as Envoy's ext_proc filter
// does in full-duplex streamed mode, and reads the picker's answers until
// it has the header response and the whole (possibly rewritten) body.
func (x *exchange) request(r *http.Request, body []byte) (decision, error) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	pseudo := [][2]string{{":method", r.Method}, {":path", r.URL.RequestURI()}, {":authority", r.Host}, {":scheme", scheme}}
	hdrs := &extprocv3.HttpHeaders{Headers: headerMap(pseudo, r.Header), EndOfStream: len(body) == 0}
	if err := x.stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: hdrs}}); err != nil {
		return decision{}, fmt.Errorf("sending the request headers: %w", err)
	}
	if len(body) > 0 {
		b := &extprocv3.HttpBody{Body: body, EndOfStream: true}
		if err := x.stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: b}}); err != nil {
			return decision{}, fmt.Errorf("sending the request body: %w", err)
		}
	}
	d := decision{SetHeaders: map[string]string{}, Body: body}
	gotHeaders, gotBody := false, len(body) == 0
	var streamed []byte
	for !gotHeaders || !gotBody {
		resp, err := x.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the picker ended the stream before answering")
			}
			return decision{}, err
		}
		switch v := resp.Response.(type) {
		case *extprocv3.ProcessingResponse_ImmediateResponse:
			d.Immediate = &immediate{Status: int(v.ImmediateResponse.GetStatus().GetCode()), Body: v.ImmediateResponse.GetBody()}
			if d.Immediate.Status == 0 {
				d.Immediate.Status = http.StatusInternalServerError
			}
			return d, nil
		case *extprocv3.ProcessingResponse_RequestHeaders:
			gotHeaders = true
			applyHeaders(d.SetHeaders, v.RequestHeaders.GetResponse())
			if eps := metadataEndpoints(resp.GetDynamicMetadata()); len(eps) > 0 {
				d.Endpoints = eps
			}
		case *extprocv3.ProcessingResponse_RequestBody:
			common := v.RequestBody.GetResponse()
			applyHeaders(d.SetHeaders, common)
			switch m := common.GetBodyMutation().GetMutation().(type) {
			case *extprocv3.BodyMutation_StreamedResponse:
				streamed = append(streamed, m.StreamedResponse.GetBody()...)
				if m.StreamedResponse.GetEndOfStream() {
					d.Body, gotBody = streamed, true
				}
			case *extprocv3.BodyMutation_Body:
				d.Body, gotBody = m.Body, true
			case *extprocv3.BodyMutation_ClearBody:
				d.Body, gotBody = nil, true
			default:
				gotBody = true
			}
		default:
			return decision{}, fmt.Errorf("unexpected answer %T to a request", v)
		}
	}
	if len(d.Endpoints) == 0 {
		d.Endpoints = splitEndpoints(d.SetHeaders[destinationKey])
	}
	return d, nil
}

// response tells the picker how the request went, as Envoy does: the
// response headers (with the endpoint that served it in the metadata
// context) and body; it returns the body to give the client.
func (x *exchange) response(served string, status int, h http.Header, body []byte) ([]byte, map[string]string, error) {
	meta := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		destinationNamespace: {Fields: map[string]*structpb.Value{servedKey: structpb.NewStringValue(served)}},
	}}
	hdrs := &extprocv3.HttpHeaders{Headers: headerMap([][2]string{{":status", strconv.Itoa(status)}}, h), EndOfStream: len(body) == 0}
	if err := x.stream.Send(&extprocv3.ProcessingRequest{MetadataContext: meta, Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: hdrs}}); err != nil {
		return body, nil, err
	}
	if len(body) > 0 {
		b := &extprocv3.HttpBody{Body: body, EndOfStream: true}
		if err := x.stream.Send(&extprocv3.ProcessingRequest{MetadataContext: meta, Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: b}}); err != nil {
			return body, nil, err
		}
	}
	set := map[string]string{}
	gotHeaders, gotBody := false, len(body) == 0
	var streamed []byte
	for !gotHeaders || !gotBody {
		resp, err := x.stream.Recv()
		if err != nil {
			return body, set, err
		}
		switch v := resp.Response.(type) {
		case *extprocv3.ProcessingResponse_ResponseHeaders:
			gotHeaders = true
			applyHeaders(set, v.ResponseHeaders.GetResponse())
		case *extprocv3.ProcessingResponse_ResponseBody:
			switch m := v.ResponseBody.GetResponse().GetBodyMutation().GetMutation().(type) {
			case *extprocv3.BodyMutation_StreamedResponse:
				streamed = append(streamed, m.StreamedResponse.GetBody()...)
				if m.StreamedResponse.GetEndOfStream() {
					body, gotBody = streamed, true
				}
			case *extprocv3.BodyMutation_Body:
				body, gotBody = m.Body, true
			default:
				gotBody = true
			}
		default:
			return body, set, fmt.Errorf("unexpected answer %T to a response", v)
		}
	}
	return body, set, nil
}

func applyHeaders(set map[string]string, c *extprocv3.CommonResponse) {
	for _, o := range c.GetHeaderMutation().GetSetHeaders() {
		v := string(o.GetHeader().GetRawValue())
		if v == "" {
			v = o.GetHeader().GetValue()
		}
		set[strings.ToLower(o.GetHeader().GetKey())] = v
	}
}

// metadataEndpoints reads envoy.lb/x-gateway-destination-endpoint.
func metadataEndpoints(s *structpb.Struct) []string {
	ns := s.GetFields()[destinationNamespace].GetStructValue()
	return splitEndpoints(ns.GetFields()[destinationKey].GetStringValue())
}

func splitEndpoints(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}
