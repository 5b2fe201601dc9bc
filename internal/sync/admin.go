package sync

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Replay re-drives one ticket now, keeping the invariants: the ticket is
// re-read first; a ticket still open is processed at once whatever its backoff
// (a blocked or retrying ticket tries again; a done one whose ticket was
// reopened starts over, and provisioning stays idempotent); a closed ticket is
// left alone. It returns the decision taken, "" when none was.
func (e *Engine) Replay(ctx context.Context, source, id string) (Decision, error) {
	src, ok := e.sources[source]
	if !ok {
		return "", fmt.Errorf("unknown source %q", source)
	}
	gctx, cancel := e.readCtx(ctx)
	t, err := src.Get(gctx, id)
	cancel()
	if err != nil {
		return "", fmt.Errorf("re-reading %s ticket %s: %w", source, id, err)
	}
	if t.Closed {
		return "", fmt.Errorf("%s is closed in %s: reopen it there first", t.Key, source)
	}
	if !t.Open {
		return "", fmt.Errorf("%s is not approved (or no longer matches the bridge's query)", t.Key)
	}
	sctx := context.WithoutCancel(ctx)
	now := e.o.Now()
	rec, ok, err := e.store.Claim(sctx, source, t.ID, t.Key, e.owner, now, now.Add(e.o.Lease))
	if err != nil {
		return "", fmt.Errorf("claiming %s: %w", t.Key, err)
	}
	if !ok {
		return "", fmt.Errorf("%s is being processed by %s; try again in a moment", t.Key, rec.LeaseOwner)
	}
	if rec.State == StateDone {
		// The ticket was reopened: start over. Provisioning is idempotent.
		rec.State, rec.Attempts, rec.NextAttemptAt, rec.LastError = StateNew, 0, time.Time{}, ""
	}
	// The replay is recorded, and the lease given back for process to take,
	// in one commit.
	rec.UpdatedAt = now
	rec.LeaseOwner, rec.LeaseUntil = "", time.Time{}
	entry := AuditEntry{Time: now, Source: source, TicketID: t.ID, Key: t.Key, RequestID: rec.RequestID,
		Requester: t.Requester, Image: t.Image, Decision: DecisionReplay, Detail: "replay requested by an administrator", Actor: e.o.Instance}
	if err := e.store.Save(sctx, &rec, entry); err != nil {
		_ = e.store.Release(sctx, source, t.ID, e.owner)
		return "", fmt.Errorf("recording the replay of %s: %w", t.Key, err)
	}
	return e.process(ctx, src, t, true)
}

// Step is one line of a dry-run plan.
type Step struct {
	Source string
	Ticket Ticket
	State  State  // the ticket's state in the store ("" if the bridge has not seen it)
	Action string // what a pass would do
	Report *Report
}

// DryRun lists what a pass over the named sources (all when none) would do,
// ticket by ticket, calling fn for each step. It reads the sources, the store
// and Chainguard, and writes nothing anywhere, within PassTimeout.
func (e *Engine) DryRun(ctx context.Context, fn func(Step) error, names ...string) error {
	if len(names) == 0 {
		names = e.order
	}
	ctx, cancel := context.WithTimeout(ctx, e.o.PassTimeout) // a pass's deadline
	defer cancel()
	reader, _ := e.store.(RecordReader)
	planner, _ := e.prov.(Planner)
	nc := noteContext{instance: e.o.Instance, version: e.o.Version, now: e.o.Now()}
	for _, n := range names {
		src, ok := e.sources[n]
		if !ok {
			return fmt.Errorf("unknown source %q", n)
		}
		err := src.Approved(ctx, func(t Ticket) error {
			st := Step{Source: n, Ticket: t}
			var rec Record
			if reader != nil {
				if r, err := reader.Get(ctx, n, t.ID); err == nil {
					rec, st.State = r, r.State
				}
			}
			if rec.RequestID == "" {
				rec.RequestID = "(assigned on first pass)"
			}
			rec.Image = t.Image
			switch {
			case st.State == StateDone:
				st.Action = "skip: already done (the ticket is open again; `bridge replay` re-drives it)"
			case !rec.NextAttemptAt.IsZero() && nc.now.Before(rec.NextAttemptAt):
				st.Action = fmt.Sprintf("skip: %s, next attempt at %s", st.State, rec.NextAttemptAt.UTC().Format(time.RFC3339))
			default:
				e.planTicket(ctx, &st, rec, planner, nc)
			}
			return fn(st)
		})
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
	}
	return nil
}

func (e *Engine) planTicket(ctx context.Context, st *Step, rec Record, planner Planner, nc noteContext) {
	t := st.Ticket
	reject := func(err error) {
		rec.State, rec.Reason = StateRejected, ReasonOf(err)
		r := rejectedReport(rec, t, nc)
		st.Action, st.Report = "reject: "+rec.Reason, &r
	}
	if t.Invalid != "" {
		reject(Rejectedf("%s", t.Invalid))
		return
	}
	if images := SplitImages(t.Image); len(images) > 1 {
		if len(images) > e.o.MaxImages {
			reject(Rejectedf("the request names %d images; at most %d can be requested in one ticket", len(images), e.o.MaxImages))
			return
		}
		var parts []string
		for _, raw := range images {
			parts = append(parts, quoteShort(raw)+": "+e.planImage(ctx, raw, planner))
		}
		st.Action = fmt.Sprintf("%d images: %s", len(images), strings.Join(parts, "; "))
		return
	}
	ref, err := e.prov.ParseImage(t.Image)
	if err != nil {
		reject(err)
		return
	}
	how := "provision " + ref.String()
	if planner != nil {
		desc, err := planner.PlanProvision(ctx, ref)
		switch ClassOf(err) {
		case ClassRejected:
			if err != nil {
				reject(err)
				return
			}
		case ClassBlocked:
			rec.BlockedCause, rec.LastError = CauseOf(err), ReasonOf(err)
			r := blockedReport(rec, t, nc)
			st.Action, st.Report = "blocked: "+rec.BlockedCause+": "+rec.LastError, &r
			return
		default:
			if err != nil {
				st.Action = "retry later: " + err.Error()
				return
			}
		}
		how = desc
	}
	rec.Result = Result{PullRef: "(pull reference known after provisioning)", RepoID: "(known after provisioning)", Method: how}
	r := provisionedReport(rec, t, nc)
	st.Action, st.Report = how+", then close complete", &r
}

// planImage says in one phrase what a pass would do with one image of a
// ticket naming several.
func (e *Engine) planImage(ctx context.Context, raw string, planner Planner) string {
	ref, err := e.prov.ParseImage(raw)
	if err != nil {
		return "reject: " + ReasonOf(err)
	}
	if planner == nil {
		return "provision " + ref.String()
	}
	desc, err := planner.PlanProvision(ctx, ref)
	switch {
	case err == nil:
		return desc
	case ClassOf(err) == ClassRejected:
		return "reject: " + ReasonOf(err)
	case ClassOf(err) == ClassBlocked:
		return "blocked: " + ReasonOf(err)
	default:
		return "retry later: " + err.Error()
	}
}
