package sync_test

import (
	"context"
	"errors"
	"fmt"
	stdsync "sync"
	"testing"
	"time"

	"github.com/chainguard-dev/image-request-bridge/internal/chainguard"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// heldSource lists n open tickets asking for python (then, if hang, waits
// until the listing's context ends), and holds every Report until release
// is closed or the write's context ends. It tells reporting of every Report
// entered and listing of every listing started.
type heldSource struct {
	n         int
	hang      bool
	listing   chan struct{}
	reporting chan string
	release   chan struct{}
	// fail, when set, is what a Report released by its context's end
	// returns instead of that context's error.
	fail error

	mu      stdsync.Mutex
	reports map[string]int
}

func newHeldSource(n int, hang bool) *heldSource {
	return &heldSource{n: n, hang: hang, listing: make(chan struct{}, 16), reporting: make(chan string, 1024),
		release: make(chan struct{}), reports: map[string]int{}}
}

func (s *heldSource) Name() string { return "held" }

func (s *heldSource) Approved(ctx context.Context, fn func(isync.Ticket) error) error {
	s.listing <- struct{}{}
	for i := 0; i < s.n; i++ {
		if err := fn(s.ticket(fmt.Sprint("t", i))); err != nil {
			return err
		}
	}
	if s.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (s *heldSource) ticket(id string) isync.Ticket {
	return isync.Ticket{ID: id, Key: "HLD-" + id, Open: true, Image: "python", Requester: "dev"}
}

func (s *heldSource) Get(_ context.Context, id string) (isync.Ticket, error) {
	return s.ticket(id), nil
}

func (s *heldSource) Report(ctx context.Context, t isync.Ticket, _ isync.Report) error {
	s.reporting <- t.ID
	select {
	case <-s.release:
	case <-ctx.Done():
		if s.fail != nil {
			return s.fail
		}
		return ctx.Err()
	}
	s.mu.Lock()
	s.reports[t.ID]++
	s.mu.Unlock()
	return nil
}

func (s *heldSource) reported() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reports)
}

// receive waits for n values on ch; it fails only on a hang.
func receive[T any](t *testing.T, what string, ch <-chan T, n int) []T {
	t.Helper()
	var got []T
	for len(got) < n {
		select {
		case v := <-ch:
			got = append(got, v)
		case <-time.After(time.Minute):
			t.Fatalf("%s: %d of %d within the hang guard", what, len(got), n)
		}
	}
	return got
}

type passResult struct {
	st  isync.Stats
	err error
}

func runPass(e *isync.Engine, ctx context.Context) <-chan passResult {
	ch := make(chan passResult, 1)
	go func() { st, err := e.Pass(ctx); ch <- passResult{st, err} }()
	return ch
}

// At Stop a pass hands no ticket it has listed to a worker: the tickets in
// progress finish, the other 28 of the backlog are not started, and the
// pass says it was stopped. A pass started later returns at once.
func TestStopStartsNoListedTicket(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	src := newHeldSource(30, false)
	e := isync.New(h.store, h.prov, []isync.Source{src}, isync.Options{Instance: "test-bridge", Concurrency: 2, Now: h.clock.Now, Logger: testLogger(t)})
	done := runPass(e, context.Background())
	receive(t, "write-backs in progress", src.reporting, 2)

	e.Stop()
	close(src.release)
	r := receive(t, "the pass", done, 1)[0]
	if !errors.Is(r.err, isync.ErrStopping) {
		t.Errorf("pass error %v, want ErrStopping", r.err)
	}
	if n, calls := src.reported(), h.cg.CountCalls("CreateRepo"); n != 2 || calls != 2 {
		t.Errorf("after Stop with 2 tickets in progress: %d reported, %d CreateRepo; want 2 and 2", n, calls)
	}
	if _, err := e.Pass(context.Background()); !errors.Is(err, isync.ErrStopping) {
		t.Errorf("a pass after Stop: %v, want ErrStopping", err)
	}
	if len(src.listing) != 1 {
		t.Errorf("%d listings, want 1: a pass after Stop lists nothing", len(src.listing))
	}
}

// A listing that never answers is cancelled by Stop: the pass ends with
// nothing in progress instead of waiting for its deadline (10 minutes).
func TestStopCancelsHungListing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	src := newHeldSource(0, true)
	e := isync.New(h.store, h.prov, []isync.Source{src}, isync.Options{Instance: "test-bridge", Now: h.clock.Now, Logger: testLogger(t)})
	done := runPass(e, context.Background())
	receive(t, "the listing", src.listing, 1)
	e.Stop()
	if r := receive(t, "the pass", done, 1)[0]; !errors.Is(r.err, isync.ErrStopping) {
		t.Errorf("pass error %v, want ErrStopping", r.err)
	}
}

// At Stop the webhook queue starts none of its queued tickets, refuses new
// ones, and RunQueue returns once the ticket in progress is done, without
// its context being cancelled.
func TestStopEndsQueue(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	src := newHeldSource(0, false)
	e := isync.New(h.store, h.prov, []isync.Source{src}, isync.Options{Instance: "test-bridge", Concurrency: 1, Now: h.clock.Now, Logger: testLogger(t)})
	for _, id := range []string{"t0", "t1", "t2"} {
		if !e.Enqueue("held", id) {
			t.Fatal("queue refused")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	returned := make(chan struct{}, 1)
	go func() { e.RunQueue(ctx); returned <- struct{}{} }()
	receive(t, "the first write-back", src.reporting, 1)

	e.Stop()
	if e.Enqueue("held", "t9") {
		t.Error("Enqueue accepted a ticket after Stop")
	}
	close(src.release)
	receive(t, "RunQueue's return", returned, 1)
	if n := src.reported(); n != 1 {
		t.Errorf("%d tickets reported, want 1 (the one in progress at Stop)", n)
	}
}

// A write-back interrupted by shutdown (the grace is over: the context of
// the work is cancelled) is not an upstream failure: the record keeps its
// state, counts no attempt, is due at once, and its lease is released. Both
// ways it can end: the write returns the cancellation, or a retryable error
// arrives as the context ends (the in-place try is then not made).
func TestInterruptedWriteBackDoesNotBackOff(t *testing.T) {
	t.Parallel()
	for name, fail := range map[string]error{
		"cancelled": nil,
		"retryable": isync.Retryable(errors.New("HTTP 503")),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOpts{})
			src := newHeldSource(1, false)
			src.fail = fail
			e := isync.New(h.store, h.prov, []isync.Source{src}, isync.Options{Instance: "test-bridge", Now: h.clock.Now, Sleep: h.clock.Sleep, Logger: testLogger(t)})
			work, interrupt := context.WithCancel(context.Background())
			done := runPass(e, work)
			receive(t, "the write-back", src.reporting, 1)
			e.Stop()
			interrupt()
			receive(t, "the pass", done, 1)

			rec, err := h.store.Get(context.Background(), "held", "t0")
			if err != nil {
				t.Fatal(err)
			}
			if rec.State != isync.StateProvisioned || !rec.NextAttemptAt.IsZero() || rec.Attempts != 1 || rec.LeaseOwner != "" {
				t.Errorf("record after an interrupted write-back: state %s, next attempt %v, %d attempts, lease %q; want provisioned, due now, 1 attempt, released",
					rec.State, rec.NextAttemptAt, rec.Attempts, rec.LeaseOwner)
			}
			if s := h.clock.Slept(); len(s) != 0 {
				t.Errorf("waited %v in place after the interruption", s)
			}
		})
	}
}

// hungTiers is the real provisioner whose catalog-tier read never answers;
// it records whether each read had a deadline within half the lease.
type hungTiers struct {
	*chainguard.Provisioner
	lease time.Duration

	mu        stdsync.Mutex
	reads     int
	unbounded int
}

func (p *hungTiers) CatalogTier(ctx context.Context, _ string) (string, error) {
	dl, ok := ctx.Deadline()
	p.mu.Lock()
	p.reads++
	if !ok || time.Until(dl) > p.lease/2 {
		p.unbounded++
	}
	p.mu.Unlock()
	<-ctx.Done()
	return "", ctx.Err()
}

// The policy's reads (here a catalog tier that never answers) are bounded
// like re-reads, within half the lease, both before the claim and under it:
// the ticket is retried instead of holding its worker and lease for good.
func TestPolicyReadsAreBounded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	src := newHeldSource(0, false)
	close(src.release)
	const lease = 200 * time.Millisecond // bounds every read to 100 ms
	prov := &hungTiers{Provisioner: h.prov, lease: lease}
	e := isync.New(h.store, prov, []isync.Source{src}, isync.Options{Instance: "test-bridge", Lease: lease, Policy: testPolicy(),
		Now: h.clock.Now, Logger: testLogger(t)})
	done := make(chan isync.Decision, 1)
	go func() { d, _ := e.HandleTicket(context.Background(), "held", "t0"); done <- d }()
	if d := receive(t, "the ticket", done, 1)[0]; d != isync.DecisionRetry {
		t.Errorf("decision %q, want retry", d)
	}
	prov.mu.Lock()
	defer prov.mu.Unlock()
	if prov.reads != 2 || prov.unbounded != 0 {
		t.Errorf("%d catalog-tier reads, %d without a deadline within half the lease; want 2 and 0", prov.reads, prov.unbounded)
	}
}
