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
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// shutdownGrace is how long tickets in progress at SIGTERM get to finish
// before they are interrupted. With the interruption itself (each ticket's
// store writes and lease release) and the HTTP server's drain running
// alongside, the whole exit fits well within Kubernetes' default
// terminationGracePeriodSeconds of 30 s.
const shutdownGrace = 20 * time.Second

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

SIGTERM or SIGINT stops all intake at once (no new pass, the running pass
stops listing and starts no more tickets, queued webhook tickets are left,
webhooks refused), gives the tickets in progress 20s to finish, then
interrupts the rest and releases their leases; whatever is cut short
resumes from the store at the next start, without backoff.`,
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
	for _, w := range cfg.PermissionWarnings() {
		log.Warn().Msg(w)
	}
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
		Deliveries: a.Store,
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
	var served stdsync.WaitGroup
	served.Add(1)
	go func() {
		defer served.Done()
		if err := srv.Serve(intake, ln); err != nil && !errors.Is(err, context.Canceled) {
			log.Error().Err(err).Msg("http server stopped")
		}
	}()
	queueDone := make(chan struct{})
	go func() {
		defer close(queueDone)
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
	shutdown(log, stopIntake, c, &passes, a.Engine, queueDone, cancelWork)
	served.Wait()
	log.Info().Msg("bridge stopped")
	return nil
}

// shutdown stops starting work at once: the HTTP intake, the schedule, the
// engine (the running passes stop listing and hand out nothing more, the
// queue starts nothing more). Tickets in progress get shutdownGrace to
// finish; then cancelWork interrupts them, and shutdown returns once each
// has recorded where it stopped and released its lease.
func shutdown(log zerolog.Logger, stopIntake func(), c *cron.Cron, passes *tracker, eng *isync.Engine, queueDone <-chan struct{}, cancelWork func()) {
	start := time.Now()
	passes.stop()
	c.Stop()
	eng.Stop()
	stopIntake()
	log.Info().Stringer("grace", shutdownGrace).Msg("shutting down: no new ticket is started; finishing the tickets in progress")
	finished := make(chan struct{})
	go func() { passes.wait(); <-queueDone; close(finished) }()
	grace := time.NewTimer(shutdownGrace)
	defer grace.Stop()
	select {
	case <-finished:
	case <-grace.C:
		log.Warn().Stringer("grace", shutdownGrace).Msg("grace period over; interrupting the tickets in progress (they resume from the store at the next start, without backoff)")
	}
	cancelWork()
	<-finished
	log.Info().Stringer("took", time.Since(start).Round(time.Millisecond)).Msg("tickets in progress stopped; their leases are released")
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

// stop lets no pass start from now on.
func (t *tracker) stop() {
	t.mu.Lock()
	t.stopping = true
	t.mu.Unlock()
}

// wait returns once the passes running are done; call it after stop.
func (t *tracker) wait() { t.wg.Wait() }

func runPass(ctx context.Context, a *app.App, m *metrics.Metrics, log zerolog.Logger, name string) {
	if err := a.Store.CheckFile(); err != nil {
		// Every claim would fail: list nothing, and say why at every pass.
		log.Error().Err(err).Str("source", name).Msg("pass skipped: the state store file was deleted or replaced")
		return
	}
	start := time.Now()
	st, err := a.Engine.Pass(ctx, name)
	ok, level, msg := passOutcome(st, err, ctx.Err() != nil || errors.Is(err, isync.ErrStopping), a.Store.WriteErr())
	if ok {
		m.PollSucceeded(name, time.Now())
	}
	ev := log.WithLevel(level)
	if err != nil {
		ev = ev.Err(err)
	}
	ev.Str("source", name).Int("listed", st.Listed).Int("errors", st.Errors).Stringer("took", time.Since(start).Round(time.Millisecond)).Msg(msg)
}

// passOutcome says whether a pass counts as a successful poll (the
// last-successful-poll gauge advances), and how to log its summary. A pass
// fails when it returned an error, when the store's last write failed
// (storeErr: a full disk makes every ticket fail), or when tickets were
// worked on and every one failed; one interrupted by shutdown (stopping)
// is neither.
func passOutcome(st isync.Stats, err error, stopping bool, storeErr error) (ok bool, level zerolog.Level, msg string) {
	succeeded := st.Skipped
	for _, n := range st.Decisions {
		succeeded += n
	}
	switch {
	case err != nil && stopping:
		return false, zerolog.InfoLevel, "pass interrupted by shutdown; unfinished tickets resume from the store"
	case err != nil:
		return false, zerolog.ErrorLevel, "pass finished with an error"
	case storeErr != nil:
		return false, zerolog.ErrorLevel, "pass finished but failed: the state store's writes are failing (" + storeErr.Error() + ")"
	case st.Errors > 0 && succeeded == 0:
		return false, zerolog.ErrorLevel, "pass finished but failed: every ticket worked on failed"
	case st.Errors > 0:
		return true, zerolog.WarnLevel, "pass finished with errors"
	}
	return true, zerolog.InfoLevel, "pass finished"
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
