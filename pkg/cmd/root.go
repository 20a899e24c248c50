// Package cmd holds kaic's cobra commands: flags, help text and wiring onto
// the library packages. Commands hold no logic of their own.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
)

// Exit codes, documented in the README.
const (
	ExitOK           = 0
	ExitFailure      = 1
	ExitUsage        = 2
	ExitChecksFailed = 3
	ExitInterrupted  = 130
)

// ExitError carries an exit code other than the one an error maps to.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// usageError marks a command-line mistake (exit code 2).
func usageError(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// globalOptions are the flags every command has.
type globalOptions struct {
	kubeconfig string
	context    string
	verbosity  int
	quiet      bool
	stdout     io.Writer
	stderr     io.Writer
	getenv     func(string) string
}

func (o *globalOptions) logger() *slog.Logger {
	level := slog.LevelWarn
	switch {
	case o.verbosity >= 2:
		level = slog.LevelDebug
	case o.verbosity == 1:
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(o.stderr, &slog.HandlerOptions{Level: level}))
}

// addClusterFlags adds --kubeconfig and --context to the commands that
// reach a cluster.
func (o *globalOptions) addClusterFlags(c *cobra.Command) {
	c.Flags().StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file of an existing cluster to adopt (profiles with backend existing; default $KUBECONFIG or ~/.kube/config)")
	c.Flags().StringVar(&o.context, "context", "", "kubeconfig context of the existing cluster")
}

// progress returns the printer of a command's progress (nothing with -q)
// and the function that flushes it.
func (o *globalOptions) progress() (progress.Reporter, func()) {
	if o.quiet {
		return progress.Discard, func() {}
	}
	p := progress.NewPrinter(o.stderr, progress.WithGetenv(o.getenv))
	return p, func() { _ = p.Close() }
}

// target is the existing cluster --kubeconfig and --context name.
func (o *globalOptions) target() kaic.Target {
	return kaic.Target{Kubeconfig: o.kubeconfig, Context: o.context}
}

// client returns the library client the commands map their flags onto,
// printing profile warnings to stderr.
func (o *globalOptions) client(opts ...kaic.Option) *kaic.Client {
	base := []kaic.Option{
		kaic.WithGetenv(o.getenv),
		kaic.WithLogger(o.logger()),
		kaic.WithVersion(effectiveVersion()),
		kaic.WithPublishedProbeImage(publishedProbeImage()),
	}
	if !o.quiet {
		base = append(base, kaic.WithWarnings(func(w string) { fmt.Fprintf(o.stderr, "Warning: %s\n", w) }))
	}
	return kaic.New(append(base, opts...)...)
}

// NewRootCommand builds the kaic command tree writing to the given streams.
func NewRootCommand(stdout, stderr io.Writer) *cobra.Command {
	o := &globalOptions{stdout: stdout, stderr: stderr, getenv: os.Getenv}
	root := &cobra.Command{
		Use:   "kaic",
		Short: "Provision, install and verify a Kubernetes AI Conformance reference environment",
		Long: `kaic turns a declarative profile into a verified Kubernetes AI Conformance
reference environment: it provisions a cluster (kind, Cluster API or an
existing one), installs the AI stack with Helm, verifies every requirement of
the CNCF AI Conformance checklist end to end, and writes submission-ready
evidence (PRODUCT.yaml, junit.xml, results.json, e2e.log, transcripts).

A profile is a built-in name (kaic profiles list) or a YAML file.`,
		Example: `  # Everything, on the default profile (kind with a simulated accelerator)
  kaic up

  # What a profile would do, without doing it
  kaic plan -p kind-dra

  # Check an existing cluster
  kaic verify -p existing --kubeconfig ~/.kube/config`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.IntVarP(&o.verbosity, "verbose", "v", 0, "log verbosity, klog-style: 0 warnings, 1 info, 2 and more debug (-v 2)")
	pf.BoolVarP(&o.quiet, "quiet", "q", false, "print no progress and no warnings, only results and errors")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})

	root.AddCommand(
		newUpCommand(o),
		newPhaseCommand(o, pipeline.PhaseProvision, "Create or adopt the profile's cluster", `  kaic provision -p kind-dra
  kaic provision -p existing --kubeconfig ~/.kube/config --out ./run`),
		newPhaseCommand(o, pipeline.PhaseInstall, "Install the profile's stack components with Helm", `  kaic install -p kind-dra --out ./run
  kaic install -p my-profile.yaml --kubeconfig ./kubeconfig`),
		newPhaseCommand(o, pipeline.PhaseVerify, "Run the conformance checks the profile selects", `  kaic verify -p existing --kubeconfig ~/.kube/config
  kaic verify -p kind-dra --out ./run
  kaic verify --out ./run --focus 'gang|dra'     # only some checks
  kaic verify --rerun-failed ./run              # again, only what did not pass`),
		newReportCommand(o),
		newStatusCommand(o),
		newResultsCommand(o),
		newLogsCommand(o),
		newDownCommand(o),
		newPlanCommand(o),
		newProfilesCommand(o),
		newRequirementsCommand(o),
		newDoctorCommand(o),
		newImagesCommand(o),
		newValidateCommand(o),
		newVersionCommand(o),
		newProbeCommand(o),
	)
	return root
}

// Execute runs kaic with args and returns the process exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRootCommand(stdout, stderr)
	root.SetArgs(args)
	ctx, stop := pipeline.SignalContext(ctx)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := ExitCode(err)
	fmt.Fprintf(stderr, "Error: %v\n", err)
	return code
}

// ExitCode maps an error to kaic's exit code.
func ExitCode(err error) int {
	var ee *ExitError
	var usage *kaic.UsageError
	var refused *kaic.TargetRefusedError
	var fieldErrs profile.ErrorList
	var notFound *profile.NotFoundError
	var checksFailed *conformance.ChecksFailedError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.Code
	case errors.As(err, &checksFailed):
		return ExitChecksFailed
	case errors.Is(err, pipeline.ErrInterrupted), errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.As(err, &fieldErrs), errors.As(err, &notFound), errors.As(err, &usage), errors.As(err, &refused):
		return ExitUsage
	case isUnknownCommand(err):
		return ExitUsage
	default:
		return ExitFailure
	}
}

// isUnknownCommand recognises cobra's unknown-command error, which it
// returns before any of kaic's code runs.
func isUnknownCommand(err error) bool {
	return strings.HasPrefix(err.Error(), "unknown command ")
}

// noArgs, exactArgs and maxArgs are cobra argument checks whose errors are
// usage errors.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError("%s takes no arguments, got %q (see '%s --help')", c.CommandPath(), args, c.CommandPath())
	}
	return nil
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError("%s takes %d argument(s), got %d (see '%s --help')", c.CommandPath(), n, len(args), c.CommandPath())
		}
		return nil
	}
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) > n {
			return usageError("%s takes at most %d argument(s), got %d (see '%s --help')", c.CommandPath(), n, len(args), c.CommandPath())
		}
		return nil
	}
}
