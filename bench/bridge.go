package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/chainguard-dev/image-request-bridge/connectors/jira"
	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/chainguard"
	jfake "github.com/chainguard-dev/image-request-bridge/internal/fake/jira"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	"github.com/chainguard-dev/image-request-bridge/internal/store"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Sources.
const (
	SourceServiceNow = "servicenow"
	SourceJira       = "jira"
)

// Run modes.
const (
	ModeEngine = "engine" // the real engine: streamed listing, worker pool, store
	ModeNaive  = "naive"  // NaivePass: list everything, then one ticket at a time
)

// Config describes one run of the bridge against the fakes.
type Config struct {
	Endpoints   Endpoints `json:"endpoints"`
	Sources     []string  `json:"sources"`
	Mode        string    `json:"mode"`
	Concurrency int       `json:"concurrency"`
	PageSize    int       `json:"page_size"`
	Passes      int       `json:"passes"`    // passes to run (default 1)
	StateDir    string    `json:"state_dir"` // where the SQLite file lives
	// CPUProfile, when set, is where the bridge writes a CPU profile of the run.
	CPUProfile string `json:"cpu_profile,omitempty"`
	// MemProfile, when set, is where a child bridge writes a heap profile
	// after the run.
	MemProfile string `json:"mem_profile,omitempty"`
}

// Outcome is what one run measured, on the bridge's side.
type Outcome struct {
	Processed   int             `json:"processed"` // tickets closed ("reported")
	Errors      int             `json:"errors"`
	Wall        time.Duration   `json:"wall"`      // the pass(es), start to end
	PassWall    []time.Duration `json:"pass_wall"` // each pass
	Calls       map[string]int  `json:"calls"`
	OwnP50      time.Duration   `json:"own_p50"`
	OwnP99      time.Duration   `json:"own_p99"`
	OwnMax      time.Duration   `json:"own_max"`
	UpstreamP50 time.Duration   `json:"upstream_p50"`
	StoreP50    time.Duration   `json:"store_p50"` // the store's part of own time
	StoreP99    time.Duration   `json:"store_p99"`
	Spans       int             `json:"spans"`
	// Set by a child process only.
	PeakRSS     int64         `json:"peak_rss"`      // VmHWM, bytes
	GoSys       int64         `json:"go_sys"`        // memory the Go runtime holds from the OS, after the run
	GoHeapInuse int64         `json:"go_heap_inuse"` // Go heap in use, after the run
	CPU         time.Duration `json:"cpu"`           // user + system
}

// Bridge is a wired bridge over the fakes, instrumented by a Meter.
type Bridge struct {
	Meter   *Meter
	Store   *store.SQLite
	Prov    *chainguard.Provisioner
	Sources []isync.Source
	Engine  *isync.Engine
	cfg     Config
}

// Logger is the bridge's logger in benchmarks: JSON at info level, as in
// production, written nowhere.
func Logger() zerolog.Logger {
	return zerolog.New(io.Discard).Level(zerolog.InfoLevel).With().Timestamp().Logger()
}

// NewBridge wires the real store, sources, provisioner and engine to the
// fakes. observer, when set, is the engine's observer.
func NewBridge(ctx context.Context, cfg Config, observer func(isync.Event)) (*Bridge, error) {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 100
	}
	m := NewMeter()
	b := &Bridge{Meter: m, cfg: cfg}
	log := Logger()
	for _, name := range cfg.Sources {
		switch name {
		case SourceServiceNow:
			src, err := servicenow.New(servicenow.Options{
				InstanceURL:    cfg.Endpoints.ServiceNow,
				Auth:           servicenow.Auth{Username: SNUser, Password: secret.New(SNPassword)},
				CatalogItem:    CatalogItem,
				ExtraVariables: []string{"team", "environment"},
				PageSize:       cfg.PageSize,
				Logger:         log,
				WrapTransport:  m.Transport("servicenow", ClassifyServiceNow),
			})
			if err != nil {
				return nil, err
			}
			b.Sources = append(b.Sources, src)
		case SourceJira:
			src, err := jira.New(jira.Options{
				URL:                cfg.Endpoints.Jira,
				Deployment:         jira.Cloud,
				Email:              jfake.DefaultEmail,
				APIToken:           secret.New(jfake.DefaultAPIToken),
				JQL:                JiraJQL,
				ImageField:         "Image name",
				JustificationField: "Justification",
				PageSize:           cfg.PageSize,
				Logger:             log,
				WrapTransport:      m.Transport("jira", ClassifyJira),
			})
			if err != nil {
				return nil, err
			}
			b.Sources = append(b.Sources, src)
		default:
			return nil, fmt.Errorf("unknown source %q", name)
		}
	}
	st, err := store.Open(ctx, filepath.Join(cfg.StateDir, "bridge.db"))
	if err != nil {
		return nil, err
	}
	b.Store = st
	b.Prov, err = chainguard.New(ctx, chainguard.Options{APIURL: cfg.Endpoints.Chainguard, OrgID: OrgID, OrgName: OrgName, Token: CGToken,
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(m.UnaryInterceptor())}})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	b.Engine = isync.New(m.Store(st), b.Prov, b.Sources, isync.Options{
		Instance:    "bench",
		Version:     "bench",
		Concurrency: cfg.Concurrency,
		Logger:      log,
		Observer:    observer,
	})
	return b, nil
}

// Close releases the store and the Chainguard connection.
func (b *Bridge) Close() error {
	return errors.Join(b.Prov.Close(), b.Store.Close())
}

// Run runs cfg.Passes passes (engine or naive) and reports what they did.
func (b *Bridge) Run(ctx context.Context) (Outcome, error) {
	passes := max(b.cfg.Passes, 1)
	var out Outcome
	start := time.Now()
	for range passes {
		ps := time.Now()
		switch b.cfg.Mode {
		case ModeNaive:
			for _, src := range b.Sources {
				n, err := NaivePass(ctx, src, b.Prov)
				out.Processed += n
				if err != nil {
					return out, err
				}
			}
		default:
			st, err := b.Engine.Pass(ctx)
			out.Processed += st.Decisions[isync.DecisionReported]
			out.Errors += st.Errors
			if err != nil {
				return out, err
			}
		}
		out.PassWall = append(out.PassWall, time.Since(ps))
	}
	out.Wall = time.Since(start)
	out.Calls = b.Meter.Calls()
	own, up, st := b.Meter.Spans()
	out.StoreP50, out.StoreP99 = Percentile(st, 0.50), Percentile(st, 0.99)
	out.Spans = len(own)
	out.OwnP50, out.OwnP99, out.OwnMax = Percentile(own, 0.50), Percentile(own, 0.99), Percentile(own, 1)
	out.UpstreamP50 = Percentile(up, 0.50)
	return out, nil
}

// RunConfig wires a bridge, runs it and closes it.
func RunConfig(ctx context.Context, cfg Config) (Outcome, error) {
	if cfg.StateDir == "" {
		dir, err := os.MkdirTemp("", "bridge-bench-")
		if err != nil {
			return Outcome{}, err
		}
		defer os.RemoveAll(dir)
		cfg.StateDir = dir
	}
	b, err := NewBridge(ctx, cfg, nil)
	if err != nil {
		return Outcome{}, err
	}
	defer b.Close()
	return b.Run(ctx)
}
