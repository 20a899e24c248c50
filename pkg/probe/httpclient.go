package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// RequestsKey is the key of the RESULT line `kaic probe request` prints:
// "RESULT: REQUESTS={json of RequestReport}".
const RequestsKey = "REQUESTS"

// UnknownBackend counts answers that name no backend (a body that is not
// the probe's identity, e.g. a gateway's own error page).
const UnknownBackend = "(unknown)"

// RequestOptions say what [SendRequests] sends.
type RequestOptions struct {
	// URL is requested with GET Count times, one request after the other.
	URL   string
	Count int
	// CompletionModel, when set, makes each request an OpenAI-style POST
	// whose JSON body names this model, with a prompt of its own (no two
	// requests share a prefix an endpoint picker could favour a pod for).
	CompletionModel string
	// Header is added to every request; a "Host" entry sets the Host
	// header.
	Header http.Header
	// Timeout bounds each request (0: 10s).
	Timeout time.Duration
	// Client sends the requests (nil: a client without keep-alives, so
	// each request is balanced on its own).
	Client *http.Client
	// WarmUp, when set, first sends requests of the same kind, a
	// warmUpPause apart, until one gets a 2xx answer or WarmUp has
	// passed; they are reported apart (WarmUpRequests) and not counted.
	// It waits out a data path that is still being set up after the
	// objects that make it report ready (a Service's rules on the nodes,
	// a proxy's connection to it), without which the counted requests
	// would measure that instead of the routing.
	WarmUp time.Duration
}

// warmUpPause is the pause between warm-up requests that got no 2xx.
const warmUpPause = 500 * time.Millisecond

// RequestReport counts what N requests got: answers per backend identity
// (as the probe's serve mode names itself), per HTTP status code, and
// per kind of transport error.
type RequestReport struct {
	URL      string            `json:"url"`
	Headers  map[string]string `json:"headers,omitempty"`
	Model    string            `json:"model,omitempty"`
	Requests int               `json:"requests"`
	// Backends counts successful (2xx) answers by the backend that served
	// them.
	Backends map[string]int `json:"backends"`
	// Statuses counts answers by status code ("200", "503", …).
	Statuses map[string]int `json:"statuses"`
	// Errors counts requests that got no answer, by error.
	Errors map[string]int `json:"errors,omitempty"`
	// Answers holds, for each status other than 2xx, the start of the
	// first answer's body with that status: what a gateway said when it
	// refused.
	Answers map[string]string `json:"answers,omitempty"`
	// WarmUpRequests is how many warm-up requests were sent before the
	// counted ones (RequestOptions.WarmUp), over WarmUpSeconds;
	// WarmUpFirstFailure is what the first of them that got no 2xx got.
	// WarmUpOK tells whether the last one got a 2xx.
	WarmUpRequests     int     `json:"warmUpRequests,omitempty"`
	WarmUpSeconds      float64 `json:"warmUpSeconds,omitempty"`
	WarmUpFirstFailure string  `json:"warmUpFirstFailure,omitempty"`
	WarmUpOK           bool    `json:"warmUpOK,omitempty"`
}

// answerSample bounds the body kept per status in Answers.
const answerSample = 300

// OK is the number of 2xx answers.
func (r RequestReport) OK() int {
	n := 0
	for code, c := range r.Statuses {
		if strings.HasPrefix(code, "2") {
			n += c
		}
	}
	return n
}

// Failed is the number of requests without a 2xx answer.
func (r RequestReport) Failed() int { return r.Requests - r.OK() }

// String summarises the report on one line, sorted for stable output.
func (r RequestReport) String() string {
	s := fmt.Sprintf("%d requests: backends %s; statuses %s; errors %s", r.Requests, counts(r.Backends), counts(r.Statuses), counts(r.Errors))
	codes := make([]string, 0, len(r.Answers))
	for code := range r.Answers {
		codes = append(codes, code)
	}
	sort.Strings(codes)
	for _, code := range codes {
		s += fmt.Sprintf("; first %s answer %q", code, r.Answers[code])
	}
	if r.WarmUpRequests > 0 {
		outcome := "the last got a 2xx answer"
		if !r.WarmUpOK {
			outcome = "none got a 2xx answer"
		}
		noun := "requests"
		if r.WarmUpRequests == 1 {
			noun = "request"
		}
		s += fmt.Sprintf("; after %d warm-up %s over %.1fs (%s", r.WarmUpRequests, noun, r.WarmUpSeconds, outcome)
		if r.WarmUpFirstFailure != "" {
			s += fmt.Sprintf("; the first failed with %s", r.WarmUpFirstFailure)
		}
		s += ")"
	}
	return s
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// SendRequests sends o.Count GET requests to o.URL and counts who answered.
// It fails only on bad options or when ctx ends; unanswered requests are
// counted in the report's Errors.
func SendRequests(ctx context.Context, o RequestOptions) (RequestReport, error) {
	if o.Count <= 0 {
		return RequestReport{}, fmt.Errorf("request count must be positive, got %d", o.Count)
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return RequestReport{}, fmt.Errorf("URL %q is not an absolute http(s) URL", o.URL)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	client := o.Client
	if client == nil {
		client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	rep := RequestReport{URL: o.URL, Model: o.CompletionModel, Backends: map[string]int{}, Statuses: map[string]int{}, Errors: map[string]int{}}
	if len(o.Header) > 0 {
		rep.Headers = map[string]string{}
		for k, v := range o.Header {
			rep.Headers[k] = strings.Join(v, ",")
		}
	}
	if o.WarmUp > 0 {
		if err := warmUp(ctx, client, o, timeout, &rep); err != nil {
			return rep, err
		}
	}
	for i := range o.Count {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.Requests++
		status, body, err := sendOne(ctx, client, o, i, timeout)
		if err != nil {
			rep.Errors[errorKind(err)]++
			continue
		}
		code := strconv.Itoa(status)
		rep.Statuses[code]++
		if status >= 200 && status < 300 {
			rep.Backends[backendOf(body)]++
			continue
		}
		if _, seen := rep.Answers[code]; !seen {
			if rep.Answers == nil {
				rep.Answers = map[string]string{}
			}
			rep.Answers[code] = sample(body)
		}
	}
	return rep, nil
}

// warmUp sends requests until one gets a 2xx answer or o.WarmUp has
// passed, and records them in rep. Their prompts are numbered after the
// counted requests', so no prompt is sent twice.
func warmUp(ctx context.Context, client *http.Client, o RequestOptions, timeout time.Duration, rep *RequestReport) error {
	start := time.Now()
	defer func() { rep.WarmUpSeconds = time.Since(start).Seconds() }()
	for i := o.Count; ; i++ {
		rep.WarmUpRequests++
		status, body, err := sendOne(ctx, client, o, i, timeout)
		if err == nil && status >= 200 && status < 300 {
			rep.WarmUpOK = true
			return nil
		}
		if rep.WarmUpFirstFailure == "" {
			if err != nil {
				rep.WarmUpFirstFailure = errorKind(err)
			} else {
				rep.WarmUpFirstFailure = fmt.Sprintf("status %d: %q", status, sample(body))
			}
		}
		if time.Since(start)+warmUpPause > o.WarmUp {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(warmUpPause):
		}
	}
}

// sample is the start of body, trimmed, at most answerSample bytes.
func sample(body []byte) string {
	s := strings.TrimSpace(string(body))
	if len(s) > answerSample {
		s = s[:answerSample] + "…"
	}
	return s
}

// sendOne sends the i-th request and returns the answer's status and body.
func sendOne(ctx context.Context, client *http.Client, o RequestOptions, i int, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	method, reqBody := http.MethodGet, io.Reader(nil)
	if o.CompletionModel != "" {
		method, reqBody = http.MethodPost, bytes.NewReader(CompletionBody(o.CompletionModel, i))
	}
	req, err := http.NewRequestWithContext(ctx, method, o.URL, reqBody)
	if err != nil {
		return 0, nil, err
	}
	if o.CompletionModel != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range o.Header {
		if http.CanonicalHeaderKey(k) == "Host" && len(vs) > 0 {
			req.Host = vs[0]
			continue
		}
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, body, nil
}

// CompletionBody is the JSON body of the i-th completion request for
// model: its prompt starts with the request's number, so prompts share no
// prefix.
func CompletionBody(model string, i int) []byte {
	data, _ := json.Marshal(map[string]any{
		"model":      model,
		"prompt":     fmt.Sprintf("%d: say which pod serves this request", i),
		"max_tokens": 1,
	})
	return data
}

// backendOf reads the backend from a probe answer: its identity (on /) or
// an inference answer's served_by (on /v1/infer).
func backendOf(body []byte) string {
	var answer struct {
		Identity
		ServedBy *Identity `json:"served_by"`
	}
	if json.Unmarshal(body, &answer) != nil {
		return UnknownBackend
	}
	switch {
	case answer.ServedBy != nil && answer.ServedBy.Backend != "":
		return answer.ServedBy.Backend
	case answer.Backend != "":
		return answer.Backend
	}
	return UnknownBackend
}

// errorKind names a transport error briefly, so that a hundred refused
// connections count as one kind.
func errorKind(err error) string {
	var netErr net.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.As(err, &dnsErr):
		return "dns: " + dnsErr.Err
	case errors.As(err, &opErr) && opErr.Err != nil:
		return opErr.Op + ": " + opErr.Err.Error()
	}
	return err.Error()
}

// WriteRequestReport prints the report as one RESULT line.
func WriteRequestReport(w io.Writer, r RequestReport) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s%s=%s\n", ResultPrefix, RequestsKey, data)
	return err
}

// ParseRequestReport reads the report from a log with the probe's RESULT
// lines; ok is false when the log has none (the probe has not reported).
func ParseRequestReport(log string) (r RequestReport, ok bool, err error) {
	v, found := ParseResults(log)[RequestsKey]
	if !found {
		return RequestReport{}, false, nil
	}
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return RequestReport{}, true, fmt.Errorf("malformed %s result %q: %w", RequestsKey, v, err)
	}
	return r, true, nil
}
