package store

import (
	"errors"
	"fmt"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"modernc.org/sqlite"
)

// TestFullDatabaseReported: with the database file full (SQLITE_FULL, made
// real with max_page_count), each failing write reaches the hook with its
// operation and ticket, is counted, and Ping (readiness) fails naming the
// store; once a write commits again, Ping succeeds. Before, a full disk was
// seen only as ticket errors, and Ping kept answering.
func TestFullDatabaseReported(t *testing.T) {
	ctx := t.Context()
	path := t.TempDir() + "/bridge.db"
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var (
		mu  gosync.Mutex
		got []*WriteError
	)
	s.OnWriteError(func(e *WriteError) { mu.Lock(); got = append(got, e); mu.Unlock() })

	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	claim := func(i int) error {
		// Long keys fill pages quickly.
		_, _, err := s.Claim(ctx, "jira", fmt.Sprintf("T-%d", i), strings.Repeat("k", 3000), "me", now, now.Add(time.Minute))
		return err
	}
	if err := claim(0); err != nil {
		t.Fatal(err)
	}
	pages, err := s.PageCount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.LimitPages(ctx, pages); err != nil {
		t.Fatal(err)
	}
	var failed int
	var werr error
	for i := 1; i <= 50 && werr == nil; i++ {
		if werr = claim(i); werr != nil {
			failed = i
		}
	}
	var se *sqlite.Error
	if !errors.As(werr, &se) || se.Code()&0xff != 13 {
		t.Fatalf("claim on a full database: %v, want SQLITE_FULL", werr)
	}
	if n := s.WriteFailures(); n != 1 {
		t.Errorf("WriteFailures = %d, want 1", n)
	}
	mu.Lock()
	if len(got) != 1 || got[0].Op != "claim" || got[0].Ticket != fmt.Sprintf("jira/T-%d", failed) {
		t.Errorf("hook got %v, want one claim of jira/T-%d", got, failed)
	}
	mu.Unlock()
	perr := s.Ping(ctx)
	t.Logf("Ping: %v", perr)
	if perr == nil || !strings.Contains(perr.Error(), path) || !strings.Contains(perr.Error(), "full") {
		t.Fatalf("Ping = %v, want the store's path and the full database", perr)
	}

	// Space again: readiness returns by itself, with no ticket to write
	// (an idle bridge), and the next write commits.
	if err := s.LimitPages(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping once the database has room again, before any ticket's write = %v", err)
	}
	if err := claim(failed); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after a committed write = %v", err)
	}
	if s.WriteErr() != nil {
		t.Fatalf("WriteErr = %v after a committed write", s.WriteErr())
	}
}
