package store

import (
	"context"
	"database/sql"
	"sync"
	"time"
)

// checkpointEvery is how often the background checkpointer copies the WAL
// back into the database file.
const checkpointEvery = 200 * time.Millisecond

// checkpointer moves WAL checkpoints off the store's connection. By default
// SQLite checkpoints inside the commit that fills the WAL past 1,000 pages:
// that commit then copies the pages and waits for two fsyncs while every other
// store call queues behind the store's single connection, which is most of the
// engine's p99 time per ticket (8.9 ms with, 5.3 ms without, on the
// 10,000-ticket benchmark). Here the store's connection never checkpoints
// (wal_autocheckpoint=0) and a second connection runs a PASSIVE checkpoint
// every checkpointEvery: PASSIVE never blocks the writer, and once it has
// copied everything the writer starts the WAL over, so the file stays small.
// Durability is unchanged: a commit is durable when it is in the WAL.
type checkpointer struct {
	db   *sql.DB
	stop chan struct{}
	done sync.WaitGroup
	once sync.Once
	err  error
	// check is the store's CheckFile: run at every tick, so that a file
	// deleted or replaced under an idle store is noticed within a tick.
	check func() error
}

// startCheckpointer starts the background checkpointer of a file store. If it
// cannot start, the store keeps SQLite's own checkpoints.
func (s *SQLite) startCheckpointer(ctx context.Context, dsn string) {
	db, err := sql.Open("sqlite", connString(dsn, false))
	if err != nil {
		return
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return
	}
	if _, err := s.db.ExecContext(ctx, "PRAGMA wal_autocheckpoint = 0"); err != nil {
		_ = db.Close()
		return
	}
	c := &checkpointer{db: db, stop: make(chan struct{}), check: s.guard.check}
	c.done.Add(1)
	go c.run()
	s.ckpt = c
}

func (c *checkpointer) run() {
	defer c.done.Done()
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if c.check() != nil {
				continue // never touch a file the path no longer names
			}
			// Errors (SQLITE_BUSY from another process's checkpoint, say) are
			// retried at the next tick.
			_, _ = c.db.Exec("PRAGMA wal_checkpoint(PASSIVE)")
		}
	}
}

// close stops the checkpointer and closes its connection; it is idempotent.
func (c *checkpointer) close() error {
	if c == nil {
		return nil
	}
	c.once.Do(func() {
		close(c.stop)
		c.done.Wait()
		c.err = c.db.Close()
	})
	return c.err
}
