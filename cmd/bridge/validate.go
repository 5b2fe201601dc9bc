package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/chainguard-dev/image-request-bridge/internal/app"
)

func newValidateCmd() *cobra.Command {
	var cfgPath string
	var online bool
	cmd := &cobra.Command{
		Use:   "validate --config FILE [--online]",
		Short: "Check the config; with --online, also the credentials",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s: configuration is valid\n", cfgPath)
			for _, w := range cfg.PermissionWarnings() {
				fmt.Fprintf(out, "warning: %s\n", w)
			}
			fmt.Fprintf(out, "\n%s", cfg.Redacted())
			if !online {
				return nil
			}
			a, err := app.Build(cmd.Context(), cfg, log, app.Options{ReadOnly: true})
			if err != nil {
				return err
			}
			defer a.Close()
			checks := a.Checks()
			// The checks run at once (the slowest, not their sum, is the
			// wait) and are printed in name order.
			errs := make([]error, len(checks))
			var wg sync.WaitGroup
			for i, c := range checks {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(cmd.Context(), 20*time.Second)
					defer cancel()
					errs[i] = c.Run(ctx)
				}()
			}
			wg.Wait()
			failed := 0
			fmt.Fprintln(out)
			for i, c := range checks {
				if errs[i] != nil {
					failed++
					fmt.Fprintf(out, "%-12s FAIL  %v\n", c.Name, errs[i])
				} else {
					fmt.Fprintf(out, "%-12s ok\n", c.Name)
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d online check(s) failed", failed)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "path to the YAML config")
	cmd.Flags().BoolVar(&online, "online", false, "also make one authenticated call to each upstream")
	return cmd
}
