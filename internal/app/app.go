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
	"sort"
	stdsync "sync"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/chainguard-dev/image-request-bridge/connectors/jira"
	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/chainguard"
	"github.com/chainguard-dev/image-request-bridge/internal/config"
	"github.com/chainguard-dev/image-request-bridge/internal/metrics"
	"github.com/chainguard-dev/image-request-bridge/internal/policy"
	"github.com/chainguard-dev/image-request-bridge/internal/ratelimit"
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

// Checker is a component that can prove its credentials with one
// authenticated call (`validate --online`, readiness).
type Checker interface {
	Check(ctx context.Context) error
}

// App is a wired bridge.
type App struct {
	Config  *config.Config
	Store   *store.SQLite
	Prov    *chainguard.Provisioner
	Sources []isync.Source
	Engine  *isync.Engine
	Log     zerolog.Logger

	readyMu  stdsync.Mutex
	readyAt  time.Time
	readyErr error
}

// Options adjust Build.
type Options struct {
	// Only limits the engine to one source ("servicenow", "jira"); "" = all enabled.
	Only string
	// Observer is passed to the engine.
	Observer func(isync.Event)
	// Metrics, when set, counts upstream calls and engine events.
	Metrics *metrics.Metrics
}

// Build opens the store, dials Chainguard and builds the enabled sources. It
// makes no upstream call besides establishing the gRPC client (which is lazy).
func Build(ctx context.Context, cfg *config.Config, log zerolog.Logger, o Options) (*App, error) {
	a := &App{Config: cfg, Log: log}
	if o.Only != "" && o.Only != servicenow.Name && o.Only != jira.Name {
		return nil, fmt.Errorf("unknown source %q: want servicenow or jira", o.Only)
	}
	if cfg.ServiceNow.Enabled && (o.Only == "" || o.Only == servicenow.Name) {
		src, err := NewServiceNow(cfg.ServiceNow, log, wrapper(o.Metrics, servicenow.Name, cfg.ServiceNow.RateLimit), cfg.Policy.HasAuto())
		if err != nil {
			return nil, err
		}
		a.Sources = append(a.Sources, src)
	}
	if cfg.Jira.Enabled && (o.Only == "" || o.Only == jira.Name) {
		src, err := NewJira(cfg.Jira, log, wrapper(o.Metrics, jira.Name, cfg.Jira.RateLimit), cfg.Policy.HasAuto())
		if err != nil {
			return nil, err
		}
		a.Sources = append(a.Sources, src)
	}
	if len(a.Sources) == 0 {
		return nil, fmt.Errorf("no enabled source matches %q", o.Only)
	}

	if cfg.State.Driver != "" && cfg.State.Driver != "sqlite" {
		return nil, fmt.Errorf("state.driver %q is not supported (sqlite)", cfg.State.Driver)
	}
	st, err := store.Open(ctx, cfg.State.DSN)
	if err != nil {
		return nil, fmt.Errorf("opening state store: %w", err)
	}
	a.Store = st

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
		interceptors = append(interceptors, o.Metrics.UnaryClientInterceptor("chainguard"))
	}
	interceptors = append(interceptors, limiter(cfg.Chainguard.RateLimit).UnaryClientInterceptor())
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
		Logger:       log,
		Observer:     observer,
	})
	return a, nil
}

// NewServiceNow builds the ServiceNow source from its config section.
// listAwaiting also lists requests awaiting approval, for policy tier auto.
func NewServiceNow(c config.ServiceNow, log zerolog.Logger, wrap func(http.RoundTripper) http.RoundTripper, listAwaiting bool) (*servicenow.Source, error) {
	return servicenow.New(servicenow.Options{
		InstanceURL: c.InstanceURL,
		Auth: servicenow.Auth{
			Username:     c.Username,
			Password:     c.Password,
			ClientID:     c.OAuth.ClientID,
			ClientSecret: c.OAuth.ClientSecret,
			GrantType:    c.OAuth.GrantType,
		},
		CatalogItem:           c.CatalogItem,
		ImageVariable:         c.Variables.Image,
		JustificationVariable: c.Variables.Justification,
		ExtraVariables:        c.Variables.Extra,
		ClosedComplete:        c.States.ClosedComplete,
		ClosedIncomplete:      c.States.ClosedIncomplete,
		PageSize:              c.PageSize,
		Timeout:               c.Timeout,
		Logger:                log,
		WrapTransport:         wrap,
		ListAwaiting:          listAwaiting,
	})
}

// NewJira builds the Jira source from its config section.
// listAwaiting also lists requests awaiting approval (jira.awaiting_jql),
// for policy tier auto.
func NewJira(c config.Jira, log zerolog.Logger, wrap func(http.RoundTripper) http.RoundTripper, listAwaiting bool) (*jira.Source, error) {
	awaiting := ""
	if listAwaiting {
		awaiting = c.AwaitingJQL
	}
	return jira.New(jira.Options{
		AwaitingJQL:        awaiting,
		URL:                c.URL,
		Deployment:         c.Deployment,
		Email:              c.Email,
		APIToken:           c.APIToken,
		JQL:                c.JQL,
		ImageField:         c.Fields.Image,
		JustificationField: c.Fields.Justification,
		ExtraFields:        c.Fields.Extra,
		DoneTransition:     c.Transitions.Done,
		RejectedTransition: c.Transitions.Rejected,
		ApproveTransition:  c.Transitions.Approve,
		PageSize:           c.PageSize,
		Timeout:            c.Timeout,
		Logger:             log,
		WrapTransport:      wrap,
	})
}

// activePolicy returns p when it has rules or a non-default tier, else nil: no
// policy section means "the ITSM approval is required", the plain behaviour.
func activePolicy(p *policy.Policy) *policy.Policy {
	if len(p.Rules) == 0 && (p.Default == "" || p.Default == policy.Approval) {
		return nil
	}
	return p
}

// wrapper returns the transport wrapper for upstream: the rate limiter, with
// the metrics (when set) counting the calls that go out.
func wrapper(m *metrics.Metrics, upstream string, rl config.RateLimit) func(http.RoundTripper) http.RoundTripper {
	l := limiter(rl)
	return func(next http.RoundTripper) http.RoundTripper {
		if m != nil {
			next = m.RoundTripper(upstream, next)
		}
		return l.RoundTripper(next)
	}
}

func limiter(rl config.RateLimit) *ratelimit.Limiter {
	return ratelimit.New(rl.RequestsPerSecond, rl.Burst, rl.Concurrency)
}

// Ready checks, at most every readyTTL, that the store answers and that every
// enabled source and Chainguard accept the bridge's credentials. It is what
// /readyz reports: a bridge that cannot authenticate is not ready.
func (a *App) Ready(ctx context.Context) error {
	a.readyMu.Lock()
	defer a.readyMu.Unlock()
	if time.Since(a.readyAt) < readyTTL {
		return a.readyErr
	}
	var errs []error
	if err := a.Store.Ping(ctx); err != nil {
		errs = append(errs, fmt.Errorf("state store: %w", err))
	}
	checks := a.Checks()
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := checks[n].Check(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
	}
	a.readyErr, a.readyAt = errors.Join(errs...), time.Now()
	return a.readyErr
}

// readyTTL keeps probes from hammering the upstreams.
const readyTTL = 2 * time.Second

// Checks returns the components to check online, by name.
func (a *App) Checks() map[string]Checker {
	out := map[string]Checker{"chainguard": a.Prov}
	for _, s := range a.Sources {
		if c, ok := s.(Checker); ok {
			out[s.Name()] = c
		}
	}
	return out
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
