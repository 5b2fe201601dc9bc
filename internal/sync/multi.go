package sync

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// SplitImages splits a requested-image field naming several images: one per
// line, or separated by commas or semicolons. Spaces inside an entry are kept,
// so "Python 3.12" stays one (malformed) reference with a clear reason.
func SplitImages(field string) []string {
	parts := strings.FieldsFunc(field, func(r rune) bool { return r == ',' || r == ';' || r == '\n' || r == '\r' })
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return []string{field} // empty or blank: one (rejected) reference
	}
	return out
}

// withinDailyLimit returns a Blocked error when provisioning n more images
// for the ticket's requester would pass Options.DailyLimit.
func (w *worker) withinDailyLimit(ctx context.Context, n int) error {
	limit := w.e.o.DailyLimit
	counter, ok := w.e.store.(ProvisionCounter)
	if limit <= 0 || !ok || w.t.Requester == "" {
		return nil
	}
	used, err := counter.CountProvisioned(ctx, w.t.Requester, w.e.o.Now().Add(-24*time.Hour))
	if err != nil {
		return Retryable(err)
	}
	if used+n <= limit {
		return nil
	}
	return Blocked("policy:daily_limit", fmt.Sprintf("%s has had %d images provisioned in the last 24 hours and the daily limit is %d; this request is provisioned automatically once the window allows",
		w.t.Requester, used, limit), nil)
}

// provisionMany provisions every image of a ticket naming several, persisting
// each image's outcome as it goes (a crash re-drives only what is not done).
// One note reports them all; the ticket closes complete when at least one
// image was provisioned, incomplete when none was.
func (w *worker) provisionMany(ctx context.Context, images []string) (Decision, error) {
	if len(w.rec.Images) != len(images) {
		w.rec.Images = make([]ImageOutcome, len(images))
		for i, raw := range images {
			w.rec.Images[i].Requested = raw
		}
	}
	var todo []int
	for i := range w.rec.Images {
		o := &w.rec.Images[i]
		if o.Done {
			continue
		}
		if _, err := w.e.prov.ParseImage(o.Requested); err != nil {
			o.Done, o.Reason = true, ReasonOf(err)
			continue
		}
		todo = append(todo, i)
	}
	if err := w.withinDailyLimit(ctx, len(todo)); err != nil && len(todo) > 0 {
		return w.block(ctx, err)
	}
	if len(todo) > 0 {
		if err := w.e.unavailable(); err != nil {
			return w.waitForUpstream(err)
		}
	}
	wasInFlight := w.rec.State == StateProvisioning
	w.rec.State = StateProvisioning
	w.rec.Attempts++
	if err := w.save(); err != nil {
		return "", err
	}
	for k, i := range todo {
		o := &w.rec.Images[i]
		ref, _ := w.e.prov.ParseImage(o.Requested)
		if k > 0 {
			if err := w.e.unavailable(); err != nil {
				return w.waitForUpstream(err) // keeps the images done so far
			}
		}
		if err := w.renew(); err != nil {
			return "", err
		}
		pctx, cancel := w.bounded(ctx, w.e.o.ProvisionTimeout)
		start := time.Now()
		res, err := w.e.prov.Provision(pctx, ref)
		cancel()
		if w.e.o.Observer != nil {
			w.e.o.Observer(Event{Source: w.src.Name(), TicketID: w.t.ID, Key: w.t.Key, RequestID: w.rec.RequestID, Decision: "provision_call", Duration: time.Since(start)})
		}
		switch {
		case err == nil:
			if res.AlreadyPresent && wasInFlight {
				res.AlreadyPresent = false // our own earlier attempt, as for one image
			}
			o.Done, o.Result = true, res
		case ClassOf(err) == ClassRejected:
			o.Done, o.Reason = true, ReasonOf(err)
		case ClassOf(err) == ClassBlocked:
			if serr := w.save(); serr != nil {
				return "", serr
			}
			return w.block(ctx, err)
		default:
			if serr := w.save(); serr != nil {
				return "", serr
			}
			return w.retry(ctx, err)
		}
		var entries []AuditEntry
		if o.Provisioned() {
			d := DecisionProvisioned
			if res.AlreadyPresent {
				d = DecisionAlreadyPresent
			}
			w.rec.Result = res
			entries = append(entries, w.entry(d, fmt.Sprintf("image %d of %d: %s via %s", i+1, len(images), res.PullRef, res.Method)))
		}
		if err := w.save(entries...); err != nil {
			return "", err
		}
	}
	var ok, rejected []string
	w.rec.Result = Result{}
	for _, o := range w.rec.Images {
		if o.Provisioned() {
			ok = append(ok, o.Result.PullRef)
			if w.rec.Result.PullRef == "" {
				w.rec.Result = o.Result
			}
		} else {
			rejected = append(rejected, fmt.Sprintf("%s: %s", quoteShort(o.Requested), o.Reason))
		}
	}
	w.rec.BlockedCause, w.rec.LastError, w.rec.NextAttemptAt = "", "", time.Time{}
	if len(ok) == 0 {
		return w.reject(ctx, Rejectedf("none of the %d images could be provisioned: %s", len(images), strings.Join(rejected, "; ")))
	}
	w.rec.State = StateProvisioned
	if err := w.save(); err != nil {
		return "", err
	}
	if w.closeOnReady() {
		return w.syncing(ctx, false)
	}
	return w.writeBack(ctx, false)
}

// quoteShort quotes user text for a reason, cut to a readable length.
func quoteShort(s string) string {
	if r := []rune(s); len(r) > 60 {
		s = string(r[:59]) + "…"
	}
	return fmt.Sprintf("%q", s)
}

// imageFields lists each image's outcome for a note about several images.
// The requested text goes in the value, which sources escape, never in a
// field name.
func imageFields(images []ImageOutcome) []Field {
	var f []Field
	for i, o := range images {
		name := fmt.Sprintf("Image %d", i+1)
		switch {
		case o.Provisioned() && o.Result.AlreadyPresent:
			f = append(f, Field{name, fmt.Sprintf("%s already present; pull as %s (repository %s)", quoteShort(o.Requested), o.Result.PullRef, o.Result.RepoID)})
		case o.Provisioned():
			f = append(f, Field{name, fmt.Sprintf("%s provisioned; pull as %s (repository %s)", quoteShort(o.Requested), o.Result.PullRef, o.Result.RepoID)})
		default:
			f = append(f, Field{name, fmt.Sprintf("%s not provisioned: %s", quoteShort(o.Requested), o.Reason)})
		}
	}
	return f
}
