package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/chainguard-dev/image-request-bridge/internal/demo"
	"github.com/chainguard-dev/image-request-bridge/internal/logging"
)

func newDemoCmd() *cobra.Command {
	var stateDir string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole flow on in-process fakes of ServiceNow, Jira and Chainguard",
		Long: `Start in-process fakes of the ServiceNow Table API, Jira Cloud and the
Chainguard registry API, seed a handful of RITMs and Jira issues, run one
reconcile pass with a SQLite store, and print what happened to each ticket,
the notes written and the audit trail. Needs no configuration and no network.
The fakes stop when the demo ends; the store stays in --state-dir for
bridge status and bridge audit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := "error"
			if verbose {
				level = "info"
			}
			log, err := logging.New(os.Stderr, level, "auto")
			if err != nil {
				return err
			}
			return demo.Run(cmd.Context(), demo.Options{StateDir: stateDir, Out: cmd.OutOrStdout(), Log: log})
		},
	}
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "directory for the demo's SQLite store (default: a new temporary directory)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also print the bridge's log lines")
	return cmd
}
