package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// maxBatch bounds the writes committed together.
const maxBatch = 128

// writer commits the store's writes in groups ("group commit"). Every write
// (Claim, Save, Release, Append) is a function run inside a transaction; the
// writer's goroutine takes all the writes waiting when it is free and runs
// them in one transaction, then commits once.
//
// Why: a commit costs more than the few statements of a write (the pages it
// changed are appended to the WAL, the WAL's locks are taken and released),
// and the engine's workers tend to write at the same moments (a listing page
// hands out tickets together; answers to calls sent together arrive
// together). One by one, the last of 32 such writes waited for 31 commits;
// grouped, for one. Pages that several writes change (the audit log's last
// page, its time index, an index page two tickets share) are written once.
//
// Each write sees the effect of the writes before it in the group, and
// succeeds or fails alone. A write fails either cleanly, having written
// nothing (wrapped by clean: a Save's version conflict), and the group goes
// on without it; or after it may have written (any other error, in practice
// a failing database), and then the group is rolled back, that write gets
// its error and every other write of the group runs again alone, in its own
// transaction. Write functions are therefore re-runnable: they compute their
// results afresh on every run. Nothing returns before the commit that made
// it durable: a caller that got nil may act on it (the engine's "persist
// before the next external call"). If a commit fails, every write it held
// gets that error.
type writer struct {
	s    *SQLite
	ops  chan *writeOp
	mu   sync.RWMutex // held for reading while sending on ops, for writing to close it
	shut bool
	done chan struct{}

	// commits and writes count transactions committed and the writes they
	// held (tests, benchmarks).
	commits, writes atomic.Int64
}

type writeOp struct {
	ctx     context.Context
	fn      func(context.Context, *cachedTx) error
	err     error
	clean   bool // failed having written nothing
	settled bool
	done    chan struct{}
}

func (op *writeOp) settle(err error) { op.err, op.settled = err, true }

// cleanError is a write's failure that wrote nothing.
type cleanError struct{ err error }

func (e cleanError) Error() string { return e.err.Error() }
func (e cleanError) Unwrap() error { return e.err }

// clean marks err as a failure that wrote nothing (see writer).
func clean(err error) error {
	if err == nil {
		return nil
	}
	return cleanError{err}
}

func newWriter(s *SQLite) *writer {
	w := &writer{s: s, ops: make(chan *writeOp, maxBatch), done: make(chan struct{})}
	go w.run()
	return w
}

// write runs fn in a transaction with other waiting writes and returns once
// that transaction has committed (nil) or failed, or fn failed (fn's error).
// fn runs on the writer's goroutine with a context that is not cancelled
// midway: SQLite rolls back the whole transaction when a write statement is
// interrupted. A write whose ctx ends before it starts is not run.
func (w *writer) write(ctx context.Context, fn func(context.Context, *cachedTx) error) error {
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan struct{})}
	w.mu.RLock()
	if w.shut {
		w.mu.RUnlock()
		return errClosed
	}
	w.ops <- op
	w.mu.RUnlock()
	<-op.done
	w.s.health.record(ctx, op.err, op.clean)
	return op.err
}

// close stops taking writes and waits for those taken to finish.
func (w *writer) close() {
	w.mu.Lock()
	if !w.shut {
		w.shut = true
		close(w.ops)
	}
	w.mu.Unlock()
	<-w.done
}

func (w *writer) run() {
	defer close(w.done)
	batch := make([]*writeOp, 0, maxBatch)
	for op := range w.ops {
		batch = append(batch[:0], op)
	more:
		for len(batch) < maxBatch {
			select {
			case op, ok := <-w.ops:
				if !ok {
					break more
				}
				batch = append(batch, op)
			default:
				break more
			}
		}
		w.commit(batch)
		for _, op := range batch {
			close(op.done)
		}
		clear(batch)
	}
}

// commit runs batch in one transaction, or, if a write failed after it may
// have written, the others each in its own; it settles every write.
func (w *writer) commit(batch []*writeOp) {
	// Nothing is written to a file the path no longer names (CheckFile).
	if err := w.s.guard.check(); err != nil {
		for _, op := range batch {
			op.settle(err)
		}
		return
	}
	// The transactions' context is never cancelled: see write.
	ctx := context.Background()
	if w.commitGroup(ctx, batch) {
		return
	}
	for _, op := range batch {
		if !op.settled {
			w.commitGroup(ctx, []*writeOp{op})
		}
	}
}

// commitGroup runs the unsettled writes of group in one transaction. It
// returns false, with the transaction rolled back and the others unsettled,
// when a write failed after it may have written (that write is settled with
// its error).
func (w *writer) commitGroup(ctx context.Context, group []*writeOp) bool {
	tx, err := w.s.db.BeginTx(ctx, nil)
	if err != nil {
		for _, op := range group {
			op.settle(err)
		}
		return true
	}
	ran := make([]*writeOp, 0, len(group))
	for _, op := range group {
		if err := op.ctx.Err(); err != nil {
			op.settle(err)
			continue
		}
		err := op.fn(context.WithoutCancel(op.ctx), tx)
		var ce cleanError
		switch {
		case err == nil:
			ran = append(ran, op)
		case errors.As(err, &ce):
			op.settle(ce.err)
			op.clean = true
		default:
			_ = tx.Rollback()
			op.settle(err)
			return len(group) == 1
		}
	}
	if len(ran) == 0 {
		_ = tx.Rollback() // nothing to keep
		return true
	}
	err = tx.Commit()
	for _, op := range ran {
		op.settle(err)
	}
	if err == nil {
		w.commits.Add(1)
		w.writes.Add(int64(len(ran)))
	}
	return true
}
