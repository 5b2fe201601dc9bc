package sync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	stdsync "sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/chainguard-dev/image-request-bridge/internal/policy"
)

// Options tune the engine. Zero values take the defaults shown.
type Options struct {
	Instance         string        // this bridge's identity in audit rows and notes (default "bridge")
	Version          string        // bridge version, named in notes (default "dev")
	Concurrency      int           // tickets processed at once (default 4)
	Lease            time.Duration // how long a claimed ticket is reserved; every upstream call is bounded by half of it (default 5m)
	BackoffMin       time.Duration // first retry delay after a retryable or blocked error (default 30s)
	BackoffMax       time.Duration // retry delay cap (default 1h)
	ProvisionTimeout time.Duration // deadline of one provisioning call (default 60s)
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
	Now        func() time.Time
	Logger     zerolog.Logger
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
}

type queued struct {
	source, id string
	due        bool // act now even if the record is backing off or waiting (a readiness event)
}

// New builds an engine over the given store, provisioner and sources.
func New(store Store, prov Provisioner, sources []Source, o Options) *Engine {
	if o.Instance == "" {
		o.Instance = "bridge"
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Lease <= 0 {
		o.Lease = 5 * time.Minute
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 30 * time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = time.Hour
	}
	if o.ProvisionTimeout <= 0 {
		o.ProvisionTimeout = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ReadyPoll <= 0 {
		o.ReadyPoll = time.Minute
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 30 * time.Minute
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
	}
	if o.MaxImages <= 0 {
		o.MaxImages = 10
	}
	e := &Engine{store: store, prov: prov, sources: map[string]Source{}, o: o, log: o.Logger, inflight: map[string]bool{},
		queued: map[string]bool{}, queue: make(chan queued, o.QueueSize), owner: o.Instance + "/" + runID()}
	for _, s := range sources {
		e.sources[s.Name()] = s
		e.order = append(e.order, s.Name())
	}
	return e
}

// Stats counts what a pass did, by decision.
type Stats struct {
	Listed    int
	Decisions map[Decision]int
	Skipped   int // listed but not due (backoff), leased elsewhere, or already done
	Errors    int // tickets whose processing failed and will be retried
}

func (s *Stats) add(o Stats) {
	s.Listed += o.Listed
	s.Skipped += o.Skipped
	s.Errors += o.Errors
	for d, n := range o.Decisions {
		s.Decisions[d] += n
	}
}

// Pass runs one reconcile pass over the named sources (all when none are named):
// every approved ticket is processed by a bounded worker pool while the source
// is still paging, then unfinished store records the listing did not show are
// re-driven (their ticket is re-read first). The error reports sources that
// could not be listed; per-ticket failures are logged, counted and retried on a
// later pass.
func (e *Engine) Pass(ctx context.Context, names ...string) (Stats, error) {
	if len(names) == 0 {
		names = e.order
	}
	total := Stats{Decisions: map[Decision]int{}}
	if w, ok := e.prov.(Warmer); ok {
		warmed := make(chan struct{})
		defer func() { <-warmed }() // nothing outlives the pass
		go func() {
			defer close(warmed)
			if err := w.Warm(ctx); err != nil && ctx.Err() == nil {
				e.log.Debug().Err(err).Msg("reading the provisioner's catalog and plan ahead of the tickets failed; tickets read them when needed")
			}
		}()
	}
	var errs []error
	for _, n := range names {
		src, ok := e.sources[n]
		if !ok {
			errs = append(errs, fmt.Errorf("unknown source %q", n))
			continue
		}
		st, err := e.passSource(ctx, src)
		total.add(st)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
	}
	return total, errors.Join(errs...)
}

type job struct {
	t          Ticket
	recovering bool // the ticket was re-read for an unfinished record
}

func (e *Engine) passSource(ctx context.Context, src Source) (Stats, error) {
	st := Stats{Decisions: map[Decision]int{}}
	var stMu stdsync.Mutex
	// The listing runs ahead of the workers by up to two tickets per worker,
	// so that fetching the next page overlaps with work on the current one
	// instead of leaving every worker idle for a listing call. Two per worker
	// covers a page fetch that takes as long as a ticket's upstream calls; the
	// tickets queued are at most that much staler than when listed, and every
	// write is guarded by the store's record and the re-read on recovery.
	jobs := make(chan job, 2*e.o.Concurrency)
	var wg stdsync.WaitGroup
	var pending stdsync.WaitGroup // jobs handed on and not yet done
	for i := 0; i < e.o.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if ctx.Err() != nil {
					// Shutting down: a queued ticket is left for the next pass
					// rather than started with a cancelled context (which would
					// record a false retry).
					pending.Done()
					continue
				}
				d, err := e.process(ctx, src, j.t, false)
				stMu.Lock()
				switch {
				case err != nil:
					st.Errors++
				case d == "":
					st.Skipped++
				default:
					st.Decisions[d]++
				}
				stMu.Unlock()
				pending.Done()
			}
		}()
	}
	send := func(j job) error {
		pending.Add(1)
		select {
		case jobs <- j:
			return nil
		case <-ctx.Done():
			pending.Done()
			return ctx.Err()
		}
	}

	seen := map[string]bool{}
	list := func() (fresh int, err error) {
		err = src.Approved(ctx, func(t Ticket) error {
			if seen[t.ID] {
				return nil // a ticket that moved while the source paged, or listed again
			}
			seen[t.ID] = true
			st.Listed++
			fresh++
			return send(job{t: t})
		})
		return fresh, err
	}
	fresh, listErr := list()
	if r, ok := src.(Relister); ok {
		// This source's paging may have skipped tickets that left the listing
		// while it paged (the bridge closes them as it goes). Once the work
		// handed on is done, nothing of the bridge's moves the listing, and
		// listing again finds what was skipped; until a listing finds nothing
		// new or could not have skipped anything.
		for round := 1; listErr == nil && fresh > 0 && r.PagingMaySkip() && round < maxListings; round++ {
			pending.Wait()
			fresh, listErr = list()
		}
	}

	// Records the listing did not show: a write-back that landed before a crash,
	// or a ticket closed or withdrawn by a person. Re-read each one.
	var recErr error
	if listErr == nil {
		var unseen []Record
		recErr = e.store.Unfinished(ctx, src.Name(), func(r Record) error {
			if !seen[r.TicketID] {
				unseen = append(unseen, r)
			}
			return nil
		})
		for _, r := range unseen {
			if ctx.Err() != nil {
				break
			}
			t, err := src.Get(ctx, r.TicketID)
			if err != nil {
				e.ticketLog(r.Source, r.Key, r.RequestID).Warn().Err(err).Msg("re-reading an unfinished ticket failed; will retry next pass")
				stMu.Lock()
				st.Errors++
				stMu.Unlock()
				continue
			}
			_ = send(job{t: t, recovering: true}) // fails only when ctx ends: the loop stops
		}
	}
	close(jobs)
	wg.Wait()
	if listErr != nil {
		return st, listErr
	}
	if recErr != nil {
		return st, fmt.Errorf("reading unfinished records: %w", recErr)
	}
	return st, ctx.Err()
}

// HandleTicket re-reads one ticket from its source and processes it now. It is
// the webhook path: the caller only knows an id, the source is the truth.
func (e *Engine) HandleTicket(ctx context.Context, source, id string) (Decision, error) {
	return e.handle(ctx, queued{source: source, id: id})
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
// has, takes the step-by-step path (run). It reads only.
func (e *Engine) fastStart(ctx context.Context, t *Ticket) (ImageRef, bool) {
	if !t.Open || t.Invalid != "" || e.o.DailyLimit > 0 || len(SplitImages(t.Image)) != 1 {
		return ImageRef{}, false
	}
	ref, err := e.prov.ParseImage(t.Image)
	if err != nil {
		return ImageRef{}, false
	}
	if e.o.Policy != nil {
		dec, err := e.decide(ctx, *t)
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

// worker carries one claimed ticket through its states.
type worker struct {
	e    *Engine
	src  Source
	t    Ticket
	rec  Record
	log  *zerolog.Logger
	sctx context.Context
	last Decision
	due  bool
	// renewedAt is when the lease was last taken or extended.
	renewedAt time.Time
	// released is set once a save into StateDone has ended the lease.
	released bool
}

func (w *worker) run(ctx context.Context) (Decision, error) {
	now := w.e.o.Now()
	switch w.rec.State {
	case StateDone:
		if w.t.Open {
			w.log.Warn().Msg("ticket is open again after the bridge closed it; leaving it alone (use `bridge replay` to re-drive it)")
		}
		return "", nil
	case StateProvisioned, StateRejected:
		// A write-back may have landed before a crash: the ticket is the truth.
		if !w.due && !w.rec.NextAttemptAt.IsZero() && now.Before(w.rec.NextAttemptAt) {
			return "", nil
		}
		if w.rec.State == StateProvisioned && w.closeOnReady() {
			return w.syncing(ctx, true)
		}
		return w.writeBack(ctx, true)
	case StateSyncing:
		if !w.due && now.Before(w.rec.NextAttemptAt) {
			return "", nil
		}
		return w.checkReady(ctx)
	}
	if !w.t.Open {
		if !w.t.Closed {
			return "", nil // not (or no longer) approved: wait for the approval
		}
		// Closed by a person before the bridge acted.
		return w.finish(DecisionClosedElsewhere, "ticket closed before the bridge acted; nothing provisioned")
	}
	if !w.due && !w.rec.NextAttemptAt.IsZero() && now.Before(w.rec.NextAttemptAt) {
		return "", nil // backing off
	}
	return w.provision(ctx)
}

// errLeaseLost stops a worker whose lease ran out and was taken by another
// bridge process: that process now owns the ticket.
var errLeaseLost = errors.New("lease lost to another bridge process")

// renew extends the lease before an upstream call, and fails if another
// process took the ticket meanwhile (its record changed).
func (w *worker) renew() error {
	now := w.e.o.Now()
	if !w.renewedAt.IsZero() && now.Sub(w.renewedAt) < w.e.o.Lease/4 {
		// Claimed or renewed moments ago: the lease has at least 3/4 of its
		// term left, more than any bounded call (Lease/2) can use.
		return nil
	}
	rec, ok, err := w.e.store.Claim(w.sctx, w.src.Name(), w.t.ID, w.t.Key, w.e.owner, now, now.Add(w.e.o.Lease))
	if err != nil {
		return fmt.Errorf("renewing the lease on %s: %w", w.t.Key, err)
	}
	if !ok || rec.Version != w.rec.Version {
		return fmt.Errorf("%s: %w", w.t.Key, errLeaseLost)
	}
	w.renewedAt = now
	w.rec.LeaseUntil = rec.LeaseUntil // Save writes the lease as the record has it
	return nil
}

// bounded returns a context for one upstream call: it ends well within the
// lease, so no other process can take the ticket while the call may still land.
func (w *worker) bounded(ctx context.Context, limit time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, min(limit, w.e.o.Lease/2))
}

// save persists the record together with the audit rows of the decisions it
// records, in one store transaction, then logs the decisions. A save into
// StateDone is the worker's last: it ends the lease in the same commit.
func (w *worker) save(entries ...AuditEntry) error {
	w.rec.UpdatedAt = w.e.o.Now()
	rec := w.rec
	if rec.State == StateDone {
		rec.LeaseOwner, rec.LeaseUntil = "", time.Time{}
	}
	if err := w.e.store.Save(w.sctx, &rec, entries...); err != nil {
		return fmt.Errorf("saving %s state %s: %w", w.t.Key, w.rec.State, err)
	}
	w.rec = rec
	w.released = rec.LeaseOwner == ""
	for _, e := range entries {
		w.logged(e)
	}
	return nil
}

// audit appends an audit row for a decision that changes no state.
func (w *worker) audit(d Decision, detail string) {
	entry := w.entry(d, detail)
	if err := w.e.store.Append(w.sctx, entry); err != nil {
		w.log.Error().Err(err).Str("decision", string(d)).Msg("writing audit row failed")
	}
	w.logged(entry)
}

// saveAudit persists the record and the audit row of decision d.
func (w *worker) saveAudit(d Decision, detail string) error {
	return w.save(w.entry(d, detail))
}

// entry is the audit row for decision d.
func (w *worker) entry(d Decision, detail string) AuditEntry {
	if tier := w.t.Fields[policyField]; tier != "" {
		detail += " [approval tier " + tier + "]"
	}
	return AuditEntry{
		Time: w.e.o.Now(), Source: w.src.Name(), TicketID: w.t.ID, Key: w.t.Key, RequestID: w.rec.RequestID,
		Requester: w.t.Requester, Approver: w.t.Approver, Image: w.t.Image, Justification: w.t.Justification,
		Decision: d, RepoID: w.rec.Result.RepoID, Detail: detail, Actor: w.e.o.Instance,
	}
}

// logged logs a decision and tells the observer.
func (w *worker) logged(e AuditEntry) {
	w.last = e.Decision
	ev := w.log.Info()
	if e.Decision == DecisionBlocked || e.Decision == DecisionRetry {
		ev = w.log.Warn() // an administrator has something to look at
	}
	ev.Str("decision", string(e.Decision)).Str("image", w.t.Image).Str("repo_id", w.rec.Result.RepoID).Msg(e.Detail)
	if w.e.o.Observer != nil {
		w.e.o.Observer(Event{Source: w.src.Name(), TicketID: w.t.ID, Key: w.t.Key, RequestID: w.rec.RequestID, Decision: e.Decision, Detail: e.Detail})
	}
}

func (w *worker) provision(ctx context.Context) (Decision, error) {
	wasInFlight := w.rec.State == StateProvisioning
	w.rec.Image = w.t.Image
	if w.rec.Key == "" {
		w.rec.Key = w.t.Key
	}
	if w.t.Invalid != "" {
		return w.reject(ctx, Rejectedf("%s", w.t.Invalid))
	}
	if ok, d, err := w.gate(ctx); err != nil {
		if ClassOf(err) == ClassBlocked {
			return w.block(ctx, err)
		}
		return w.retry(ctx, err)
	} else if !ok {
		return d, nil
	}
	images := SplitImages(w.t.Image)
	if len(images) > w.e.o.MaxImages {
		return w.reject(ctx, Rejectedf("the request names %d images; at most %d can be requested in one ticket", len(images), w.e.o.MaxImages))
	}
	if len(images) > 1 {
		return w.provisionMany(ctx, images)
	}
	ref, err := w.e.prov.ParseImage(w.t.Image)
	if err != nil {
		return w.reject(ctx, err)
	}
	if err := w.withinDailyLimit(ctx, 1); err != nil {
		return w.block(ctx, err)
	}

	w.rec.State = StateProvisioning
	w.rec.Attempts++
	if err := w.save(); err != nil {
		return "", err
	}
	return w.callProvision(ctx, ref, wasInFlight)
}

// callProvision makes the provisioning call for a record saved in
// StateProvisioning, records its outcome and goes on to the write-back.
// wasInFlight is whether the record was already provisioning before this
// attempt (an earlier attempt's outcome was never recorded).
func (w *worker) callProvision(ctx context.Context, ref ImageRef, wasInFlight bool) (Decision, error) {
	if err := w.renew(); err != nil {
		return "", err
	}
	pctx, cancel := w.bounded(ctx, w.e.o.ProvisionTimeout)
	start := time.Now()
	res, err := w.e.prov.Provision(pctx, ref)
	cancel()
	elapsed := time.Since(start)
	if w.e.o.Observer != nil {
		w.e.o.Observer(Event{Source: w.src.Name(), TicketID: w.t.ID, Key: w.t.Key, RequestID: w.rec.RequestID, Decision: "provision_call", Duration: elapsed})
	}
	if err != nil {
		switch ClassOf(err) {
		case ClassRejected:
			return w.reject(ctx, err)
		case ClassBlocked:
			return w.block(ctx, err)
		default:
			return w.retry(ctx, err)
		}
	}
	if res.AlreadyPresent && wasInFlight {
		// ALREADY_EXISTS for a ticket the store shows in flight: our own earlier
		// attempt created it before its outcome was recorded.
		res.AlreadyPresent = false
	}
	w.rec.State = StateProvisioned
	w.rec.Result = res
	w.rec.BlockedCause, w.rec.LastError, w.rec.NextAttemptAt = "", "", time.Time{}
	d, detail := DecisionProvisioned, "provisioned "+res.PullRef+" via "+res.Method
	if res.AlreadyPresent {
		d, detail = DecisionAlreadyPresent, "image already present: "+res.PullRef
	}
	if err := w.saveAudit(d, detail); err != nil {
		return "", err
	}
	if w.closeOnReady() {
		return w.syncing(ctx, false)
	}
	return w.writeBack(ctx, false)
}

func (w *worker) reject(ctx context.Context, cause error) (Decision, error) {
	w.rec.State = StateRejected
	w.rec.Reason = ReasonOf(cause)
	w.rec.BlockedCause, w.rec.LastError, w.rec.NextAttemptAt = "", "", time.Time{}
	if err := w.saveAudit(DecisionRejected, w.rec.Reason); err != nil {
		return "", err
	}
	return w.writeBack(ctx, false)
}

func (w *worker) retry(ctx context.Context, cause error) (Decision, error) {
	w.rec.LastError = cause.Error()
	w.rec.NextAttemptAt = w.e.o.Now().Add(w.e.backoff(w.rec.Attempts))
	if ctx.Err() != nil {
		// Interrupted by shutdown, not by the upstream: retry as soon as we run again.
		w.rec.NextAttemptAt = time.Time{}
	}
	if err := w.saveAudit(DecisionRetry, fmt.Sprintf("attempt %d failed, retrying after %s: %v", w.rec.Attempts, w.rec.NextAttemptAt.Format(time.RFC3339), cause)); err != nil {
		return "", err
	}
	return w.last, nil
}

func (w *worker) block(ctx context.Context, cause error) (Decision, error) {
	w.rec.State = StateBlocked
	w.rec.BlockedCause = CauseOf(cause)
	if w.rec.BlockedCause == "" {
		w.rec.BlockedCause = "unspecified"
	}
	w.rec.LastError = ReasonOf(cause)
	w.rec.NextAttemptAt = w.e.o.Now().Add(w.e.backoff(w.rec.Attempts))
	if err := w.saveAudit(DecisionBlocked, w.rec.BlockedCause+": "+w.rec.LastError); err != nil {
		return "", err
	}
	if hasCause(w.rec.NotedCause, w.rec.BlockedCause) {
		return w.last, nil // this cause is already on the ticket
	}
	r := blockedReport(w.rec, w.t, w.noteContext())
	if err := w.report(ctx, r); err != nil {
		w.log.Warn().Err(err).Msg("writing the blocked note failed; will retry with the next attempt")
		return w.last, fmt.Errorf("blocked note on %s: %w", w.t.Key, err)
	}
	w.rec.NotedCause = addCause(w.rec.NotedCause, w.rec.BlockedCause)
	if err := w.saveAudit(DecisionNoted, "blocked note written; ticket left open"); err != nil {
		return "", err
	}
	return w.last, nil
}

func (w *worker) noteContext() noteContext {
	return noteContext{instance: w.e.o.Instance, version: w.e.o.Version, now: w.e.o.Now()}
}

// writeBack writes the result note and closes the ticket in one source call.
// When recovering, the ticket is re-read first: if it is no longer open, the
// earlier write landed (or a person closed it) and nothing is written again.
func (w *worker) writeBack(ctx context.Context, recovering bool) (Decision, error) {
	if recovering {
		stop, d, err := w.reread(ctx, "write-back")
		if stop {
			return d, err
		}
		if w.t.Closed {
			return w.finish(DecisionReported, "ticket already closed; result note not written again")
		}
	}
	var r Report
	if w.rec.State == StateRejected {
		r = rejectedReport(w.rec, w.t, w.noteContext())
	} else {
		r = provisionedReport(w.rec, w.t, w.noteContext())
	}
	if err := w.report(ctx, r); err != nil {
		if errors.Is(err, errLeaseLost) {
			return "", err
		}
		return w.writeBackFailed(err)
	}
	w.rec.State = StateDone
	w.rec.LastError, w.rec.NextAttemptAt = "", time.Time{}
	if err := w.saveAudit(DecisionReported, "result note written and ticket closed: "+r.Summary); err != nil {
		return "", err
	}
	return w.last, nil
}

// report renews the lease and writes r within a bounded call.
func (w *worker) report(ctx context.Context, r Report) error {
	if err := w.renew(); err != nil {
		return err
	}
	rctx, cancel := w.bounded(ctx, w.e.o.Lease)
	defer cancel()
	return w.src.Report(rctx, w.t, r)
}

func (w *worker) writeBackFailed(cause error) (Decision, error) {
	w.rec.LastError = cause.Error()
	w.rec.NextAttemptAt = w.e.o.Now().Add(w.e.backoff(1))
	if err := w.save(); err != nil {
		return "", err
	}
	w.log.Warn().Err(cause).Msg("write-back failed; the ticket is re-read and the note retried later")
	return w.last, fmt.Errorf("write-back to %s: %w", w.t.Key, cause)
}

// SortedDecisions lists a Stats' decisions in a stable order, for printing.
func (s Stats) SortedDecisions() []Decision {
	var out []Decision
	for d := range s.Decisions {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Noted causes are kept as a comma-separated set, so causes that alternate
// (PERMISSION_DENIED, then UNAUTHENTICATED, then PERMISSION_DENIED) are each
// noted once.
func hasCause(set, cause string) bool {
	for _, c := range strings.Split(set, ",") {
		if c == cause {
			return true
		}
	}
	return false
}

func addCause(set, cause string) string {
	if set == "" {
		return cause
	}
	if hasCause(set, cause) {
		return set
	}
	return set + "," + cause
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

func (w *worker) closeOnReady() bool {
	_, ok := w.e.prov.(Readiness)
	return w.e.o.CloseOnReady && ok
}

// syncing writes the "provisioned, syncing" note and waits for the tag. The
// source skips the note if it is already on the ticket (a crash after it
// landed); when recovering, a ticket already closed is done.
func (w *worker) syncing(ctx context.Context, recovering bool) (Decision, error) {
	if recovering {
		stop, d, err := w.reread(ctx, "the syncing note")
		if stop {
			return d, err
		}
		if w.t.Closed {
			return w.finish(DecisionClosedElsewhere, "ticket closed while the image was syncing; no further note")
		}
	}
	r := syncingReport(w.rec, w.t, w.noteContext(), w.e.o.ReadyTimeout)
	if err := w.report(ctx, r); err != nil {
		if errors.Is(err, errLeaseLost) {
			return "", err
		}
		return w.writeBackFailed(err)
	}
	now := w.e.o.Now()
	w.rec.State = StateSyncing
	w.rec.ReadyBy = now.Add(w.e.o.ReadyTimeout)
	w.rec.NextAttemptAt = now.Add(w.e.o.ReadyPoll)
	w.rec.LastError = ""
	if err := w.saveAudit(DecisionSyncing, "syncing note written; waiting for "+w.rec.Result.PullRef+" to be pullable"); err != nil {
		return "", err
	}
	return w.last, nil
}

// checkReady asks the provisioner whether the tag is pullable: ready closes
// the ticket with the result note; past ReadyBy it closes with a timeout note.
func (w *worker) checkReady(ctx context.Context) (Decision, error) {
	type pending struct {
		res Result
		raw string
	}
	waiting := []pending{{w.rec.Result, w.rec.Image}}
	if len(w.rec.Images) > 1 {
		waiting = nil
		for _, o := range w.rec.Images {
			if o.Provisioned() {
				waiting = append(waiting, pending{o.Result, o.Requested})
			}
		}
	}
	if err := w.renew(); err != nil {
		return "", err
	}
	ready, err := true, error(nil)
	var ref ImageRef
	for _, p := range waiting {
		if ref, err = w.e.prov.ParseImage(p.raw); err != nil {
			return w.reject(ctx, err) // cannot happen for a provisioned image; fail safe
		}
		rctx, cancel := w.bounded(ctx, w.e.o.ProvisionTimeout)
		ok, cerr := w.e.prov.(Readiness).TagReady(rctx, p.res, ref)
		cancel()
		if cerr != nil || !ok {
			ready, err = false, cerr
			break
		}
	}
	now := w.e.o.Now()
	switch {
	case err == nil && ready:
		w.audit(DecisionReady, w.rec.Result.PullRef+" is pullable")
		return w.writeBack(ctx, false)
	case now.After(w.rec.ReadyBy):
		w.rec.State = StateRejected
		w.rec.Reason = fmt.Sprintf("the repository was created, but %s was still not pullable after %s; check that tag %q exists in the catalog, or ask again later",
			w.rec.Result.PullRef, w.e.o.ReadyTimeout, ref.Tag)
		if err := w.saveAudit(DecisionReadyTimeout, w.rec.Reason); err != nil {
			return "", err
		}
		return w.writeBack(ctx, false)
	default:
		w.rec.NextAttemptAt = now.Add(w.e.o.ReadyPoll)
		if err != nil {
			w.rec.LastError = err.Error()
		}
		if err := w.save(); err != nil {
			return "", err
		}
		return "", nil
	}
}

// reread re-reads the ticket before a write that may already have landed (a
// crash, a lost answer) into w.t. stop is true when the worker must stop
// here, with d and err to return: the lease was lost or the read failed.
func (w *worker) reread(ctx context.Context, before string) (stop bool, d Decision, err error) {
	if err := w.renew(); err != nil {
		return true, "", err
	}
	gctx, cancel := w.bounded(ctx, w.e.o.Lease)
	cur, err := w.src.Get(gctx, w.t.ID)
	cancel()
	if err != nil {
		d, err := w.writeBackFailed(fmt.Errorf("re-reading before %s: %w", before, err))
		return true, d, err
	}
	w.t = cur
	return false, "", nil
}

// finish marks the record done with one audit row.
func (w *worker) finish(d Decision, detail string) (Decision, error) {
	w.rec.State = StateDone
	w.rec.LastError, w.rec.NextAttemptAt = "", time.Time{}
	if err := w.saveAudit(d, detail); err != nil {
		return "", err
	}
	return w.last, nil
}

// Enqueue asks for one ticket to be processed soon: the webhook path. The
// id is only a hint; the ticket is re-read before anything is done. A ticket
// already queued coalesces; false means the queue is full.
func (e *Engine) Enqueue(source, id string) bool {
	return e.enqueue(queued{source: source, id: id})
}

func (e *Engine) enqueue(q queued) bool {
	key := q.source + "/" + q.id
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.queued[key] {
		return true
	}
	select {
	case e.queue <- q:
		e.queued[key] = true
		return true
	default:
		return false
	}
}

// QueueDepth is the number of tickets waiting in the webhook queue.
func (e *Engine) QueueDepth() int { return len(e.queue) }

// RunQueue processes queued tickets with Concurrency workers until ctx ends.
func (e *Engine) RunQueue(ctx context.Context) {
	var wg stdsync.WaitGroup
	for i := 0; i < e.o.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case q := <-e.queue:
					e.mu.Lock()
					delete(e.queued, q.source+"/"+q.id)
					e.mu.Unlock()
					if _, err := e.handle(ctx, q); err != nil {
						e.log.Warn().Str("source", q.source).Str("ticket_id", q.id).Err(err).Msg("queued ticket failed; polling retries it")
					}
				}
			}
		}()
	}
	wg.Wait()
}

func (e *Engine) handle(ctx context.Context, q queued) (Decision, error) {
	src, ok := e.sources[q.source]
	if !ok {
		return "", fmt.Errorf("unknown source %q", q.source)
	}
	t, err := src.Get(ctx, q.id)
	if err != nil {
		return "", fmt.Errorf("re-reading %s ticket %s: %w", q.source, q.id, err)
	}
	if !t.Open && !t.AwaitingApproval && !q.due {
		e.log.Debug().Str("source", q.source).Str("ticket", t.Key).Msg("ticket is not approved and open; nothing to do")
		return "", nil
	}
	return e.process(ctx, src, t, q.due)
}

// RepoEvent is told of a Chainguard repository event: tickets syncing that
// image are checked now rather than at their next poll.
func (e *Engine) RepoEvent(ctx context.Context, ev RepoEvent) {
	for _, name := range e.order {
		err := e.store.Unfinished(ctx, name, func(r Record) error {
			if r.State != StateSyncing || !repoMatches(r, ev) {
				return nil
			}
			if !e.enqueue(queued{source: name, id: r.TicketID, due: true}) {
				e.log.Warn().Str("source", name).Str("ticket", r.Key).Msg("queue full; the ticket is checked at its next poll")
			}
			return nil
		})
		if err != nil {
			e.log.Warn().Err(err).Msg("matching a repository event to syncing tickets failed")
		}
	}
}

func repoMatches(r Record, ev RepoEvent) bool {
	if ev.RepoID != "" && r.Result.RepoID != "" {
		if ev.RepoID != r.Result.RepoID {
			return false
		}
	} else if ev.Repo == "" || !strings.Contains(r.Result.PullRef, "/"+ev.Repo+":") {
		return false
	}
	return ev.Tag == "" || strings.HasSuffix(r.Result.PullRef, ":"+ev.Tag)
}
