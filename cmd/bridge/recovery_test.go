package main_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
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
		if n := len(e.sn.WorkNotes(id)); r.State != "3" || n != 1 {
			t.Errorf("RITM %s after the first pass of the restarted daemon: state %s, %d notes", r.Number, r.State, n)
		}
	}
	if t.Failed() {
		t.Fatalf("%d tickets were leased by the killed daemon; they were not taken over at once", len(inFlight))
	}
	t.Logf("%d tickets in flight at the kill (default lease %s): the last of them closed %s after the restart; the whole backlog %s",
		len(inFlight), isync.DefaultLease, tookInFlight.Round(time.Millisecond), tookAll.Round(time.Millisecond))
}

// While a daemon owns the store, a second `bridge run`, `bridge sync` or
// `bridge replay` on it is refused with a message naming the daemon (host,
// pid) and the driver for several replicas; the readers (status, audit,
// sync --dry-run, validate --online) work beside it.
func TestSecondOwnerIsRefusedReadersWork(t *testing.T) {
	e := newEnv(t)
	r := e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "python"}})
	d := startDaemon(t, e, "")
	waitFor(t, hangGuard, func() bool { return strings.Contains(d.stderr.String(), "pass finished") })
	env := []string{"SN_PASSWORD=" + snPass, "SN_HOOK=" + hookSecret}
	host, _ := os.Hostname()
	holder := fmt.Sprintf("pid %d on host %s", d.cmd.Process.Pid, host)
	runYAML := filepath.Join(filepath.Dir(e.config), "run.yaml")
	for _, args := range [][]string{
		{"sync", "--config", e.config},
		{"run", "--config", runYAML},
		{"replay", r.Number, "--config", e.config},
	} {
		_, stderr, code := run(t, env, args...)
		if code == 0 {
			t.Errorf("bridge %s ran beside the daemon", args[0])
			continue
		}
		for _, want := range []string{"in use by another bridge process", holder, "bridge run", "state.driver: postgres"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("bridge %s refused without %q:\n%s", args[0], want, stderr)
			}
		}
	}
	if _, stderr, _ := run(t, env, "replay", r.Number, "--config", e.config); !strings.Contains(stderr, "Stop the daemon") {
		t.Errorf("replay does not say what to do instead:\n%s", stderr)
	}
	for _, args := range [][]string{
		{"status", "--config", e.config},
		{"status", r.Number, "--config", e.config},
		{"audit", "--config", e.config},
		{"sync", "--dry-run", "--config", e.config},
		{"validate", "--online", "--config", e.config},
	} {
		if stdout, stderr, code := run(t, env, args...); code != 0 {
			t.Errorf("bridge %s beside the daemon: exit %d\n%s\n%s", strings.Join(args, " "), code, stdout, stderr)
		}
	}
	if n := len(e.sn.WorkNotes(r.SysID)); n != 1 {
		t.Errorf("%d notes on %s", n, r.Number)
	}
}

// The store file deleted or replaced under a running daemon is noticed: it
// logs at error, /readyz fails naming the path, it writes nothing more (a
// ticket delivered by webhook is neither provisioned nor noted), and a
// second process started on the path is still refused.
func TestRunStoreFileDeletedOrReplaced(t *testing.T) {
	for _, replace := range []bool{false, true} {
		name := map[bool]string{false: "deleted", true: "replaced"}[replace]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			dbPath := filepath.Join(filepath.Dir(e.config), "bridge.db")
			d := startDaemon(t, e, "")
			waitFor(t, hangGuard, func() bool { return strings.Contains(d.stderr.String(), "pass finished") })
			if replace {
				// A restore from a backup with mv: another store onto the path.
				other := filepath.Join(filepath.Dir(dbPath), "backup.db")
				st, err := store.Open(context.Background(), other)
				if err != nil {
					t.Fatal(err)
				}
				st.Close()
				if err := os.Rename(other, dbPath); err != nil {
					t.Fatal(err)
				}
			} else if err := os.Remove(dbPath); err != nil {
				t.Fatal(err)
			}

			waitFor(t, hangGuard, func() bool { return strings.Contains(d.stderr.String(), `"level":"error"`) })
			if !strings.Contains(d.stderr.String(), "state store file deleted or replaced") {
				t.Errorf("the error logged does not say what happened:\n%s", d.stderr.String())
			}
			waitFor(t, hangGuard, func() bool { c, _ := d.get(t, "/readyz"); return c == http.StatusServiceUnavailable })
			if _, body := d.get(t, "/readyz"); !strings.Contains(body, dbPath) || !strings.Contains(body, name) {
				t.Errorf("/readyz does not name the store and what happened: %s", body)
			}

			r := e.sn.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "python"}})
			req, _ := signedRITMHook(r.SysID)
			// The delivery cannot be recorded (its dedupe key goes to the
			// store): 503, and the sender retries once the bridge is fixed.
			if code := post(t, d.base+"/webhooks/servicenow", req); code != http.StatusServiceUnavailable {
				t.Fatalf("signed delivery answered %d with the store gone, want 503 (retry later)", code)
			}
			if got, _ := e.sn.RITM(r.SysID); got.State != "1" || len(e.sn.WorkNotes(r.SysID)) != 0 || e.cg.CountCalls("CreateRepo") != 0 {
				t.Errorf("with its store gone the daemon acted: state %s, %d notes, %d CreateRepo", got.State, len(e.sn.WorkNotes(r.SysID)), e.cg.CountCalls("CreateRepo"))
			}
			if _, stderr, code := run(t, []string{"SN_PASSWORD=" + snPass}, "sync", "--config", e.config); code == 0 || !strings.Contains(stderr, "in use by another bridge process") {
				t.Errorf("a second process on the path: exit %d\n%s", code, stderr)
			}
		})
	}
}
