package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A second owner of a store is refused with an error naming the first (host,
// pid, since when) and the way to several replicas; it can still read. Once
// the first closes the store, the second takes it.
func TestOwnRefusesASecondOwnerAndNamesIt(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "bridge.db")
	a, _, err := OpenOwner(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	_, _, err = OpenOwner(ctx, path)
	var held *HeldError
	if !errors.As(err, &held) {
		t.Fatalf("a second owner got %v, want a HeldError", err)
	}
	host, _ := os.Hostname()
	if held.Holder.PID != os.Getpid() || held.Holder.Host != host || held.Holder.Since.IsZero() {
		t.Errorf("holder %+v, want this process on %s", held.Holder, host)
	}
	for _, want := range []string{path, fmt.Sprintf("pid %d on host %s", os.Getpid(), host), "state.driver: postgres", "bridge status"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal lacks %q: %v", want, err)
		}
	}
	b, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("a reader cannot open a store that is owned: %v", err)
	}
	defer b.Close()
	if _, err := b.Counts(ctx); err != nil {
		t.Errorf("a reader cannot read a store that is owned: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	c, _, err := OpenOwner(ctx, path)
	if err != nil {
		t.Fatalf("the store was closed by its owner, yet: %v", err)
	}
	c.Close()
}

// The new owner of a store clears the leases left by a process that is gone,
// in one write, so that their tickets are claimed at once instead of when
// the lease expires.
func TestOwnClearsTheLeasesOfProcessesGone(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "bridge.db")
	now := time.Now()
	dead, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, ok, err := dead.Claim(ctx, "servicenow", fmt.Sprint("t", i), "", "bridge/dead", now, now.Add(5*time.Minute)); err != nil || !ok {
			t.Fatal(ok, err)
		}
	}
	if err := dead.Release(ctx, "servicenow", "t2", "bridge/dead"); err != nil {
		t.Fatal(err)
	}
	dead.Close() // as a killed process leaves it: leases held, no lock

	s, n, err := OpenOwner(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n != 2 {
		t.Fatalf("the new owner cleared %d leases, want the 2 still held", n)
	}
	for i := range 3 {
		if _, ok, err := s.Claim(ctx, "servicenow", fmt.Sprint("t", i), "", "bridge/new", now, now.Add(5*time.Minute)); err != nil || !ok {
			t.Errorf("t%d not claimed at once by the new owner (ok %v, %v)", i, ok, err)
		}
	}
}

// A store file deleted, or replaced by another, under an open store is
// noticed: every write is refused, Ping fails naming the path, the callback
// runs once, and no transaction is committed any more.
func TestWritesStopWhenTheFileIsDeletedOrReplaced(t *testing.T) {
	for _, tc := range []struct {
		name, what string
		do         func(t *testing.T, path string)
	}{
		{"deleted", "deleted", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{"replaced", "replaced by another file", func(t *testing.T, path string) {
			other := filepath.Join(filepath.Dir(path), "other.db")
			o, err := Open(context.Background(), other)
			if err != nil {
				t.Fatal(err)
			}
			o.Close()
			if err := os.Rename(other, path); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "bridge.db")
			s, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			lost := make(chan error, 2)
			s.OnFileLost(func(err error) { lost <- err })
			now := time.Now()
			if _, ok, err := s.Claim(ctx, "servicenow", "before", "", "bridge/1", now, now.Add(time.Minute)); err != nil || !ok {
				t.Fatal(ok, err)
			}
			tc.do(t, path)

			// Noticed with no write or probe, by the background check.
			var got error
			select {
			case got = <-lost:
			case <-time.After(time.Minute): // a hang guard only
				t.Fatal("the lost file was not noticed")
			}
			if !errors.Is(got, ErrFileReplaced) || !strings.Contains(got.Error(), path) || !strings.Contains(got.Error(), tc.what) {
				t.Errorf("callback error %v", got)
			}
			commits := s.w.commits.Load()
			if _, _, err := s.Claim(ctx, "servicenow", "after", "", "bridge/1", now, now.Add(time.Minute)); !errors.Is(err, ErrFileReplaced) {
				t.Errorf("a claim after the file was %s: %v", tc.what, err)
			}
			if err := s.Ping(ctx); !errors.Is(err, ErrFileReplaced) || !strings.Contains(err.Error(), path) {
				t.Errorf("Ping: %v", err)
			}
			select {
			case err := <-lost:
				t.Errorf("callback ran twice: %v", err)
			default:
			}
			if n := s.w.commits.Load(); n != commits {
				t.Errorf("%d transactions committed after the file was %s", n-commits, tc.what)
			}
		})
	}
}
