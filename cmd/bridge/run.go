package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	stdsync "sync"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/chainguard-dev/image-request-bridge/internal/app"
	"github.com/chainguard-dev/image-request-bridge/internal/config"
	"github.com/chainguard-dev/image-request-bridge/internal/metrics"
	"github.com/chainguard-dev/image-request-bridge/internal/server"
)

// shutdownGrace is how long in-flight tickets get to finish after SIGTERM.
const shutdownGrace = 30 * time.Second

func newRunCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the bridge as a daemon: scheduled passes, webhooks, events, health and metrics",
		Long: `Run the bridge as a daemon. Each enabled source is reconciled at start and then
on its schedule (` + sourceKeys("schedule") + `); a pass still running when
the next is due is skipped. The HTTP server at server.listen takes webhooks
(` + webhookPaths() + `), Chainguard events
(POST /events/chainguard) and serves /healthz, /readyz and /metrics. Webhooks
only queue a ticket id; the ticket is re-read before anything is done, and
polling stays the safety net.

SIGTERM or SIGINT stops intake (no new passes, webhooks refused), gives
in-flight tickets 30s to finish, then interrupts the rest; whatever is cut
short resumes safely from the store on the next start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			return runDaemon(cmd.Context(), cfg, log)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "path to the YAML config")
	return cmd
}

// runDaemon runs until ctx ends (the signal), then shuts down in order:
// intake, passes and queue (within the grace period), store.
func runDaemon(ctx context.Context, cfg *config.Config, log zerolog.Logger) error {
	// Work continues for a grace period after the signal.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	m := metrics.New(app.EnabledNames(cfg)...)
	a, err := app.Build(work, cfg, log, app.Options{Metrics: m})
	if err != nil {
		return err
	}
	defer a.Close()
	m.SetQueueDepth(a.Engine.QueueDepth)
	m.SetBlocked(func() int { return blockedCount(work, a) })

	srv, err := server.New(work, server.Options{
		Listen:     cfg.Server.Listen,
		Engine:     a.Engine,
		Webhooks:   app.Webhooks(cfg),
		Chainguard: &server.Chainguard{Issuer: cfg.Chainguard.Issuer, Group: cfg.Chainguard.OrgID}, // org_id is required and validated
		Ready:      a.Ready,
		Metrics:    m,
		Logger:     log,
	})
	if err != nil {
		return fmt.Errorf("http server: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("server.listen %q: %w", cfg.Server.Listen, err)
	}
	intake, stopIntake := context.WithCancel(work)
	defer stopIntake()
	var bg stdsync.WaitGroup
	bg.Add(2)
	go func() {
		defer bg.Done()
		if err := srv.Serve(intake, ln); err != nil && !errors.Is(err, context.Canceled) {
			log.Error().Err(err).Msg("http server stopped")
		}
	}()
	go func() {
		defer bg.Done()
		a.Engine.RunQueue(work)
	}()

	c := cron.New(cron.WithChain(cron.Recover(cronLogger{log}), cron.SkipIfStillRunning(cronLogger{log})))
	var ids []cron.EntryID
	var passes tracker
	for _, s := range a.Sources {
		name := s.Name()
		schedule := cfg.Section(name).Settings().Schedule
		id, err := c.AddFunc(schedule, func() {
			if !passes.start() {
				return // shutting down
			}
			defer passes.done()
			runPass(work, a, m, log, name)
		})
		if err != nil {
			return fmt.Errorf("%s.schedule %q: %w", name, schedule, err)
		}
		ids = append(ids, id)
	}
	c.Start()
	for _, id := range ids {
		// Reconcile at start: nothing waits a whole interval after a restart.
		// Through the wrapped entry, so a scheduled run skips while it goes on.
		go c.Entry(id).WrappedJob.Run()
	}
	log.Info().Str("listen", ln.Addr().String()).Int("sources", len(a.Sources)).Msg("bridge running")

	<-ctx.Done()
	log.Info().Stringer("grace", shutdownGrace).Msg("shutting down: intake stopped; finishing in-flight tickets")
	stopIntake()
	c.Stop()
	finished := make(chan struct{})
	go func() { passes.stopAndWait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(shutdownGrace):
		log.Warn().Msg("grace period over; interrupting in-flight tickets (they resume from the store on restart)")
	}
	cancelWork()
	<-finished
	bg.Wait()
	log.Info().Msg("bridge stopped")
	return nil
}

// tracker counts running passes; once stopping, no new pass starts.
type tracker struct {
	mu       stdsync.Mutex
	wg       stdsync.WaitGroup
	stopping bool
}

func (t *tracker) start() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopping {
		return false
	}
	t.wg.Add(1)
	return true
}

func (t *tracker) done() { t.wg.Done() }

func (t *tracker) stopAndWait() {
	t.mu.Lock()
	t.stopping = true
	t.mu.Unlock()
	t.wg.Wait()
}

func runPass(ctx context.Context, a *app.App, m *metrics.Metrics, log zerolog.Logger, name string) {
	if err := a.Store.CheckFile(); err != nil {
		// Every claim would fail: list nothing, and say why at every pass.
		log.Error().Err(err).Str("source", name).Msg("pass skipped: the state store file was deleted or replaced")
		return
	}
	start := time.Now()
	st, err := a.Engine.Pass(ctx, name)
	ev, msg := log.Info(), "pass finished"
	switch {
	case err != nil && ctx.Err() != nil:
		msg = "pass interrupted by shutdown; unfinished tickets resume from the store"
	case err != nil:
		ev = log.Error().Err(err)
	default:
		m.PollSucceeded(name, time.Now())
	}
	ev.Str("source", name).Int("listed", st.Listed).Int("errors", st.Errors).Stringer("took", time.Since(start).Round(time.Millisecond)).Msg(msg)
}

func blockedCount(ctx context.Context, a *app.App) int {
	n, err := a.Store.CountBlocked(ctx)
	if err != nil {
		return 0
	}
	return n
}

// cronLogger adapts zerolog to cron.Logger.
type cronLogger struct{ l zerolog.Logger }

func (c cronLogger) Info(msg string, kv ...any) {
	c.l.Debug().Fields(kv).Msg("cron: " + msg)
}

func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error().Err(err).Fields(kv).Msg("cron: " + msg)
}
