//go:build unix

package store

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestStoreFilesPrivate: a new store's files (database, WAL, shared memory,
// owner's lock) are created 0600 whatever the umask; the store holds
// requesters' names and justifications. Before, they were 0644 (0666 with a
// umask of 0).
func TestStoreFilesPrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "bridge.db")
	s, _, err := OpenOwner(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	if _, _, err := s.Claim(ctx, "jira", "T-1", "K", "me", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", LockPath(path)} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if m := st.Mode().Perm(); m != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", filepath.Base(p), m)
		}
	}
}
