package metricsadapter

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Sample is one element of an instant vector: its labels, the time of
// the evaluation and the value.
type Sample struct {
	Labels map[string]string
	Time   time.Time
	Value  float64
}

// Prometheus queries a Prometheus server's HTTP API.
type Prometheus struct {
	// URL is the server's base URL, e.g.
	// http://prometheus-operated.monitoring.svc:9090.
	URL string
	// Client sends the requests; http.DefaultClient when nil.
	Client *http.Client
}

// queryResponse is the envelope of /api/v1/query.
type queryResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	} `json:"data"`
}

type vectorSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Query evaluates an instant query whose result is a vector.
func (p *Prometheus) Query(ctx context.Context, query string) ([]Sample, error) {
	u, err := url.Parse(strings.TrimSuffix(p.URL, "/") + "/api/v1/query")
	if err != nil {
		return nil, fmt.Errorf("prometheus URL %q: %w", p.URL, err)
	}
	form := url.Values{"query": {query}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	c := p.Client
	if c == nil {
		c = http.DefaultClient
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("querying prometheus: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("reading prometheus' answer: %w", err)
	}
	return parseVector(res.StatusCode, body)
}

// parseVector decodes an /api/v1/query answer holding a vector.
func parseVector(status int, body []byte) ([]Sample, error) {
	var r queryResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("prometheus answered %d with no API response: %w", status, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("prometheus answered %d: %s: %s", status, r.ErrorType, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("prometheus answered a %s, not a vector", r.Data.ResultType)
	}
	out := make([]Sample, 0, len(r.Data.Result))
	for _, raw := range r.Data.Result {
		var vs vectorSample
		if err := json.Unmarshal(raw, &vs); err != nil {
			return nil, fmt.Errorf("prometheus vector element %s: %w", raw, err)
		}
		ts, ok := vs.Value[0].(float64)
		if !ok {
			return nil, fmt.Errorf("prometheus vector element %s: no timestamp", raw)
		}
		s, ok := vs.Value[1].(string)
		if !ok {
			return nil, fmt.Errorf("prometheus vector element %s: no value", raw)
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("prometheus vector element %s: %w", raw, err)
		}
		sec, frac := math.Modf(ts)
		out = append(out, Sample{Labels: vs.Metric, Time: time.Unix(int64(sec), int64(frac*1e9)), Value: v})
	}
	return out, nil
}
