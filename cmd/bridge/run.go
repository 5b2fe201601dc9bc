package main

import (
	"context"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/chainguard-dev/image-request-bridge/internal/app"
)

// shutdownGrace is how long in-flight tickets get to finish after SIGTERM.
const shutdownGrace = 30 * time.Second

func newRunCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the bridge as a daemon: a pass per source on its schedule",
		Long: `Run the bridge as a daemon. Each enabled source is reconciled at start and then
on its schedule (servicenow.schedule, jira.schedule); a pass still running when
the next is due is skipped. SIGTERM or SIGINT stops new passes and gives the
running ones 30s to finish their tickets; whatever is cut short is safely
re-driven from the store on the next start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			// Work continues for a grace period after the signal.
			work, cancelWork := context.WithCancel(context.WithoutCancel(cmd.Context()))
			defer cancelWork()
			a, err := app.Build(work, cfg, log, app.Options{})
			if err != nil {
				return err
			}
			defer a.Close()

			schedules := map[string]string{"servicenow": cfg.ServiceNow.Schedule, "jira": cfg.Jira.Schedule}
			c := cron.New(cron.WithChain(cron.Recover(cronLogger{log}), cron.SkipIfStillRunning(cronLogger{log})))
			for _, s := range a.Sources {
				name := s.Name()
				job := func() {
					start := time.Now()
					st, err := a.Engine.Pass(work, name)
					ev, msg := log.Info(), "pass finished"
					switch {
					case err != nil && work.Err() != nil:
						ev, msg = log.Info(), "pass interrupted by shutdown; unfinished tickets resume from the store"
					case err != nil:
						ev = log.Error().Err(err)
					}
					ev.Str("source", name).Int("listed", st.Listed).Int("errors", st.Errors).Stringer("took", time.Since(start).Round(time.Millisecond)).Msg(msg)
				}
				if _, err := c.AddFunc(schedules[name], job); err != nil {
					return fmt.Errorf("%s.schedule %q: %w", name, schedules[name], err)
				}
				go job() // reconcile at start: nothing waits a whole interval after a restart
			}
			c.Start()
			log.Info().Int("sources", len(a.Sources)).Msg("bridge running")
			<-cmd.Context().Done()
			log.Info().Stringer("grace", shutdownGrace).Msg("shutting down: no new passes; finishing in-flight tickets")
			done := c.Stop()
			select {
			case <-done.Done():
			case <-time.After(shutdownGrace):
				log.Warn().Msg("grace period over; interrupting in-flight tickets (they resume from the store on restart)")
				cancelWork()
				<-done.Done()
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "path to the YAML config")
	return cmd
}

// cronLogger adapts zerolog to cron.Logger.
type cronLogger struct{ l zerolog.Logger }

func (c cronLogger) Info(msg string, kv ...any) {
	c.l.Debug().Fields(kv).Msg("cron: " + msg)
}

func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error().Err(err).Fields(kv).Msg("cron: " + msg)
}
