// Command bridge provisions Chainguard images requested and approved in an
// ITSM (ServiceNow catalog requests, Jira issues) and writes the result back
// into each ticket. See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/chainguard-dev/image-request-bridge/connectors"
	"github.com/chainguard-dev/image-request-bridge/internal/app"
	"github.com/chainguard-dev/image-request-bridge/internal/config"
	"github.com/chainguard-dev/image-request-bridge/internal/logging"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bridge:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "bridge",
		Short: "Provision Chainguard images requested and approved in ServiceNow or Jira",
		Long: `The Image Request Bridge finds approved image requests (ServiceNow RITMs of a
catalog item, Jira issues), provisions the image into your organization's
Chainguard registry, and writes the result and an audit trail back into the
ticket, closing it.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newSyncCmd(), newRunCmd(), newValidateCmd(), newStatusCmd(), newAuditCmd(), newReplayCmd(), newDemoCmd(), newVersionCmd())
	return root
}

// loadConfig loads and validates the config and builds the logger it asks for.
func loadConfig(path string) (*config.Config, zerolog.Logger, error) {
	if path == "" {
		return nil, zerolog.Nop(), fmt.Errorf("--config is required (see config.example.yaml)")
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, zerolog.Nop(), err
	}
	log, err := logging.New(os.Stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return nil, zerolog.Nop(), err
	}
	return cfg, log.With().Str("bridge_version", app.BuildVersion()).Logger(), nil
}

// sourceNames returns the registered sources' names (connectors.Sources),
// for --source and help texts.
func sourceNames() []string { return source.Names(connectors.Sources) }

// orList renders names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// sourceKeys returns "<name>.<key>" for every registered source, joined.
func sourceKeys(key string) string {
	var out []string
	for _, n := range sourceNames() {
		out = append(out, n+"."+key)
	}
	return strings.Join(out, ", ")
}

// webhookPaths returns the webhook paths of the registered sources.
func webhookPaths() string {
	var out []string
	for _, c := range connectors.Sources {
		if _, ok := c.(source.Webhooker); ok {
			out = append(out, "/webhooks/"+c.Name())
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return "POST " + strings.Join(out, ", ")
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the bridge version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "image-request-bridge", app.BuildVersion(), runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
			return nil
		},
	}
}
