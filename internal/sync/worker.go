package sync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

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
	w.observe(e.Decision, e.Detail)
}

// observe tells the Observer of decision d on the ticket.
func (w *worker) observe(d Decision, detail string) {
	w.e.observe(Event{Source: w.src.Name(), TicketID: w.t.ID, Key: w.t.Key, RequestID: w.rec.RequestID, Decision: d, Detail: detail})
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
		if errors.Is(err, errLeaseLost) {
			return "", err
		}
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
	if err := w.e.unavailable(); err != nil {
		return w.waitForUpstream(err)
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
	if err := w.e.unavailable(); err != nil {
		// Down since the attempt was counted and saved: it is not made, so it
		// does not count, and the record says no call may be in flight.
		w.rec.Attempts = max(w.rec.Attempts-1, 0)
		if !wasInFlight {
			w.rec.State = StateNew
		}
		return w.waitForUpstream(err)
	}
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
	if ctx.Err() != nil {
		// Interrupted by shutdown or the pass deadline, not by the upstream:
		// retried as soon as a pass runs again.
		w.rec.NextAttemptAt = time.Time{}
		if err := w.saveAudit(DecisionRetry, fmt.Sprintf("attempt %d interrupted (%v), retried at the next pass: %v", w.rec.Attempts, ctx.Err(), cause)); err != nil {
			return "", err
		}
		return w.last, nil
	}
	w.rec.NextAttemptAt = w.e.o.Now().Add(w.e.backoff(w.rec.Attempts))
	if err := w.saveAudit(DecisionRetry, fmt.Sprintf("attempt %d failed, retrying after %s: %v", w.rec.Attempts, w.rec.NextAttemptAt.Format(time.RFC3339), cause)); err != nil {
		return "", err
	}
	return w.last, nil
}

// waitForUpstream puts the ticket back without making a provisioning call:
// the provisioner's upstream is down (Circuit), so nothing was tried and no
// attempt counts. The ticket is due again after BackoffMin, a delay that
// does not grow: the circuit, not the ticket, paces the calls. It writes no
// audit row and logs at debug (the engine logs the outage once); the
// Observer is told of a retry.
func (w *worker) waitForUpstream(cause error) (Decision, error) {
	w.rec.LastError = cause.Error()
	w.rec.NextAttemptAt = w.e.o.Now().Add(w.e.o.BackoffMin)
	if err := w.save(); err != nil {
		return "", err
	}
	w.log.Debug().Err(cause).Msg("provisioner unavailable; the ticket waits")
	w.observe(DecisionRetry, "provisioner unavailable: "+cause.Error())
	w.last = DecisionRetry
	return DecisionRetry, nil
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

// finish marks the record done with one audit row.
func (w *worker) finish(d Decision, detail string) (Decision, error) {
	w.rec.State = StateDone
	w.rec.BlockedCause, w.rec.LastError, w.rec.NextAttemptAt = "", "", time.Time{}
	if err := w.saveAudit(d, detail); err != nil {
		return "", err
	}
	return w.last, nil
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
