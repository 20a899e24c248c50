// Package fetch downloads files over HTTP for kaic: retries with exponential
// backoff and jitter, sha256 verification of pinned content, and an on-disk
// cache that serves pinned content by digest and keeps the last good copy of
// unpinned content by URL so that a run can continue offline.
package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// Defaults used by New when no option overrides them.
const (
	DefaultMaxAttempts   = 5
	DefaultWaitMin       = 500 * time.Millisecond
	DefaultWaitMax       = 30 * time.Second
	DefaultMaxRetryAfter = 2 * time.Minute
	DefaultUserAgent     = "kaic"
)

// Client performs HTTP GET requests with retries. It is safe for concurrent
// use; the zero value is not usable, build one with New.
type Client struct {
	httpClient    *http.Client
	maxAttempts   int
	waitMin       time.Duration
	waitMax       time.Duration
	maxRetryAfter time.Duration
	userAgent     string
	logger        *slog.Logger
}

// Option configures a Client.
type Option func(*Client)

// WithMaxAttempts sets how many times a request is tried in total (first try
// included). Values below 1 are treated as 1.
func WithMaxAttempts(n int) Option {
	return func(c *Client) {
		c.maxAttempts = max(n, 1)
	}
}

// WithWait bounds the backoff between attempts: the first retry waits about
// min, each further retry doubles it, never beyond max. Jitter spreads every
// wait over its upper half so that parallel downloads do not retry in step.
func WithWait(min, max time.Duration) Option {
	return func(c *Client) {
		if min < 0 {
			min = 0
		}
		if max < min {
			max = min
		}
		c.waitMin, c.waitMax = min, max
	}
}

// WithMaxRetryAfter caps how long a server's Retry-After header may make the
// client wait before the next attempt.
func WithMaxRetryAfter(d time.Duration) Option {
	return func(c *Client) { c.maxRetryAfter = max(d, 0) }
}

// WithHTTPClient replaces the underlying HTTP client (transport, proxies,
// TLS). Its Timeout, if any, applies to each attempt.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.httpClient = hc
		}
	}
}

// WithUserAgent sets the User-Agent header sent with every request.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// WithLogger sets the logger for retries and cache decisions. By default the
// client logs nothing.
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) {
		if l != nil {
			c.logger = l
		}
	}
}

// New returns a Client with the given options applied over the defaults.
func New(opts ...Option) *Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.ResponseHeaderTimeout = time.Minute
	c := &Client{
		httpClient:    &http.Client{Transport: transport},
		maxAttempts:   DefaultMaxAttempts,
		waitMin:       DefaultWaitMin,
		waitMax:       DefaultWaitMax,
		maxRetryAfter: DefaultMaxRetryAfter,
		userAgent:     DefaultUserAgent,
		logger:        slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// Get downloads url into memory. The body is read completely within the
// retry loop, so a body cut short by the network is fetched again.
func (c *Client) Get(ctx context.Context, url string) ([]byte, error) {
	var body []byte
	_, err := c.do(ctx, url, nil, func(resp *http.Response) error {
		b, err := readAll(resp)
		if err != nil {
			return err
		}
		body = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	return body, nil
}

// bodyFunc consumes the body of a 200 response. An error it returns is
// retried unless it is a *ChecksumError.
type bodyFunc func(resp *http.Response) error

// do runs one GET with retries. Only 200 bodies are passed to consume; a 304
// is returned to the caller as a status with no error so that revalidation
// can act on it. Any other final status is an *Error.
func (c *Client) do(ctx context.Context, rawURL string, header http.Header, consume bodyFunc) (int, error) {
	shown := redact(rawURL)
	var (
		attempts   int
		lastStatus int
		lastErr    error
	)
	fail := func(err error) error {
		return &Error{URL: shown, Attempts: attempts, Status: lastStatus, Err: err}
	}

	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, fail(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	req.SetResponseHandler(func(resp *http.Response) error {
		defer resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			return consume(resp)
		case resp.StatusCode == http.StatusNotModified && header.Get("If-None-Match")+header.Get("If-Modified-Since") != "":
			return nil
		default:
			return &statusError{code: resp.StatusCode}
		}
	})

	rc := &retryablehttp.Client{
		HTTPClient:   c.httpClient,
		RetryWaitMin: c.waitMin,
		RetryWaitMax: c.waitMax,
		RetryMax:     c.maxAttempts - 1,
		RequestLogHook: func(_ retryablehttp.Logger, _ *http.Request, _ int) {
			attempts++
		},
		CheckRetry: func(ctx context.Context, resp *http.Response, err error) (bool, error) {
			if resp != nil {
				lastStatus = resp.StatusCode
			}
			lastErr = err
			return retryPolicy(ctx, resp, err)
		},
		Backoff: func(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
			wait := c.backoff(min, max, attempt, resp)
			c.logger.Warn("download attempt failed, retrying",
				"url", shown, "attempt", attempts, "maxAttempts", c.maxAttempts,
				"status", lastStatus, "error", lastErr, "wait", wait)
			return wait
		},
		ErrorHandler: func(resp *http.Response, err error, _ int) (*http.Response, error) {
			if resp != nil {
				resp.Body.Close()
			}
			if err == nil {
				err = lastErr
			}
			if err == nil && resp != nil {
				err = &statusError{code: resp.StatusCode}
			}
			return nil, err
		},
	}

	resp, err := rc.Do(req)
	if err != nil {
		return 0, fail(err)
	}
	resp.Body.Close()
	c.logger.Debug("downloaded", "url", shown, "status", resp.StatusCode, "attempts", attempts)
	return resp.StatusCode, nil
}

// retryPolicy retries connection errors, truncated bodies, 429 and 5xx
// responses (except 501, which will not change on retry), and stops on
// everything else, including a cancelled context and a checksum mismatch.
func retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		var sum *ChecksumError
		var status *statusError
		if errors.As(err, &sum) || errors.As(err, &status) || isPermanent(err) {
			return false, err
		}
		return true, nil
	}
	if resp == nil {
		return true, nil
	}
	switch code := resp.StatusCode; {
	case code == http.StatusTooManyRequests:
		return true, nil
	case code >= 500 && code != http.StatusNotImplemented:
		return true, nil
	}
	return false, nil
}

// backoff is exponential with jitter, except that a Retry-After header on a
// 429 or 5xx response is honoured (capped by maxRetryAfter).
func (c *Client) backoff(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500) {
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return minDuration(d, c.maxRetryAfter)
		}
	}
	wait := max
	if attempt < 62 {
		if w := min << attempt; w > 0 && w < max {
			wait = w
		}
	}
	if wait <= 1 {
		return wait
	}
	half := wait / 2
	return half + rand.N(wait-half+1)
}

// retryAfter parses a Retry-After value: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

func minDuration(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

// readAll reads a 200 body and insists on getting as many bytes as the
// server announced.
func readAll(resp *http.Response) ([]byte, error) {
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	if err := checkLength(resp, int64(len(b))); err != nil {
		return nil, err
	}
	return b, nil
}

func checkLength(resp *http.Response, n int64) error {
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("body truncated: got %d of %d bytes: %w", n, resp.ContentLength, io.ErrUnexpectedEOF)
	}
	return nil
}

// isPermanent reports transport errors that fail the same way on every
// attempt: bad certificates, unsupported schemes, redirect loops.
func isPermanent(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	if errors.As(err, &verify) || errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) {
		return true
	}
	// The resolver's answer that a name does not exist (offline, or a
	// typo) does not change within a retry's wait; a DNS timeout might.
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "unsupported protocol scheme") ||
		strings.Contains(msg, "stopped after") ||
		strings.Contains(msg, "invalid header")
}

// redact hides a password in the URL so that it never reaches an error or a log.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	return u.Redacted()
}
