package main_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/store"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// defaults leaves the env's config as it is: the default lease (5m),
// schedule (1m), concurrency and backoff.
func defaults(cfg string) string { return cfg }

// leased returns the tickets of the store at path that hold a lease, read as
// `bridge status` reads it.
func leased(t *testing.T, path string) []isync.Record {
	t.Helper()
	st, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out []isync.Record
	if err := st.List(context.Background(), func(r isync.Record) error {
		if r.LeaseOwner != "" {
			out = append(out, r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// A daemon SIGKILLed in the middle of a pass, at the default lease (5m), is
// restarted: the restarted process owns the store (its lock), so it knows
// the leases it finds belong to a dead process, clears them at once, and its
// first pass finishes every ticket that was in flight. Without that, the
// first pass skips the leased tickets and they wait for the lease to expire.
// The time from the restart to the last ticket closed is logged, not
// asserted.
func TestRunKilledMidPassIsTakenOverAtRestart(t *testing.T) {
	e := newEnv(t)
	dbPath := filepath.Join(filepath.Dir(e.config), "bridge.db")
	var ids []string
	for i := 0; i < 40; i++ {
		ids = append(ids, e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "python"}}).SysID)
	}
	// Slow write-backs keep tickets leased when the kill lands.
	e.sn.InjectFault(snfake.Fault{Method: "PATCH", Delay: 100 * time.Millisecond, Times: 1 << 20})
	d := startDaemonWith(t, e, defaults)
	waitFor(t, hangGuard, func() bool { return e.cg.CountCalls("CreateRepo") >= 5 })
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	d.exited <- <-d.exited // wait; leave it for the cleanup
	e.sn.ClearFaults()
	inFlight := leased(t, dbPath)
	if len(inFlight) == 0 {
		t.Fatal("no ticket was leased when the daemon was killed: nothing to take over")
	}

	restart := time.Now()
	d = startDaemonWith(t, e, defaults)
	closedAll := func(ids []string) bool {
		for _, id := range ids {
			if r, _ := e.sn.RITM(id); r.State != "3" {
				return false
			}
		}
		return true
	}
	var inFlightIDs []string
	for _, r := range inFlight {
		inFlightIDs = append(inFlightIDs, r.TicketID)
	}
	var tookInFlight, tookAll time.Duration
	waitFor(t, hangGuard, func() bool {
		if tookInFlight == 0 && closedAll(inFlightIDs) {
			tookInFlight = time.Since(restart)
		}
		if tookAll == 0 && closedAll(ids) {
			tookAll = time.Since(restart)
		}
		return strings.Contains(d.stderr.String(), "pass finished")
	})
	// The restarted daemon said what it took over.
	if want := fmt.Sprintf(`"leases_cleared":%d`, len(inFlight)); !strings.Contains(d.stderr.String(), want) {
		t.Errorf("the restarted daemon did not log %s", want)
	}
	// The next scheduled pass is a minute away: the first one did it all.
	for _, id := range ids {
		r, _ := e.sn.RITM(id)
		if n := len(e.sn.Journal(id)); r.State != "3" || n != 1 {
			t.Errorf("RITM %s after the first pass of the restarted daemon: state %s, %d notes", r.Number, r.State, n)
		}
	}
	if t.Failed() {
		t.Fatalf("%d tickets were leased by the killed daemon; they were not taken over at once", len(inFlight))
	}
	t.Logf("%d tickets in flight at the kill (default lease %s): the last of them closed %s after the restart; the whole backlog %s",
		len(inFlight), isync.DefaultLease, tookInFlight.Round(time.Millisecond), tookAll.Round(time.Millisecond))
}
