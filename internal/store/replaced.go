package store

import (
	"errors"
	"fmt"
	"os"
	"sync"
)

// ErrFileReplaced is the error (under errors.Is) of every write, and of
// Ping, once the store's path no longer names the database file the store
// has open: the file was deleted, or another file was moved or copied onto
// the path.
var ErrFileReplaced = errors.New("the database file was deleted or replaced while the bridge had it open")

// fileGuard remembers which file the store opened and latches the first
// time the path is found to name another file, or none.
type fileGuard struct {
	path   string
	opened os.FileInfo // nil for ":memory:": nothing to watch

	mu     sync.Mutex
	lost   error
	onLost func(error)
}

// watch records the file now at path as the one the store has open. It is
// called right after the first query, which opened it.
func (g *fileGuard) watch(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("store %s: %w", path, err)
	}
	g.path, g.opened = path, fi
	return nil
}

// check returns nil while the path names the file the store opened, and
// otherwise the latched error (ErrFileReplaced, naming the path). A stat
// that fails for another reason (permissions, I/O) says nothing about which
// file the path names and is not taken as a replacement.
func (g *fileGuard) check() error {
	if g == nil || g.opened == nil {
		return nil
	}
	g.mu.Lock()
	if g.lost != nil {
		defer g.mu.Unlock()
		return g.lost
	}
	fi, err := os.Stat(g.path)
	what := ""
	switch {
	case errors.Is(err, os.ErrNotExist):
		what = "deleted"
	case err != nil || os.SameFile(fi, g.opened):
		g.mu.Unlock()
		return nil
	default:
		what = "replaced by another file"
	}
	g.lost = fmt.Errorf("store %s: %w (%s): writes stopped, as they would be lost with the unlinked file. "+
		"Stop the bridge; if a file is meant to be at the path, delete %[1]s-wal and %[1]s-shm first (they belong to the old file, and SQLite would apply them to the new one); "+
		"then start the bridge: it takes up every open ticket from the store it finds, and recognises the notes it already wrote",
		g.path, ErrFileReplaced, what)
	lost, fn := g.lost, g.onLost
	g.mu.Unlock()
	if fn != nil {
		fn(lost)
	}
	return lost
}

// CheckFile returns nil while the store's path names the database file the
// store has open, and otherwise an error (errors.Is ErrFileReplaced) naming
// the path and what happened. Once it has failed the store refuses every
// write with that error for the rest of its life. It costs one stat; the
// store also runs it before each write transaction and every 200 ms in the
// background, and Ping returns its error.
func (s *SQLite) CheckFile() error { return s.guard.check() }

// OnFileLost sets fn to be called once, on the goroutine that noticed it,
// when the store finds its file deleted or replaced (see CheckFile). fn
// must not block: it is typically a log line.
func (s *SQLite) OnFileLost(fn func(error)) {
	if s.guard == nil {
		return
	}
	s.guard.mu.Lock()
	s.guard.onLost = fn
	s.guard.mu.Unlock()
}
