package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// maxCachedStmts bounds the statement cache; the store issues a few dozen
// distinct statements, so the bound is only a guard: past it, statements run
// unprepared, and cached ones are never closed while in use.
const maxCachedStmts = 128

// cachedDB is the store's database handle with a cache of prepared
// statements. Parsing and planning a statement costs SQLite more than
// running one of the store's small statements, and database/sql prepares a
// statement afresh for every call that is given SQL text; with the cache,
// each statement with arguments is prepared once on the store's single
// connection and reused (database/sql prepares it again by itself if that
// connection is ever replaced, and SQLite re-prepares it after a schema
// change). Statements without arguments (PRAGMAs, migrations, which may
// hold several statements) run as given.
type cachedDB struct {
	*sql.DB

	mu     sync.Mutex
	stmts  map[string]*sql.Stmt
	closed bool
}

func newCachedDB(db *sql.DB) *cachedDB {
	return &cachedDB{DB: db, stmts: map[string]*sql.Stmt{}}
}

var (
	errClosed    = errors.New("store: closed")
	errCacheFull = errors.New("store: statement cache full")
)

// stmt returns the prepared statement for query, preparing it on first use.
// The mutex is not held while preparing: that waits for the connection,
// which a transaction may hold while it looks up the cache.
func (d *cachedDB) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	d.mu.Lock()
	st, closed := d.stmts[query], d.closed
	d.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	if st != nil {
		return st, nil
	}
	st, err := d.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		_ = st.Close()
		return nil, errClosed
	}
	if other := d.stmts[query]; other != nil {
		_ = st.Close() // prepared meanwhile by another goroutine
		return other, nil
	}
	if len(d.stmts) >= maxCachedStmts {
		_ = st.Close()
		return nil, errCacheFull
	}
	d.stmts[query] = st
	return st, nil
}

// ExecContext runs query, prepared once when it has arguments. A statement
// that cannot be prepared (or cached) runs as a plain call, which reports
// whatever is wrong with it.
func (d *cachedDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if len(args) > 0 {
		if st, err := d.stmt(ctx, query); err == nil {
			return st.ExecContext(ctx, args...)
		}
	}
	return d.DB.ExecContext(ctx, query, args...)
}

// QueryContext runs query, prepared once when it has arguments.
func (d *cachedDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if len(args) > 0 {
		if st, err := d.stmt(ctx, query); err == nil {
			return st.QueryContext(ctx, args...)
		}
	}
	return d.DB.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query, prepared once when it has arguments.
func (d *cachedDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if len(args) > 0 {
		if st, err := d.stmt(ctx, query); err == nil {
			return st.QueryRowContext(ctx, args...)
		}
	}
	return d.DB.QueryRowContext(ctx, query, args...)
}

// BeginTx starts a transaction whose statements use the cache.
func (d *cachedDB) BeginTx(ctx context.Context, opts *sql.TxOptions) (*cachedTx, error) {
	tx, err := d.DB.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &cachedTx{Tx: tx, d: d}, nil
}

// Close closes the cached statements, then the database.
func (d *cachedDB) Close() error {
	d.mu.Lock()
	var errs []error
	for q, st := range d.stmts {
		errs = append(errs, st.Close())
		delete(d.stmts, q)
	}
	d.closed = true
	d.mu.Unlock()
	return errors.Join(append(errs, d.DB.Close())...)
}

// cached returns the prepared statement for query, if there is one.
func (d *cachedDB) cached(query string) *sql.Stmt {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stmts[query]
}

// cachedTx is a transaction whose statements with arguments run as the
// cached prepared statements (bound to the transaction). A statement not yet
// in the cache cannot be prepared on the database while the transaction
// holds the store's only connection: it runs unprepared, and is prepared for
// the cache once the transaction has ended.
type cachedTx struct {
	*sql.Tx
	d      *cachedDB
	missed []string
}

// stmt returns the transaction's use of query's cached statement, or nil.
func (t *cachedTx) stmt(ctx context.Context, query string) *sql.Stmt {
	if st := t.d.cached(query); st != nil {
		return t.Tx.StmtContext(ctx, st)
	}
	t.missed = append(t.missed, query)
	return nil
}

func (t *cachedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if len(args) > 0 {
		if st := t.stmt(ctx, query); st != nil {
			return st.ExecContext(ctx, args...)
		}
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

func (t *cachedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if len(args) > 0 {
		if st := t.stmt(ctx, query); st != nil {
			return st.QueryContext(ctx, args...)
		}
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

func (t *cachedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if len(args) > 0 {
		if st := t.stmt(ctx, query); st != nil {
			return st.QueryRowContext(ctx, args...)
		}
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}

// Commit commits, then prepares the statements the transaction missed.
func (t *cachedTx) Commit() error {
	err := t.Tx.Commit()
	t.warm()
	return err
}

// Rollback rolls back, then prepares the statements the transaction missed.
func (t *cachedTx) Rollback() error {
	err := t.Tx.Rollback()
	t.warm()
	return err
}

func (t *cachedTx) warm() {
	for _, q := range t.missed {
		_, _ = t.d.stmt(context.Background(), q)
	}
	t.missed = nil
}
