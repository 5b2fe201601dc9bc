package sync

import (
	"context"
	"fmt"
	"strings"
	stdsync "sync"
)

// HandleTicket re-reads one ticket from its source and processes it now. It is
// the webhook path: the caller only knows an id, the source is the truth.
func (e *Engine) HandleTicket(ctx context.Context, source, id string) (Decision, error) {
	return e.handle(ctx, queued{source: source, id: id})
}

// Enqueue asks for one ticket to be processed soon: the webhook path. The
// id is only a hint; the ticket is re-read before anything is done. A ticket
// already queued coalesces; false means the queue is full, or the engine is
// stopping (Stop).
func (e *Engine) Enqueue(source, id string) bool {
	return e.enqueue(queued{source: source, id: id})
}

func (e *Engine) enqueue(q queued) bool {
	key := q.source + "/" + q.id
	if e.stopping() {
		return false
	}
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

// RunQueue processes queued tickets with Concurrency workers until ctx ends
// or Stop is called; it returns once its workers are done. After Stop no
// queued ticket is started (the ids are hints: polling finds the tickets),
// and the tickets in progress finish under ctx.
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
				case <-e.stopped.Done():
					return
				case q := <-e.queue:
					if e.stopping() {
						return // picked at random against Stop: not started
					}
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
	// Bounded: a re-read that never answers must not hold a queue worker.
	gctx, cancel := e.readCtx(ctx)
	t, err := src.Get(gctx, q.id)
	cancel()
	if err != nil {
		e.observe(Event{Source: q.source, TicketID: q.id, Decision: DecisionRetry, Detail: "re-reading the ticket failed: " + err.Error()})
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
	if e.stopping() {
		return // polling at the next start finds them
	}
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
