package sync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	stdsync "sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/chainguard-dev/image-request-bridge/internal/policy"
)

// The engine's defaults: the product's behaviour when nothing is configured.
// internal/config's bridge section takes its defaults from here, so each
// value is written once.
const (
	DefaultInstance    = "bridge" // Options.Instance
	DefaultVersion     = "dev"    // Options.Version
	DefaultConcurrency = 4        // Options.Concurrency: tickets processed at once
	// DefaultLease is how long a claimed ticket stays reserved; every
	// upstream call is bounded by half of it.
	DefaultLease = 5 * time.Minute
	// DefaultBackoffMin and DefaultBackoffMax bound the exponential delay
	// between attempts on a ticket (retryable or blocked, provisioning or
	// write-back): BackoffMin, doubling per attempt, capped at BackoffMax.
	DefaultBackoffMin = 30 * time.Second
	DefaultBackoffMax = time.Hour
	// DefaultProvisionTimeout bounds one provisioning call.
	DefaultProvisionTimeout = time.Minute
	// DefaultPassTimeout bounds one pass over one source set: listing,
	// re-reads and every ticket handed on. A pass cut by it leaves the rest
	// for the next pass (a ticket interrupted mid-call is re-driven at once,
	// without backoff); at concurrency 4 it covers a backlog of thousands.
	DefaultPassTimeout = 10 * time.Minute
	// DefaultReadTimeout bounds one re-read of a ticket (Source.Get): the
	// webhook queue's, a pass's re-read of an unfinished record, the re-read
	// before a write-back. It is further capped at Lease/2.
	DefaultReadTimeout  = time.Minute
	DefaultReadyPoll    = time.Minute      // Options.ReadyPoll (close_on: ready)
	DefaultReadyTimeout = 30 * time.Minute // Options.ReadyTimeout (close_on: ready)
	DefaultQueueSize    = 1024             // Options.QueueSize: webhook queue capacity
	DefaultMaxImages    = 10               // Options.MaxImages: images one ticket may name
)

// Options tune the engine. Zero values take the Default* values above.
type Options struct {
	Instance         string        // this bridge's identity in audit rows and notes (default "bridge")
	Version          string        // bridge version, named in notes (default "dev")
	Concurrency      int           // tickets processed at once (default 4)
	Lease            time.Duration // how long a claimed ticket is reserved; every upstream call is bounded by half of it (default 5m)
	BackoffMin       time.Duration // first retry delay after a retryable or blocked error (default 30s)
	BackoffMax       time.Duration // retry delay cap (default 1h)
	ProvisionTimeout time.Duration // deadline of one provisioning call (default 60s)
	// PassTimeout is the deadline of one Pass (default 10m). A pass that
	// reaches it returns an error wrapping context.DeadlineExceeded; what it
	// did not reach is left for the next pass.
	PassTimeout time.Duration
	// ReadTimeout is the deadline of one re-read of a ticket (default 1m,
	// and at most Lease/2). A re-read that fails on it is a retryable failure
	// of that ticket: logged, counted as a retry, tried again later.
	ReadTimeout time.Duration
	// CloseOnReady (close_on: ready): a provisioned ticket first gets a
	// "provisioned, syncing" note and is closed by a second note once its tag
	// is pullable (a CloudEvent, or polling the Provisioner's Readiness every
	// ReadyPoll), or after ReadyTimeout with a timeout note.
	CloseOnReady bool
	ReadyPoll    time.Duration // default 1m
	ReadyTimeout time.Duration // default 30m
	QueueSize    int           // webhook queue capacity (default 1024)
	// MaxImages caps how many images one ticket may name (default 10).
	MaxImages int
	// Policy, when set, decides each request's approval tier (auto, approval,
	// security, deny).
	Policy *policy.Policy
	// DailyLimit caps the images provisioned per requester in any 24 hours
	// (0: no limit). A ticket over it is blocked, noted once, and provisioned
	// once the window allows. Needs a Store that is a ProvisionCounter.
	DailyLimit int
	Now        func() time.Time // the clock of every decision and backoff (default time.Now)
	// Sleep waits d or until ctx ends (default: a timer): the waits between
	// in-place tries of a write-back. Tests record them instead.
	Sleep  func(ctx context.Context, d time.Duration) error
	Logger zerolog.Logger
	// Observer, when set, is told of every ticket outcome (metrics, demo tables).
	Observer func(Event)
}

// Event is one thing that happened to a ticket during a pass.
type Event struct {
	Source    string
	TicketID  string
	Key       string
	RequestID string
	Decision  Decision
	Detail    string
	Duration  time.Duration // provisioning call latency, when one was made
}

// Engine reconciles approved tickets into provisioned images.
type Engine struct {
	store   Store
	prov    Provisioner
	sources map[string]Source
	order   []string
	o       Options
	owner   string // lease owner: unique to this process, so two processes never share a lease
	log     zerolog.Logger

	mu       stdsync.Mutex
	inflight map[string]bool // source/ticket ids being processed in this process
	queued   map[string]bool // source/ticket ids waiting in queue
	queue    chan queued

	outageMu stdsync.Mutex
	outage   string // cause of the provisioner outage logged last (Circuit), "" when none

	// stopped ends with Stop: no ticket is started once it is done.
	stopped context.Context
	stop    context.CancelFunc
}

// ErrStopping is the error (wrapped) of a Pass that Stop cut short or that
// started after Stop: the tickets it did not start are left for the next run.
var ErrStopping = errors.New("the bridge is stopping: no new ticket is started")

// Stop makes the engine start no more work, at once and for good; it does
// not wait. A running Pass stops listing and re-reading (a listing call in
// flight is cancelled) and hands no more tickets to its workers; a Pass
// started later returns ErrStopping at once; the webhook queue hands out no
// more tickets (RunQueue returns once its tickets in progress are done) and
// Enqueue refuses. Tickets already in progress go on until they are done or
// the context they run under ends: the caller cancels it when its grace
// period is over, and each releases its lease. Safe to call more than once.
func (e *Engine) Stop() { e.stop() }

// stopping reports whether Stop was called.
func (e *Engine) stopping() bool { return e.stopped.Err() != nil }

// untilStop returns a context that ends with ctx or at Stop, whichever comes
// first: the context of starting work (listing, re-reading, handing on).
func (e *Engine) untilStop(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(ctx)
	unhook := context.AfterFunc(e.stopped, cancel)
	return c, func() { unhook(); cancel() }
}

type queued struct {
	source, id string
	due        bool // act now even if the record is backing off or waiting (a readiness event)
}

// New builds an engine over the given store, provisioner and sources.
func New(store Store, prov Provisioner, sources []Source, o Options) *Engine {
	setDefault(&o.Instance, DefaultInstance)
	setDefault(&o.Version, DefaultVersion)
	setDefault(&o.Concurrency, DefaultConcurrency)
	setDefault(&o.Lease, DefaultLease)
	setDefault(&o.BackoffMin, DefaultBackoffMin)
	setDefault(&o.BackoffMax, DefaultBackoffMax)
	setDefault(&o.ProvisionTimeout, DefaultProvisionTimeout)
	setDefault(&o.PassTimeout, DefaultPassTimeout)
	setDefault(&o.ReadTimeout, DefaultReadTimeout)
	setDefault(&o.ReadyPoll, DefaultReadyPoll)
	setDefault(&o.ReadyTimeout, DefaultReadyTimeout)
	setDefault(&o.QueueSize, DefaultQueueSize)
	setDefault(&o.MaxImages, DefaultMaxImages)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	e := &Engine{store: store, prov: prov, sources: map[string]Source{}, o: o, log: o.Logger, inflight: map[string]bool{},
		queued: map[string]bool{}, queue: make(chan queued, o.QueueSize), owner: o.Instance + "/" + runID()}
	e.stopped, e.stop = context.WithCancel(context.Background())
	for _, s := range sources {
		e.sources[s.Name()] = s
		e.order = append(e.order, s.Name())
	}
	return e
}

func (e *Engine) ticketLog(source, key, requestID string) *zerolog.Logger {
	l := e.log.With().Str("source", source).Str("ticket", key).Str("request_id", requestID).Logger()
	return &l
}

func (e *Engine) backoff(attempts int) time.Duration {
	d := e.o.BackoffMin
	for i := 1; i < attempts && d < e.o.BackoffMax; i++ {
		d *= 2
	}
	return min(d, e.o.BackoffMax)
}

// process drives one ticket as far as it can go now. It returns the last
// decision taken ("" when the ticket was skipped).
func (e *Engine) process(ctx context.Context, src Source, t Ticket, due bool) (Decision, error) {
	key := src.Name() + "/" + t.ID
	e.mu.Lock()
	if e.inflight[key] {
		e.mu.Unlock()
		return "", nil // coalesced with running work
	}
	e.inflight[key] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.inflight, key)
		e.mu.Unlock()
	}()

	if !t.Open && t.AwaitingApproval && !due {
		if !e.autoCandidate(ctx, t) {
			return "", nil // awaiting approval and not auto: untouched
		}
		t.Open = true // the policy lets the bridge act without the approval
	}
	// Store writes must land even when ctx is cancelled mid-ticket (shutdown):
	// the state they record is what makes recovery safe.
	sctx := context.WithoutCancel(ctx)
	now := e.o.Now()
	// A ticket that, if new, would go straight to provisioning is claimed and
	// marked provisioning in one write (the common case of a backlog).
	ref, fast := e.fastStart(ctx, &t)
	var (
		rec Record
		ok  bool
		err error
	)
	if fast {
		rec, ok, err = e.store.ClaimStart(sctx, src.Name(), t.ID, t.Key, e.owner, now, now.Add(e.o.Lease),
			Record{State: StateProvisioning, Attempts: 1, Image: t.Image})
	} else {
		rec, ok, err = e.store.Claim(sctx, src.Name(), t.ID, t.Key, e.owner, now, now.Add(e.o.Lease))
	}
	if err != nil {
		return "", fmt.Errorf("claiming %s: %w", t.Key, err)
	}
	log := e.ticketLog(src.Name(), t.Key, rec.RequestID)
	if !ok {
		log.Debug().Str("lease_owner", rec.LeaseOwner).Msg("ticket leased by another bridge instance; skipped")
		return "", nil
	}
	w := &worker{e: e, src: src, t: t, rec: rec, log: log, sctx: sctx, due: due, renewedAt: now}
	defer func() {
		if w.released {
			return // the last save ended the lease
		}
		if err := e.store.Release(sctx, src.Name(), t.ID, e.owner); err != nil {
			log.Warn().Err(err).Msg("releasing lease failed; it expires by itself")
		}
	}()
	if fast && rec.State == StateProvisioning && rec.Version == 1 {
		// Created just now by ClaimStart (a record that existed before, or was
		// claimed from another process since, is at a later version): the
		// checks are done and the state is saved; provision.
		return w.callProvision(ctx, ref, false)
	}
	return w.run(ctx)
}

// fastStart reports whether t, if the bridge has never seen it, would go
// straight to provisioning: it is approved, valid, names one image, and the
// policy lets it through without an upstream check (the decision is recorded
// on t, as gate does). Everything else, and every ticket the store already
// has, takes the step-by-step path (run), as does every ticket while the
// provisioner's upstream is down (Circuit). It reads only.
func (e *Engine) fastStart(ctx context.Context, t *Ticket) (ImageRef, bool) {
	if !t.Open || t.Invalid != "" || e.o.DailyLimit > 0 || len(SplitImages(t.Image)) != 1 {
		return ImageRef{}, false
	}
	if e.unavailable() != nil {
		return ImageRef{}, false // the step-by-step path records the wait
	}
	ref, err := e.prov.ParseImage(t.Image)
	if err != nil {
		return ImageRef{}, false
	}
	if e.o.Policy != nil {
		rctx, cancel := e.readCtx(ctx)
		dec, err := e.decide(rctx, *t)
		cancel()
		if err != nil || (dec.Tier != policy.Auto && dec.Tier != policy.Approval) {
			return ImageRef{}, false
		}
		fields := make(map[string]string, len(t.Fields)+1)
		for k, v := range t.Fields {
			fields[k] = v
		}
		fields[policyField] = dec.String()
		t.Fields = fields
	}
	return ref, true
}

// readCtx bounds one re-read of a ticket: ReadTimeout, and at most Lease/2
// (a re-read made under a lease must end well within it).
func (e *Engine) readCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, min(e.o.ReadTimeout, e.o.Lease/2))
}

// unavailable asks the provisioner, when it is a Circuit, whether its
// upstream is down, and returns why (nil: calls may go through). An outage
// is logged once, at warn, when it starts or its cause changes, and once at
// info when it ends, however many tickets wait meanwhile.
func (e *Engine) unavailable() error {
	c, ok := e.prov.(Circuit)
	if !ok {
		return nil
	}
	err := c.Unavailable()
	e.outageMu.Lock()
	defer e.outageMu.Unlock()
	switch {
	case err != nil:
		cause := CauseOf(err)
		if cause == "" {
			cause = "unspecified"
		}
		if cause != e.outage {
			e.outage = cause
			e.log.Warn().Str("cause", cause).Err(err).Msg("the provisioner's upstream is down: no provisioning call is started until it is back; tickets wait and are retried")
		}
	case e.outage != "":
		e.log.Info().Str("cause", e.outage).Msg("the provisioner's upstream is back: provisioning resumes")
		e.outage = ""
	}
	return err
}

// observe tells the Observer, if any, of ev.
func (e *Engine) observe(ev Event) {
	if e.o.Observer != nil {
		e.o.Observer(ev)
	}
}

// setDefault sets *p to def when it is unset: zero, negative, or "".
// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func setDefault[T int | time.Duration | string](p *T, def T) {
	var zero T
	if *p <= zero {
		*p = def
	}
}

// runID is a random id distinguishing this process's leases from those of any
// other bridge process, including one on the same host with the same instance id.
func runID() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return hex.EncodeToString(b[:])
}
