package sync

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"time"
)

// writeBack writes the result note and closes the ticket in one source call.
// When recovering, the ticket is re-read first: if it is no longer open, the
// earlier write landed (or a person closed it) and nothing is written again.
// A retryable failure is tried again in place, re-reading first, up to
// writeBackTries times within the pass before the ticket backs off.
func (w *worker) writeBack(ctx context.Context, recovering bool) (Decision, error) {
	for try := 1; ; try++ {
		if recovering {
			stop, d, err := w.reread(ctx, "the result note")
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
		r.Retried = recovering
		err := w.report(ctx, r)
		if err != nil && try < writeBackTries && w.retryInPlace(ctx, err, try) {
			recovering = true // the write may have landed: look before writing again
			continue
		}
		if err != nil {
			return w.writeBackFailed(ctx, "the result note", err)
		}
		w.rec.State = StateDone
		w.rec.BlockedCause, w.rec.LastError, w.rec.NextAttemptAt = "", "", time.Time{}
		if err := w.saveAudit(DecisionReported, "result note written and ticket closed: "+r.Summary); err != nil {
			return "", err
		}
		return w.last, nil
	}
}

// In-place tries of a write-back: a transient failure (a 503, a reset, a
// lost answer that the source could not confirm) is tried again after
// writeBackWait, then twice that, jittered, before the ticket backs off for
// BackoffMin or more.
const (
	writeBackTries = 3
	writeBackWait  = 500 * time.Millisecond
)

// retryInPlace reports whether a failed write-back is worth another try in
// this pass, having waited for it: only a retryable failure, while the pass
// goes on, and not while the upstream has asked to be left alone (a pause:
// trying again before it ends fails at once).
func (w *worker) retryInPlace(ctx context.Context, err error, try int) bool {
	if ClassOf(err) != ClassRetryable || errors.Is(err, errLeaseLost) || ctx.Err() != nil || strings.HasSuffix(CauseOf(err), ":paused") {
		return false
	}
	d := writeBackWait << (try - 1)
	d = d/2 + time.Duration(mrand.Int64N(int64(d/2)+1)) // jitter: half to all of it
	w.log.Debug().Err(err).Dur("wait", d).Int("try", try).Msg("write-back failed; trying again in place")
	return w.e.o.Sleep(ctx, d) == nil
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

// writeBackFailed records a write that did not land: the result note, the
// syncing note, or the re-read before one (what names it, for the log and
// audit). The record keeps its state, which says what remains to do: the
// image is provisioned (or the request rejected), so the next attempt
// re-reads the ticket and writes; it never provisions again.
//
// Each failure counts in Attempts and the next attempt waits
// backoff(Attempts), doubling up to BackoffMax. An attempt interrupted by
// ctx (shutdown, the pass deadline) counts nothing and runs again at once.
//
// A ClassBlocked failure (the source refused the write as configured: a
// write ACL, a missing transition, a required field) records its cause on
// the record, which the blocked gauge counts, with one audit row each time
// the cause changes rather than one per attempt; the engine writes nothing
// more to the ticket (the source told the requester what it could). It
// returns DecisionBlocked and no error. Any other failure is retryable: it
// is logged, told to the Observer as a retry, and returned wrapped.
func (w *worker) writeBackFailed(ctx context.Context, what string, cause error) (Decision, error) {
	if errors.Is(cause, errLeaseLost) {
		return "", cause
	}
	now := w.e.o.Now()
	interrupted := ctx.Err() != nil
	if interrupted {
		w.rec.NextAttemptAt = time.Time{}
	} else {
		w.rec.Attempts++
		w.rec.NextAttemptAt = now.Add(w.e.backoff(w.rec.Attempts))
	}
	next := w.rec.NextAttemptAt.UTC().Format(time.RFC3339)
	if !interrupted && ClassOf(cause) == ClassBlocked {
		c := CauseOf(cause)
		if c == "" {
			c = "unspecified"
		}
		changed := c != w.rec.BlockedCause
		w.rec.BlockedCause, w.rec.LastError = c, ReasonOf(cause)
		if changed {
			if err := w.saveAudit(DecisionBlocked, fmt.Sprintf("%s blocked: %s: %s; the ticket is re-read and the write retried after %s", what, c, w.rec.LastError, next)); err != nil {
				return "", err
			}
		} else {
			if err := w.save(); err != nil {
				return "", err
			}
			w.log.Info().Str("cause", c).Int("attempts", w.rec.Attempts).Str("next_attempt_at", next).Msg(what + " still blocked")
		}
		w.last = DecisionBlocked
		return DecisionBlocked, nil
	}
	w.rec.LastError = cause.Error()
	if err := w.save(); err != nil {
		return "", err
	}
	if interrupted {
		// Not an upstream failure: no attempt counted, no retry told.
		w.log.Info().Err(cause).Msg(what + " interrupted; the ticket is re-read and the write made at the next pass")
		return w.last, fmt.Errorf("%s on %s interrupted: %w", what, w.t.Key, cause)
	}
	w.log.Warn().Err(cause).Int("attempts", w.rec.Attempts).Str("next_attempt_at", next).Msg(what + " failed; the ticket is re-read and the write retried later")
	w.observe(DecisionRetry, what+" failed: "+cause.Error())
	return w.last, fmt.Errorf("%s on %s: %w", what, w.t.Key, cause)
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
		return w.writeBackFailed(ctx, "the syncing note", err)
	}
	now := w.e.o.Now()
	w.rec.State = StateSyncing
	w.rec.ReadyBy = now.Add(w.e.o.ReadyTimeout)
	w.rec.NextAttemptAt = now.Add(w.e.o.ReadyPoll)
	w.rec.BlockedCause, w.rec.LastError = "", ""
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
	ready, err := true, error(nil)
	var ref ImageRef
	for _, p := range waiting {
		if ref, err = w.e.prov.ParseImage(p.raw); err != nil {
			return w.reject(ctx, err) // cannot happen for a provisioned image; fail safe
		}
		// Before each image's check: up to MaxImages checks in a row would
		// outlast one lease.
		if err := w.renew(); err != nil {
			return "", err
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
	gctx, cancel := w.bounded(ctx, w.e.o.ReadTimeout)
	cur, err := w.src.Get(gctx, w.t.ID)
	cancel()
	if err != nil {
		d, err := w.writeBackFailed(ctx, "re-reading before "+before, err)
		return true, d, err
	}
	w.t = cur
	return false, "", nil
}
