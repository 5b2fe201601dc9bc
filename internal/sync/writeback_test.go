package sync_test

import (
	"context"
	"errors"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/chainguard-dev/image-request-bridge/connectors/jira"
	jfake "github.com/chainguard-dev/image-request-bridge/internal/fake/jira"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	"github.com/chainguard-dev/image-request-bridge/internal/store"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// jiraWithDone builds the real Jira source closing issues with the named
// transition.
func jiraWithDone(t *testing.T, h *jiraHarness, done string) *jira.Source {
	t.Helper()
	o := jira.Options{URL: h.jf.URL(), Deployment: h.jf.Deployment(), JQL: `project = IMG AND status = Approved ORDER BY key`,
		ImageField: "Image name", JustificationField: "Justification", DoneTransition: done,
		Timeout: 5 * time.Second, RetryWaitMax: 50 * time.Millisecond}
	if h.jf.Deployment() == jfake.Cloud {
		o.Email, o.APIToken = jfake.DefaultEmail, secret.New(jfake.DefaultAPIToken)
	} else {
		o.APIToken = secret.New(jfake.DefaultPAT)
	}
	s, err := jira.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// record reads a ticket's record from the store.
func (h *harness) record(source, id string) isync.Record {
	h.t.Helper()
	rec, err := h.store.Get(context.Background(), source, id)
	if err != nil {
		h.t.Fatalf("record %s/%s: %v", source, id, err)
	}
	return rec
}

// auditCount counts the audit rows of ticket id with decision d.
func (h *harness) auditCount(id string, d isync.Decision) int {
	h.t.Helper()
	n := 0
	if err := h.store.Audit(context.Background(), store.AuditFilter{TicketID: id}, func(a isync.AuditEntry) error {
		if a.Decision == d {
			n++
		}
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return n
}

func (h *harness) blockedGauge() int {
	h.t.Helper()
	n, err := h.store.CountBlocked(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// checkBackoffGrows runs passes, each when the ticket is next due, and
// checks that the delay the engine chose doubles from one failed write-back
// to the next, up to BackoffMax, then stays there. pass runs one pass.
func checkBackoffGrows(t *testing.T, h *harness, source, id string, max time.Duration, pass func()) {
	t.Helper()
	var prev time.Duration
	for i := 0; i < 6; i++ {
		rec := h.record(source, id)
		d := rec.NextAttemptAt.Sub(h.clock.Now())
		switch {
		case d <= 0:
			t.Fatalf("failure %d: next attempt at %s, not after now (%s)", i+1, rec.NextAttemptAt, h.clock.Now())
		case prev == max && d != max:
			t.Fatalf("failure %d: delay %s after reaching the cap %s", i+1, d, max)
		case prev != 0 && prev < max && d != min(2*prev, max):
			t.Fatalf("failure %d: delay %s after %s; want it doubled (cap %s)", i+1, d, prev, max)
		}
		prev = d
		// Not due yet: a pass leaves the ticket alone.
		h.clock.Add(d - time.Second)
		pass()
		if again := h.record(source, id); again.Attempts != rec.Attempts || !again.NextAttemptAt.Equal(rec.NextAttemptAt) {
			t.Fatalf("failure %d: the ticket was acted on before its backoff ended", i+1)
		}
		h.clock.Add(time.Second)
		pass()
	}
	if prev != max {
		t.Fatalf("delay after 6 failed write-backs is %s, want the cap %s", prev, max)
	}
}

// A Jira write-back that can never succeed as configured (no transition of
// the configured name) blocks the ticket on the source's cause: the image is
// provisioned once and never again, the ticket counts in the blocked gauge,
// the cause has exactly one audit row however many attempts fail, the
// attempts back off exponentially to BackoffMax, and once the configuration
// is fixed the ticket closes and the cause is cleared.
func TestJiraBlockedWriteBack(t *testing.T) {
	t.Parallel()
	h := newJiraHarness(t, jfake.Cloud, harnessOpts{})
	broken := jiraWithDone(t, h, "Deliver")
	is := h.issue("python", nil)
	pass := func() { h.pass(h.engine(broken)) }

	pass()
	rec := h.record(jira.Name, is.ID)
	if rec.State != isync.StateProvisioned || rec.BlockedCause != "jira:transition_missing" || !strings.Contains(rec.LastError, `"Deliver"`) {
		t.Fatalf("after the refused write-back: state %s, cause %q, last error %q; want provisioned, jira:transition, naming the transition",
			rec.State, rec.BlockedCause, rec.LastError)
	}
	if n := h.blockedGauge(); n != 1 {
		t.Fatalf("blocked gauge = %d, want 1", n)
	}
	checkBackoffGrows(t, h.harness, jira.Name, is.ID, 10*time.Minute, pass)

	if n := h.auditCount(is.ID, isync.DecisionBlocked); n != 1 {
		t.Errorf("%d blocked audit rows for one cause, want 1", n)
	}
	if n := h.cg.CountCalls("CreateRepo"); n != 1 {
		t.Errorf("CreateRepo called %d times; a blocked write-back must never provision again", n)
	}
	if s := h.status(is.Key); s != "Approved" {
		t.Fatalf("status %q while blocked, want Approved", s)
	}

	// The administrator fixes the transition name.
	h.clock.Add(time.Hour)
	h.pass(h.engine(h.jsrc))
	if s := h.status(is.Key); s != "Done" {
		t.Fatalf("status after the fix = %q, want Done", s)
	}
	rec = h.record(jira.Name, is.ID)
	if rec.State != isync.StateDone || rec.BlockedCause != "" || rec.LastError != "" {
		t.Fatalf("after the fix: state %s, cause %q, last error %q", rec.State, rec.BlockedCause, rec.LastError)
	}
	if n := h.blockedGauge(); n != 0 {
		t.Errorf("blocked gauge = %d after the fix, want 0", n)
	}
	if n := h.cg.CountCalls("CreateRepo"); n != 1 {
		t.Errorf("CreateRepo called %d times in all, want 1", n)
	}
}

// failingReports wraps a source so that its write-backs fail with err while
// it is set.
type failingReports struct {
	isync.Source
	mu  stdsync.Mutex
	err error
}

func (f *failingReports) set(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *failingReports) Report(ctx context.Context, t isync.Ticket, r isync.Report) error {
	f.mu.Lock()
	err := f.err
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.Source.Report(ctx, t, r)
}

// A write-back that keeps failing with a retryable error backs off
// exponentially to BackoffMax (it used to retry every BackoffMin forever),
// is not counted as blocked, never provisions again, and lands once the
// upstream answers.
func TestRetryableWriteBackBacksOff(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	r := h.ritm("python", nil)
	src := &failingReports{Source: h.src}
	src.set(isync.Retryable(errors.New("503 Service Unavailable")))
	pass := func() {
		h.t.Helper()
		e := isync.New(h.store, h.prov, []isync.Source{src}, isync.Options{Instance: "test-bridge", Version: "test",
			BackoffMin: time.Minute, BackoffMax: 10 * time.Minute, Now: h.clock.Now, Logger: testLogger(t)})
		if _, err := e.Pass(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	pass()
	if rec := h.record("servicenow", r.SysID); rec.State != isync.StateProvisioned || rec.BlockedCause != "" || !strings.Contains(rec.LastError, "503") {
		t.Fatalf("after a failed write-back: state %s, cause %q, last error %q", rec.State, rec.BlockedCause, rec.LastError)
	}
	checkBackoffGrows(t, h, "servicenow", r.SysID, 10*time.Minute, pass)
	if n := h.blockedGauge(); n != 0 {
		t.Errorf("blocked gauge = %d for a retryable failure, want 0", n)
	}
	src.set(nil)
	h.clock.Add(time.Hour)
	pass()
	if s := h.state(r.SysID); s != "3" {
		t.Fatalf("state %q once the upstream answers, want 3", s)
	}
	if n := h.cg.CountCalls("CreateRepo"); n != 1 {
		t.Errorf("CreateRepo called %d times, want 1", n)
	}
	if rec := h.record("servicenow", r.SysID); rec.LastError != "" || rec.State != isync.StateDone {
		t.Errorf("record %+v", rec)
	}
}

// A blocked write-back whose cause changes gets one audit row per cause, and
// the syncing note (close_on: ready) is handled as the result note is.
func TestBlockedSyncingNoteOneRowPerCause(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{engineOpts: closeOnReady})
	r := h.ritm("python", nil)
	src := &failingReports{Source: h.src}
	pass := func() {
		o := isync.Options{Instance: "test-bridge", Version: "test", BackoffMin: time.Minute, BackoffMax: 10 * time.Minute,
			Now: h.clock.Now, Logger: testLogger(t)}
		closeOnReady(&o)
		if _, err := isync.New(h.store, h.prov, []isync.Source{src}, o).Pass(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.clock.Add(time.Hour)
	}
	for _, cause := range []string{"servicenow:write_acl", "servicenow:write_acl", "servicenow:work_notes", "servicenow:work_notes", "servicenow:write_acl"} {
		src.set(isync.Blocked(cause, "the integration user may not write this", nil))
		pass()
		if rec := h.record("servicenow", r.SysID); rec.State != isync.StateProvisioned || rec.BlockedCause != cause {
			t.Fatalf("state %s, cause %q; want provisioned, %s", rec.State, rec.BlockedCause, cause)
		}
	}
	if n := h.auditCount(r.SysID, isync.DecisionBlocked); n != 3 {
		t.Errorf("%d blocked audit rows for 3 changes of cause, want 3", n)
	}
	src.set(nil)
	pass()
	if rec := h.record("servicenow", r.SysID); rec.State != isync.StateSyncing || rec.BlockedCause != "" {
		t.Fatalf("after the fix: state %s, cause %q; want syncing, none", rec.State, rec.BlockedCause)
	}
	if n := h.cg.CountCalls("CreateRepo"); n != 1 {
		t.Errorf("CreateRepo called %d times, want 1", n)
	}
}

// A ServiceNow write ACL that silently drops the state lets the result work
// note land while the RITM stays open: the ticket blocks on
// servicenow:write_acl:state, and once the ACL is fixed, a new bridge process
// (nothing kept in memory) closes the RITM without a second note and without
// provisioning again.
func TestServiceNowDroppedStateClosesWithOneNote(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	r := h.ritm("python", nil)
	h.sn.DenyFieldWrite("state")

	h.pass(h.engine())
	rec := h.record("servicenow", r.SysID)
	if rec.State != isync.StateProvisioned || rec.BlockedCause != "servicenow:write_acl:state" {
		t.Fatalf("after the dropped state: state %s, cause %q; want provisioned, servicenow:write_acl:state", rec.State, rec.BlockedCause)
	}
	if n := h.blockedGauge(); n != 1 {
		t.Fatalf("blocked gauge = %d, want 1", n)
	}
	if n := len(h.sn.Journal(r.SysID)); n != 1 {
		t.Fatalf("%d work notes after the refused write-back, want the result note once", n)
	}

	h.sn.AllowFieldWrite("state")
	h.clock.Add(time.Hour)
	h.pass(h.engine()) // a new engine: a restarted bridge
	if cur, _ := h.sn.RITM(r.SysID); cur.State != "3" {
		t.Fatalf("RITM state %s after the fix, want 3 (closed complete)", cur.State)
	}
	if n := len(h.sn.Journal(r.SysID)); n != 1 {
		t.Errorf("%d work notes after the fix, want the result note once", n)
	}
	if rec := h.record("servicenow", r.SysID); rec.State != isync.StateDone || rec.BlockedCause != "" {
		t.Errorf("after the fix: state %s, cause %q; want done, no cause", rec.State, rec.BlockedCause)
	}
	if n := h.cg.CountCalls("CreateRepo"); n != 1 {
		t.Errorf("CreateRepo called %d times, want 1", n)
	}
}

// A single transient failure of a write-back (a 503 before anything was
// applied, a reset after the PATCH landed) is tried again in place, after a
// short wait on the engine's clock: the ticket closes in the same pass with
// one note, and the ticket backs off only when every in-place try fails.
func TestWriteBackBlipIsRetriedInPlace(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		fault snfake.Fault
		waits int // in place: the source itself finds a landed write
	}{
		"503 before applying":  {snfake.Fault{Method: "PATCH", Status: 503}, 1},
		"reset after applying": {snfake.Fault{Method: "PATCH", Reset: true, ApplyFirst: true}, 0},
		"two 502s":             {snfake.Fault{Method: "PATCH", Status: 502, Times: 2}, 2},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOpts{})
			r := h.ritm("python", nil)
			h.sn.InjectFault(c.fault)
			h.pass(h.engine())
			if cur, _ := h.sn.RITM(r.SysID); cur.State != "3" {
				t.Fatalf("RITM state %s after one pass, want 3: the blip was not retried in place", cur.State)
			}
			if n := len(h.sn.Journal(r.SysID)); n != 1 {
				t.Errorf("%d work notes, want 1", n)
			}
			if rec := h.record("servicenow", r.SysID); rec.State != isync.StateDone || rec.LastError != "" {
				t.Errorf("record: state %s, last error %q", rec.State, rec.LastError)
			}
			for _, d := range h.clock.Slept() {
				if d <= 0 || d > 2*time.Second {
					t.Errorf("waited %s in place, want a short wait", d)
				}
			}
			if n := len(h.clock.Slept()); n != c.waits {
				t.Errorf("%d waits in place, want %d", n, c.waits)
			}
		})
	}
	t.Run("every try fails", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOpts{})
		r := h.ritm("python", nil)
		h.sn.InjectFault(snfake.Fault{Method: "PATCH", Status: 503, Times: 100})
		h.pass(h.engine())
		rec := h.record("servicenow", r.SysID)
		if rec.State != isync.StateProvisioned || rec.NextAttemptAt.IsZero() || rec.BlockedCause != "" {
			t.Fatalf("after every try failed: state %s, next attempt %s, cause %q; want provisioned, backing off, not blocked", rec.State, rec.NextAttemptAt, rec.BlockedCause)
		}
		if n := len(h.clock.Slept()); n != 2 {
			t.Errorf("%d waits in place, want 2 (three tries)", n)
		}
	})
}
