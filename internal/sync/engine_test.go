package sync_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/chainguard-dev/image-request-bridge/internal/chainguard"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/store"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
	"google.golang.org/grpc/codes"
)

func TestServiceNowOutcomes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	h.cg.AddOrgRepo("node")

	valid := h.ritm("python:latest-dev", nil)
	present := h.ritm("node:20", nil)
	unknown := h.ritm("pythn", nil)
	invalid := h.ritm("docker.io/library/python:3.12", nil)
	notApproved := h.ritm("python", func(r *snfake.RITM) { r.Approval = "requested" })
	otherItem := h.ritm("python", func(r *snfake.RITM) { r.CatItem = otherCat })

	e := h.engine()
	h.pass(e)

	// Approved valid image: one repo created, closed complete, one note naming
	// the pull reference and the repo id.
	if got := h.state(valid.SysID); got != "3" {
		t.Errorf("valid: state = %q, want 3", got)
	}
	var pyRepo string
	for _, r := range h.cg.OrgRepos() {
		if r.GetName() == "python" {
			pyRepo = r.GetId()
		}
	}
	if pyRepo == "" {
		t.Fatalf("valid: no python repo in the org; repos: %v", h.cg.OrgRepos())
	}
	notes := h.notes(valid.SysID)
	if len(notes) != 1 {
		t.Fatalf("valid: %d notes, want 1: %q", len(notes), notes)
	}
	for _, want := range []string{"cgr.dev/" + orgName + "/python:latest-dev", pyRepo, valid.Number, "[image-request-bridge]"} {
		if !strings.Contains(notes[0], want) {
			t.Errorf("valid: note lacks %q:\n%s", want, notes[0])
		}
	}
	if r, _ := h.sn.RITM(valid.SysID); !strings.Contains(r.CloseNotes, "python:latest-dev") {
		t.Errorf("valid: close_notes = %q", r.CloseNotes)
	}

	// Already present: no second repo, closed complete, one note.
	n := 0
	for _, r := range h.cg.OrgRepos() {
		if r.GetName() == "node" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("already present: %d node repos, want 1", n)
	}
	if got := h.state(present.SysID); got != "3" {
		t.Errorf("already present: state = %q, want 3", got)
	}
	if notes := h.notes(present.SysID); len(notes) != 1 || !strings.Contains(notes[0], "Already present") {
		t.Errorf("already present: notes = %q", notes)
	}

	// Unknown image: closed incomplete, one note suggesting the closest names.
	if got := h.state(unknown.SysID); got != "4" {
		t.Errorf("unknown: state = %q, want 4", got)
	}
	if notes := h.notes(unknown.SysID); len(notes) != 1 || !strings.Contains(notes[0], "python") || !strings.Contains(strings.ToLower(notes[0]), "did you mean") {
		t.Errorf("unknown: notes = %q", notes)
	}

	// Invalid reference: closed incomplete with the reason.
	if got := h.state(invalid.SysID); got != "4" {
		t.Errorf("invalid: state = %q, want 4", got)
	}
	if notes := h.notes(invalid.SysID); len(notes) != 1 || !strings.Contains(notes[0], "Reason: ") || !strings.Contains(notes[0], "docker.io") {
		t.Errorf("invalid: notes = %q", notes)
	}

	// Not approved, or another catalog item: not touched at all.
	for name, r := range map[string]snfake.RITM{"not approved": notApproved, "other catalog item": otherItem} {
		if got := h.requestsFor(r.SysID); got != 0 {
			t.Errorf("%s: %d requests named it, want 0", name, got)
		}
		if cur, _ := h.sn.RITM(r.SysID); cur.State != "1" || cur.SysModCount != r.SysModCount {
			t.Errorf("%s: changed: state %q mod %d", name, cur.State, cur.SysModCount)
		}
	}

	// Only images in the catalog reached CreateRepo, and only python was created.
	if got := h.cg.CountCalls("CreateRepo"); got != 2 {
		t.Errorf("CreateRepo calls = %d, want 2 (python, node)", got)
	}
	if got := len(h.cg.OrgRepos()); got != 2 {
		t.Errorf("org repos = %d, want 2 (node, python)", got)
	}

	// A second pass makes no write anywhere.
	snW, cgW := h.writes()
	h.pass(h.engine())
	snW2, cgW2 := h.writes()
	if snW2 != snW || cgW2 != cgW {
		t.Errorf("second pass wrote: servicenow %d→%d, chainguard %d→%d", snW, snW2, cgW, cgW2)
	}

	// Every decision left an audit row.
	var decisions []string
	if err := h.store.Audit(context.Background(), store.AuditFilter{}, func(a isync.AuditEntry) error {
		decisions = append(decisions, a.Key+":"+string(a.Decision))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{valid.Number + ":provisioned", valid.Number + ":reported", present.Number + ":already_present", unknown.Number + ":rejected", invalid.Number + ":rejected"} {
		if !contains(decisions, want) {
			t.Errorf("audit lacks %s; have %v", want, decisions)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// 250 approved RITMs over pages of 20, while the bridge closes them as it pages:
// each is processed exactly once, and a second pass writes nothing.
func TestServiceNowPagingBacklog(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{pageSize: 20, concurrency: 8})
	images := []string{"python", "node:20", "go", "nginx:latest", "redis", "jdk", "curl:latest-dev"}
	var ids []string
	for i := 0; i < 250; i++ {
		ids = append(ids, h.ritm(images[i%len(images)], nil).SysID)
	}
	// Noise that must stay untouched, interleaved in sys_id order.
	for i := 0; i < 30; i++ {
		h.ritm("python", func(r *snfake.RITM) { r.Approval = "requested" })
	}
	st := h.pass(h.engine())
	if st.Listed != 250 {
		t.Errorf("listed %d, want 250", st.Listed)
	}
	for _, id := range ids {
		if p := h.patches(id); p != 1 {
			t.Fatalf("RITM %s: %d PATCHes, want 1", id, p)
		}
		if notes := h.notes(id); len(notes) != 1 {
			t.Fatalf("RITM %s: %d notes, want 1", id, len(notes))
		}
		if s := h.state(id); s != "3" {
			t.Fatalf("RITM %s: state %q, want 3", id, s)
		}
	}
	if got := h.cg.CountCalls("CreateRepo"); got != 250 {
		t.Errorf("CreateRepo calls = %d, want 250 (one per ticket)", got)
	}
	if got := len(h.cg.OrgRepos()); got != len(images) {
		t.Errorf("org repos = %d, want %d", got, len(images))
	}
	snW, cgW := h.writes()
	h.pass(h.engine())
	if a, b := h.writes(); a != snW || b != cgW {
		t.Errorf("second pass wrote: servicenow %d→%d, chainguard %d→%d", snW, a, cgW, b)
	}
}

// PERMISSION_DENIED keeps the RITM open with one note; later passes add none;
// once the role is fixed the ticket completes with its result note.
func TestServiceNowPermissionDeniedNotesOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	h.cg.DenyCapability("CreateRepo", true)
	r := h.ritm("python:latest-dev", nil)
	e := h.engine()
	h.pass(e)
	if s := h.state(r.SysID); s != "1" {
		t.Fatalf("state = %q, want 1 (open)", s)
	}
	notes := h.notes(r.SysID)
	if len(notes) != 1 || !strings.Contains(notes[0], "Blocked") || !strings.Contains(notes[0], "chainguard:permission_denied") {
		t.Fatalf("notes = %q", notes)
	}
	// Later passes, before and after the backoff, add nothing.
	h.pass(e)
	for i := 0; i < 3; i++ {
		h.clock.Add(time.Hour)
		h.pass(h.engine())
	}
	if got := len(h.notes(r.SysID)); got != 1 {
		t.Fatalf("after more passes: %d notes, want 1", got)
	}
	if got := h.cg.CountCalls("CreateRepo"); got < 2 {
		t.Errorf("CreateRepo retried %d times; a blocked ticket must be retried after backoff", got)
	}
	// The admin fixes the role: the ticket completes with exactly one result note.
	h.cg.DenyCapability("CreateRepo", false)
	h.clock.Add(time.Hour)
	h.pass(h.engine())
	if s := h.state(r.SysID); s != "3" {
		t.Fatalf("after fix: state = %q, want 3", s)
	}
	if notes := h.notes(r.SysID); len(notes) != 2 || !strings.Contains(notes[1], "Provisioned") {
		t.Fatalf("after fix: notes = %q", notes)
	}
}

// crashStore stops the engine right after it persisted a given state, as a
// kill -9 between two steps would.
type crashStore struct {
	isync.Store
	after  isync.State
	cancel context.CancelFunc
	once   stdsync.Once
	hit    bool
}

var errCrash = errors.New("simulated crash")

// ClaimStart can persist the first state too (a new ticket claimed and
// marked provisioning in one write).
func (c *crashStore) ClaimStart(ctx context.Context, source, ticketID, key, owner string, now, until time.Time, start isync.Record) (isync.Record, bool, error) {
	rec, ok, err := c.Store.ClaimStart(ctx, source, ticketID, key, owner, now, until, start)
	if err != nil || !ok || rec.State != c.after {
		return rec, ok, err
	}
	if err := c.crash(); err != nil {
		return isync.Record{}, false, err
	}
	return rec, ok, nil
}

func (c *crashStore) Save(ctx context.Context, rec *isync.Record, audit ...isync.AuditEntry) error {
	if err := c.Store.Save(ctx, rec, audit...); err != nil {
		return err
	}
	if rec.State == c.after {
		return c.crash()
	}
	return nil
}

// crash stops the engine the first time it is called.
func (c *crashStore) crash() error {
	crashed := false
	c.once.Do(func() { crashed = true; c.hit = true; c.cancel() })
	if crashed {
		return errCrash
	}
	return nil
}

func TestServiceNowCrashRecovery(t *testing.T) {
	t.Parallel()
	for _, after := range []isync.State{isync.StateProvisioning, isync.StateProvisioned} {
		t.Run("after "+string(after), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOpts{})
			r := h.ritm("python:latest-dev", nil)
			ctx, cancel := context.WithCancel(context.Background())
			cs := &crashStore{Store: h.store, after: after, cancel: cancel}
			e := isync.New(cs, h.prov, []isync.Source{h.src}, isync.Options{Instance: "test-bridge", Now: h.clock.Now})
			_, _ = e.Pass(ctx)
			if !cs.hit {
				t.Fatal("the simulated crash never happened")
			}
			if n := len(h.notes(r.SysID)); n != 0 {
				t.Fatalf("crashed engine wrote %d notes", n)
			}
			creates := h.cg.CountCalls("CreateRepo")

			// Restart: a new engine, a new store handle on the same file, once
			// the crashed process's lease has run out (a crash in the claim
			// itself never released it).
			h.clock.Add(time.Hour)
			h.openStore()
			h.pass(h.engine())
			if got := h.state(r.SysID); got != "3" {
				t.Fatalf("state = %q, want 3", got)
			}
			if notes := h.notes(r.SysID); len(notes) != 1 || !strings.Contains(notes[0], "Provisioned") {
				t.Fatalf("notes = %q, want one result note", notes)
			}
			switch after {
			case isync.StateProvisioned:
				if got := h.cg.CountCalls("CreateRepo"); got != creates {
					t.Errorf("CreateRepo called again after restart: %d → %d", creates, got)
				}
			case isync.StateProvisioning:
				// The crash hid whether CreateRepo ran; the retry is safe
				// (PreventExisting) and the org still has one python repo.
				if got := len(h.cg.OrgRepos()); got != 1 {
					t.Errorf("org repos = %d, want 1", got)
				}
			}
		})
	}
}

// The PATCH lands but its answer is lost: the source re-reads instead of
// resending, so the RITM gets exactly one note.
func TestServiceNowAmbiguousWriteBack(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]snfake.Fault{
		"reset after apply": {Method: "PATCH", Reset: true, ApplyFirst: true},
		"502 after apply":   {Method: "PATCH", Status: 502, ApplyFirst: true},
		"timeout":           {Method: "PATCH", Delay: 7 * time.Second, ApplyFirst: true},
		"503 not applied":   {Method: "PATCH", Status: 503},
		"reset not applied": {Method: "PATCH", Reset: true},
		"html not applied":  {Method: "PATCH", HTML: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOpts{})
			r := h.ritm("python", nil)
			h.sn.InjectFault(f)
			h.pass(h.engine())
			h.clock.Add(time.Hour)
			h.pass(h.engine())
			if got := h.state(r.SysID); got != "3" {
				t.Fatalf("state = %q, want 3", got)
			}
			if notes := h.notes(r.SysID); len(notes) != 1 {
				t.Fatalf("%d notes, want exactly 1: %q", len(notes), notes)
			}
			if got := h.cg.CountCalls("CreateRepo"); got != 1 {
				t.Errorf("CreateRepo calls = %d, want 1", got)
			}
		})
	}
}

// A retryable Chainguard failure writes nothing to the ticket and is retried.
func TestServiceNowRetryableProvisioning(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	h.cg.InjectError("CreateRepo", codes.Unavailable, "backend unavailable", chainguard.DefaultRetryAttempts)
	r := h.ritm("python", nil)
	h.pass(h.engine())
	if s := h.state(r.SysID); s != "1" || len(h.notes(r.SysID)) != 0 {
		t.Fatalf("after a transient failure: state %q, notes %q", s, h.notes(r.SysID))
	}
	h.clock.Add(2 * time.Minute)
	h.pass(h.engine())
	if s := h.state(r.SysID); s != "3" || len(h.notes(r.SysID)) != 1 {
		t.Fatalf("after retry: state %q, notes %q", s, h.notes(r.SysID))
	}
}

// Tickets closed by a person between listing passes are left alone.
func TestServiceNowWebhookPathRereads(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	r := h.ritm("python", func(x *snfake.RITM) { x.Approval = "requested" })
	e := h.engine()
	// A "webhook" naming a RITM that is not approved changes nothing.
	if _, err := e.HandleTicket(context.Background(), "servicenow", r.SysID); err != nil {
		t.Fatal(err)
	}
	if h.patches(r.SysID) != 0 || h.cg.CountCalls("CreateRepo") != 0 {
		t.Fatal("an unapproved RITM was acted on")
	}
	h.sn.Update(r.SysID, func(x *snfake.RITM) { x.Approval = "approved" })
	if _, err := e.HandleTicket(context.Background(), "servicenow", r.SysID); err != nil {
		t.Fatal(err)
	}
	if s := h.state(r.SysID); s != "3" {
		t.Fatalf("state = %q", s)
	}
	if _, err := e.HandleTicket(context.Background(), "servicenow", "not-a-sys-id"); err == nil {
		t.Fatal("a malformed id was accepted")
	}
	_ = fmt.Sprint()
}

// Two bridge processes with the same instance id on one store (`bridge run`
// plus a manual `bridge sync` on the same host) never both act on a ticket.
func TestTwoProcessesSameInstance(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	var ids []string
	for i := 0; i < 40; i++ {
		ids = append(ids, h.ritm("python", nil).SysID)
	}
	var wg stdsync.WaitGroup
	for i := 0; i < 2; i++ {
		st, err := store.Open(context.Background(), h.dbPath)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		e := isync.New(st, h.prov, []isync.Source{h.src}, isync.Options{Instance: "host-1", Concurrency: 4, Now: h.clock.Now})
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.Pass(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	h.pass(h.engine()) // whatever one process skipped because the other held it
	for _, id := range ids {
		if n := len(h.notes(id)); n != 1 {
			t.Errorf("RITM %s: %d notes, want 1", id, n)
		}
	}
	if got := h.cg.CountCalls("CreateRepo"); got != 40 {
		t.Errorf("CreateRepo calls = %d, want 40", got)
	}
}

// stealStore lets another process take the lease (after it expired) right
// after the given state was saved, as a long stall would.
type stealStore struct {
	isync.Store
	after isync.State
	clock *clock
	lease time.Duration
	once  stdsync.Once
}

func (s *stealStore) Save(ctx context.Context, rec *isync.Record, audit ...isync.AuditEntry) error {
	if err := s.Store.Save(ctx, rec, audit...); err != nil {
		return err
	}
	s.maybeSteal(ctx, *rec)
	return nil
}

// ClaimStart can persist the first state too.
func (s *stealStore) ClaimStart(ctx context.Context, source, ticketID, key, owner string, now, until time.Time, start isync.Record) (isync.Record, bool, error) {
	rec, ok, err := s.Store.ClaimStart(ctx, source, ticketID, key, owner, now, until, start)
	if err == nil && ok {
		s.maybeSteal(ctx, rec)
	}
	return rec, ok, err
}

// maybeSteal takes the lease, once, after rec was persisted in s.after.
func (s *stealStore) maybeSteal(ctx context.Context, rec isync.Record) {
	if rec.State != s.after {
		return
	}
	s.once.Do(func() {
		s.clock.Add(2 * s.lease)
		now := s.clock.Now()
		if _, ok, err := s.Store.Claim(ctx, rec.Source, rec.TicketID, rec.Key, "other-process", now, now.Add(s.lease)); err != nil || !ok {
			panic(fmt.Sprintf("steal failed: %v %v", ok, err))
		}
	})
}

// A worker whose lease expired and was taken over writes nothing more.
func TestLeaseLostStopsWorker(t *testing.T) {
	t.Parallel()
	for _, after := range []isync.State{isync.StateProvisioning, isync.StateProvisioned, isync.StateBlocked} {
		t.Run(string(after), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOpts{})
			if after == isync.StateBlocked {
				h.cg.DenyCapability("CreateRepo", true)
			}
			r := h.ritm("python", nil)
			ss := &stealStore{Store: h.store, after: after, clock: h.clock, lease: time.Minute}
			e := isync.New(ss, h.prov, []isync.Source{h.src}, isync.Options{Instance: "a", Lease: time.Minute, Now: h.clock.Now})
			_, _ = e.Pass(context.Background())
			if n := len(h.notes(r.SysID)); n != 0 {
				t.Fatalf("the worker that lost its lease wrote %d notes", n)
			}
			if after == isync.StateProvisioning && h.cg.CountCalls("CreateRepo") != 0 {
				t.Fatal("the worker that lost its lease provisioned")
			}
		})
	}
}

// Causes that alternate are each noted once.
func TestAlternatingBlockedCauses(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	r := h.ritm("python", nil)
	for i := 0; i < 6; i++ {
		code := codes.PermissionDenied
		if i%2 == 1 {
			code = codes.Unauthenticated
		}
		h.cg.InjectError("CreateRepo", code, "no", 1)
		h.pass(h.engine())
		h.clock.Add(2 * time.Hour)
	}
	if n := len(h.notes(r.SysID)); n != 2 {
		t.Fatalf("%d notes for 2 alternating causes, want 2", n)
	}
}

// A blocked note whose PATCH answer is lost is not written again, even when
// the integration user cannot read sys_journal_field.
func TestBlockedNoteLostAnswerJournalUnreadable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{snOpts: []snfake.Option{snfake.WithJournalReadable(false)}})
	h.cg.DenyCapability("CreateRepo", true)
	r := h.ritm("python", nil)
	h.sn.InjectFault(snfake.Fault{Method: "PATCH", Status: 502, ApplyFirst: true})
	for i := 0; i < 3; i++ {
		h.pass(h.engine())
		h.clock.Add(2 * time.Hour)
	}
	if n := len(h.notes(r.SysID)); n != 1 {
		t.Fatalf("%d blocked notes, want 1", n)
	}
}

// releaseCounter counts the store's Release calls.
type releaseCounter struct {
	isync.Store
	mu stdsync.Mutex
	n  int
}

func (r *releaseCounter) Release(ctx context.Context, source, ticketID, owner string) error {
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
	return r.Store.Release(ctx, source, ticketID, owner)
}

// Every lease ends with the pass: a ticket that finished gave its lease back
// in its last save (no separate Release), one that did not (a retry) through
// Release; another bridge process can take either at once.
func TestLeasesEndWithThePass(t *testing.T) {
	t.Parallel()
	rc := &releaseCounter{}
	h := newHarness(t, harnessOpts{wrapStore: func(s isync.Store) isync.Store { rc.Store = s; return rc }})
	var done []string
	for _, img := range []string{"python", "node:20", "pythn"} { // two provisioned, one rejected
		done = append(done, h.ritm(img, nil).SysID)
	}
	h.pass(h.engine())
	if rc.n != 0 {
		t.Errorf("%d Release calls for tickets that all finished, want 0 (the last save ends the lease)", rc.n)
	}
	h.cg.InjectError("CreateRepo", codes.Unavailable, "backend unavailable", chainguard.DefaultRetryAttempts)
	retry := h.ritm("go", nil).SysID
	h.pass(h.engine())
	if rc.n != 1 {
		t.Errorf("%d Release calls after a retried ticket, want 1", rc.n)
	}
	for _, id := range append(done, retry) {
		rec, err := h.store.Get(context.Background(), "servicenow", id)
		if err != nil {
			t.Fatal(err)
		}
		if rec.LeaseOwner != "" || !rec.LeaseUntil.IsZero() {
			t.Errorf("%s (%s): lease still held by %q until %s", id, rec.State, rec.LeaseOwner, rec.LeaseUntil)
		}
		now := h.clock.Now()
		if _, ok, err := h.store.Claim(context.Background(), "servicenow", id, "", "other-process", now, now.Add(time.Minute)); err != nil || !ok {
			t.Errorf("%s: another process could not take the ticket: %v %v", id, ok, err)
		}
	}
	if s := h.state(retry); s == "3" {
		t.Fatalf("the retried ticket closed; the injected failure did not happen")
	}
}

// writeCounter counts the store's writes.
type writeCounter struct {
	isync.Store
	mu stdsync.Mutex
	n  int
}

func (w *writeCounter) add() { w.mu.Lock(); w.n++; w.mu.Unlock() }

func (w *writeCounter) Claim(ctx context.Context, source, ticketID, key, owner string, now, until time.Time) (isync.Record, bool, error) {
	w.add()
	return w.Store.Claim(ctx, source, ticketID, key, owner, now, until)
}

func (w *writeCounter) ClaimStart(ctx context.Context, source, ticketID, key, owner string, now, until time.Time, start isync.Record) (isync.Record, bool, error) {
	w.add()
	return w.Store.ClaimStart(ctx, source, ticketID, key, owner, now, until, start)
}

func (w *writeCounter) Save(ctx context.Context, rec *isync.Record, audit ...isync.AuditEntry) error {
	w.add()
	return w.Store.Save(ctx, rec, audit...)
}

func (w *writeCounter) Release(ctx context.Context, source, ticketID, owner string) error {
	w.add()
	return w.Store.Release(ctx, source, ticketID, owner)
}

func (w *writeCounter) Append(ctx context.Context, e isync.AuditEntry) error {
	w.add()
	return w.Store.Append(ctx, e)
}

// A new approved ticket costs three store writes: claimed and marked
// provisioning in one, provisioned with its audit row, done with its audit
// row and its lease ended. Its audit trail is complete all the same.
func TestNewTicketTakesThreeWrites(t *testing.T) {
	t.Parallel()
	wc := &writeCounter{}
	h := newHarness(t, harnessOpts{wrapStore: func(s isync.Store) isync.Store { wc.Store = s; return wc }})
	r := h.ritm("python", nil)
	h.pass(h.engine())
	if got := h.state(r.SysID); got != "3" {
		t.Fatalf("state %q, want 3", got)
	}
	if wc.n != 3 {
		t.Errorf("%d store writes for one ticket, want 3", wc.n)
	}
	var decisions []isync.Decision
	if err := h.store.Audit(context.Background(), store.AuditFilter{}, func(a isync.AuditEntry) error {
		decisions = append(decisions, a.Decision)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(decisions) != 2 || decisions[0] != isync.DecisionProvisioned || decisions[1] != isync.DecisionReported {
		t.Errorf("audit trail %v, want provisioned, reported", decisions)
	}
	rec, err := h.store.Get(context.Background(), "servicenow", r.SysID)
	if err != nil || rec.Attempts != 1 || rec.Image != "python" || rec.LeaseOwner != "" {
		t.Errorf("record %+v, %v", rec, err)
	}
}
