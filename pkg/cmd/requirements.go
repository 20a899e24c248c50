package cmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/conformance"
)

// ChecklistDirEnv names the directory of the official checklists when
// --checklist-dir is not given.
const ChecklistDirEnv = "KAIC_CHECKLIST_DIR"

// checklistOptions select where the official checklist is read from.
type checklistOptions struct {
	file    string
	dir     string
	offline bool
	getenv  func(string) string
}

func (c *checklistOptions) addFlags(cmd *cobra.Command, o *globalOptions) {
	c.getenv = o.getenv
	cmd.Flags().StringVar(&c.file, "checklist", "", "official checklist file (AIConformance-<version>.yaml) to read instead of downloading it")
	cmd.Flags().StringVar(&c.dir, "checklist-dir", "", "directory holding the official checklist files, for offline use (default $"+ChecklistDirEnv+")")
	cmd.Flags().BoolVar(&c.offline, "offline", false, "never download: use --checklist, --checklist-dir or the cache")
}

func (c *checklistOptions) source() conformance.Source {
	src := conformance.Source{File: c.file, Dir: c.dir, Offline: c.offline}
	if src.File == "" && src.Dir == "" && c.getenv != nil {
		src.Dir = c.getenv(ChecklistDirEnv)
	}
	return src
}

// hint says how to read the checklist without network, unless the user
// already named a file or directory.
func (c *checklistOptions) hint() string {
	src := c.source()
	switch {
	case src.File != "":
		return ""
	case src.Dir != "":
		return "\n(is " + src.Dir + " the directory of the official checklists, AIConformance-<version>.yaml?)"
	}
	return "\n(offline? pass --checklist FILE or --checklist-dir DIR, or set $" + ChecklistDirEnv + ")"
}

// requirementRow is one row of `kaic requirements list`.
type requirementRow struct {
	ID          string `json:"id"`
	Category    string `json:"category"`
	Level       string `json:"level"`
	TestName    string `json:"testName"`
	Description string `json:"description"`
}

func newRequirementsCommand(o *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "requirements",
		Short: "The AI conformance requirements of each checklist version",
		Args:  noArgs,
	}
	c.AddCommand(newRequirementsListCommand(o))
	return c
}

func newRequirementsListCommand(o *globalOptions) *cobra.Command {
	var (
		version string
		output  string
		cl      checklistOptions
	)
	c := &cobra.Command{
		Use:   "list",
		Short: "List the requirements of a conformance version",
		Long: `list prints the requirements of one AI conformance version: id, category,
level and the Go test name kaic's evidence uses. Descriptions come from the
official checklist of that version, downloaded from the CNCF repository into
kaic's cache, or read from --checklist / --checklist-dir for offline use. The
file is checked against kaic's own table of ids and levels, so a changed
checklist is noticed.`,
		Example: `  kaic requirements list                 # the newest version
  kaic requirements list --version 1.36
  KAIC_CHECKLIST_DIR=./checklists kaic requirements list -o yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if version == "" {
				versions := conformance.Versions()
				version = versions[len(versions)-1]
			}
			if _, err := conformance.Builtin(version); err != nil {
				return usageError("--version: %v", err)
			}
			cat, err := conformance.Load(cmd.Context(), version, cl.source())
			if err != nil {
				return fmt.Errorf("%w%s", err, cl.hint())
			}
			rows := make([]requirementRow, 0, len(cat.Requirements))
			for _, r := range cat.Requirements {
				rows = append(rows, requirementRow{ID: r.ID, Category: r.Category, Level: string(r.Level), TestName: conformance.TestName(r.ID), Description: r.Description})
			}
			if output != outputTable {
				return printStructured(o.stdout, output, map[string]any{"version": cat.Version, "source": cat.Source, "requirements": rows})
			}
			fmt.Fprintf(o.stdout, "AI conformance %s (%d requirements, from %s)\n\n", cat.Version, len(rows), cat.Source)
			tw := newTable(o.stdout)
			fmt.Fprintln(tw, "CATEGORY\tID\tLEVEL\tTEST\tDESCRIPTION")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Category, r.ID, r.Level, r.TestName, truncate(r.Description, 80))
			}
			return tw.Flush()
		},
	}
	c.Flags().StringVar(&version, "version", "", "conformance version, e.g. 1.36 (default: the newest, "+conformance.Versions()[len(conformance.Versions())-1]+")")
	_ = c.RegisterFlagCompletionFunc("version", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return conformance.Versions(), cobra.ShellCompDirectiveNoFileComp
	})
	addOutputFlag(c, &output, outputTable)
	cl.addFlags(c, o)
	return c
}
