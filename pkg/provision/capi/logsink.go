package capi

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/go-logr/logr"

	"github.com/kaic-dev/kaic/pkg/progress"
)

// clusterctlLog routes clusterctl's log lines: every line goes to slog at
// debug level, and its top-level lines ("Installing cert-manager",
// "Installing provider …") also become progress notes for people.
type clusterctlLog struct {
	logger *slog.Logger
	r      progress.Steps
	values []any
}

var _ logr.LogSink = (*clusterctlLog)(nil)

func (l *clusterctlLog) Init(logr.RuntimeInfo) {}

// Enabled keeps clusterctl's chattier levels out of the way: level 0 and 1
// reach slog, only level 0 reaches people.
func (l *clusterctlLog) Enabled(level int) bool { return level <= 1 }

func (l *clusterctlLog) Info(level int, msg string, kv ...any) {
	all := append(append([]any{}, l.values...), kv...)
	l.logger.LogAttrs(context.Background(), slog.LevelDebug, "clusterctl: "+msg, slog.Group("", all...))
	if level == 0 && l.r != nil && strings.TrimSpace(msg) != "" {
		l.r.Notef("clusterctl: %s%s", msg, pairs(kv))
	}
}

func (l *clusterctlLog) Error(err error, msg string, kv ...any) {
	all := append(append([]any{}, l.values...), kv...)
	l.logger.Warn("clusterctl: "+msg, append(all, "error", err)...)
	if l.r != nil {
		l.r.Notef("clusterctl: %s: %v", msg, err)
	}
}

func (l *clusterctlLog) WithValues(kv ...any) logr.LogSink {
	return &clusterctlLog{logger: l.logger, r: l.r, values: append(append([]any{}, l.values...), kv...)}
}

func (l *clusterctlLog) WithName(string) logr.LogSink { return l }

// pairs renders key/value pairs as " key=value …".
func pairs(kv []any) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	return b.String()
}
