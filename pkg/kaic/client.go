package kaic

import (
	"log/slog"
	"os"
	"time"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
)

// DefaultProfile is the profile used when none is named.
const DefaultProfile = "kind-dra"

// Client runs kaic's work for a program: each method is one command of the
// kaic CLI, which is a thin shell over it. Build one with New; a Client
// holds no run state and is safe for concurrent use on different run
// directories.
type Client struct {
	loader    *profile.Loader
	getenv    func(string) string
	logger    *slog.Logger
	progress  progress.Reporter
	warn      func(string)
	version   string
	checks    *conformance.Registry
	checklist conformance.Source
	now       func() time.Time
	probeState
}

// Option configures a Client.
type Option func(*Client)

// WithLoader sets how profiles are read (default NewLoader()).
func WithLoader(l *profile.Loader) Option {
	return func(c *Client) {
		if l != nil {
			c.loader = l
		}
	}
}

// WithGetenv sets how environment variables are read (default os.Getenv):
// Cluster API variables refer to them.
func WithGetenv(getenv func(string) string) Option {
	return func(c *Client) {
		if getenv != nil {
			c.getenv = getenv
		}
	}
}

// WithLogger sets the logger for diagnostics (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithProgress sets where people-facing progress goes: phases, steps and
// notes (default: discard). progress.NewPrinter renders it.
func WithProgress(r progress.Reporter) Option {
	return func(c *Client) {
		if r != nil {
			c.progress = r
		}
	}
}

// WithWarnings receives warnings about a profile as it is loaded (default:
// discard; they are also in Plan.Warnings).
func WithWarnings(warn func(string)) Option {
	return func(c *Client) {
		if warn != nil {
			c.warn = warn
		}
	}
}

// WithVersion sets the kaic version recorded in the run state and the
// evidence.
func WithVersion(v string) Option {
	return func(c *Client) { c.version = v }
}

// WithChecks replaces the checks verify runs (default: kaic's own, chosen
// for the profile).
func WithChecks(r *conformance.Registry) Option {
	return func(c *Client) { c.checks = r }
}

// WithChecklist says where the official checklist is read from (default:
// downloaded, then cached).
func WithChecklist(src conformance.Source) Option {
	return func(c *Client) { c.checklist = src }
}

// New returns a Client with opts applied over the defaults.
func New(opts ...Option) *Client {
	c := &Client{
		loader:   NewLoader(),
		getenv:   os.Getenv,
		logger:   slog.New(slog.DiscardHandler),
		progress: progress.Discard,
		warn:     func(string) {},
		version:  "dev",
		now:      time.Now,
	}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// LoadProfile loads a profile by built-in name or file path, defaulted and
// validated ("" is DefaultProfile); its warnings go to the warnings handler.
func (c *Client) LoadProfile(ref string) (*profile.Resolved, error) {
	if ref == "" {
		ref = DefaultProfile
	}
	r, err := c.loader.Load(ref)
	if err != nil {
		return nil, err
	}
	for _, w := range r.Warnings {
		c.warn(w)
	}
	return r, nil
}

// Plan computes what a run of the profile would do, touching nothing.
func (c *Client) Plan(ref string) (*Plan, error) {
	r, err := c.LoadProfile(ref)
	if err != nil {
		return nil, err
	}
	pl, err := buildPlan(r, c.getenv)
	if err != nil {
		return nil, err
	}
	if pl.ProbeImage, err = c.probeImage(r.Profile); err != nil {
		return nil, err
	}
	return pl, nil
}
