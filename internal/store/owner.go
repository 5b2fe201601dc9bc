package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Holder says which process owns a store, as written into its lock file.
type Holder struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Since   time.Time `json:"since"`
	Command string    `json:"command"` // e.g. "bridge run"
}

func (h Holder) String() string {
	if h.PID == 0 {
		return "a process that has not written its name yet"
	}
	s := fmt.Sprintf("pid %d on host %s since %s", h.PID, h.Host, h.Since.UTC().Format(time.RFC3339))
	if h.Command != "" {
		s += ", " + h.Command
	}
	return s
}

// HeldError is OpenOwner's error when another process owns the store.
type HeldError struct {
	Path   string // the store's database file
	Holder Holder // as the owner wrote it; zero if it could not be read
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("store %s is in use by another bridge process (%s): with state.driver sqlite one process owns the store "+
		"(lock file %s); stop that process first. `bridge status`, `bridge audit` and `bridge sync --dry-run` work beside it. "+
		"Several replicas need a shared store: state.driver: postgres",
		e.Path, e.Holder, LockPath(e.Path))
}

// LockPath returns the lock file of the store at path: path + ".lock",
// beside the database.
func LockPath(path string) string { return path + ".lock" }

// OpenOwner opens the store at dsn as Open does, as its owner: this process
// becomes the store's only writer for as long as the store is open. It first
// takes an exclusive lock (flock) on LockPath(dsn), before SQLite touches the
// file, and writes the Holder into it; it then opens the store and clears
// every lease in it in one write, returning how many it cleared.
//
// Why clearing is safe: a lease is how two processes avoid working on one
// ticket at once, and with the lock no other process can be writing, so every
// lease found belongs to a process that is gone (killed, crashed, its host
// lost); its tickets are taken over at once instead of after bridge.lease.
// The lock is released by Close, and by the kernel when the process dies
// however it dies: a stale lock file holds nothing.
//
// Readers (status, audit, dry runs) use Open and are not blocked. A store
// owned by another process yields a *HeldError naming it (host, pid, since
// when). A ":memory:" store is private: OpenOwner is Open.
func OpenOwner(ctx context.Context, dsn string) (*SQLite, int, error) {
	if dsn == "" || dsn == ":memory:" {
		s, err := Open(ctx, dsn)
		return s, 0, err
	}
	if err := checkFile(dsn); err != nil {
		return nil, 0, err
	}
	lock, err := takeLock(dsn, time.Now())
	if err != nil {
		return nil, 0, err
	}
	s, err := Open(ctx, dsn)
	if err != nil {
		lock.Close()
		return nil, 0, err
	}
	s.lock = lock
	var n int64
	err = s.w.write(ctx, func(ctx context.Context, tx *cachedTx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tickets SET lease_owner = '', lease_until = '' WHERE lease_owner != ''`)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		s.Close()
		return nil, 0, fmt.Errorf("store %s: clearing the leases of processes no longer running: %w", dsn, err)
	}
	return s, int(n), nil
}

// takeLock takes the owner's lock of the store at path and writes the
// Holder into it.
func takeLock(path string, now time.Time) (*os.File, error) {
	lp := LockPath(path)
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store %s: lock file: %w", path, err)
	}
	if err := lockFile(f); err != nil {
		defer f.Close()
		if errors.Is(err, errLocked) {
			return nil, &HeldError{Path: path, Holder: readHolder(f)}
		}
		return nil, fmt.Errorf("store %s: locking %s: %w", path, lp, err)
	}
	host, _ := os.Hostname()
	h := Holder{Host: host, PID: os.Getpid(), Since: now.UTC().Truncate(time.Second), Command: command()}
	b, _ := json.Marshal(h) // strings, an int and a time: cannot fail
	if err := writeHolder(f, append(b, '\n')); err != nil {
		f.Close()
		return nil, fmt.Errorf("store %s: writing %s: %w", path, lp, err)
	}
	return f, nil
}

// command is the program's name and subcommand ("bridge run").
func command() string {
	if len(os.Args) == 0 {
		return ""
	}
	words := []string{filepath.Base(os.Args[0])}
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		words = append(words, os.Args[1])
	}
	return strings.Join(words, " ")
}

func writeHolder(f *os.File, b []byte) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt(b, 0)
	return err
}

// readHolder reads what the lock's owner wrote; a zero Holder if it has not
// written yet or the file cannot be read.
func readHolder(f *os.File) Holder {
	var h Holder
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 4096))
	if err == nil {
		_ = json.Unmarshal(b, &h)
	}
	return h
}

// closeLock releases the owner's lock; nil if the store was not owned.
func (s *SQLite) closeLock() error {
	if s.lock == nil {
		return nil
	}
	return s.lock.Close() // closing the file releases the flock
}
