// Package ownership names what kaic creates: every object, Helm release and
// cluster a run creates carries the managed-by label and the run's id, so
// that a later command can tell what that run created from what was there
// before, and change or delete only the former.
package ownership

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"time"
)

// Label keys and the managed-by value kaic sets.
const (
	// ManagedByLabel is the well-known Kubernetes label naming the tool
	// that manages an object.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedBy is ManagedByLabel's value on what kaic creates.
	ManagedBy = "kaic"
	// RunIDLabel carries the id of the run that created an object.
	RunIDLabel = "kaic.dev/run-id"
)

// runIDPattern is what NewRunID makes: a date and eight hex digits, a
// valid label value.
var runIDPattern = regexp.MustCompile(`^[0-9]{8}-[0-9a-f]{8}$`)

// NewRunID returns a new run id: the UTC date (so ids sort by age when
// read) and 32 random bits, e.g. 20261203-8f3a91c2.
func NewRunID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return now.UTC().Format("20060102") + "-" + hex.EncodeToString(b[:])
}

// ValidRunID reports whether id has the form NewRunID makes.
func ValidRunID(id string) error {
	if !runIDPattern.MatchString(id) {
		return fmt.Errorf("run id %q is not of the form YYYYMMDD-xxxxxxxx", id)
	}
	return nil
}

// Labels returns the labels that mark something as created by run id.
func Labels(runID string) map[string]string {
	return map[string]string{ManagedByLabel: ManagedBy, RunIDLabel: runID}
}

// CreatedBy reports whether labels mark an object as created by run id.
func CreatedBy(labels map[string]string, runID string) bool {
	return runID != "" && labels[ManagedByLabel] == ManagedBy && labels[RunIDLabel] == runID
}

// Owner describes, for messages, who labels say created an object: "kaic
// run <id>", "kaic (no run id)", "<tool>" or "nobody kaic knows".
func Owner(labels map[string]string) string {
	switch m := labels[ManagedByLabel]; {
	case m == ManagedBy && labels[RunIDLabel] != "":
		return "kaic run " + labels[RunIDLabel]
	case m == ManagedBy:
		return "kaic (no run id)"
	case m != "":
		return m
	}
	return "not labelled as managed by any tool"
}
