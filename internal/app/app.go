// Package app wires a validated configuration into a running bridge: the
// store, the Chainguard provisioner, the enabled sources and the engine. The
// CLI commands and `bridge demo` all build the bridge through it, so there is
// one wiring path.
package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	stdsync "sync"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/chainguard-dev/image-request-bridge/internal/chainguard"
	"github.com/chainguard-dev/image-request-bridge/internal/config"
	"github.com/chainguard-dev/image-request-bridge/internal/metrics"
	"github.com/chainguard-dev/image-request-bridge/internal/policy"
	"github.com/chainguard-dev/image-request-bridge/internal/ratelimit"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
	"github.com/chainguard-dev/image-request-bridge/internal/store"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Version is the bridge's version, set at build time with
// -ldflags "-X github.com/chainguard-dev/image-request-bridge/internal/app.Version=v1.2.3".
// Left at "dev", BuildVersion reads what the Go toolchain recorded instead.
var Version = "dev"

// BuildVersion is the version written into notes, logs and `bridge version`:
// Version when set at build time; else the module version of a binary built
// with `go install module@version`; else "dev" and the VCS revision of the
// checkout it was built from ("dev-1a2b3c4d5e6f", "-dirty" when it had local
// changes), as recorded by the Go toolchain (runtime/debug.ReadBuildInfo).
func BuildVersion() string {
	if Version != "dev" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Version
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return Version
	}
	return Version + "-" + rev[:min(len(rev), 12)] + dirty
}

// App is a wired bridge.
type App struct {
	Config  *config.Config
	Store   *store.SQLite
	Prov    *chainguard.Provisioner
	Sources []isync.Source
	Engine  *isync.Engine
	Log     zerolog.Logger

	checks  map[string][]source.Check // by source name
	lastErr map[string]*lastError     // by upstream

	readyMu  stdsync.Mutex
	readyAt  time.Time
	readyErr error
}

// Options adjust Build.
type Options struct {
	// Only limits the engine to one source, by name; "" = all enabled.
	Only string
	// Observer is passed to the engine.
	Observer func(isync.Event)
	// Metrics, when set, counts upstream calls and engine events.
	Metrics *metrics.Metrics
	// ReadOnly opens the store without owning it (store.OpenOwner): for commands
	// that write nothing (validate, sync --dry-run), so that they run beside
	// the process that owns it. Every other Build owns the store, and fails
	// with a *store.HeldError while another process does.
	ReadOnly bool
}

// Build opens the store, dials Chainguard and builds the enabled sources, in
// registry order. It makes no upstream call besides establishing the gRPC
// client (which is lazy).
//
// Unless o.ReadOnly, the process becomes the store's owner for the App's
// life (store.OpenOwner): a second owner is refused with a *store.HeldError, and
// the leases of processes no longer running are cleared at once, so their
// tickets are taken up by the first pass. Build also arranges for a store
// file deleted or replaced under the running bridge to be logged at error;
// the store then refuses writes and Ready fails, naming the path. A write the
// store fails (disk full, I/O error) is logged at error with its ticket,
// counted in o.Metrics (bridge_store_errors_total), and fails Ready until a
// write succeeds again.
func Build(ctx context.Context, cfg *config.Config, log zerolog.Logger, o Options) (*App, error) {
	a := &App{Config: cfg, Log: log, checks: map[string][]source.Check{}, lastErr: map[string]*lastError{}}
	names := source.Names(cfg.Connectors())
	if o.Only != "" && !slices.Contains(names, o.Only) {
		return nil, fmt.Errorf("unknown source %q: want %s", o.Only, strings.Join(names, " or "))
	}
	for _, sc := range cfg.EnabledSources() {
		name := sc.Name()
		if o.Only != "" && o.Only != name {
			continue
		}
		src, err := sc.Connector.Build(sc.Section, source.Deps{
			Logger:        log,
			WrapTransport: a.wrapper(o.Metrics, name),
			Limiter:       limiter(name, sc.Section.Settings().RateLimit),
			ListAwaiting:  cfg.Policy.HasAuto(),
		})
		if err != nil {
			return nil, err
		}
		a.Sources = append(a.Sources, src)
		if ch, ok := sc.Connector.(source.Checker); ok {
			a.checks[name] = ch.Checks(src)
		}
	}
	if len(a.Sources) == 0 {
		return nil, fmt.Errorf("no enabled source matches %q", o.Only)
	}

	if cfg.State.Driver != "" && cfg.State.Driver != "sqlite" {
		return nil, fmt.Errorf("state.driver %q is not supported (sqlite)", cfg.State.Driver)
	}
	dsn := cfg.State.DSN
	var (
		st      *store.SQLite
		cleared int
		err     error
	)
	if o.ReadOnly {
		st, err = store.Open(ctx, dsn)
	} else {
		st, cleared, err = store.OpenOwner(ctx, dsn)
	}
	if err != nil {
		return nil, fmt.Errorf("opening state store: %w", err)
	}
	a.Store = st
	if cleared > 0 {
		log.Info().Int("leases_cleared", cleared).Str("store", dsn).
			Msg("took over the store: cleared the leases of processes no longer running; their tickets are taken up now")
	}
	st.OnFileLost(func(err error) {
		log.Error().Err(err).Str("store", dsn).Msg("state store file deleted or replaced under the bridge: writes stopped, /readyz fails; restart the bridge once state.dsn names the right file")
	})

	st.OnWriteError(func(e *store.WriteError) {
		// Each one: a full disk or a failing device must not pass as a
		// ticket error among others.
		log.Error().Err(e.Err).Str("op", e.Op).Str("ticket", e.Ticket).Str("store", dsn).
			Msg("state store write failed (disk full or failing?): the ticket is retried; /readyz fails until a write succeeds")
		if o.Metrics != nil {
			o.Metrics.StoreWriteFailed(e.Op)
		}
	})

	co := chainguard.Options{
		APIURL:            cfg.Chainguard.APIURL,
		OrgID:             cfg.Chainguard.OrgID,
		OrgName:           cfg.Chainguard.OrgName,
		TokenFile:         cfg.Chainguard.TokenFile,
		Identity:          cfg.Chainguard.Identity,
		IdentityTokenFile: cfg.Chainguard.IdentityTokenFile,
		Issuer:            cfg.Chainguard.Issuer,
		Mode:              cfg.Chainguard.Provision,
		Registry:          cfg.Chainguard.Registry,
		Logger:            log,
	}
	if cfg.Chainguard.TokenFile == "" && cfg.Chainguard.Identity == "" {
		co.Token = cfg.Chainguard.Token.Reveal()
	}
	// The limiter sits inside the metrics interceptor, so waiting for a slot
	// is not counted as upstream time.
	var interceptors []grpc.UnaryClientInterceptor
	if o.Metrics != nil {
		interceptors = append(interceptors, o.Metrics.UnaryClientInterceptor(metrics.Chainguard))
	}
	interceptors = append(interceptors, limiter("chainguard", cfg.Chainguard.RateLimit).UnaryClientInterceptor())
	co.DialOptions = []grpc.DialOption{grpc.WithChainUnaryInterceptor(interceptors...)}
	prov, err := chainguard.New(ctx, co)
	if err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("chainguard: %w", err)
	}
	a.Prov = prov

	instance := cfg.Bridge.InstanceID
	if instance == "" {
		instance, _ = os.Hostname()
	}
	observer := o.Observer
	if o.Metrics != nil {
		m, next := o.Metrics, o.Observer
		observer = func(ev isync.Event) {
			m.Observe(ev)
			if next != nil {
				next(ev)
			}
		}
	}
	a.Engine = isync.New(st, prov, a.Sources, isync.Options{
		Instance:     instance,
		Version:      BuildVersion(),
		Concurrency:  cfg.Bridge.Concurrency,
		Lease:        cfg.Bridge.Lease,
		BackoffMin:   cfg.Bridge.Backoff.Min,
		BackoffMax:   cfg.Bridge.Backoff.Max,
		CloseOnReady: cfg.Bridge.CloseOn == "ready",
		ReadyPoll:    cfg.Bridge.ReadyPoll,
		ReadyTimeout: cfg.Bridge.ReadyTimeout,
		MaxImages:    cfg.Bridge.MaxImages,
		Policy:       activePolicy(&cfg.Policy),
		DailyLimit:   cfg.Bridge.DailyLimit,
		PassTimeout:  cfg.Bridge.PassTimeout,
		Logger:       log,
		Observer:     observer,
	})
	return a, nil
}

// activePolicy returns p when it has rules or a non-default tier, else nil: no
// policy section means "the ITSM approval is required", the plain behaviour.
func activePolicy(p *policy.Policy) *policy.Policy {
	if len(p.Rules) == 0 && (p.Default == "" || p.Default == policy.Approval) {
		return nil
	}
	return p
}

// wrapper returns the transport wrapper for upstream: the metrics (when set)
// counting the calls that go out, and the last failed call remembered for
// the readiness report. The rate limit is the upstream kit's (Deps.Limiter),
// outside this wrapper, so waiting for a slot is not counted as upstream time.
func (a *App) wrapper(m *metrics.Metrics, upstream string) func(http.RoundTripper) http.RoundTripper {
	last := &lastError{}
	a.lastErr[upstream] = last
	return func(next http.RoundTripper) http.RoundTripper {
		if next == nil {
			next = http.DefaultTransport
		}
		next = last.roundTripper(next)
		if m != nil {
			next = m.RoundTripper(upstream, next)
		}
		return next
	}
}

func limiter(upstream string, rl config.RateLimit) *ratelimit.Limiter {
	return ratelimit.New(rl.RequestsPerSecond, rl.Burst, rl.Concurrency, ratelimit.WithName(upstream))
}

// Close releases the store and the Chainguard connection.
func (a *App) Close() error {
	var errs []error
	if a.Prov != nil {
		errs = append(errs, a.Prov.Close())
	}
	if a.Store != nil {
		errs = append(errs, a.Store.Close())
	}
	return errors.Join(errs...)
}
