// Package store is the bridge's durable state: one row per ticket, driven
// through its life cycle by the engine, and an append-only audit log. The
// default (and for now only) backend is SQLite through the pure-Go
// modernc.org/sqlite driver, so the bridge stays a single static binary.
package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// ErrNotFound is returned by Get for a ticket the store has never seen.
var ErrNotFound = errors.New("store: record not found")

// applicationID marks a SQLite file as a bridge store ("IBR1"); it is set by
// the first migration.
const applicationID = 0x49425231

// pageSize bounds the rows held in memory by the listing methods.
const pageSize = 256

// RequestID is the bridge's stable id for a ticket's request: "ibr-" and the
// first 16 hex digits of sha256(source + "/" + ticketID). It is derived, not
// random, so that a wiped or restored store still recognises the notes it
// wrote before.
func RequestID(source, ticketID string) string {
	sum := sha256.Sum256([]byte(source + "/" + ticketID))
	return "ibr-" + hex.EncodeToString(sum[:])[:16]
}

// SQLite is a Store in a SQLite database file.
//
// It uses a single connection: every statement of every goroutine runs on it
// in turn, so goroutines of one process never contend for SQLite's write lock
// and never see SQLITE_BUSY. Writes go through a writer that commits the
// writes waiting at the same moment in one transaction (see writer). Other processes opening the same file (a second
// replica, an admin's `bridge status`) wait up to busy_timeout; transactions
// start with BEGIN IMMEDIATE so a read-then-write transaction never fails
// half-way on lock upgrade. Methods that call back into the caller (List,
// Unfinished, Audit) read a page, release the connection, and only then call
// fn, so fn may use the store.
type SQLite struct {
	db   *cachedDB
	w    *writer       // every write goes through it (group commit)
	ckpt *checkpointer // nil for ":memory:"
	path string
	now  func() time.Time

	guard  *fileGuard // whether path still names the open file
	health health     // whether the last write committed
	lock   *os.File   // the owner's lock file (OpenOwner); nil when not owned
}

// Every engine contract the store provides, checked at compile time: a
// renamed method must fail the build, not silently turn a feature off (the
// daily limit without ProvisionCounter, dry runs without RecordReader).
var (
	_ isync.Store            = (*SQLite)(nil)
	_ isync.ProvisionCounter = (*SQLite)(nil)
	_ isync.RecordReader     = (*SQLite)(nil)
)

// Open opens (creating if needed) the store at dsn, a file path, and brings
// its schema up to date. ":memory:" opens a private in-memory store for tests.
// It refuses a file that is not a SQLite database, one that belongs to another
// application, one whose schema is newer than this bridge knows, and one that
// is corrupt (PRAGMA quick_check, run before any migration); it never resets,
// repairs or rewrites existing data.
func Open(ctx context.Context, dsn string) (*SQLite, error) {
	if dsn == "" {
		return nil, errors.New("store: no database path given (state.dsn)")
	}
	memory := dsn == ":memory:"
	if !memory {
		if err := checkFile(dsn); err != nil {
			return nil, err
		}
		if err := createPrivate(dsn); err != nil {
			return nil, err
		}
	}
	db, err := sql.Open("sqlite", connString(dsn, memory))
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", dsn, err)
	}
	// One connection for everything; it is kept open for the store's
	// lifetime, which is also what keeps a ":memory:" database alive.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)

	s := &SQLite{db: newCachedDB(db), path: dsn, now: time.Now, guard: &fileGuard{}}
	if err := s.migrateWhenFree(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	if !memory {
		// The first query opened the file: remember which one it is.
		if err := s.guard.watch(dsn); err != nil {
			_ = db.Close()
			return nil, err
		}
		s.startCheckpointer(ctx, dsn)
	}
	s.w = newWriter(s)
	return s, nil
}

// connString builds the driver DSN. The pragmas are applied by the driver to
// every connection it opens, including a replacement after a broken one:
//
//   - journal_mode=WAL: readers never block the writer, and a commit is one
//     append to the log.
//   - synchronous=NORMAL: with WAL, a committed transaction survives a crash
//     of the process (SIGKILL, OOM kill, panic) because it is in the OS page
//     cache; only a power loss or kernel crash can lose the last transactions
//     before a checkpoint. The engine tolerates that: provisioning is
//     idempotent and write-back re-reads the ticket before writing, so a
//     replayed step neither provisions twice nor notes twice.
//   - busy_timeout=5000: another process holding the lock is waited for, up
//     to 5s, instead of failing at once with SQLITE_BUSY.
//   - foreign_keys=on: enforce any reference constraints the schema declares.
//
// _txlock=immediate makes BEGIN take the write lock at once.
func connString(path string, memory bool) string {
	q := "_txlock=immediate" +
		"&_pragma=busy_timeout(5000)" +
		"&_pragma=foreign_keys(1)" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(NORMAL)"
	if memory {
		return "file::memory:?" + q
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	// A file: URI keeps '?' or '#' in a path from being read as parameters.
	return "file:" + (&url.URL{Path: filepath.ToSlash(path)}).EscapedPath() + "?" + q
}

// createPrivate creates the database file at path, empty and readable by
// its owner only (0600, whatever the umask), unless it exists. The store
// holds requesters' names and justifications. SQLite creates the -wal and
// -shm files with the database file's mode, so they are private too; an
// existing file keeps the mode its owner gave it.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store %s: %w", path, err)
	}
	// The umask can only take bits away from 0600; set it exactly anyway,
	// so that a umask of 0277 does not leave a file the bridge cannot write.
	err = f.Chmod(0o600)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store %s: %w", path, err)
	}
	return nil
}

var sqliteHeader = []byte("SQLite format 3\x00")

// checkFile refuses, before SQLite touches it, a path that is a directory or
// a file that is not a SQLite database.
func checkFile(path string) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		dir := filepath.Dir(path)
		if dst, err := os.Stat(dir); err != nil || !dst.IsDir() {
			return fmt.Errorf("store %s: directory %s does not exist", path, dir)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("store %s: %w", path, err)
	}
	if st.IsDir() {
		return fmt.Errorf("store %s: is a directory, not a database file", path)
	}
	if st.Size() == 0 {
		return nil // SQLite treats an empty file as a new database
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("store %s: %w", path, err)
	}
	defer f.Close()
	head := make([]byte, len(sqliteHeader))
	if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, sqliteHeader) {
		return notDatabase(path)
	}
	return nil
}

func notDatabase(path string) error {
	return fmt.Errorf("store %s: not a SQLite database; check state.dsn (the file was left untouched)", path)
}

// wrapOpen names the path in an error met while opening, and turns SQLite's
// "file is not a database" and "database disk image is malformed" into the
// same clear errors as checkFile and checkIntegrity.
func (s *SQLite) wrapOpen(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case 26: // SQLITE_NOTADB
			return notDatabase(s.path)
		case 11: // SQLITE_CORRUPT
			return corrupt(s.path, err.Error())
		}
	}
	return fmt.Errorf("store %s: %w", s.path, err)
}

func corrupt(path, detail string) error {
	return fmt.Errorf("store %s: the database file is corrupt (%s); it was left untouched: restore state.dsn from a backup, "+
		"or move the file aside to start with an empty store (tickets still open are then handled again, and recognised by their notes)", path, detail)
}

// checkIntegrity runs PRAGMA quick_check, which reads every page and checks
// the b-trees, record formats and NOT NULL and CHECK constraints (what
// integrity_check checks, except UNIQUE constraints and that indexes match
// their tables), in time linear in the file's size: milliseconds for a store
// of thousands of tickets. A
// store damaged on disk (a bad copy, a failing disk, a file edited by hand)
// is refused at start, with a clear message, rather than failing later
// half-way through a ticket. SQLite keeps no checksums: damage that leaves
// every page well-formed (bytes changed inside a stored text) cannot be
// seen by any check.
func (s *SQLite) checkIntegrity(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, "PRAGMA quick_check(5)")
	if err != nil {
		return s.wrapOpen(err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var msg string
		if err := rows.Scan(&msg); err != nil {
			return s.wrapOpen(err)
		}
		if msg != "ok" {
			problems = append(problems, msg)
		}
	}
	if err := rows.Err(); err != nil {
		return s.wrapOpen(err)
	}
	if len(problems) > 0 {
		return corrupt(s.path, strings.Join(problems, "; "))
	}
	return nil
}

// Close closes the store, and then gives up its ownership (OpenOwner).
func (s *SQLite) Close() error {
	s.w.close()
	return errors.Join(s.ckpt.close(), s.db.Close(), s.closeLock())
}

// Ping checks that the path still names the store's file (CheckFile) and
// that the database answers a query (readiness).
func (s *SQLite) Ping(ctx context.Context) error {
	if err := s.CheckFile(); err != nil {
		return err
	}
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n); err != nil {
		return fmt.Errorf("store %s: %w", s.path, err)
	}
	if s.WriteErr() != nil {
		// Writes failed: try one, so that an idle bridge (no ticket to
		// write) becomes ready again once the disk has room, instead of
		// staying unready until the next ticket. A table created and
		// dropped in one transaction allocates a page, as a ticket's write
		// would, and leaves the schema as it was.
		_ = s.w.write(withWrite(ctx, "probe", "", ""), func(ctx context.Context, tx *cachedTx) error {
			if _, err := tx.ExecContext(ctx, "CREATE TABLE write_probe (x INTEGER)"); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, "DROP TABLE write_probe")
			return err
		})
	}
	if err := s.WriteErr(); err != nil {
		return fmt.Errorf("store %s: writes are failing (ready again once one succeeds): %w", s.path, err)
	}
	return nil
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations are the embedded schema steps, numbered 1..N without gaps; N is
// the schema version this binary supports.
var migrations = mustLoadMigrations()

func mustLoadMigrations() []migration {
	ms, err := loadMigrations()
	if err != nil {
		panic(err)
	}
	return ms
}

func loadMigrations() ([]migration, error) {
	entries, err := migrationFiles.ReadDir("migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("store: migration %s is not named NNNN_name.sql", e.Name())
		}
		data, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(data)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("store: migration %s: expected number %d", m.name, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion is the schema version this binary supports.
func SchemaVersion() int { return len(migrations) }

// migrateWhenFree is migrate, tried again for a while if the file is busy.
// Two processes opening a new store at once (a replica and an admin's
// `bridge status`) race to set up its WAL, and SQLite answers SQLITE_BUSY to
// the loser without waiting for busy_timeout while the other one does.
func (s *SQLite) migrateWhenFree(ctx context.Context) error {
	deadline := time.Now().Add(busyTimeout)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		err := s.migrate(ctx)
		if !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// busyTimeout is how long the store waits for another process's lock (the
// busy_timeout pragma, in connString).
const busyTimeout = 5 * time.Second

// isBusy reports whether err is SQLite's SQLITE_BUSY or SQLITE_LOCKED.
func isBusy(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		code := se.Code() & 0xff
		return code == 5 || code == 6
	}
	return false
}

func (s *SQLite) migrate(ctx context.Context) error {
	var version, appID int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return s.wrapOpen(err)
	}
	if err := s.db.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return s.wrapOpen(err)
	}
	if appID != 0 && appID != applicationID {
		return fmt.Errorf("store %s: a SQLite database of another application (application_id %#x); check state.dsn", s.path, appID)
	}
	if version > len(migrations) {
		return fmt.Errorf("store %s: store schema version %d is newer than this bridge supports (%d); upgrade the bridge", s.path, version, len(migrations))
	}
	if err := s.checkIntegrity(ctx); err != nil {
		return err
	}
	errForeign := fmt.Errorf("store %s: a SQLite database with tables but no bridge schema; check state.dsn", s.path)
	for _, m := range migrations[version:] {
		err := s.tx(ctx, func(tx *cachedTx) error {
			// Another process may have migrated while this one waited for
			// the write lock.
			var v int
			if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
				return err
			}
			if v >= m.version {
				return nil
			}
			if v == 0 {
				// Checked under the write lock: tables seen before it may be
				// those of another bridge process migrating the same file.
				var tables int
				if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'").Scan(&tables); err != nil {
					return err
				}
				if tables > 0 {
					return errForeign
				}
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version))
			return err
		})
		if errors.Is(err, errForeign) {
			return err
		}
		if err != nil {
			return fmt.Errorf("store %s: migration %s: %w", s.path, m.name, err)
		}
	}
	return nil
}

func (s *SQLite) tx(ctx context.Context, fn func(*cachedTx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Times are stored as fixed-width UTC text: readable in the sqlite3 shell and
// ordered correctly by text comparison. "" is the zero time.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

const recordColumns = `source, ticket_id, ticket_key, request_id, state, attempts, next_attempt_at,
	last_error, blocked_cause, noted_cause, image, reason, repo_id, pull_ref, method, already_present,
	lease_owner, lease_until, version, created_at, updated_at, ready_by, images`

type scanner interface{ Scan(...any) error }

func scanRecord(sc scanner) (isync.Record, error) {
	var (
		r                                  isync.Record
		state                              string
		next, leaseUntil, created, updated string
		readyBy, images                    string
		alreadyPresent                     bool
	)
	err := sc.Scan(&r.Source, &r.TicketID, &r.Key, &r.RequestID, &state, &r.Attempts, &next,
		&r.LastError, &r.BlockedCause, &r.NotedCause, &r.Image, &r.Reason,
		&r.Result.RepoID, &r.Result.PullRef, &r.Result.Method, &alreadyPresent,
		&r.LeaseOwner, &leaseUntil, &r.Version, &created, &updated, &readyBy, &images)
	if err != nil {
		return r, err
	}
	r.State = isync.State(state)
	r.Result.AlreadyPresent = alreadyPresent
	if images != "" {
		if err := json.Unmarshal([]byte(images), &r.Images); err != nil {
			return r, fmt.Errorf("store: %s/%s: bad images column: %w", r.Source, r.TicketID, err)
		}
	}
	for _, f := range []struct {
		dst *time.Time
		src string
	}{{&r.NextAttemptAt, next}, {&r.LeaseUntil, leaseUntil}, {&r.CreatedAt, created}, {&r.UpdatedAt, updated}, {&r.ReadyBy, readyBy}} {
		t, err := parseTime(f.src)
		if err != nil {
			return r, fmt.Errorf("store: %s/%s: bad time %q: %w", r.Source, r.TicketID, f.src, err)
		}
		*f.dst = t
	}
	return r, nil
}

func getRecord(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, source, ticketID string) (isync.Record, error) {
	r, err := scanRecord(q.QueryRowContext(ctx,
		`SELECT `+recordColumns+` FROM tickets WHERE source = ? AND ticket_id = ?`, source, ticketID))
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	return r, err
}

// Claim implements isync.Store. In one transaction it creates the record in
// StateNew if absent (with its derived RequestID) holding owner's lease, or
// else takes the lease for owner until `until` if it is free, expired
// (lease_until < now) or already owner's.
//
// Taking a lease from another owner, or a free one, increments Version: it
// fences off a previous holder whose lease expired while it was still working,
// whose next Save then fails with ErrConflict instead of overwriting the new
// holder's progress. Renewing one's own lease keeps Version.
func (s *SQLite) Claim(ctx context.Context, source, ticketID, key, owner string, now, until time.Time) (isync.Record, bool, error) {
	return s.claim(ctx, source, ticketID, key, owner, now, until, nil)
}

// ClaimStart implements isync.Store: Claim, except that a record that does
// not exist yet is created in start's state, with its attempts and image (one
// write where Claim and a Save would take two).
func (s *SQLite) ClaimStart(ctx context.Context, source, ticketID, key, owner string, now, until time.Time, start isync.Record) (isync.Record, bool, error) {
	if !knownStates[start.State] {
		return isync.Record{}, false, fmt.Errorf("store: claim %s/%s: unknown state %q", source, ticketID, start.State)
	}
	return s.claim(ctx, source, ticketID, key, owner, now, until, &start)
}

func (s *SQLite) claim(ctx context.Context, source, ticketID, key, owner string, now, until time.Time, start *isync.Record) (isync.Record, bool, error) {
	if source == "" || ticketID == "" || owner == "" {
		return isync.Record{}, false, errors.New("store: claim needs a source, a ticket id and an owner")
	}
	if !until.After(now) {
		return isync.Record{}, false, fmt.Errorf("store: claim %s/%s: lease must end after now", source, ticketID)
	}
	var (
		rec isync.Record
		ok  bool
	)
	err := s.w.write(withWrite(ctx, "claim", source, ticketID), func(ctx context.Context, tx *cachedTx) error {
		// Results afresh on every run (see writer): a run rolled back with
		// its group must not leave ok set for the next.
		rec, ok = isync.Record{}, false
		// A new ticket (the common case in a backlog) is created with the lease
		// taken: one statement, and no read back.
		ts := formatTime(now)
		reqID := RequestID(source, ticketID)
		first := isync.Record{State: isync.StateNew}
		if start != nil {
			first = *start
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO tickets (source, ticket_id, ticket_key, request_id, state, attempts, image,
				lease_owner, lease_until, version, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT (source, ticket_id) DO NOTHING`,
			source, ticketID, key, reqID, string(first.State), first.Attempts, first.Image, owner, formatTime(until), ts, ts)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			rec = isync.Record{Source: source, TicketID: ticketID, Key: key, RequestID: reqID, State: first.State,
				Attempts: first.Attempts, Image: first.Image,
				LeaseOwner: owner, LeaseUntil: until.UTC(), Version: 1, CreatedAt: now.UTC(), UpdatedAt: now.UTC()}
			// Round-trip the times through their stored form, so the record is
			// exactly what a read would return.
			rec.LeaseUntil, _ = parseTime(formatTime(until))
			rec.CreatedAt, _ = parseTime(ts)
			rec.UpdatedAt = rec.CreatedAt
			ok = true
			return nil
		}
		rec, err = getRecord(ctx, tx, source, ticketID)
		if err != nil {
			return err
		}
		if rec.LeaseOwner != "" && rec.LeaseOwner != owner && !rec.LeaseUntil.Before(now) {
			return nil // held by someone else
		}
		if rec.LeaseOwner != owner {
			rec.Version++
		}
		rec.LeaseOwner, rec.LeaseUntil = owner, until.UTC()
		if key != "" && key != rec.Key {
			// The key changed (a Jira issue moved to another project) or was
			// not known: the record learns it. Otherwise the key column, and
			// its index, are left untouched.
			rec.Key = key
			_, err = tx.ExecContext(ctx, `UPDATE tickets SET lease_owner = ?, lease_until = ?, version = ?, ticket_key = ?
				WHERE source = ? AND ticket_id = ?`,
				owner, formatTime(until), rec.Version, rec.Key, source, ticketID)
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE tickets SET lease_owner = ?, lease_until = ?, version = ?
				WHERE source = ? AND ticket_id = ?`,
				owner, formatTime(until), rec.Version, source, ticketID)
		}
		ok = err == nil
		return err
	})
	if err != nil {
		return isync.Record{}, false, fmt.Errorf("store: claim %s/%s: %w", source, ticketID, err)
	}
	return rec, ok, nil
}

var knownStates = map[isync.State]bool{
	isync.StateNew: true, isync.StateProvisioning: true, isync.StateProvisioned: true,
	isync.StateSyncing: true, isync.StateRejected: true, isync.StateBlocked: true, isync.StateDone: true,
}

func imagesJSON(images []isync.ImageOutcome) string {
	if len(images) == 0 {
		return ""
	}
	b, _ := json.Marshal(images) // plain structs of strings and bools: cannot fail
	return string(b)
}

// countProvisionedQuery writes the decision out, not bound, so that the
// partial index audit_provisioned (WHERE decision = 'provisioned') applies.
const countProvisionedQuery = `SELECT count(*) FROM audit
	WHERE requester = ? AND decision = '` + string(isync.DecisionProvisioned) + `' AND time >= ?`

// CountProvisioned counts the images provisioned (not already present) for
// requester since the given time, from the audit log: the per-requester daily
// limit.
func (s *SQLite) CountProvisioned(ctx context.Context, requester string, since time.Time) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, countProvisionedQuery, requester, formatTime(since)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: counting provisioned images of a requester: %w", err)
	}
	return n, nil
}

// Save implements isync.Store: a compare-and-swap on Version, and the audit
// rows, in one transaction. It writes the record's state fields (not its
// identity, key or creation time), and clears the lease when rec.LeaseOwner is
// "" (it never sets one: only Claim does), increments rec.Version and sets
// rec.UpdatedAt. A record changed since it was read yields isync.ErrConflict
// and writes nothing; rec is changed only when the commit succeeded.
func (s *SQLite) Save(ctx context.Context, rec *isync.Record, audit ...isync.AuditEntry) error {
	if !knownStates[rec.State] {
		return fmt.Errorf("store: save %s/%s: unknown state %q", rec.Source, rec.TicketID, rec.State)
	}
	for _, e := range audit {
		if err := checkEntry(e); err != nil {
			return err
		}
	}
	var saved isync.Record
	err := s.w.write(withWrite(ctx, "save", rec.Source, rec.TicketID), func(ctx context.Context, tx *cachedTx) error {
		saved = *rec // afresh on every run (see writer)
		if err := s.save(ctx, tx, &saved); err != nil {
			if errors.Is(err, isync.ErrConflict) {
				return clean(err) // the UPDATE matched no row: nothing written
			}
			return err
		}
		for _, e := range audit {
			if err := s.append(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		*rec = saved
	}
	return err
}

// execer is what Save and Append need: the database or a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

const (
	saveSet = `UPDATE tickets SET
			state = ?, attempts = ?, next_attempt_at = ?, last_error = ?,
			blocked_cause = ?, noted_cause = ?, image = ?, reason = ?,
			repo_id = ?, pull_ref = ?, method = ?, already_present = ?, ready_by = ?, images = ?,
			version = version + 1, updated_at = ?`
	saveWhere        = ` WHERE source = ? AND ticket_id = ? AND version = ?`
	saveQuery        = saveSet + saveWhere
	saveReleaseQuery = saveSet + `, lease_owner = '', lease_until = ''` + saveWhere
)

// save updates the row of rec, which must be at rec.Version, and advances rec.
// The key column is not written: Claim sets it, and rewriting it would
// rewrite its index entry on every save.
func (s *SQLite) save(ctx context.Context, db execer, rec *isync.Record) error {
	updated := s.now().UTC()
	query := saveQuery
	if rec.LeaseOwner == "" {
		query = saveReleaseQuery
	}
	res, err := db.ExecContext(ctx, query,
		string(rec.State), rec.Attempts, formatTime(rec.NextAttemptAt), rec.LastError,
		rec.BlockedCause, rec.NotedCause, rec.Image, rec.Reason,
		rec.Result.RepoID, rec.Result.PullRef, rec.Result.Method, rec.Result.AlreadyPresent, formatTime(rec.ReadyBy), imagesJSON(rec.Images),
		formatTime(updated),
		rec.Source, rec.TicketID, rec.Version)
	if err != nil {
		return fmt.Errorf("store: save %s/%s: %w", rec.Source, rec.TicketID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: save %s/%s: %w", rec.Source, rec.TicketID, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %s/%s is no longer at version %d", isync.ErrConflict, rec.Source, rec.TicketID, rec.Version)
	}
	rec.Version++
	rec.UpdatedAt = updated
	return nil
}

// Release implements isync.Store: it clears the lease if owner holds it, and
// does nothing otherwise.
func (s *SQLite) Release(ctx context.Context, source, ticketID, owner string) error {
	err := s.w.write(withWrite(ctx, "release", source, ticketID), func(ctx context.Context, tx *cachedTx) error {
		_, err := tx.ExecContext(ctx, `UPDATE tickets SET lease_owner = '', lease_until = ''
			WHERE source = ? AND ticket_id = ? AND lease_owner = ?`, source, ticketID, owner)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: release %s/%s: %w", source, ticketID, err)
	}
	return nil
}

// Unfinished implements isync.Store: fn sees every record of source not in
// StateDone, in ticket id order. fn may use the store.
func (s *SQLite) Unfinished(ctx context.Context, source string, fn func(isync.Record) error) error {
	after := ""
	for {
		// The partial index holds only unfinished records; without INDEXED BY
		// the planner, which cannot tell how few they are, walks the primary
		// key over every done record too.
		page, err := s.records(ctx, `SELECT `+recordColumns+` FROM tickets INDEXED BY tickets_unfinished
			WHERE source = ? AND state != 'done' AND ticket_id > ? ORDER BY ticket_id LIMIT ?`,
			source, after, pageSize)
		if err != nil {
			return fmt.Errorf("store: unfinished %s: %w", source, err)
		}
		for _, r := range page {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(page) < pageSize {
			return nil
		}
		after = page[len(page)-1].TicketID
	}
}

// records runs a query and reads all its rows, releasing the connection
// before returning.
func (s *SQLite) records(ctx context.Context, query string, args ...any) ([]isync.Record, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []isync.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Get returns one record, or ErrNotFound.
func (s *SQLite) Get(ctx context.Context, source, ticketID string) (isync.Record, error) {
	r, err := getRecord(ctx, s.db, source, ticketID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return r, fmt.Errorf("store: get %s/%s: %w", source, ticketID, err)
	}
	return r, err
}

// FindByKey returns the records whose human key is key (RITM0010001, IMG-42),
// in source order; usually one, none if unknown.
func (s *SQLite) FindByKey(ctx context.Context, key string) ([]isync.Record, error) {
	rs, err := s.records(ctx, `SELECT `+recordColumns+` FROM tickets WHERE ticket_key = ? ORDER BY source, ticket_id`, key)
	if err != nil {
		return nil, fmt.Errorf("store: find %s: %w", key, err)
	}
	return rs, nil
}

// List calls fn for every record, ordered by source and ticket id. fn may use
// the store.
func (s *SQLite) List(ctx context.Context, fn func(isync.Record) error) error {
	afterSource, afterID := "", ""
	for {
		page, err := s.records(ctx, `SELECT `+recordColumns+` FROM tickets
			WHERE (source, ticket_id) > (?, ?) ORDER BY source, ticket_id LIMIT ?`,
			afterSource, afterID, pageSize)
		if err != nil {
			return fmt.Errorf("store: list: %w", err)
		}
		for _, r := range page {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(page) < pageSize {
			return nil
		}
		last := page[len(page)-1]
		afterSource, afterID = last.Source, last.TicketID
	}
}

// Counts returns the number of records by source and state.
func (s *SQLite) Counts(ctx context.Context) (map[string]map[isync.State]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT source, state, count(*) FROM tickets GROUP BY source, state`)
	if err != nil {
		return nil, fmt.Errorf("store: counts: %w", err)
	}
	defer rows.Close()
	out := map[string]map[isync.State]int{}
	for rows.Next() {
		var (
			source, state string
			n             int
		)
		if err := rows.Scan(&source, &state, &n); err != nil {
			return nil, fmt.Errorf("store: counts: %w", err)
		}
		if out[source] == nil {
			out[source] = map[isync.State]int{}
		}
		out[source][isync.State(state)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: counts: %w", err)
	}
	return out, nil
}

// CountState counts the records in state, which must not be StateDone: it
// reads the unfinished records only (the index tickets_unfinished), so it
// stays cheap however many tickets are done (the blocked gauge, read at every
// metrics scrape).
func (s *SQLite) CountState(ctx context.Context, state isync.State) (int, error) {
	if state == isync.StateDone {
		return 0, errors.New("store: CountState counts unfinished states only")
	}
	var n int
	if err := s.db.QueryRowContext(ctx, countStateQuery, string(state)).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: counting %s records: %w", state, err)
	}
	return n, nil
}

// countStateQuery repeats the index's condition so that SQLite uses it.
const countStateQuery = `SELECT count(*) FROM tickets WHERE state != 'done' AND state = ?`

// CountBlocked counts the unfinished records with a blocking cause: tickets
// blocked before provisioning (StateBlocked) and tickets whose write-back is
// blocked (provisioned or rejected, the note or the close refused). It reads
// the unfinished records only (the index tickets_unfinished): the
// bridge_tickets_blocked gauge, read at every metrics scrape.
func (s *SQLite) CountBlocked(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, countBlockedQuery).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: counting blocked records: %w", err)
	}
	return n, nil
}

// countBlockedQuery repeats the index's condition so that SQLite uses it.
const countBlockedQuery = `SELECT count(*) FROM tickets WHERE state != 'done' AND blocked_cause != ''`

// Append implements isync.Store: it adds one audit row. A zero Time is now.
func (s *SQLite) Append(ctx context.Context, e isync.AuditEntry) error {
	return s.w.write(withWrite(ctx, "append", e.Source, e.TicketID), func(ctx context.Context, tx *cachedTx) error { return s.append(ctx, tx, e) })
}

// checkEntry refuses an audit entry that would not say what happened to what.
func checkEntry(e isync.AuditEntry) error {
	if e.Source == "" || e.TicketID == "" || e.Decision == "" {
		return errors.New("store: an audit entry needs a source, a ticket id and a decision")
	}
	return nil
}

func (s *SQLite) append(ctx context.Context, db execer, e isync.AuditEntry) error {
	if err := checkEntry(e); err != nil {
		return err
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	_, err := db.ExecContext(ctx, `INSERT INTO audit
		(time, source, ticket_id, ticket_key, request_id, requester, approver, image, justification, decision, repo_id, detail, actor)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		formatTime(e.Time), e.Source, e.TicketID, e.Key, e.RequestID, e.Requester, e.Approver, e.Image,
		e.Justification, string(e.Decision), e.RepoID, e.Detail, e.Actor)
	if err != nil {
		return fmt.Errorf("store: audit %s/%s: %w", e.Source, e.TicketID, err)
	}
	return nil
}

// AuditFilter selects audit rows; zero fields select everything.
type AuditFilter struct {
	Since    time.Time // rows at or after this time
	Source   string    // "servicenow", "jira"
	TicketID string    // a ticket id or a human key (RITM0010001, IMG-42)
}

// auditQuery is the query of one page of Audit and its arguments after the
// first (the id to page after) and before the last (the page size).
func auditQuery(f AuditFilter) (string, []any) {
	where := []string{"id > ?"}
	var args []any
	if !f.Since.IsZero() {
		// The lowest id of the rows at or after Since, read from audit_time,
		// starts the id range: pages are read from there, not from the log's
		// start. Rows below it are all older; rows above it are still
		// filtered on time, as clocks of several bridge instances may
		// disagree. One bound (max), so that SQLite starts its range there.
		where[0] = "id > max(?, coalesce((SELECT min(id) FROM audit INDEXED BY audit_time WHERE time >= ?), 9223372036854775807) - 1)"
		where = append(where, "time >= ?")
		args = append(args, formatTime(f.Since), formatTime(f.Since))
	}
	if f.Source != "" {
		where = append(where, "source = ?")
		args = append(args, f.Source)
	}
	if f.TicketID != "" {
		// By id, or by key through the tickets table: both are lookups in
		// audit_ticket.
		where = append(where, "ticket_id IN (SELECT ? UNION SELECT ticket_id FROM tickets WHERE ticket_key = ?)")
		args = append(args, f.TicketID, f.TicketID)
	}
	return `SELECT id, time, source, ticket_id, ticket_key, request_id, requester, approver, image,
		justification, decision, repo_id, detail, actor FROM audit
		WHERE ` + strings.Join(where, " AND ") + ` ORDER BY id LIMIT ?`, args
}

// Audit calls fn for every audit row matching f, oldest first. fn may use the
// store.
func (s *SQLite) Audit(ctx context.Context, f AuditFilter, fn func(isync.AuditEntry) error) error {
	query, args := auditQuery(f)
	var after int64
	for {
		page, last, err := s.auditPage(ctx, query, append(append([]any{after}, args...), pageSize)...)
		if err != nil {
			return fmt.Errorf("store: audit: %w", err)
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < pageSize {
			return nil
		}
		after = last
	}
}

func (s *SQLite) auditPage(ctx context.Context, query string, args ...any) ([]isync.AuditEntry, int64, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var (
		out  []isync.AuditEntry
		last int64
	)
	for rows.Next() {
		var (
			e       isync.AuditEntry
			ts, dec string
		)
		if err := rows.Scan(&last, &ts, &e.Source, &e.TicketID, &e.Key, &e.RequestID, &e.Requester, &e.Approver,
			&e.Image, &e.Justification, &dec, &e.RepoID, &e.Detail, &e.Actor); err != nil {
			return nil, 0, err
		}
		e.Decision = isync.Decision(dec)
		if e.Time, err = parseTime(ts); err != nil {
			return nil, 0, fmt.Errorf("audit row %d: bad time %q: %w", last, ts, err)
		}
		out = append(out, e)
	}
	return out, last, rows.Err()
}
