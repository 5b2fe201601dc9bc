package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

func openFile(t testing.TB) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bridge.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func claim(t *testing.T, s *SQLite, id, owner string, now time.Time) (isync.Record, bool) {
	t.Helper()
	rec, ok, err := s.Claim(context.Background(), "servicenow", id, "RITM-"+id, owner, now, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return rec, ok
}

func TestRequestIDIsDerived(t *testing.T) {
	sum := sha256.Sum256([]byte("servicenow/abc"))
	want := "ibr-" + hex.EncodeToString(sum[:])[:16]
	if got := RequestID("servicenow", "abc"); got != want || len(got) != 20 {
		t.Fatalf("RequestID = %q, want %q", got, want)
	}
	if RequestID("jira", "abc") == RequestID("servicenow", "abc") {
		t.Fatal("RequestID ignores the source")
	}
}

func TestClaimCreatesRecord(t *testing.T) {
	s, _ := openFile(t)
	rec, ok := claim(t, s, "t1", "a", t0)
	if !ok {
		t.Fatal("first claim failed")
	}
	want := isync.Record{
		Source: "servicenow", TicketID: "t1", Key: "RITM-t1", RequestID: RequestID("servicenow", "t1"),
		State: isync.StateNew, LeaseOwner: "a", LeaseUntil: t0.Add(time.Minute), Version: 1,
		CreatedAt: t0, UpdatedAt: t0,
	}
	if !reflect.DeepEqual(rec, want) {
		t.Fatalf("claim returned\n%+v\nwant\n%+v", rec, want)
	}
	got, err := s.Get(context.Background(), "servicenow", "t1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("stored\n%+v\nwant\n%+v", got, want)
	}
	if _, err := s.Get(context.Background(), "servicenow", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of unknown ticket: %v", err)
	}
}

func TestClaimContention(t *testing.T) {
	s, path := openFile(t)
	// A second handle on the same file stands for a second replica.
	s2, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()

	const n = 40
	var (
		wg      gosync.WaitGroup
		winners atomic.Int32
		winner  atomic.Value
	)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s
			if i%2 == 1 {
				st = s2
			}
			<-start
			owner := fmt.Sprintf("owner-%d", i)
			rec, ok, err := st.Claim(context.Background(), "jira", "10001", "IMG-1", owner, t0, t0.Add(time.Minute))
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				winners.Add(1)
				winner.Store(owner)
				if rec.LeaseOwner != owner {
					t.Errorf("winner %s got lease owner %s", owner, rec.LeaseOwner)
				}
			} else if rec.LeaseOwner == "" || rec.LeaseOwner == owner {
				t.Errorf("loser %s sees lease owner %q", owner, rec.LeaseOwner)
			}
		}()
	}
	close(start)
	wg.Wait()
	if winners.Load() != 1 {
		t.Fatalf("%d winners, want exactly 1", winners.Load())
	}
	rec, err := s.Get(context.Background(), "jira", "10001")
	if err != nil {
		t.Fatal(err)
	}
	if rec.LeaseOwner != winner.Load().(string) {
		t.Fatalf("stored owner %s, winner %s", rec.LeaseOwner, winner.Load())
	}
}

func TestConcurrentWritesNeverBusy(t *testing.T) {
	s, path := openFile(t)
	s2, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var wg gosync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s
			if g%2 == 1 {
				st = s2
			}
			ctx := context.Background()
			for i := range 20 {
				id := fmt.Sprintf("g%d-t%d", g, i)
				rec, ok, err := st.Claim(ctx, "servicenow", id, id, "w", t0, t0.Add(time.Minute))
				if err != nil || !ok {
					t.Errorf("claim %s: ok=%v err=%v", id, ok, err)
					return
				}
				rec.State = isync.StateProvisioning
				if err := st.Save(ctx, &rec); err != nil {
					t.Errorf("save %s: %v", id, err)
					return
				}
				if err := st.Append(ctx, isync.AuditEntry{Source: "servicenow", TicketID: id, Decision: isync.DecisionRetry}); err != nil {
					t.Errorf("append %s: %v", id, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	counts, err := s.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := counts["servicenow"][isync.StateProvisioning]; got != 16*20 {
		t.Fatalf("%d records provisioning, want %d", got, 16*20)
	}
}

func TestExpiredLeaseTakenOver(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	a, ok := claim(t, s, "t1", "a", t0) // lease until t0+1m
	if !ok {
		t.Fatal("a could not claim")
	}
	if rec, ok := claim(t, s, "t1", "b", t0.Add(30*time.Second)); ok || rec.LeaseOwner != "a" {
		t.Fatalf("b took a live lease: ok=%v owner=%s", ok, rec.LeaseOwner)
	}
	// A lease that ends exactly now is still held.
	if _, ok := claim(t, s, "t1", "b", t0.Add(time.Minute)); ok {
		t.Fatal("b took a lease at its last instant")
	}
	b, ok := claim(t, s, "t1", "b", t0.Add(time.Minute+time.Nanosecond))
	if !ok || b.LeaseOwner != "b" {
		t.Fatalf("b could not take over an expired lease: ok=%v owner=%s", ok, b.LeaseOwner)
	}
	if b.Version <= a.Version {
		t.Fatalf("takeover kept version %d", b.Version)
	}
	// a, still working on its expired lease, is fenced off.
	a.State = isync.StateProvisioning
	if err := s.Save(ctx, &a); !errors.Is(err, isync.ErrConflict) {
		t.Fatalf("stale holder saved: %v", err)
	}
	b.State = isync.StateProvisioning
	if err := s.Save(ctx, &b); err != nil {
		t.Fatal(err)
	}
}

func TestSameOwnerReclaim(t *testing.T) {
	s, _ := openFile(t)
	first, _ := claim(t, s, "t1", "a", t0)
	again, ok := claim(t, s, "t1", "a", t0.Add(10*time.Second))
	if !ok {
		t.Fatal("owner could not reclaim its own lease")
	}
	if !again.LeaseUntil.Equal(t0.Add(70 * time.Second)) {
		t.Fatalf("lease not extended: %v", again.LeaseUntil)
	}
	if again.Version != first.Version {
		t.Fatalf("renewal changed version %d -> %d", first.Version, again.Version)
	}
	// Two goroutines of one owner hold the same version: only one can Save.
	first.State, again.State = isync.StateProvisioning, isync.StateProvisioning
	if err := s.Save(context.Background(), &again); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(context.Background(), &first); !errors.Is(err, isync.ErrConflict) {
		t.Fatalf("second save of the same version: %v", err)
	}
}

func TestSaveCompareAndSwap(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	rec, _ := claim(t, s, "t1", "a", t0)
	stale := rec

	rec.State = isync.StateProvisioned
	rec.Attempts = 2
	rec.NextAttemptAt = t0.Add(time.Hour)
	rec.LastError = "unavailable"
	rec.BlockedCause = "chainguard: permission_denied"
	rec.NotedCause = "chainguard: permission_denied"
	rec.Image = "python:latest-dev"
	rec.Reason = "because"
	rec.Result = isync.Result{RepoID: "repo-uidp", PullRef: "cgr.dev/example.com/python:latest-dev", Method: "CreateRepo", AlreadyPresent: true}
	v := rec.Version
	if err := s.Save(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Version != v+1 {
		t.Fatalf("version %d after save, want %d", rec.Version, v+1)
	}
	got, err := s.Get(ctx, "servicenow", "t1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, rec)
	}

	stale.State = isync.StateRejected
	err = s.Save(ctx, &stale)
	if !errors.Is(err, isync.ErrConflict) {
		t.Fatalf("stale save: %v", err)
	}
	if stale.Version != v {
		t.Fatal("a failed save changed the version")
	}
	if got, _ := s.Get(ctx, "servicenow", "t1"); got.State != isync.StateProvisioned {
		t.Fatalf("stale save overwrote the record: %s", got.State)
	}

	missing := isync.Record{Source: "servicenow", TicketID: "never", State: isync.StateNew}
	if err := s.Save(ctx, &missing); !errors.Is(err, isync.ErrConflict) {
		t.Fatalf("save of an unknown record: %v", err)
	}
	rec.State = "finished"
	if err := s.Save(ctx, &rec); err == nil {
		t.Fatal("unknown state saved")
	}
}

func TestSaveKeepsLease(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	rec, _ := claim(t, s, "t1", "a", t0)
	rec.LeaseOwner, rec.LeaseUntil = "mallory", t0.Add(24*time.Hour)
	if err := s.Save(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, "servicenow", "t1")
	if got.LeaseOwner != "a" || !got.LeaseUntil.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Save changed the lease: %s until %v", got.LeaseOwner, got.LeaseUntil)
	}
}

func TestRelease(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	claim(t, s, "t1", "a", t0)
	if err := s.Release(ctx, "servicenow", "t1", "b"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "servicenow", "t1"); got.LeaseOwner != "a" {
		t.Fatal("another owner released the lease")
	}
	if err := s.Release(ctx, "servicenow", "t1", "a"); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, "servicenow", "t1")
	if got.LeaseOwner != "" || !got.LeaseUntil.IsZero() {
		t.Fatalf("lease not released: %q %v", got.LeaseOwner, got.LeaseUntil)
	}
	if _, ok := claim(t, s, "t1", "b", t0.Add(time.Second)); !ok {
		t.Fatal("released lease not free")
	}
	if err := s.Release(ctx, "servicenow", "unknown", "a"); err != nil {
		t.Fatal(err)
	}
}

func TestUnfinished(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	// More than a page, so paging is exercised; every third is done.
	const n = 2*pageSize + 17
	want := map[string]bool{}
	for i := range n {
		id := fmt.Sprintf("t%04d", i)
		rec, _ := claim(t, s, id, "a", t0)
		if i%3 == 0 {
			rec.State = isync.StateDone
		} else {
			rec.State = isync.StateBlocked
			want[id] = true
		}
		if err := s.Save(ctx, &rec); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Claim(ctx, "jira", "j1", "IMG-1", "a", t0, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}

	got := map[string]bool{}
	// fn uses the store while the listing runs (a single-connection store
	// must not deadlock), and changes rows the listing has yet to reach.
	err := s.Unfinished(ctx, "servicenow", func(r isync.Record) error {
		if r.Source != "servicenow" || r.State == isync.StateDone {
			t.Errorf("unexpected record %s/%s in %s", r.Source, r.TicketID, r.State)
		}
		if got[r.TicketID] {
			t.Errorf("%s listed twice", r.TicketID)
		}
		got[r.TicketID] = true
		rec, ok, err := s.Claim(ctx, r.Source, r.TicketID, r.Key, "a", t0.Add(time.Second), t0.Add(2*time.Minute))
		if err != nil || !ok {
			return fmt.Errorf("claim inside Unfinished: ok=%v err=%v", ok, err)
		}
		rec.State = isync.StateDone
		return s.Save(ctx, &rec)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Unfinished listed %d records, want %d", len(got), len(want))
	}
	if err := s.Unfinished(ctx, "servicenow", func(r isync.Record) error {
		return fmt.Errorf("%s still unfinished", r.TicketID)
	}); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.Unfinished(ctx, "jira", func(isync.Record) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("fn's error not returned: %v after %d calls", err, calls)
	}
}

func TestListFindCounts(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	for _, k := range []struct{ source, id, key string }{
		{"servicenow", "b", "RITM0010002"}, {"servicenow", "a", "RITM0010001"}, {"jira", "10042", "IMG-42"},
	} {
		if _, _, err := s.Claim(ctx, k.source, k.id, k.key, "o", t0, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	rec, _, _ := s.Claim(ctx, "jira", "10042", "", "o", t0, t0.Add(time.Minute))
	rec.State = isync.StateDone
	if err := s.Save(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	var order []string
	if err := s.List(ctx, func(r isync.Record) error { order = append(order, r.Source+"/"+r.TicketID); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"jira/10042", "servicenow/a", "servicenow/b"}; !reflect.DeepEqual(order, want) {
		t.Fatalf("List order %v, want %v", order, want)
	}
	found, err := s.FindByKey(ctx, "IMG-42")
	if err != nil || len(found) != 1 || found[0].TicketID != "10042" {
		t.Fatalf("FindByKey: %v %+v", err, found)
	}
	if found, _ := s.FindByKey(ctx, "IMG-0"); len(found) != 0 {
		t.Fatalf("FindByKey of unknown key: %+v", found)
	}
	counts, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[isync.State]int{
		"servicenow": {isync.StateNew: 2},
		"jira":       {isync.StateDone: 1},
	}
	if !reflect.DeepEqual(counts, want) {
		t.Fatalf("Counts = %v, want %v", counts, want)
	}
}

func TestAuditAppendOnly(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	entries := []isync.AuditEntry{
		{Time: t0, Source: "servicenow", TicketID: "a", Key: "RITM0010001", RequestID: RequestID("servicenow", "a"),
			Requester: "dev", Approver: "boss", Image: "python", Justification: "need it",
			Decision: isync.DecisionProvisioned, RepoID: "repo1", Detail: "CreateRepo", Actor: "bridge-1"},
		{Time: t0.Add(time.Hour), Source: "jira", TicketID: "10042", Key: "IMG-42", Decision: isync.DecisionRejected, Actor: "bridge-1"},
		{Time: t0.Add(2 * time.Hour), Source: "servicenow", TicketID: "a", Key: "RITM0010001", Decision: isync.DecisionReported, Actor: "bridge-1"},
	}
	// The engine claims a ticket before it audits anything about it: the
	// tickets table is what resolves a key to its ticket id.
	for _, c := range [][3]string{{"servicenow", "a", "RITM0010001"}, {"jira", "10042", "IMG-42"}} {
		if _, _, err := s.Claim(ctx, c[0], c[1], c[2], "bridge-1", t0, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range entries {
		if err := s.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Append(ctx, isync.AuditEntry{Source: "jira"}); err == nil {
		t.Fatal("an incomplete audit entry was accepted")
	}

	for _, stmt := range []string{
		"UPDATE audit SET decision = 'rejected' WHERE id = 1",
		"DELETE FROM audit WHERE id = 1",
		"DELETE FROM audit",
	} {
		_, err := s.db.ExecContext(ctx, stmt)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v", stmt, err)
		}
	}

	collect := func(f AuditFilter) []isync.AuditEntry {
		t.Helper()
		var out []isync.AuditEntry
		if err := s.Audit(ctx, f, func(e isync.AuditEntry) error { out = append(out, e); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if all := collect(AuditFilter{}); !reflect.DeepEqual(all, entries) {
		t.Fatalf("Audit\n got %+v\nwant %+v", all, entries)
	}
	if got := collect(AuditFilter{Since: t0.Add(time.Hour)}); len(got) != 2 || got[0].Source != "jira" {
		t.Fatalf("Since: %+v", got)
	}
	if got := collect(AuditFilter{Source: "servicenow"}); len(got) != 2 {
		t.Fatalf("Source: %+v", got)
	}
	if got := collect(AuditFilter{TicketID: "IMG-42"}); len(got) != 1 || got[0].TicketID != "10042" {
		t.Fatalf("by key: %+v", got)
	}
	if got := collect(AuditFilter{Source: "servicenow", TicketID: "a", Since: t0.Add(time.Minute)}); len(got) != 1 || got[0].Decision != isync.DecisionReported {
		t.Fatalf("combined: %+v", got)
	}
}

func TestAuditPaging(t *testing.T) {
	s := openMemory(t)
	ctx := context.Background()
	const n = pageSize + 3
	for i := range n {
		if err := s.Append(ctx, isync.AuditEntry{Time: t0.Add(time.Duration(i) * time.Second), Source: "jira", TicketID: "1", Decision: isync.DecisionRetry, Detail: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	i := 0
	err := s.Audit(ctx, AuditFilter{Source: "jira"}, func(e isync.AuditEntry) error {
		if e.Detail != fmt.Sprint(i) {
			return fmt.Errorf("row %d is %s", i, e.Detail)
		}
		i++
		// fn may write to the store during the listing.
		return s.Append(ctx, isync.AuditEntry{Source: "servicenow", TicketID: "x", Decision: isync.DecisionNoted})
	})
	if err != nil {
		t.Fatal(err)
	}
	if i != n {
		t.Fatalf("listed %d rows, want %d", i, n)
	}
}

func openMemory(t testing.TB) *SQLite {
	t.Helper()
	s, err := Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestMemoryStore(t *testing.T) {
	s := openMemory(t)
	var wg gosync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint(g)
			if _, ok, err := s.Claim(context.Background(), "jira", id, id, "o", t0, t0.Add(time.Minute)); err != nil || !ok {
				t.Errorf("claim: %v %v", ok, err)
			}
		}()
	}
	wg.Wait()
	counts, err := s.Counts(context.Background())
	if err != nil || counts["jira"][isync.StateNew] != 8 {
		t.Fatalf("counts %v, %v", counts, err)
	}
	// Separate in-memory stores do not share data.
	other := openMemory(t)
	if c, _ := other.Counts(context.Background()); len(c) != 0 {
		t.Fatalf("memory stores share data: %v", c)
	}
}

func TestPragmas(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	for _, p := range []struct{ name, want string }{
		{"journal_mode", "wal"},
		{"synchronous", "1"},
		{"busy_timeout", "5000"},
		{"foreign_keys", "1"},
		{"user_version", fmt.Sprint(SchemaVersion())},
		{"application_id", fmt.Sprint(applicationID)},
	} {
		var got string
		if err := s.db.QueryRowContext(ctx, "PRAGMA "+p.name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != p.want {
			t.Errorf("PRAGMA %s = %s, want %s", p.name, got, p.want)
		}
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.db")
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := s.Claim(ctx, "servicenow", "t1", "RITM0010001", "a", t0, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	rec.State = isync.StateProvisioned
	rec.Result = isync.Result{RepoID: "r", PullRef: "cgr.dev/x/python:latest", Method: "CreateRepo"}
	if err := s.Save(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, isync.AuditEntry{Time: t0, Source: "servicenow", TicketID: "t1", Decision: isync.DecisionProvisioned}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Get(ctx, "servicenow", "t1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Fatalf("after reopen\n got %+v\nwant %+v", got, rec)
	}
	n := 0
	if err := s.Audit(ctx, AuditFilter{}, func(isync.AuditEntry) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("audit after reopen: %d rows, %v", n, err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.db")
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Claim(ctx, "jira", "1", "IMG-1", "a", t0, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	future := SchemaVersion() + 5
	if _, err := s.db.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", future)); err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err = Open(ctx, path)
	want := fmt.Sprintf("store schema version %d is newer than this bridge supports (%d); upgrade the bridge", future, SchemaVersion())
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a newer store: %v", err)
	}
	// Nothing was reset.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v, rows int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != future {
		t.Fatalf("user_version %d, %v", v, err)
	}
	if err := db.QueryRow("SELECT count(*) FROM tickets").Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("tickets %d, %v", rows, err)
	}
}

func TestNotADatabaseRefused(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for name, content := range map[string]string{
		"config.yaml": "chainguard:\n  org_name: example.com\n",
		"short":       "SQLite",
		"binary":      string(make([]byte, 4096)),
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(ctx, path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a SQLite database") {
			t.Errorf("%s: %v", name, err)
		}
		after, _ := os.ReadFile(path)
		if string(after) != content {
			t.Errorf("%s was modified", name)
		}
	}
	// A corrupt database with a valid header is reported with its path too.
	path := filepath.Join(dir, "corrupt.db")
	if err := os.WriteFile(path, append([]byte("SQLite format 3\x00"), make([]byte, 200)...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("corrupt: %v", err)
	}
	if _, err := Open(ctx, dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory: %v", err)
	}
	if _, err := Open(ctx, filepath.Join(dir, "missing", "bridge.db")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing directory: %v", err)
	}
}

func TestForeignDatabaseRefused(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for name, setup := range map[string]string{
		"tables.db": "CREATE TABLE customers (id INTEGER PRIMARY KEY)",
		"appid.db":  "PRAGMA application_id = 42",
	} {
		path := filepath.Join(dir, name)
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(setup); err != nil {
			t.Fatal(err)
		}
		// Make sure the header is written even for a pragma-only database.
		if _, err := db.Exec("CREATE TABLE IF NOT EXISTS other (x)"); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if _, err := Open(ctx, path); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "check state.dsn") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestPathWithSpecialCharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd dir?#%", "bridge.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not created at the given path: %v", err)
	}
}

func TestMigrationsAreContiguous(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || SchemaVersion() != len(ms) {
		t.Fatalf("%d migrations, schema version %d", len(ms), SchemaVersion())
	}
}

func TestConcurrentOpenMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.db")
	var wg gosync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(context.Background(), path)
			if err != nil {
				t.Error(err)
				return
			}
			s.Close()
		}()
	}
	wg.Wait()
}

// Save writes the record and its audit rows together, or neither: a stale
// version, or an audit row the store refuses, leaves both as they were.
func TestSaveWithAuditIsAtomic(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	rec, _ := claim(t, s, "t1", "a", t0)
	stale := rec
	rec.State = isync.StateProvisioned
	entry := isync.AuditEntry{Source: "servicenow", TicketID: "t1", Decision: isync.DecisionProvisioned, Detail: "first"}
	if err := s.Save(ctx, &rec, entry); err != nil {
		t.Fatal(err)
	}
	stale.State = isync.StateRejected
	entry.Detail = "stale"
	if err := s.Save(ctx, &stale, entry); !errors.Is(err, isync.ErrConflict) {
		t.Fatalf("stale Save: %v, want ErrConflict", err)
	}
	// A second row that cannot be written (no decision) undoes the first and
	// the record's change, and leaves the caller's record as it was.
	before := rec
	rec.State = isync.StateDone
	bad := entry
	bad.Decision = ""
	entry.Detail = "with a bad row"
	if err := s.Save(ctx, &rec, entry, bad); err == nil {
		t.Fatal("Save with an audit row lacking its decision succeeded")
	}
	if rec.Version != before.Version {
		t.Fatalf("a failed Save moved the caller's record to version %d (was %d)", rec.Version, before.Version)
	}
	var details []string
	if err := s.Audit(ctx, AuditFilter{}, func(e isync.AuditEntry) error { details = append(details, e.Detail); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(details) != 1 || details[0] != "first" {
		t.Fatalf("audit rows %q: only the first write's row may land", details)
	}
	got, _ := s.Get(ctx, "servicenow", "t1")
	if got.State != isync.StateProvisioned || got.Version != before.Version {
		t.Fatalf("record %s v%d, want provisioned v%d", got.State, got.Version, before.Version)
	}
}

// Save keeps the lease (a renewed one too), and a record saved with no lease
// owner gives its lease back in the same commit.
func TestSaveWritesTheLease(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	rec, _ := claim(t, s, "t1", "a", t0)
	renewed, ok, err := s.Claim(ctx, "servicenow", "t1", "RITM1", "a", t0.Add(time.Minute), t0.Add(10*time.Minute))
	if err != nil || !ok {
		t.Fatalf("renew: %v %v", ok, err)
	}
	rec.State = isync.StateProvisioning // rec still has the lease of the first claim
	if err := s.Save(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "servicenow", "t1"); got.LeaseOwner != "a" || !got.LeaseUntil.Equal(renewed.LeaseUntil) {
		t.Fatalf("lease after save: %q until %s, want a until %s", got.LeaseOwner, got.LeaseUntil, renewed.LeaseUntil)
	}
	// Another owner cannot take it while it runs...
	if _, ok, _ := s.Claim(ctx, "servicenow", "t1", "RITM1", "b", t0.Add(2*time.Minute), t0.Add(20*time.Minute)); ok {
		t.Fatal("b took a lease a still holds")
	}
	// ...and can at once after a's last save released it.
	rec.State = isync.StateDone
	rec.LeaseOwner, rec.LeaseUntil = "", time.Time{}
	if err := s.Save(ctx, &rec, isync.AuditEntry{Source: "servicenow", TicketID: "t1", Decision: isync.DecisionReported}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Claim(ctx, "servicenow", "t1", "RITM1", "b", t0.Add(2*time.Minute), t0.Add(20*time.Minute))
	if err != nil || !ok {
		t.Fatalf("b could not claim a released ticket: %v %v", ok, err)
	}
	if got.Version != rec.Version+1 {
		t.Fatalf("b's claim is at version %d, want %d (a new owner fences a's record)", got.Version, rec.Version+1)
	}
}

// A store written by a bridge at schema 4 (audit with AUTOINCREMENT and a
// key index, tickets_state) opens at the current schema with every ticket
// and audit row intact: same ids, same contents, still append-only, ids
// continuing after the last one, lookups by key still answered.
func TestUpgradeFromSchema4KeepsTheAuditLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.db")
	db, err := sql.Open("sqlite", connString(path, false))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:4] {
		if _, err := db.Exec(m.sql); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	ts := formatTime(t0)
	for _, stmt := range []string{
		`INSERT INTO tickets (source, ticket_id, ticket_key, request_id, state, created_at, updated_at)
			VALUES ('jira', '10042', 'IMG-42', 'ibr-1', 'done', '` + ts + `', '` + ts + `')`,
		`INSERT INTO audit (time, source, ticket_id, ticket_key, request_id, requester, decision, detail)
			VALUES ('` + ts + `', 'jira', '10042', 'IMG-42', 'ibr-1', 'dev', 'provisioned', 'first')`,
		`INSERT INTO audit (time, source, ticket_id, ticket_key, request_id, requester, decision, detail)
			VALUES ('` + ts + `', 'jira', '10042', 'IMG-42', 'ibr-1', 'dev', 'reported', 'second')`,
		"PRAGMA user_version = 4",
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := s.Append(ctx, isync.AuditEntry{Time: t0, Source: "jira", TicketID: "10042", Key: "IMG-42", Decision: isync.DecisionReplay, Detail: "third"}); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	var details []string
	rows, err := s.db.QueryContext(ctx, "SELECT id, detail FROM audit ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var d string
		if err := rows.Scan(&id, &d); err != nil {
			t.Fatal(err)
		}
		ids, details = append(ids, id), append(details, d)
	}
	rows.Close()
	if !reflect.DeepEqual(ids, []int64{1, 2, 3}) || !reflect.DeepEqual(details, []string{"first", "second", "third"}) {
		t.Fatalf("audit after upgrade: ids %v details %q", ids, details)
	}
	var byKey []string
	if err := s.Audit(ctx, AuditFilter{TicketID: "IMG-42"}, func(e isync.AuditEntry) error { byKey = append(byKey, e.Detail); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(byKey) != 3 {
		t.Fatalf("audit by key after upgrade: %q", byKey)
	}
	if n, err := s.CountProvisioned(ctx, "dev", t0.Add(-time.Hour)); err != nil || n != 1 {
		t.Fatalf("CountProvisioned after upgrade: %d, %v", n, err)
	}
	if _, err := s.db.ExecContext(ctx, "DELETE FROM audit WHERE id = 1"); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("audit rows deletable after upgrade: %v", err)
	}
	var leftovers int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE name IN ('tickets_state', 'audit_key', 'audit_new')`).Scan(&leftovers); err != nil || leftovers != 0 {
		t.Fatalf("%d old indexes or tables left, %v", leftovers, err)
	}
}

// The queries that run per ticket or per admin lookup stay on their indexes
// (a full scan of a year's audit log would pass every functional test).
func TestQueriesUseTheirIndexes(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	byTicket, byTicketArgs := auditQuery(AuditFilter{TicketID: "RITM0010001"})
	bySourceTicket, bySourceTicketArgs := auditQuery(AuditFilter{Source: "jira", TicketID: "IMG-42"})
	since, sinceArgs := auditQuery(AuditFilter{Since: t0})
	for _, c := range []struct {
		name, query, index string
		args               []any
	}{
		{"daily limit", countProvisionedQuery, "audit_provisioned", []any{"dev", formatTime(t0)}},
		{"audit by ticket", byTicket, "audit_ticket", append(append([]any{0}, byTicketArgs...), pageSize)},
		{"audit by source and ticket", bySourceTicket, "audit_ticket", append(append([]any{0}, bySourceTicketArgs...), pageSize)},
		{"ticket by key", `SELECT ` + recordColumns + ` FROM tickets WHERE ticket_key = ? ORDER BY source, ticket_id`, "tickets_key", []any{"RITM0010001"}},
		{"audit since", since, "audit_time", append(append([]any{0}, sinceArgs...), pageSize)},
		{"count by state", countStateQuery, "tickets_unfinished", []any{"blocked"}},
		{"blocked gauge", countBlockedQuery, "tickets_unfinished", nil},
	} {
		rows, err := s.db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+c.query, c.args...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notUsed int
			var detail string
			if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if p := strings.Join(plan, "; ") + " "; !strings.Contains(p, "INDEX "+c.index+" ") {
			t.Errorf("%s: plan does not use %s: %s", c.name, c.index, p)
		}
	}
}

func TestCountState(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	for i, st := range []isync.State{isync.StateBlocked, isync.StateBlocked, isync.StateDone, isync.StateRejected} {
		rec, _ := claim(t, s, fmt.Sprint(i), "a", t0)
		rec.State = st
		if err := s.Save(ctx, &rec); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.CountState(ctx, isync.StateBlocked); err != nil || n != 2 {
		t.Fatalf("blocked: %d, %v", n, err)
	}
	if _, err := s.CountState(ctx, isync.StateDone); err == nil {
		t.Fatal("CountState(done) scanned every finished record")
	}
}

// The blocked gauge counts every unfinished record with a blocking cause,
// whatever step it is blocked at (before provisioning, or at the
// write-back of a provisioned or rejected ticket), and no finished one.
func TestCountBlocked(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	for i, c := range []struct {
		state isync.State
		cause string
	}{
		{isync.StateBlocked, "chainguard:permission_denied"},
		{isync.StateProvisioned, "jira:transition"},
		{isync.StateRejected, "servicenow:write_acl"},
		{isync.StateProvisioned, ""},
		{isync.StateProvisioning, ""},
		{isync.StateDone, "chainguard:permission_denied"},
	} {
		rec, _ := claim(t, s, fmt.Sprint(i), "a", t0)
		rec.State, rec.BlockedCause = c.state, c.cause
		if err := s.Save(ctx, &rec); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.CountBlocked(ctx); err != nil || n != 3 {
		t.Fatalf("blocked: %d, %v; want 3", n, err)
	}
}

// ClaimStart creates a new record in the given first state, in one write;
// a record that exists is claimed as by Claim, its state untouched.
func TestClaimStart(t *testing.T) {
	s, _ := openFile(t)
	ctx := context.Background()
	start := isync.Record{State: isync.StateProvisioning, Attempts: 1, Image: "python"}
	rec, ok, err := s.ClaimStart(ctx, "servicenow", "t1", "RITM1", "a", t0, t0.Add(time.Minute), start)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	got, _ := s.Get(ctx, "servicenow", "t1")
	for _, r := range []isync.Record{rec, got} {
		if r.State != isync.StateProvisioning || r.Attempts != 1 || r.Image != "python" || r.Version != 1 || r.LeaseOwner != "a" || r.RequestID != RequestID("servicenow", "t1") {
			t.Fatalf("new record %+v", r)
		}
	}
	if !reflect.DeepEqual(rec, got) {
		t.Fatalf("ClaimStart returned\n%+v\nthe store holds\n%+v", rec, got)
	}
	rec.State = isync.StateProvisioned
	if err := s.Save(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	again, ok, err := s.ClaimStart(ctx, "servicenow", "t1", "RITM1", "b", t0.Add(2*time.Minute), t0.Add(3*time.Minute), start)
	if err != nil || !ok || again.State != isync.StateProvisioned || again.Version != rec.Version+1 {
		t.Fatalf("ClaimStart of an existing record: %+v %v %v", again, ok, err)
	}
}
