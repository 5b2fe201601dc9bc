package sync

import (
	"context"
	"errors"
	"fmt"
	"sort"
	stdsync "sync"
)

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

// SortedDecisions lists a Stats' decisions in a stable order, for printing.
func (s Stats) SortedDecisions() []Decision {
	var out []Decision
	for d := range s.Decisions {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
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
	if e.stopping() {
		return total, ErrStopping
	}
	if w, ok := e.prov.(Warmer); ok {
		warmed := make(chan struct{})
		defer func() { <-warmed }() // nothing outlives the pass
		sctx, unhook := e.untilStop(ctx)
		wctx, cancel := context.WithTimeout(sctx, e.o.PassTimeout)
		go func() {
			defer close(warmed)
			defer unhook()
			defer cancel()
			if err := w.Warm(wctx); err != nil && sctx.Err() == nil {
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

// passSource is one pass over src, within PassTimeout: when the deadline
// comes, the listing and the re-reads stop, tickets not yet started are left
// for the next pass, and those in progress end their current call (an
// interrupted attempt is re-driven at once by the next pass, see retry).
// Stop ends the listing and the re-reads the same way, but leaves the tickets
// in progress to finish under ctx.
func (e *Engine) passSource(parent context.Context, src Source) (st Stats, err error) {
	ctx, cancel := context.WithTimeout(parent, e.o.PassTimeout)
	defer cancel()
	// lctx is the context of starting work: it ends at Stop too.
	lctx, unhook := e.untilStop(ctx)
	defer unhook()
	defer func() {
		switch {
		case err == nil || parent.Err() != nil:
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			err = fmt.Errorf("pass deadline of %s reached, the rest is left for the next pass: %w", e.o.PassTimeout, err)
		case e.stopping():
			err = fmt.Errorf("%w: %d listed, the rest is left for the next run", ErrStopping, st.Listed)
		}
	}()
	st = Stats{Decisions: map[Decision]int{}}
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
				if lctx.Err() != nil {
					// Stopping, or past the deadline: a queued ticket is left
					// for the next pass rather than started (with a cancelled
					// context it would record a false retry).
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
		case <-lctx.Done():
			pending.Done()
			return lctx.Err()
		}
	}

	seen := map[string]bool{}
	list := func() (fresh int, err error) {
		err = src.Approved(lctx, func(t Ticket) error {
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
	// or a ticket closed or withdrawn by a person. Re-read each one that is
	// due (one backing off would be left alone after the read anyway).
	var recErr error
	if listErr == nil {
		var unseen []Record
		now := e.o.Now()
		recErr = e.store.Unfinished(lctx, src.Name(), func(r Record) error {
			switch {
			case seen[r.TicketID]:
			case !r.NextAttemptAt.IsZero() && now.Before(r.NextAttemptAt):
				stMu.Lock() // the workers count too
				st.Skipped++
				stMu.Unlock()
			default:
				unseen = append(unseen, r)
			}
			return nil
		})
		for _, r := range unseen {
			if lctx.Err() != nil {
				break
			}
			gctx, cancel := e.readCtx(lctx)
			t, err := src.Get(gctx, r.TicketID)
			cancel()
			if err != nil {
				e.ticketLog(r.Source, r.Key, r.RequestID).Warn().Err(err).Msg("re-reading an unfinished ticket failed; will retry next pass")
				e.observe(Event{Source: r.Source, TicketID: r.TicketID, Key: r.Key, RequestID: r.RequestID, Decision: DecisionRetry, Detail: "re-reading the ticket failed: " + err.Error()})
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
	return st, lctx.Err()
}
