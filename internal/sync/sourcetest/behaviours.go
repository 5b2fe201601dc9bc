package sourcetest

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// behaviour is one row of the suite.
type behaviour struct {
	name string
	run  func(t *testing.T, h Harness)
}

// behaviours is the suite, in the order of the package comment.
var behaviours = []behaviour{
	{"listing/approved_open_once", listingApprovedOnce},
	{"listing/many_pages", listingManyPages},
	{"listing/closed_by_a_person_while_paging", listingWhileLeaving(false)},
	{"listing/reported_while_paging", listingWhileLeaving(true)},
	{"reread/same_as_listed", rereadSameAsListed},
	{"reread/unknown_id", rereadUnknownID},
	{"reread/closed_by_a_person", rereadClosed},
	{"writeback/provisioned_closes_complete", func(t *testing.T, h Harness) {
		writeBackCloses(t, h, isync.OutcomeProvisioned, ClosedComplete)
	}},
	{"writeback/rejected_closes_incomplete", func(t *testing.T, h Harness) {
		writeBackCloses(t, h, isync.OutcomeRejected, ClosedIncomplete)
	}},
	{"writeback/blocked_noted_once_per_cause", writeBackBlocked},
	{"writeback/provisioned_twice_one_note", writeBackTwice},
	{"lost_answer/provisioned", func(t *testing.T, h Harness) { lostAnswer(t, h, isync.OutcomeProvisioned) }},
	{"lost_answer/blocked", func(t *testing.T, h Harness) { lostAnswer(t, h, isync.OutcomeBlocked) }},
	{"lost_answer/server_error_before_applying", serverErrorBeforeApplying},
	{"permanent_write_failure", permanentWriteFailure},
	{"credentials_refused/unauthenticated", credentialsUnauthenticated},
	{"credentials_refused/forbidden", credentialsForbidden},
}

// callTimeout bounds each call of a Source. The fakes answer in
// milliseconds; the bound only keeps a hung call from hanging the suite.
const callTimeout = 30 * time.Second

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

const (
	testImage         = "python:latest-dev"
	testJustification = "builds of the payments service"
)

// requestSeq makes request ids unique across parallel subtests.
var requestSeq atomic.Int64

// newReport returns a report of outcome for the ticket with key, and the
// request id its note must carry. cause is the Cause line of a blocked
// report. Request ids are letters, digits and hyphens, which no connector
// escapes in its markup.
func newReport(key string, outcome isync.Outcome, cause string) (isync.Report, string) {
	id := fmt.Sprintf("conformance-%d", requestSeq.Add(1))
	r := isync.Report{Outcome: outcome, Marker: isync.Marker(key, id)}
	switch outcome {
	case isync.OutcomeProvisioned:
		r.Summary = "Provisioned cgr.dev/example.com/python:latest-dev"
		r.Fields = []isync.Field{{Name: "Result", Value: "Provisioned"}, {Name: "Pull reference", Value: "cgr.dev/example.com/python:latest-dev"}}
	case isync.OutcomeRejected:
		r.Summary = "Rejected: unknown image"
		r.Fields = []isync.Field{{Name: "Result", Value: "Rejected"}, {Name: "Reason", Value: "pythn is not in the catalog"}}
	case isync.OutcomeBlocked:
		r.Fields = []isync.Field{{Name: "Result", Value: "Blocked"}, {Name: "Cause", Value: cause}}
	}
	return r, id
}

// list runs one listing and returns the tickets it handed on, in order.
func list(t *testing.T, src isync.Source, each func(isync.Ticket)) ([]isync.Ticket, error) {
	t.Helper()
	var got []isync.Ticket
	err := src.Approved(callCtx(t), func(tk isync.Ticket) error {
		got = append(got, tk)
		if each != nil {
			each(tk)
		}
		return nil
	})
	return got, err
}

func get(t *testing.T, src isync.Source, id string) isync.Ticket {
	t.Helper()
	tk, err := src.Get(callCtx(t), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return tk
}

func seedApproved(t *testing.T, u Upstream, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = u.SeedApproved(t, testImage, testJustification)
	}
	return ids
}

// checkNotes fails t unless the ticket holds want notes, each naming its
// request id.
func checkNotes(t *testing.T, u Upstream, id string, want int, requestIDs ...string) {
	t.Helper()
	notes := u.Notes(t, id)
	if len(notes) != want {
		t.Fatalf("ticket %s holds %d notes, want %d:\n%s", id, len(notes), want, strings.Join(notes, "\n---\n"))
	}
	for i, rid := range requestIDs {
		if i < len(notes) && !strings.Contains(notes[i], rid) {
			t.Errorf("note %d of ticket %s does not name request %s:\n%s", i, id, rid, notes[i])
		}
	}
}

func checkState(t *testing.T, u Upstream, id string, want State) {
	t.Helper()
	if got := u.State(t, id); got != want {
		t.Fatalf("ticket %s is %s upstream, want %s", id, got, want)
	}
}

// checkNoSecret fails t if err's text holds any of secrets.
func checkNoSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error text holds a credential: %v", err)
		}
	}
}

// checkBlocked fails t unless err is ClassBlocked with a cause, and returns
// the cause.
func checkBlocked(t *testing.T, what string, err error) string {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want a blocked one", what)
	}
	if c := isync.ClassOf(err); c != isync.ClassBlocked {
		t.Fatalf("%s: error of class %s (cause %q), want blocked: %v", what, c, isync.CauseOf(err), err)
	}
	cause := isync.CauseOf(err)
	if cause == "" {
		t.Fatalf("%s: blocked error without a cause: %v", what, err)
	}
	return cause
}

// listingApprovedOnce: approved, open tickets are listed once and open;
// awaiting ones are not listed or listed AwaitingApproval; closed ones are
// not listed.
func listingApprovedOnce(t *testing.T, h Harness) {
	u := h.Start(t, Config{})
	approved := map[string]bool{}
	for _, id := range seedApproved(t, u, 3) {
		approved[id] = true
	}
	awaiting := u.SeedAwaiting(t, "node", testJustification)
	closed := u.SeedApproved(t, "go", testJustification)
	u.Close(t, closed)

	src := u.Source(t)
	seen := map[string]int{}
	got, err := list(t, src, nil)
	if err != nil {
		t.Fatalf("Approved: %v", err)
	}
	for _, tk := range got {
		seen[tk.ID]++
		if tk.Source != src.Name() {
			t.Errorf("ticket %s: Source %q, want %q", tk.ID, tk.Source, src.Name())
		}
		switch {
		case approved[tk.ID]:
			if !tk.Open || tk.Closed || tk.AwaitingApproval {
				t.Errorf("approved ticket %s listed with Open %v, Closed %v, AwaitingApproval %v", tk.ID, tk.Open, tk.Closed, tk.AwaitingApproval)
			}
		case tk.ID == awaiting:
			if tk.Open || !tk.AwaitingApproval {
				t.Errorf("ticket %s awaiting approval listed with Open %v, AwaitingApproval %v", tk.ID, tk.Open, tk.AwaitingApproval)
			}
		case tk.ID == closed:
			t.Errorf("closed ticket %s listed (Open %v, Closed %v)", tk.ID, tk.Open, tk.Closed)
		default:
			t.Errorf("listed a ticket nobody seeded: %+v", tk)
		}
	}
	for id := range approved {
		if seen[id] != 1 {
			t.Errorf("approved ticket %s listed %d times, want once", id, seen[id])
		}
	}
	if seen[awaiting] > 1 {
		t.Errorf("ticket %s awaiting approval listed %d times", awaiting, seen[awaiting])
	}
}

// listingManyPages: many tickets over several small pages, each listed once.
func listingManyPages(t *testing.T, h Harness) {
	u := h.Start(t, Config{PageSize: 3})
	ids := seedApproved(t, u, 20)
	got, err := list(t, u.Source(t), nil)
	if err != nil {
		t.Fatalf("Approved: %v", err)
	}
	seen := map[string]int{}
	for _, tk := range got {
		seen[tk.ID]++
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("ticket %s listed %d times over pages of 3, want once", id, seen[id])
		}
	}
	if len(seen) != len(ids) {
		t.Errorf("listed %d distinct tickets, want %d", len(seen), len(ids))
	}
}

// maxListings bounds the listings of a Relister, as the engine does.
const maxListings = 16

// listingWhileLeaving: every listed ticket leaves the result as soon as it
// is handed on, so the result shrinks under the source between its pages
// (offset and token paging then skip about half of what follows); the
// ticket seeded last is also closed while the first page is handed on, so a
// ticket the source has not reached yet leaves too. The tickets leave
// either as a person closes them (byReport false) or as the engine does,
// through Report. No ticket that stays open may be skipped, unless the
// source is a Relister that says so; then listing again, as the engine does,
// must find the rest.
func listingWhileLeaving(byReport bool) func(t *testing.T, h Harness) {
	return func(t *testing.T, h Harness) {
		u := h.Start(t, Config{PageSize: 3})
		ids := seedApproved(t, u, 20)
		ahead := ids[len(ids)-1] // closed before the source reaches it (unless listed first)
		src := u.Source(t)
		seen := map[string]int{}
		leave := func(tk isync.Ticket) {
			seen[tk.ID]++
			if seen[tk.ID] > 1 {
				return
			}
			if len(seen) == 1 && tk.ID != ahead {
				u.Close(t, ahead)
			}
			if !byReport {
				u.Close(t, tk.ID)
				return
			}
			r, _ := newReport(tk.Key, isync.OutcomeProvisioned, "")
			if err := src.Report(callCtx(t), tk, r); err != nil {
				t.Errorf("Report(%s) while listing: %v", tk.ID, err)
			}
		}
		if _, err := list(t, src, leave); err != nil {
			t.Fatalf("Approved: %v", err)
		}
		missed := func() []string {
			var out []string
			for _, id := range ids {
				if seen[id] == 0 && id != ahead {
					out = append(out, id)
				}
			}
			return out
		}
		rl, relister := src.(isync.Relister)
		if m := missed(); len(m) > 0 {
			if !relister || !rl.PagingMaySkip() {
				t.Fatalf("tickets leaving the result made the listing skip %d of %d open tickets (%v), and the source does not report PagingMaySkip", len(m), len(ids)-1, m)
			}
			t.Logf("the listing skipped %d tickets and reported PagingMaySkip; listing again", len(m))
		}
		for n := 1; relister && rl.PagingMaySkip() && n < maxListings; n++ {
			before := len(seen)
			if _, err := list(t, src, leave); err != nil {
				t.Fatalf("Approved (listing %d): %v", n+1, err)
			}
			if len(seen) == before {
				break
			}
		}
		if m := missed(); len(m) > 0 {
			t.Errorf("%d open tickets never listed, even by listing again: %v", len(m), m)
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("ticket %s listed %d times, want once", id, n)
			}
		}
	}
}

// rereadSameAsListed: Get returns what the listing returned.
func rereadSameAsListed(t *testing.T, h Harness) {
	u := h.Start(t, Config{})
	ids := seedApproved(t, u, 2)
	src := u.Source(t)
	got, err := list(t, src, nil)
	if err != nil {
		t.Fatalf("Approved: %v", err)
	}
	if len(got) != len(ids) {
		t.Fatalf("listed %d tickets, want %d", len(got), len(ids))
	}
	for _, l := range got {
		if l.Key == "" || l.Requester == "" || l.Image != testImage || l.Justification != testJustification {
			t.Errorf("listed ticket decoded wrongly: Key %q, Requester %q, Image %q, Justification %q", l.Key, l.Requester, l.Image, l.Justification)
		}
		g := get(t, src, l.ID)
		type view struct {
			ID, Key, Image, Justification, Requester string
			Open, Closed, AwaitingApproval           bool
		}
		lv := view{l.ID, l.Key, l.Image, l.Justification, l.Requester, l.Open, l.Closed, l.AwaitingApproval}
		gv := view{g.ID, g.Key, g.Image, g.Justification, g.Requester, g.Open, g.Closed, g.AwaitingApproval}
		if lv != gv {
			t.Errorf("Get differs from the listing:\nlisted %+v\nGet    %+v", lv, gv)
		}
	}
}

// rereadUnknownID: a ticket that does not exist is an error.
func rereadUnknownID(t *testing.T, h Harness) {
	u := h.Start(t, Config{})
	seedApproved(t, u, 1)
	id := u.UnknownID()
	tk, err := u.Source(t).Get(callCtx(t), id)
	if err == nil {
		t.Fatalf("Get(%s) of an unknown ticket = %+v, want an error", id, tk)
	}
	checkNoSecret(t, err, u.Secrets()...)
}

// rereadClosed: a ticket a person closed reads Closed, not Open.
func rereadClosed(t *testing.T, h Harness) {
	u := h.Start(t, Config{})
	id := seedApproved(t, u, 1)[0]
	src := u.Source(t)
	if tk := get(t, src, id); !tk.Open || tk.Closed {
		t.Fatalf("approved ticket reads Open %v, Closed %v", tk.Open, tk.Closed)
	}
	u.Close(t, id)
	if tk := get(t, src, id); tk.Open || !tk.Closed {
		t.Fatalf("closed ticket reads Open %v, Closed %v", tk.Open, tk.Closed)
	}
}

// writeBackCloses: a result is one note and the move out of the queue.
func writeBackCloses(t *testing.T, h Harness, outcome isync.Outcome, want State) {
	u := h.Start(t, Config{})
	id := seedApproved(t, u, 1)[0]
	src := u.Source(t)
	tk := get(t, src, id)
	r, rid := newReport(tk.Key, outcome, "")
	if err := src.Report(callCtx(t), tk, r); err != nil {
		t.Fatalf("Report(%s): %v", outcome, err)
	}
	checkNotes(t, u, id, 1, rid)
	checkState(t, u, id, want)
	if g := get(t, src, id); g.Open || !g.Closed {
		t.Errorf("after Report(%s) the ticket reads Open %v, Closed %v", outcome, g.Open, g.Closed)
	}
	got, err := list(t, src, nil)
	if err != nil {
		t.Fatalf("Approved: %v", err)
	}
	for _, l := range got {
		if l.ID == id {
			t.Errorf("ticket still listed after Report(%s): %+v", outcome, l)
		}
	}
}

// writeBackBlocked: a blocked note leaves the ticket open and is written
// once per cause.
func writeBackBlocked(t *testing.T, h Harness) {
	u := h.Start(t, Config{})
	id := seedApproved(t, u, 1)[0]
	src := u.Source(t)
	tk := get(t, src, id)
	r, rid := newReport(tk.Key, isync.OutcomeBlocked, "chainguard:permission_denied")
	if err := src.Report(callCtx(t), tk, r); err != nil {
		t.Fatalf("Report(blocked): %v", err)
	}
	checkNotes(t, u, id, 1, rid)
	checkState(t, u, id, Open)
	if g := get(t, src, id); !g.Open || g.Closed {
		t.Errorf("after a blocked note the ticket reads Open %v, Closed %v", g.Open, g.Closed)
	}
	if err := src.Report(callCtx(t), tk, r); err != nil {
		t.Fatalf("Report(blocked) again: %v", err)
	}
	checkNotes(t, u, id, 1, rid)
	other, rid2 := newReport(tk.Key, isync.OutcomeBlocked, "chainguard:quota")
	if err := src.Report(callCtx(t), tk, other); err != nil {
		t.Fatalf("Report(blocked) with another cause: %v", err)
	}
	checkNotes(t, u, id, 2, rid, rid2)
	checkState(t, u, id, Open)
}

// writeBackTwice: after a result write-back, the re-read ticket is Closed and
// no longer Open. The engine relies on that for one note per ticket: before
// it reports a result again (a crash, a lost answer) it re-reads the ticket,
// and reports only a ticket still open. A result Report itself need not be
// idempotent; a blocked note must be (see blocked_once).
func writeBackTwice(t *testing.T, h Harness) {
	u := h.Start(t, Config{})
	id := seedApproved(t, u, 1)[0]
	src := u.Source(t)
	tk := get(t, src, id)
	r, rid := newReport(tk.Key, isync.OutcomeProvisioned, "")
	if err := src.Report(callCtx(t), tk, r); err != nil {
		t.Fatalf("Report: %v", err)
	}
	again := get(t, src, id)
	if again.Open || !again.Closed {
		t.Fatalf("re-read after the write-back: Open=%v Closed=%v, want closed: the engine would report it again", again.Open, again.Closed)
	}
	checkNotes(t, u, id, 1, rid)
	checkState(t, u, id, ClosedComplete)
}

// lostAnswer: the write lands but its answer is lost. Report returns nil
// only if it found that the write landed; a caller that saw the error and
// re-reads before reporting again, as the engine does, adds nothing.
func lostAnswer(t *testing.T, h Harness, outcome isync.Outcome) {
	u := h.Start(t, Config{})
	id := seedApproved(t, u, 1)[0]
	src := u.Source(t)
	tk := get(t, src, id)
	r, rid := newReport(tk.Key, outcome, "chainguard:permission_denied")
	want := ClosedComplete
	if outcome == isync.OutcomeBlocked {
		want = Open
	}
	u.Inject(t, WriteAnswerLost)
	err := src.Report(callCtx(t), tk, r)
	t.Logf("Report with its answer lost: %v", err)
	checkNoSecret(t, err, u.Secrets()...)
	// The fake applied the write: whatever Report said, it landed once.
	checkNotes(t, u, id, 1, rid)
	checkState(t, u, id, want)
	// Again, as the engine does after an error: re-read first, and report
	// a result only to a ticket still open (a blocked note is checked for
	// by the source itself, so it is reported again as it is).
	if again := get(t, src, id); outcome == isync.OutcomeBlocked || again.Open {
		if err := src.Report(callCtx(t), again, r); err != nil {
			t.Logf("Report again: %v", err)
		}
	}
	checkNotes(t, u, id, 1, rid)
	checkState(t, u, id, want)
}

// serverErrorBeforeApplying: a 5xx on the write, nothing applied, is a
// retryable error; the next report lands exactly once.
func serverErrorBeforeApplying(t *testing.T, h Harness) {
	u := h.Start(t, Config{})
	id := seedApproved(t, u, 1)[0]
	src := u.Source(t)
	tk := get(t, src, id)
	r, rid := newReport(tk.Key, isync.OutcomeProvisioned, "")
	u.Inject(t, WriteServerError)
	err := src.Report(callCtx(t), tk, r)
	if err == nil {
		t.Fatal("Report answered 503 returned nil, want a retryable error")
	}
	if c := isync.ClassOf(err); c != isync.ClassRetryable {
		t.Fatalf("Report answered 503: error of class %s, want retryable: %v", c, err)
	}
	checkNoSecret(t, err, u.Secrets()...)
	checkNotes(t, u, id, 0)
	checkState(t, u, id, Open)
	if err := src.Report(callCtx(t), tk, r); err != nil {
		t.Fatalf("Report after the 503: %v", err)
	}
	checkNotes(t, u, id, 1, rid)
	checkState(t, u, id, ClosedComplete)
}

// permanentWriteFailure: a write-back that can never succeed as configured
// is blocked with a stable cause, the same on every attempt, and leaves the
// ticket open with at most one note.
func permanentWriteFailure(t *testing.T, h Harness) {
	refusals := h.Start(t, Config{}).WriteRefusals()
	if len(refusals) == 0 {
		t.Fatal("the harness names no way its upstream refuses a write-back")
	}
	for i, ref := range refusals {
		t.Run(ref.Name, func(t *testing.T) {
			t.Parallel()
			u := h.Start(t, Config{})
			id := seedApproved(t, u, 1)[0]
			tk := get(t, u.Source(t), id)
			src := u.WriteRefusals()[i].Arrange(t)
			r, _ := newReport(tk.Key, isync.OutcomeProvisioned, "")
			err := src.Report(callCtx(t), tk, r)
			checkNoSecret(t, err, u.Secrets()...)
			cause := checkBlocked(t, "Report refused for good", err)
			t.Logf("cause %q: %v", cause, err)
			err = src.Report(callCtx(t), tk, r)
			if again := checkBlocked(t, "Report refused for good, again", err); again != cause {
				t.Errorf("the cause changed between attempts: %q then %q", cause, again)
			}
			checkState(t, u, id, Open)
			if n := len(u.Notes(t, id)); n > 1 {
				t.Errorf("two attempts left %d notes, want at most 1", n)
			}
		})
	}
}

// badCredential is the credential the suite builds sources with to be
// refused; it must never be echoed.
const badCredential = "conformance-refused-credential-7f3a"

// credentialsUnauthenticated: a 401 blocks listing and write-back with the
// cause "<name>:unauthenticated".
func credentialsUnauthenticated(t *testing.T, h Harness) {
	u := h.Start(t, Config{})
	id := seedApproved(t, u, 1)[0]
	tk := get(t, u.Source(t), id)
	src := u.SourceWithCredential(t, badCredential)
	want := src.Name() + ":unauthenticated"
	secrets := append([]string{badCredential}, u.Secrets()...)
	for attempt := range 2 {
		_, err := list(t, src, nil)
		checkNoSecret(t, err, secrets...)
		if cause := checkBlocked(t, "Approved with refused credentials", err); cause != want {
			t.Errorf("Approved with refused credentials (attempt %d): cause %q, want %q", attempt+1, cause, want)
		}
	}
	r, _ := newReport(tk.Key, isync.OutcomeProvisioned, "")
	err := src.Report(callCtx(t), tk, r)
	checkNoSecret(t, err, secrets...)
	if cause := checkBlocked(t, "Report with refused credentials", err); cause != want {
		t.Errorf("Report with refused credentials: cause %q, want %q", cause, want)
	}
	checkNotes(t, u, id, 0)
	checkState(t, u, id, Open)
}

// credentialsForbidden: a 403 blocks listing with the cause
// "<name>:forbidden", and write-back with a cause of the source's own.
func credentialsForbidden(t *testing.T, h Harness) {
	u := h.Start(t, Config{})
	id := seedApproved(t, u, 1)[0]
	src := u.Source(t)
	tk := get(t, src, id)
	u.Inject(t, Forbidden)
	want := src.Name() + ":forbidden"
	for attempt := range 2 {
		_, err := list(t, src, nil)
		checkNoSecret(t, err, u.Secrets()...)
		if cause := checkBlocked(t, "Approved answered 403", err); cause != want {
			t.Errorf("Approved answered 403 (attempt %d): cause %q, want %q", attempt+1, cause, want)
		}
	}
	r, _ := newReport(tk.Key, isync.OutcomeProvisioned, "")
	var causes []string
	for range 2 {
		err := src.Report(callCtx(t), tk, r)
		checkNoSecret(t, err, u.Secrets()...)
		cause := checkBlocked(t, "Report answered 403", err)
		if !strings.HasPrefix(cause, src.Name()+":") {
			t.Errorf("Report answered 403: cause %q does not start with %q", cause, src.Name()+":")
		}
		causes = append(causes, cause)
	}
	if causes[0] != causes[1] {
		t.Errorf("Report answered 403: the cause changed between attempts: %q then %q", causes[0], causes[1])
	}
	checkNotes(t, u, id, 0)
	checkState(t, u, id, Open)
}
