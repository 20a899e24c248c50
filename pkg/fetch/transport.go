package fetch

import (
	"context"
	"net/http"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// HTTPClient returns an *http.Client whose requests are retried the way Get
// retries them: connection errors, 429 and 5xx (but 501) with exponential
// backoff and jitter, honouring Retry-After; other statuses are returned as
// they are. It is meant for libraries that make their own requests, such as
// an OCI registry client. Unlike Get it cannot re-fetch a body cut short
// after the headers arrived: callers that need that guarantee verify a
// digest (OCI clients do) or use Get and Cache.
func (c *Client) HTTPClient() *http.Client {
	rc := &retryablehttp.Client{
		HTTPClient:   c.httpClient,
		RetryWaitMin: c.waitMin,
		RetryWaitMax: c.waitMax,
		RetryMax:     c.maxAttempts - 1,
		CheckRetry: func(ctx context.Context, resp *http.Response, err error) (bool, error) {
			retry, _ := retryPolicy(ctx, resp, err)
			return retry, nil
		},
		Backoff: func(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
			wait := c.backoff(min, max, attempt, resp)
			attrs := []any{"attempt", attempt + 1, "maxAttempts", c.maxAttempts, "wait", wait}
			if resp != nil {
				attrs = append(attrs, "status", resp.StatusCode)
				if resp.Request != nil {
					attrs = append(attrs, "url", redact(resp.Request.URL.String()))
				}
			}
			c.logger.Warn("request failed, retrying", attrs...)
			return wait
		},
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	return &http.Client{
		Transport:     &retryablehttp.RoundTripper{Client: rc},
		CheckRedirect: c.httpClient.CheckRedirect,
		Jar:           c.httpClient.Jar,
	}
}
