package sync_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/chainguard"
	cgfake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	"github.com/chainguard-dev/image-request-bridge/internal/store"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

const (
	catItem  = "3f1dd0320a0a0b99000a53f7604a2ef9"
	otherCat = "0000d0320a0a0b99000a53f7604a0000"
	orgID    = "0123456789abcdef0123456789abcdef01234567"
	orgName  = "example.com"
	cgToken  = "cg-test-token"
	snUser   = "svc.bridge"
	snPass   = "sn-test-password"
)

// clock is a settable fake clock shared by the engine.
type clock struct {
	mu    stdsync.Mutex
	now   time.Time
	slept []time.Duration
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

// Sleep is the engine's in-place wait on this clock: it moves the clock on
// and returns at once, and records the wait.
func (c *clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.Add(d)
	c.mu.Lock()
	c.slept = append(c.slept, d)
	c.mu.Unlock()
	return nil
}

// Slept returns the waits Sleep was asked for.
func (c *clock) Slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// harness wires the real engine, store, ServiceNow source and Chainguard
// provisioner to the fakes over real loopback HTTP and gRPC.
type harness struct {
	t      *testing.T
	sn     *snfake.Server
	cg     *cgfake.Server
	dbPath string
	store  *store.SQLite
	src    *servicenow.Source
	prov   *chainguard.Provisioner
	clock  *clock
	opts   harnessOpts
	// observed, when set, is told of every event of the engines built by
	// engine().
	observed *eventLog
}

type harnessOpts struct {
	pageSize     int
	concurrency  int
	cgOpts       []cgfake.Option
	snOpts       []snfake.Option
	wrapStore    func(isync.Store) isync.Store
	engineOpts   func(*isync.Options)
	listAwaiting bool
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	if o.pageSize == 0 {
		o.pageSize = 50
	}
	h := &harness{t: t, opts: o, clock: &clock{now: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}}
	h.sn = snfake.New(append([]snfake.Option{snfake.WithBasicAuth(snUser, snPass)}, o.snOpts...)...)
	t.Cleanup(h.sn.Close)
	cg, err := cgfake.New(append([]cgfake.Option{cgfake.WithToken(cgToken), cgfake.WithOrg(orgID, orgName), cgfake.WithClock(h.clock.Now)}, o.cgOpts...)...)
	if err != nil {
		t.Fatalf("chainguard fake: %v", err)
	}
	t.Cleanup(cg.Close)
	h.cg = cg
	h.dbPath = filepath.Join(t.TempDir(), "bridge.db")
	h.openStore()

	h.src, err = servicenow.New(servicenow.Options{
		InstanceURL:    h.sn.URL(),
		Auth:           servicenow.Auth{Username: snUser, Password: secret.New(snPass)},
		CatalogItem:    catItem,
		ExtraVariables: []string{"team", "environment"},
		PageSize:       o.pageSize,
		Timeout:        5 * time.Second,
		RetryWaitMax:   50 * time.Millisecond,
		ListAwaiting:   o.listAwaiting,
	})
	if err != nil {
		t.Fatalf("servicenow source: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.prov, err = chainguard.New(ctx, chainguard.Options{APIURL: cg.Addr(), OrgID: orgID, OrgName: orgName, Token: cgToken})
	if err != nil {
		t.Fatalf("provisioner: %v", err)
	}
	t.Cleanup(func() { _ = h.prov.Close() })
	return h
}

func (h *harness) openStore() {
	h.t.Helper()
	st, err := store.Open(context.Background(), h.dbPath)
	if err != nil {
		h.t.Fatalf("store: %v", err)
	}
	h.store = st
	h.t.Cleanup(func() { _ = st.Close() })
}

// engine builds a fresh engine, as a (re)started bridge process would.
func (h *harness) engine() *isync.Engine {
	var st isync.Store = h.store
	if h.opts.wrapStore != nil {
		st = h.opts.wrapStore(st)
	}
	o := isync.Options{
		Instance:    "test-bridge",
		Version:     "test",
		Concurrency: max(h.opts.concurrency, 4),
		BackoffMin:  time.Minute,
		BackoffMax:  10 * time.Minute,
		Now:         h.clock.Now,
		Sleep:       h.clock.Sleep,
		Logger:      testLogger(h.t),
	}
	if h.observed != nil {
		o.Observer = h.observed.observe
	}
	if h.opts.engineOpts != nil {
		h.opts.engineOpts(&o)
	}
	return isync.New(st, h.prov, []isync.Source{h.src}, o)
}

// events makes the engines engine() builds from now on record their events.
func (h *harness) events() *eventLog {
	h.observed = newEventLog()
	return h.observed
}

// eventLog records an engine's events (its Observer), so that a test waits
// for what it expects to happen instead of sleeping. It never blocks the
// engine and loses nothing.
type eventLog struct {
	mu     stdsync.Mutex
	evs    []isync.Event
	notify chan struct{}
	next   int // events before it were read by waitFor
}

func newEventLog() *eventLog { return &eventLog{notify: make(chan struct{}, 1)} }

func (l *eventLog) observe(ev isync.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

// waitFor returns the first event not yet read that matches, reading past
// those that do not. It fails the test if none comes within a bound far
// above any expected latency: the bound only turns a hang into a failure.
func (l *eventLog) waitFor(t *testing.T, what string, match func(isync.Event) bool) isync.Event {
	t.Helper()
	bound := time.NewTimer(30 * time.Second)
	defer bound.Stop()
	for {
		l.mu.Lock()
		for ; l.next < len(l.evs); l.next++ {
			if ev := l.evs[l.next]; match(ev) {
				l.next++
				l.mu.Unlock()
				return ev
			}
		}
		l.mu.Unlock()
		select {
		case <-l.notify:
		case <-bound.C:
			t.Fatalf("no event: %s", what)
		}
	}
}

// decided matches the event of decision d on ticket id.
func decided(id string, d isync.Decision) func(isync.Event) bool {
	return func(ev isync.Event) bool { return ev.TicketID == id && ev.Decision == d }
}

func (h *harness) pass(e *isync.Engine) isync.Stats {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := e.Pass(ctx)
	if err != nil {
		h.t.Fatalf("pass: %v", err)
	}
	return st
}

func (h *harness) ritm(image string, mod func(*snfake.RITM)) snfake.RITM {
	r := snfake.RITM{CatItem: catItem, RequestedFor: "62826bf03710200044e0bfc8bcbe5df1",
		Variables: map[string]string{"image_name": image, "justification": "build pipeline", "team": "platform", "environment": "dev"}}
	if mod != nil {
		mod(&r)
	}
	return h.sn.AddRITM(r)
}

// writes counts requests that change something upstream.
func (h *harness) writes() (sn int, cg int) {
	for _, r := range h.sn.Requests() {
		if r.Method != "GET" {
			sn++
		}
	}
	return sn, h.cg.CountCalls("CreateRepo") + h.cg.CountCalls("AddEntitlementImages")
}

func (h *harness) patches(sysID string) int {
	n := 0
	for _, r := range h.sn.Requests() {
		if r.Method == "PATCH" && strings.HasSuffix(r.Path, sysID) {
			n++
		}
	}
	return n
}

func (h *harness) requestsFor(sysID string) int {
	n := 0
	for _, r := range h.sn.Requests() {
		if strings.Contains(r.Path, sysID) || strings.Contains(r.RawQuery, sysID) {
			n++
		}
	}
	return n
}

func (h *harness) notes(sysID string) []string {
	var out []string
	for _, e := range h.sn.Journal(sysID) {
		if e.Element == "work_notes" {
			out = append(out, e.Value)
		}
	}
	return out
}

func (h *harness) state(sysID string) string {
	r, ok := h.sn.RITM(sysID)
	if !ok {
		h.t.Fatalf("RITM %s vanished", sysID)
	}
	return r.State
}

// testLogger logs to the test's output when BRIDGE_TEST_LOG is set.
func testLogger(t *testing.T) zerolog.Logger {
	if os.Getenv("BRIDGE_TEST_LOG") == "" {
		return zerolog.New(io.Discard)
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: zerolog.TestWriter{T: t}, NoColor: true}).Level(zerolog.DebugLevel)
}
