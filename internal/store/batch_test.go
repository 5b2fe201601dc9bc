package store

import (
	"context"
	"errors"
	"fmt"
	gosync "sync"
	"testing"
	"time"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// hold keeps the writer busy with one write until release is closed, so
// that the writes sent meanwhile wait and are committed as one group.
func hold(t *testing.T, s *SQLite) (release func()) {
	t.Helper()
	started, unblock := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.w.write(context.Background(), func(context.Context, *cachedTx) error {
			close(started)
			<-unblock
			return nil
		})
	}()
	<-started
	return func() {
		close(unblock)
		if err := <-done; err != nil {
			t.Errorf("holding write: %v", err)
		}
	}
}

// waitQueued waits until n writes wait for the writer.
func waitQueued(t *testing.T, s *SQLite, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.w.ops) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", len(s.w.ops), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Writes that wait together commit together, and each one's outcome is its
// own: a stale Save fails with ErrConflict and the others commit with it in
// one transaction; a write that fails after writing leaves nothing, and the
// others of its group run again alone and land.
func TestGroupedWritesSucceedOrFailAlone(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	var recs []isync.Record
	for i := range 9 {
		rec, _ := claim(t, s, fmt.Sprint(i), "a", t0)
		recs = append(recs, rec)
	}
	stale := recs[0]
	recs[0].State = isync.StateProvisioning
	if err := s.Save(ctx, &recs[0]); err != nil {
		t.Fatal(err)
	}
	provision := func(i int) func() error {
		return func() error {
			r := recs[i]
			r.State = isync.StateProvisioned
			return s.Save(ctx, &r, isync.AuditEntry{Source: "servicenow", TicketID: r.TicketID, Decision: isync.DecisionProvisioned})
		}
	}
	// group holds the writer, queues fns, lets them run together and
	// returns their errors and the commits they took.
	group := func(fns ...func() error) ([]error, int64) {
		commits0 := s.w.commits.Load()
		release := hold(t, s)
		errs := make([]error, len(fns))
		var wg gosync.WaitGroup
		for i, fn := range fns {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = fn() }()
		}
		waitQueued(t, s, len(fns))
		release()
		wg.Wait()
		return errs, s.w.commits.Load() - commits0 - 1 // less the holder's
	}

	// A clean failure: one commit for the group.
	errs, commits := group(provision(1), provision(2), provision(3), func() error {
		stale.State = isync.StateRejected
		return s.Save(ctx, &stale, isync.AuditEntry{Source: "servicenow", TicketID: stale.TicketID, Decision: isync.DecisionRejected})
	}, provision(4))
	for i, err := range errs {
		if i != 3 && err != nil {
			t.Errorf("save %d: %v", i, err)
		}
	}
	if !errors.Is(errs[3], isync.ErrConflict) {
		t.Errorf("stale save in a group: %v, want ErrConflict", errs[3])
	}
	if commits != 1 {
		t.Errorf("%d commits for a group with a clean failure, want 1", commits)
	}
	if got, _ := s.Get(ctx, "servicenow", "0"); got.State != isync.StateProvisioning {
		t.Errorf("the stale save overwrote ticket 0: %s", got.State)
	}

	// A failure after writing: the group is undone and the others run
	// again alone (Save's record is computed afresh for the second run).
	errBoom := errors.New("boom")
	errs, commits = group(provision(5), provision(6), func() error {
		return s.w.write(ctx, func(ctx context.Context, tx *cachedTx) error {
			if err := s.append(ctx, tx, isync.AuditEntry{Source: "servicenow", TicketID: "ghost", Decision: isync.DecisionNoted}); err != nil {
				return err
			}
			return errBoom
		})
	}, provision(7), provision(8))
	for i, err := range errs {
		if i != 2 && err != nil {
			t.Errorf("save %d: %v", i, err)
		}
	}
	if !errors.Is(errs[2], errBoom) {
		t.Errorf("failing write: %v, want its own error", errs[2])
	}
	if commits != 4 {
		t.Errorf("%d commits after a failure that wrote, want 4 (the others alone)", commits)
	}

	for i := 1; i < 9; i++ {
		if got, _ := s.Get(ctx, "servicenow", fmt.Sprint(i)); got.State != isync.StateProvisioned || got.Version != recs[i].Version+1 {
			t.Errorf("ticket %d: %s v%d, want provisioned v%d (saved once)", i, got.State, got.Version, recs[i].Version+1)
		}
	}
	var rows []string
	if err := s.Audit(ctx, AuditFilter{}, func(e isync.AuditEntry) error { rows = append(rows, e.TicketID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 8 {
		t.Errorf("audit rows %q, want the 8 successful saves' only", rows)
	}
}

// A write whose context ends while it waits is not run; writes after Close
// are refused.
func TestGroupedWriteCancelledAndClosed(t *testing.T) {
	s, _ := openFile(t)
	release := hold(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Append(ctx, isync.AuditEntry{Source: "servicenow", TicketID: "x", Decision: isync.DecisionNoted})
	}()
	waitQueued(t, s, 1)
	cancel()
	release()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled write: %v", err)
	}
	n := 0
	_ = s.Audit(context.Background(), AuditFilter{}, func(isync.AuditEntry) error { n++; return nil })
	if n != 0 {
		t.Fatalf("a cancelled write landed (%d rows)", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(context.Background(), isync.AuditEntry{Source: "servicenow", TicketID: "x", Decision: isync.DecisionNoted}); !errors.Is(err, errClosed) {
		t.Fatalf("write after Close: %v", err)
	}
}

// A write run again after its group rolled back reports what its second run
// found, not its first: here a Claim that found the lease free in the group
// (released by a write before it) finds it held when it runs alone, because
// the release was rolled back with the group and is not run again (its
// context ended meanwhile).
func TestGroupedClaimRunAgainReportsItsOwnRun(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	if _, ok := claim(t, s, "t1", "a", t0); !ok {
		t.Fatal("a could not claim")
	}
	release := hold(t, s)
	relCtx, cancelRel := context.WithCancel(ctx)
	var wg gosync.WaitGroup
	var (
		claimed  isync.Record
		ok       bool
		claimErr error
	)
	wg.Add(3)
	go func() { defer wg.Done(); _ = s.Release(relCtx, "servicenow", "t1", "a") }()
	waitQueued(t, s, 1)
	go func() {
		defer wg.Done()
		claimed, ok, claimErr = s.Claim(ctx, "servicenow", "t1", "RITM-t1", "b", t0.Add(time.Second), t0.Add(time.Minute))
	}()
	waitQueued(t, s, 2)
	go func() {
		defer wg.Done()
		_ = s.w.write(ctx, func(context.Context, *cachedTx) error {
			cancelRel() // the release's caller gives up meanwhile
			return errors.New("a failure after writing")
		})
	}()
	waitQueued(t, s, 3)
	release()
	wg.Wait()
	if claimErr != nil {
		t.Fatal(claimErr)
	}
	got, _ := s.Get(ctx, "servicenow", "t1")
	if ok || claimed.LeaseOwner != "a" || got.LeaseOwner != "a" {
		t.Fatalf("b's claim: ok=%v, record's owner %q, stored owner %q; want not ok, a holding it", ok, claimed.LeaseOwner, got.LeaseOwner)
	}
}

// A ticket whose key changes (a Jira issue moved to another project) is found
// by its new key, with its whole audit trail.
func TestClaimLearnsANewKey(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	rec, _, err := s.Claim(ctx, "jira", "10042", "IMG-42", "a", t0, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, &rec, isync.AuditEntry{Source: "jira", TicketID: "10042", Key: "IMG-42", Decision: isync.DecisionRetry}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Claim(ctx, "jira", "10042", "OPS-7", "a", t0.Add(time.Second), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if recs, err := s.FindByKey(ctx, "OPS-7"); err != nil || len(recs) != 1 {
		t.Fatalf("FindByKey(new key) = %d records, %v", len(recs), err)
	}
	n := 0
	if err := s.Audit(ctx, AuditFilter{TicketID: "OPS-7"}, func(isync.AuditEntry) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("audit by the new key: %d rows, %v", n, err)
	}
}
