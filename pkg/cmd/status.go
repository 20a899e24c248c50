package cmd

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/progress"
)

// runDirArg is RUN_DIR when given, else the default profile's run
// directory.
func runDirArg(o *globalOptions, args []string) (string, error) {
	if len(args) == 1 {
		return args[0], nil
	}
	r, err := o.client().LoadProfile("")
	if err != nil {
		return "", err
	}
	return r.Profile.Spec.Output.Dir, nil
}

func newStatusCommand(o *globalOptions) *cobra.Command {
	output := outputTable
	c := &cobra.Command{
		Use:   "status [RUN_DIR]",
		Short: "Show the phases of a run and the checks recorded so far",
		Long: `status reads RUN_DIR/state.json and the check results recorded in
RUN_DIR/results: each phase with its status and time, and each check that has
a result so far. It takes no lock, so it works while a run is going.
RUN_DIR defaults to the default profile's run directory.`,
		Example: "  kaic status\n  kaic status ./run -o json",
		Args:    maxArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			dir, err := runDirArg(o, args)
			if err != nil {
				return err
			}
			s, err := o.client().Status(dir)
			if err != nil {
				return err
			}
			if output != outputTable {
				return printStructured(o.stdout, output, s)
			}
			printStatus(o.stdout, s)
			return nil
		},
	}
	addOutputFlag(c, &output, outputTable)
	return c
}

func newResultsCommand(o *globalOptions) *cobra.Command {
	output := outputTable
	c := &cobra.Command{
		Use:   "results [RUN_DIR]",
		Short: "Summarize the check results of a run; the exit code is the verdict",
		Long: `results prints one line per requirement with a recorded result in
RUN_DIR/results, and the verdict. It exits 0 when the selected requirements
are met, 3 when checks failed or selected MUST requirements were not
verified, as 'kaic verify' does. RUN_DIR defaults to the default profile's
run directory.`,
		Example: "  kaic results ./run\n  kaic results ./run -o json | jq '.checks[] | select(.status == \"fail\")'",
		Args:    maxArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			dir, err := runDirArg(o, args)
			if err != nil {
				return err
			}
			s, err := o.client().Status(dir)
			if err != nil {
				return err
			}
			if len(s.Checks) == 0 {
				return fmt.Errorf("%s holds no check results yet (kaic verify writes them)", dir)
			}
			if output != outputTable {
				if err := printStructured(o.stdout, output, s); err != nil {
					return err
				}
			} else {
				printChecks(o.stdout, s)
				printVerdict(o.stdout, s)
			}
			return s.Err()
		},
	}
	addOutputFlag(c, &output, outputTable)
	return c
}

func printStatus(w io.Writer, s *kaic.RunStatus) {
	fmt.Fprintf(w, "Run %s (profile %s, id %s), updated %s\n\n", s.Dir, s.Profile, s.RunID, s.Updated.Local().Format(time.DateTime))
	tw := newTable(w)
	fmt.Fprintln(tw, "PHASE\tSTATUS\tSTARTED\tDURATION\tERROR")
	for _, p := range s.Phases {
		started, took := "-", "-"
		if !p.Start.IsZero() {
			started = p.Start.Local().Format(time.TimeOnly)
			if !p.End.IsZero() {
				took = progress.FormatDuration(p.End.Sub(p.Start))
			} else {
				took = progress.FormatDuration(time.Since(p.Start)) + " so far"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, p.Status, started, took, firstLine(p.Error))
	}
	_ = tw.Flush()
	if len(s.Checks) == 0 {
		fmt.Fprintln(w, "\nNo check results yet.")
		return
	}
	fmt.Fprintln(w)
	printChecks(w, s)
	printVerdict(w, s)
}

func printChecks(w io.Writer, s *kaic.RunStatus) {
	tw := newTable(w)
	fmt.Fprintln(tw, "REQUIREMENT\tLEVEL\tRESULT\tDURATION\tREASON")
	for _, ch := range s.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ch.ID, ch.Level, ch.Status, progress.FormatDuration(ch.Duration), truncate(firstLine(ch.Reason), 100))
	}
	_ = tw.Flush()
}

func printVerdict(w io.Writer, s *kaic.RunStatus) {
	var counts []string
	for _, st := range []conformance.Status{conformance.Passed, conformance.Failed, conformance.Skipped, conformance.NotApplicable} {
		if n := s.Counts[st]; n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, st))
		}
	}
	verdict := "the selected requirements are met"
	if s.Verdict != "" {
		verdict = s.Verdict
	}
	fmt.Fprintf(w, "\n%s: %s\n", strings.Join(counts, ", "), verdict)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func newLogsCommand(o *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "logs [RUN_DIR]",
		Short: "Collect a run's node logs, pods, container logs and events into one archive",
		Long: `logs writes RUN_DIR/logs/kaic-logs-<time>.tar.gz with what explains a run
after the fact: the nodes' logs where the backend has them (kind, Cluster
API), and for every namespace the run created or installed into, its pods,
the logs of their containers (the previous instance's too) and its events.
What cannot be collected is listed in errors.txt inside the archive. It
takes no lock, so it works while a run is going. RUN_DIR defaults to the
default profile's run directory.`,
		Example: "  kaic logs\n  kaic logs ./run",
		Args:    maxArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			dir, err := runDirArg(o, args)
			if err != nil {
				return err
			}
			printer, flush := o.progress()
			defer flush()
			archive, err := o.client(kaic.WithProgress(printer)).Logs(c.Context(), kaic.LogsOptions{Dir: dir})
			if err != nil {
				return err
			}
			fmt.Fprintf(o.stdout, "Logs written to %s\n", archive)
			return nil
		},
	}
	return c
}
