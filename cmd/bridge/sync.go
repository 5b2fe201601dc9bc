package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/chainguard-dev/image-request-bridge/internal/app"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

func newSyncCmd() *cobra.Command {
	var cfgPath, source string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "sync --config FILE [--source " + strings.Join(sourceNames(), "|") + "] [--dry-run]",
		Short: "Run one reconcile pass and exit",
		Long: `Run one reconcile pass: every approved ticket is provisioned and closed with
one note. Exits 0 when the pass ran (even if tickets were rejected or will be
retried), non-zero when it could not run (bad config, a source unreachable).

With --dry-run, print the plan instead: for each approved ticket, the
provisioning call, the note and the state change a pass would make. It only
reads (the sources, the store, Chainguard's catalog and entitlements) and
writes nothing upstream or in the store.

A pass owns the store while it runs: it is refused while a daemon (bridge
run) or another pass uses the same store, and names that process; a dry run
is not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			if dryRun {
				if _, err := os.Stat(cfg.State.DSN); err != nil {
					cfg.State.DSN = ":memory:" // no store yet: plan against an empty one, create nothing
				}
			}
			a, err := app.Build(cmd.Context(), cfg, log, app.Options{Only: source, ReadOnly: dryRun})
			if err != nil {
				return err
			}
			defer a.Close()
			if dryRun {
				var steps []isync.Step
				if err := a.Engine.DryRun(cmd.Context(), func(s isync.Step) error { steps = append(steps, s); return nil }); err != nil {
					return fmt.Errorf("dry run: %w", err)
				}
				printPlan(cmd.OutOrStdout(), steps)
				return nil
			}
			start := time.Now()
			st, err := a.Engine.Pass(cmd.Context())
			if err != nil && st.Listed == 0 {
				return fmt.Errorf("the pass could not run: %w", err)
			}
			printStats(cmd.OutOrStdout(), st, time.Since(start))
			if err != nil {
				return fmt.Errorf("the pass stopped before the end (the tickets above were handled; the rest are picked up by the next pass): %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "path to the YAML config")
	cmd.Flags().StringVar(&source, "source", "", "only this source: "+orList(sourceNames()))
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan; write nothing upstream or in the store")
	return cmd
}

func printStats(w io.Writer, st isync.Stats, took time.Duration) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "tickets listed\t%d\n", st.Listed)
	for _, d := range st.SortedDecisions() {
		fmt.Fprintf(tw, "%s\t%d\n", d, st.Decisions[d])
	}
	fmt.Fprintf(tw, "skipped (not due, leased, done)\t%d\n", st.Skipped)
	fmt.Fprintf(tw, "errors (retried later)\t%d\n", st.Errors)
	fmt.Fprintf(tw, "took\t%s\n", took.Round(time.Millisecond))
	tw.Flush()
}
