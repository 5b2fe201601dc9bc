package servicenow_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/ratelimit"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// t0 is a whole second, so that an HTTP date (one-second resolution) is exact.
var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// virtualSource is a source at the default retry settings whose limiter (and
// so its waits between attempts) runs on a virtual clock.
func virtualSource(t *testing.T, fake *snfake.Server) (*servicenow.Source, *ratelimit.Limiter, *ratelimit.VirtualClock) {
	t.Helper()
	clk := ratelimit.NewVirtualClock(t0)
	lim := ratelimit.New(0, 1, 0, ratelimit.WithClock(clk), ratelimit.WithName(servicenow.Name))
	src := newSource(t, fake, func(o *servicenow.Options) { o.RetryWaitMax = 0; o.Limiter = lim })
	return src, lim, clk
}

func listings(fake *snfake.Server) int {
	n := 0
	for _, r := range fake.Requests() {
		if r.Method == "GET" && strings.HasSuffix(r.Path, "/sc_req_item") {
			n++
		}
	}
	return n
}

func countAll(src *servicenow.Source, t *testing.T) (int, error) {
	n := 0
	err := src.Approved(ctx(t), func(isync.Ticket) error { n++; return nil })
	return n, err
}

// countAllLong lists under an hour's deadline: longer than any Retry-After
// the tests send, so that only the retry policy, not the deadline, can keep
// a call from sleeping one out.
func countAllLong(src *servicenow.Source, t *testing.T) (int, error) {
	c, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	n := 0
	err := src.Approved(c, func(isync.Ticket) error { n++; return nil })
	return n, err
}

// A 503 with Retry-After: 600 on the listing is never slept in place: the
// call ends at once with a retryable error saying until when, the upstream
// is paused (calls fail at once without reaching it), and once the pause is
// over the listing goes through.
func TestLongRetryAfterPausesTheUpstream(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	seed(fake, 3, "python")
	src, lim, clk := virtualSource(t, fake)
	fake.InjectFault(snfake.Fault{Method: "GET", PathContains: "/sc_req_item", Status: 503, RetryAfter: 600})

	_, err := countAllLong(src, t)
	if err == nil || isync.ClassOf(err) != isync.ClassRetryable || !strings.Contains(err.Error(), "paused until") {
		t.Fatalf("err = %v, want a retryable error saying until when the upstream is paused", err)
	}
	if clk.Now() != t0 {
		t.Errorf("the call waited %s in place", clk.Now().Sub(t0))
	}
	until := lim.PausedUntil()
	if !until.After(t0.Add(time.Minute)) {
		t.Fatalf("upstream paused until %s, want a long pause", until)
	}
	if n := listings(fake); n != 1 {
		t.Errorf("%d listing requests, want 1", n)
	}

	// During the pause, a call fails at once without reaching the instance.
	_, err = countAllLong(src, t)
	var pe *ratelimit.PausedError
	if !errors.As(err, &pe) || !pe.Until.Equal(until) || isync.ClassOf(err) != isync.ClassRetryable {
		t.Fatalf("during the pause: err = %v, want a retryable pause until %s", err, until)
	}
	if n := listings(fake); n != 1 || clk.Now() != t0 {
		t.Errorf("during the pause: %d listings, waited %s", n, clk.Now().Sub(t0))
	}

	clk.Advance(until.Sub(t0))
	if n, err := countAllLong(src, t); err != nil || n != 3 {
		t.Fatalf("after the pause: listed %d, err %v", n, err)
	}
}

// Retry-After as an HTTP date is honoured: a near one is waited in place, a
// far one pauses the upstream until (at most 5 minutes of) it.
func TestRetryAfterHTTPDate(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	seed(fake, 2, "python")
	src, lim, clk := virtualSource(t, fake)
	date := func(d time.Duration) http.Header {
		return http.Header{"Retry-After": {clk.Now().Add(d).Format(http.TimeFormat)}}
	}
	fake.InjectFault(snfake.Fault{Method: "GET", PathContains: "/sc_req_item", Status: 429, Header: date(3 * time.Second)})
	if n, err := countAllLong(src, t); err != nil || n != 2 {
		t.Fatalf("listed %d, err %v", n, err)
	}
	if waited := clk.Now().Sub(t0); waited < 3*time.Second {
		t.Errorf("waited %s before retrying, want the 3s of the HTTP date", waited)
	}

	start := clk.Now()
	fake.InjectFault(snfake.Fault{Method: "GET", PathContains: "/sc_req_item", Status: 503, Header: date(4 * time.Minute)})
	if _, err := countAllLong(src, t); err == nil || !strings.Contains(err.Error(), "paused until") {
		t.Fatalf("err = %v, want a pause", err)
	}
	if got := lim.PausedUntil(); !got.Equal(start.Add(4 * time.Minute)) {
		t.Errorf("paused until %s, want %s", got, start.Add(4*time.Minute))
	}
}

// One 429 with a short Retry-After on the listing is retried inside the
// call: the pass still lists everything, after the wait asked for.
func TestOneRateLimitOnTheListingIsRetriedInPlace(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	seed(fake, 3, "python")
	src, _, clk := virtualSource(t, fake)
	fake.InjectFault(snfake.Fault{Method: "GET", Status: 429, RetryAfter: 1})
	if n, err := countAll(src, t); err != nil || n != 3 {
		t.Fatalf("listed %d, err %v", n, err)
	}
	if waited := clk.Now().Sub(t0); waited < time.Second {
		t.Errorf("Retry-After: 1 not honoured (waited %s)", waited)
	}
	if n := listings(fake); n != 2 {
		t.Errorf("%d listing requests, want 2", n)
	}
}

// A PATCH refused with 403 (a write ACL) blocks with a stable cause; it is
// not resent.
func TestPatchForbiddenIsBlocked(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	r := seed(fake, 1, "python")[0]
	src := newSource(t, fake, nil)
	tk, err := src.Get(ctx(t), r.SysID)
	if err != nil {
		t.Fatal(err)
	}
	fake.InjectFault(snfake.Fault{Method: "PATCH", Status: 403, Body: snfake.ACLUpdateBody})
	err = src.Report(ctx(t), tk, result(tk.Key))
	if isync.ClassOf(err) != isync.ClassBlocked || isync.CauseOf(err) != "servicenow:write_acl" || !strings.Contains(isync.ReasonOf(err), "ACL") {
		t.Fatalf("err = %v (cause %q), want blocked servicenow:write_acl", err, isync.CauseOf(err))
	}
	patches := 0
	for _, q := range fake.Requests() {
		if q.Method == "PATCH" {
			patches++
		}
	}
	if patches != 1 {
		t.Errorf("%d PATCHes, want 1", patches)
	}
}

// An instance that answers 200 but silently drops the state (a field-level
// write ACL) is caught from the PATCH's answer: blocked, naming the field.
func TestSilentWriteACLDropIsBlocked(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	r := seed(fake, 1, "python")[0]
	src := newSource(t, fake, nil)
	tk, err := src.Get(ctx(t), r.SysID)
	if err != nil {
		t.Fatal(err)
	}
	fake.DenyFieldWrite("state")
	err = src.Report(ctx(t), tk, result(tk.Key))
	if isync.ClassOf(err) != isync.ClassBlocked || isync.CauseOf(err) != "servicenow:write_acl:state" ||
		isync.ReasonOf(err) != "the integration user cannot write sc_req_item.state (write ACL)" {
		t.Fatalf("err = %v (cause %q), want blocked servicenow:write_acl:state", err, isync.CauseOf(err))
	}
	if cur, _ := fake.RITM(r.SysID); cur.State != "1" {
		t.Fatalf("state %s: the fake did not drop it", cur.State)
	}

	// The work note of the refused PATCH landed: the retried write-back
	// (the engine sets Retried, after a restart too) closes the RITM
	// without a second note.
	fake.AllowFieldWrite("state")
	rep := result(tk.Key)
	rep.Retried = true
	if err := newSource(t, fake, nil).Report(ctx(t), tk, rep); err != nil {
		t.Fatalf("with the ACL lifted: %v", err)
	}
	if cur, _ := fake.RITM(r.SysID); cur.State != "3" {
		t.Errorf("state %s after the retried write-back, want 3", cur.State)
	}
	if n, c := len(workNotes(fake, r.SysID)), len(comments(fake, r.SysID)); n != 1 || c != 1 {
		t.Errorf("%d work notes, %d comments; want the result note and comment once", n, c)
	}
}

// 401 means the same on every connector: blocked, cause
// "<source>:unauthenticated", not retried.
func TestUnauthenticatedIsBlocked(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	seed(fake, 1, "python")
	src := newSource(t, fake, nil)
	fake.InjectFault(snfake.Fault{Status: 401, Times: 100})
	_, err := countAll(src, t)
	if isync.ClassOf(err) != isync.ClassBlocked || isync.CauseOf(err) != "servicenow:unauthenticated" {
		t.Fatalf("err = %v (cause %q), want blocked servicenow:unauthenticated", err, isync.CauseOf(err))
	}
	if n := listings(fake); n != 1 {
		t.Errorf("a 401 was retried: %d listings", n)
	}
}

// The read that asks whether a write whose answer was lost landed runs even
// after the write's context ended, but under its own deadline, retries
// included: a hung instance or a shutdown never waits on it for the client's
// whole retry budget (5 attempts of Timeout each).
func TestLandedCheckHasADeadline(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	r := seed(fake, 1, "python")[0]
	src := newSource(t, fake, func(o *servicenow.Options) { o.RecheckTimeout = 100 * time.Millisecond })
	tk, err := src.Get(context.Background(), r.SysID)
	if err != nil {
		t.Fatal(err)
	}
	// The PATCH lands and its answer is lost; the record then hangs (far
	// past the 3 s client timeout each attempt has).
	fake.InjectFault(snfake.Fault{Method: http.MethodPatch, Reset: true, ApplyFirst: true})
	fake.InjectFault(snfake.Fault{Method: http.MethodGet, PathContains: r.SysID, Delay: time.Minute, Times: 10})
	before := len(fake.Requests())
	err = src.Report(context.Background(), tk, result(tk.Key))
	if err == nil {
		t.Fatal("Report returned nil although whether the PATCH landed could not be read")
	}
	gets := 0
	for _, q := range fake.Requests()[before:] {
		if q.Method == http.MethodGet {
			gets++
		}
	}
	if gets != 1 {
		t.Errorf("%d reads of the RITM after the lost answer; want 1, cut by the recheck deadline before any retry", gets)
	}
}

// A field write ACL on work_notes drops the result note with a 200, and the
// PATCH answer cannot show it (work_notes reads back empty): the first
// write-back of a process reads the journal back and blocks on
// servicenow:write_acl:work_notes, so the administrator hears of it at once.
// Once a note is seen, later write-backs cost no extra read.
func TestDroppedWorkNoteIsBlocked(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	rs := seed(fake, 3, "python")
	for _, r := range rs {
		fake.AddJournal(r.SysID, "work_notes", "Approved by the change board", "abel.tuter")
	}
	src := newSource(t, fake, nil)
	tk, err := src.Get(ctx(t), rs[0].SysID)
	if err != nil {
		t.Fatal(err)
	}
	fake.DenyFieldWrite("work_notes")
	err = src.Report(ctx(t), tk, result(tk.Key))
	if isync.ClassOf(err) != isync.ClassBlocked || isync.CauseOf(err) != "servicenow:write_acl:work_notes" {
		t.Fatalf("err = %v (cause %q), want blocked servicenow:write_acl:work_notes", err, isync.CauseOf(err))
	}
	if !strings.Contains(isync.ReasonOf(err), "work_notes") {
		t.Errorf("reason %q does not name the field", isync.ReasonOf(err))
	}

	fake.AllowFieldWrite("work_notes")
	tk2, err := src.Get(ctx(t), rs[1].SysID)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Report(ctx(t), tk2, result(tk2.Key)); err != nil {
		t.Fatalf("with the ACL lifted: %v", err)
	}
	tk3, err := src.Get(ctx(t), rs[2].SysID)
	if err != nil {
		t.Fatal(err)
	}
	// A third write-back makes no read of the journal: the note was seen.
	before := len(fake.Requests())
	if err := src.Report(ctx(t), tk3, result(tk3.Key)); err != nil {
		t.Fatal(err)
	}
	for _, q := range fake.Requests()[before:] {
		if q.Method == http.MethodGet {
			t.Errorf("a write-back after a note was seen read %s", q.Path)
		}
	}
}

// A RITM that has no readable work note at all after its result PATCH: the
// note was dropped or the journal cannot be read, and either needs a grant.
func TestUnverifiableWorkNoteIsBlocked(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	r := seed(fake, 1, "python")[0]
	src := newSource(t, fake, nil)
	tk, err := src.Get(ctx(t), r.SysID)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing of the PATCH's journal shows: neither the note nor the
	// requester comment (which, readable, would tell a dropped note).
	fake.DenyFieldWrite("work_notes")
	fake.DenyFieldWrite("comments")
	err = src.Report(ctx(t), tk, result(tk.Key))
	if isync.ClassOf(err) != isync.ClassBlocked || isync.CauseOf(err) != "servicenow:work_notes_unverified" {
		t.Fatalf("err = %v (cause %q), want blocked servicenow:work_notes_unverified", err, isync.CauseOf(err))
	}
	if reason := isync.ReasonOf(err); !strings.Contains(reason, "sc_req_item.work_notes") || !strings.Contains(reason, "sys_journal_field") {
		t.Errorf("reason %q does not name both grants", reason)
	}
}
