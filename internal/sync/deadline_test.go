package sync_test

import (
	"context"
	"errors"
	stdsync "sync"
	"testing"
	"time"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// stuckSource never answers a re-read of the ticket "stuck" (Get blocks
// until its context ends); any other id is an open ticket asking for python.
// It records the deadline of every Get.
type stuckSource struct {
	mu        stdsync.Mutex
	deadlines map[string]bool // ticket id → its last Get had a deadline
	reports   map[string]int
}

func (s *stuckSource) Name() string { return "stuck" }

func (s *stuckSource) Approved(context.Context, func(isync.Ticket) error) error { return nil }

func (s *stuckSource) Get(ctx context.Context, id string) (isync.Ticket, error) {
	_, ok := ctx.Deadline()
	s.mu.Lock()
	s.deadlines[id] = ok
	s.mu.Unlock()
	if id == "stuck" {
		<-ctx.Done()
		return isync.Ticket{}, ctx.Err()
	}
	return isync.Ticket{ID: id, Key: "STK-" + id, Open: true, Image: "python", Requester: "dev"}, nil
}

func (s *stuckSource) Report(_ context.Context, t isync.Ticket, _ isync.Report) error {
	s.mu.Lock()
	s.reports[t.ID]++
	s.mu.Unlock()
	return nil
}

// A webhook re-read that never answers is bounded by ReadTimeout: the only
// queue worker is freed, counts the failure as a retry, and goes on to the
// next queued ticket. Without a deadline the worker is held for good.
func TestQueueRereadHasADeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	src := &stuckSource{deadlines: map[string]bool{}, reports: map[string]int{}}
	evs := newEventLog()
	e := isync.New(h.store, h.prov, []isync.Source{src}, isync.Options{Instance: "test-bridge", Concurrency: 1,
		ReadTimeout: 50 * time.Millisecond, Now: h.clock.Now, Logger: testLogger(t), Observer: evs.observe})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.RunQueue(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	if !e.Enqueue("stuck", "stuck") || !e.Enqueue("stuck", "ok") {
		t.Fatal("queue refused")
	}
	evs.waitFor(t, "the stuck re-read counted as a retry", decided("stuck", isync.DecisionRetry))
	evs.waitFor(t, "the next queued ticket reported", decided("ok", isync.DecisionReported))
}

// At the defaults, every re-read carries a deadline: the webhook path's,
// and a pass's re-read of an unfinished record the listing did not show.
func TestRereadsHaveDeadlinesAtDefaults(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	src := &stuckSource{deadlines: map[string]bool{}, reports: map[string]int{}}
	e := isync.New(h.store, h.prov, []isync.Source{src}, isync.Options{Instance: "test-bridge", Now: h.clock.Now, Logger: testLogger(t)})
	if d, err := e.HandleTicket(context.Background(), "stuck", "a"); err != nil || d != isync.DecisionReported {
		t.Fatalf("HandleTicket: %q, %v", d, err)
	}
	// An unfinished record of a ticket no listing shows (the listing is empty).
	now := h.clock.Now()
	if _, _, err := h.store.Claim(context.Background(), "stuck", "b", "STK-b", "elsewhere", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := h.store.Release(context.Background(), "stuck", "b", "elsewhere"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	for _, id := range []string{"a", "b"} {
		if dl, ok := src.deadlines[id]; !ok || !dl {
			t.Errorf("re-read of %s: called %v, with a deadline %v; want a deadline", id, ok, dl)
		}
	}
}

// blockingLister is a source whose listing never ends until its context does.
type blockingLister struct{ stuckSource }

func (b *blockingLister) Approved(ctx context.Context, _ func(isync.Ticket) error) error {
	<-ctx.Done()
	return ctx.Err()
}

// A pass whose listing never answers ends at PassTimeout with an error that
// says so, instead of holding the schedule.
func TestPassHasADeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	src := &blockingLister{stuckSource{deadlines: map[string]bool{}, reports: map[string]int{}}}
	e := isync.New(h.store, h.prov, []isync.Source{src}, isync.Options{Instance: "test-bridge", PassTimeout: 50 * time.Millisecond,
		Now: h.clock.Now, Logger: testLogger(t)})
	errc := make(chan error, 1)
	go func() { _, err := e.Pass(context.Background()); errc <- err }()
	select {
	case err := <-errc:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("pass error %v, want the pass deadline", err)
		}
	case <-time.After(30 * time.Second): // a hang, not a timing claim
		t.Fatal("the pass did not end at its deadline")
	}
}
