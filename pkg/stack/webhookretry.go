package stack

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// WebhookTimeoutError is what RetryPastWebhooks returns when an admission
// webhook still could not be reached when its time was up.
type WebhookTimeoutError struct {
	Webhook string        // the webhook's name
	Waited  time.Duration // from the first attempt to the last
	Limit   time.Duration // the time allowed
	Err     error         // the last attempt's error
}

func (e *WebhookTimeoutError) Error() string {
	return fmt.Sprintf("admission webhook %s did not answer for %s (of the %s allowed): %v",
		e.Webhook, e.Waited.Round(time.Second), e.Limit.Round(time.Second), e.Err)
}

func (e *WebhookTimeoutError) Unwrap() error { return e.Err }

// RetryPastWebhooks calls try, and calls it again after pause for as long
// as it fails only because an admission webhook cannot be reached (see
// WebhookUnavailable): a webhook installed moments ago refuses objects
// until its pods serve it and every service proxy routes to them. It never
// starts a pause that would end after limit. Any other outcome, a webhook
// that answered and denied included, is returned at once. waiting, if not
// nil, is told before each pause which webhook did not answer.
func RetryPastWebhooks(ctx context.Context, limit, pause time.Duration, waiting func(hook string, err error), try func() error) error {
	start := time.Now()
	deadline := start.Add(limit)
	for {
		err := try()
		hook, unavailable := WebhookUnavailable(err)
		if !unavailable || ctx.Err() != nil {
			return err
		}
		if time.Now().Add(pause).After(deadline) {
			return &WebhookTimeoutError{Webhook: hook, Waited: time.Since(start), Limit: limit, Err: err}
		}
		if waiting != nil {
			waiting(hook, err)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
}

// webhookRetryPause is how long a component waits before trying again
// when an admission webhook did not answer.
var webhookRetryPause = 5 * time.Second

// WebhookUnavailable reports whether err says an admission webhook could
// not be reached at all (its Service has no endpoints yet, refuses
// connections or times out, or serves a certificate not yet trusted), as
// opposed to a webhook that answered and denied. It returns the webhook's
// name.
func WebhookUnavailable(err error) (string, bool) {
	if err == nil {
		return "", false
	}
	msg := err.Error()
	_, rest, ok := strings.Cut(msg, `failed calling webhook "`)
	if !ok {
		return "", false
	}
	name, _, _ := strings.Cut(rest, `"`)
	for _, sign := range []string{
		"connection refused",
		"no endpoints available",
		"x509: ",
		"tls: ",
		"i/o timeout",
		"context deadline exceeded",
		"connection reset by peer",
		"no route to host",
		"service unavailable",
	} {
		if strings.Contains(rest, sign) {
			return name, true
		}
	}
	return "", false
}
