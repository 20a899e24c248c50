package fetch

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is returned when a download fails. It names the URL (with any
// password redacted), how many attempts were made and the last HTTP status
// seen, if any.
type Error struct {
	URL      string
	Attempts int
	// Status is the last HTTP status code received, 0 if no response
	// arrived.
	Status int
	Err    error
}

func (e *Error) Error() string {
	last := "no response"
	if e.Status != 0 {
		last = fmt.Sprintf("last status %d %s", e.Status, http.StatusText(e.Status))
	}
	attempts := "attempts"
	if e.Attempts == 1 {
		attempts = "attempt"
	}
	return fmt.Sprintf("download %s failed after %d %s (%s): %v", e.URL, e.Attempts, attempts, last, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// IsNotFound reports whether err is a download that the server answered with
// 404 or 410.
func IsNotFound(err error) bool {
	var fe *Error
	return errors.As(err, &fe) && (fe.Status == http.StatusNotFound || fe.Status == http.StatusGone)
}

// ChecksumError reports content whose sha256 digest differs from the pinned
// one. It is never retried: the server sent a complete body that is not the
// expected content.
type ChecksumError struct {
	Want, Got string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("sha256 mismatch: want %s, got %s", e.Want, e.Got)
}

// statusError is a final HTTP status that is not a success.
type statusError struct{ code int }

func (e *statusError) Error() string {
	return fmt.Sprintf("unexpected HTTP status %d %s", e.code, http.StatusText(e.code))
}
