package stack

import "time"

// SetWebhookRetryPause sets the pause between attempts while an admission
// webhook does not answer, returning a func that restores it.
func SetWebhookRetryPause(d time.Duration) func() {
	old := webhookRetryPause
	webhookRetryPause = d
	return func() { webhookRetryPause = old }
}

// WebhookUnavailable exposes webhookUnavailable to the tests.
var WebhookUnavailable = webhookUnavailable
