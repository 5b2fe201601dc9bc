package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// A delivery key is new once per endpoint, survives a reopen (a restart does
// not reopen a replay window), can be forgotten, and is pruned by age.
func TestWebhookDeliveries(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "bridge.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	first := func(s *SQLite, endpoint, key string, at time.Time) bool {
		t.Helper()
		ok, err := s.FirstDelivery(ctx, endpoint, []string{key}, at)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !first(s, "jira", "body:aa", t0) {
		t.Fatal("first delivery not new")
	}
	if first(s, "jira", "body:aa", t0.Add(time.Second)) {
		t.Fatal("same key new twice")
	}
	if !first(s, "servicenow", "body:aa", t0) {
		t.Fatal("a key is per endpoint")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if first(s, "jira", "body:aa", t0.Add(time.Hour)) {
		t.Fatal("key forgotten across a reopen")
	}
	if err := s.ForgetDelivery(ctx, "jira", []string{"body:aa"}); err != nil {
		t.Fatal(err)
	}
	if !first(s, "jira", "body:aa", t0.Add(2*time.Hour)) {
		t.Fatal("forgotten key still refused")
	}
	// Prune before t0+1h: the servicenow key (t0) goes, the jira key (t0+2h) stays.
	n, err := s.PruneDeliveries(ctx, t0.Add(time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("PruneDeliveries = %d, %v; want 1", n, err)
	}
	if !first(s, "servicenow", "body:aa", t0.Add(3*time.Hour)) {
		t.Fatal("pruned key still refused")
	}
	if first(s, "jira", "body:aa", t0.Add(3*time.Hour)) {
		t.Fatal("recent key pruned")
	}
	// A delivery with a fresh id but a recorded body is not new.
	if ok, err := s.FirstDelivery(ctx, "jira", []string{"id:fresh", "body:aa"}, t0.Add(3*time.Hour)); err != nil || ok {
		t.Fatalf("fresh id, recorded body: FirstDelivery = %v, %v; want false", ok, err)
	}
}

// A store at schema 5 opens at the current schema with the deliveries table,
// its tickets intact.
func TestUpgradeFromSchema5AddsWebhookDeliveries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.db")
	db, err := sql.Open("sqlite", connString(path, false))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:5] {
		if _, err := db.Exec(m.sql); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	ts := formatTime(t0)
	for _, stmt := range []string{
		`INSERT INTO tickets (source, ticket_id, ticket_key, request_id, state, created_at, updated_at)
			VALUES ('jira', '10042', 'IMG-42', 'ibr-1', 'done', '` + ts + `', '` + ts + `')`,
		"PRAGMA user_version = 5",
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var v, tickets int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil || v != SchemaVersion() || v < 6 {
		t.Fatalf("user_version %d, %v; want %d (>= 6)", v, err, SchemaVersion())
	}
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM tickets").Scan(&tickets); err != nil || tickets != 1 {
		t.Fatalf("tickets after upgrade: %d, %v", tickets, err)
	}
	if ok, err := s.FirstDelivery(ctx, "jira", []string{"id:1", "body:bb"}, t0); err != nil || !ok {
		t.Fatalf("FirstDelivery after upgrade = %v, %v", ok, err)
	}
}
