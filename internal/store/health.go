package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// WriteError is what the store's write-failure hook (OnWriteError) receives:
// a write the database refused after it may have written, such as SQLITE_FULL
// on a full disk or an I/O error. A version conflict, a cancelled context or
// a closed store is not a write failure.
type WriteError struct {
	Op     string // "claim", "save", "release", "append" or "clear leases"
	Ticket string // "<source>/<ticket id>"; "" when the write is not a ticket's
	Err    error
}

func (e *WriteError) Error() string {
	if e.Ticket == "" {
		return fmt.Sprintf("store %s: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("store %s %s: %v", e.Op, e.Ticket, e.Err)
}

func (e *WriteError) Unwrap() error { return e.Err }

// health remembers whether the last write committed: a failed write latches
// an error that Ping returns (readiness) until a later write commits.
type health struct {
	failures atomic.Int64

	mu      sync.Mutex
	last    error // nil once a write has committed since the last failure
	onError func(*WriteError)
}

// writeLabel names the write a context carries (see withWrite).
type writeLabel struct{ op, ticket string }

type writeLabelKey struct{}

// withWrite labels the writes made with ctx, for WriteError.
func withWrite(ctx context.Context, op, source, ticketID string) context.Context {
	return context.WithValue(ctx, writeLabelKey{}, writeLabel{op: op, ticket: source + "/" + ticketID})
}

// record notes the outcome of one write made with ctx: err nil (committed),
// or the error it settled with; clean says the write failed having written
// nothing (a version conflict), which says nothing about the database.
func (h *health) record(ctx context.Context, err error, clean bool) {
	switch {
	case err == nil:
		h.mu.Lock()
		h.last = nil
		h.mu.Unlock()
		return
	case clean, errors.Is(err, errClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return
	}
	l, _ := ctx.Value(writeLabelKey{}).(writeLabel)
	if l.op == "" {
		l.op = "write"
	}
	we := &WriteError{Op: l.op, Ticket: l.ticket, Err: err}
	h.failures.Add(1)
	h.mu.Lock()
	h.last = we
	fn := h.onError
	h.mu.Unlock()
	if fn != nil {
		fn(we)
	}
}

func (h *health) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// OnWriteError sets fn to be called, on the goroutine that made the write,
// each time a write fails in the database (a full disk, an I/O error, a file
// deleted under the store): see WriteError. fn must not block: it is
// typically a log line and a counter.
func (s *SQLite) OnWriteError(fn func(*WriteError)) {
	s.health.mu.Lock()
	s.health.onError = fn
	s.health.mu.Unlock()
}

// WriteFailures returns how many writes have failed in the database since
// the store was opened.
func (s *SQLite) WriteFailures() int64 { return s.health.failures.Load() }

// WriteErr returns the last write failure (a *WriteError) when no write has
// committed since, and nil otherwise.
func (s *SQLite) WriteErr() error { return s.health.err() }

// LimitPages caps the database file at n pages of the current page size
// (PRAGMA max_page_count); writes that need more fail with SQLITE_FULL, as on
// a full disk. n = 0 lifts the cap (to SQLite's maximum). It exists for fault
// drills and tests; the store sets no cap of its own.
func (s *SQLite) LimitPages(ctx context.Context, n int) error {
	if n <= 0 {
		n = 0xfffffffe
	}
	var got int
	if err := s.db.QueryRowContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", n)).Scan(&got); err != nil {
		return fmt.Errorf("store %s: %w", s.path, err)
	}
	return nil
}

// PageCount returns the number of pages the database file holds.
func (s *SQLite) PageCount(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, "PRAGMA page_count").Scan(&n); err != nil {
		return 0, fmt.Errorf("store %s: %w", s.path, err)
	}
	return n, nil
}
