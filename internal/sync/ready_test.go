package sync_test

import (
	"context"
	"strings"
	"testing"
	"time"

	cgfake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

func closeOnReady(o *isync.Options) {
	o.CloseOnReady = true
	o.ReadyPoll = time.Minute
	o.ReadyTimeout = 30 * time.Minute
}

// close_on: ready, learnt by polling ListTags: a syncing note, then one
// closing note once the tag is pullable; nothing in between.
func TestCloseOnReadyByPolling(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{cgOpts: []cgfake.Option{cgfake.WithSyncDelay(10 * time.Minute)}, engineOpts: closeOnReady})
	r := h.ritm("python:latest-dev", nil)
	h.pass(h.engine())
	notes := h.notes(r.SysID)
	if h.state(r.SysID) != "1" || len(notes) != 1 || !strings.Contains(notes[0], "syncing") {
		t.Fatalf("after provisioning: state %s, notes %q", h.state(r.SysID), notes)
	}
	for i := 0; i < 5; i++ { // 5 minutes: still syncing
		h.clock.Add(time.Minute)
		h.pass(h.engine())
	}
	if n := len(h.notes(r.SysID)); n != 1 || h.state(r.SysID) != "1" {
		t.Fatalf("while syncing: %d notes, state %s", n, h.state(r.SysID))
	}
	h.clock.Add(6 * time.Minute)
	h.pass(h.engine())
	notes = h.notes(r.SysID)
	if h.state(r.SysID) != "3" || len(notes) != 2 || !strings.Contains(notes[1], "Provisioned") {
		t.Fatalf("once ready: state %s, notes %q", h.state(r.SysID), notes)
	}
	h.clock.Add(time.Hour)
	h.pass(h.engine())
	if n := len(h.notes(r.SysID)); n != 2 {
		t.Fatalf("after closing: %d notes", n)
	}
	if got := h.cg.CountCalls("CreateRepo"); got != 1 {
		t.Errorf("CreateRepo calls = %d", got)
	}
}

// A tag that never appears: closed incomplete with a timeout note.
func TestCloseOnReadyTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{cgOpts: []cgfake.Option{cgfake.WithSyncDelay(10 * time.Hour)}, engineOpts: closeOnReady})
	r := h.ritm("python:3.11", nil)
	h.pass(h.engine())
	for i := 0; i < 40; i++ {
		h.clock.Add(time.Minute)
		h.pass(h.engine())
	}
	notes := h.notes(r.SysID)
	if h.state(r.SysID) != "4" || len(notes) != 2 || !strings.Contains(notes[1], "not pullable after 30m") {
		t.Fatalf("state %s, notes %q", h.state(r.SysID), notes)
	}
}

// A repository event closes the ticket at once, without waiting for a poll.
func TestCloseOnReadyByEvent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{cgOpts: []cgfake.Option{cgfake.WithSyncDelay(10 * time.Minute)}, engineOpts: closeOnReady})
	r := h.ritm("python:latest-dev", nil)
	evs := h.events()
	e := h.engine()
	h.pass(e)
	repoID := ""
	for _, repo := range h.cg.OrgRepos() {
		repoID = repo.GetId()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.RunQueue(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// An event for another repository changes nothing.
	e.RepoEvent(ctx, isync.RepoEvent{RepoID: orgID + "/ffffffffffffffff", Tag: "latest-dev"})
	h.clock.Add(10 * time.Minute) // the tag is now there; only an event or a poll can tell
	e.RepoEvent(ctx, isync.RepoEvent{Type: "dev.chainguard.registry.push.v1", RepoID: repoID, Tag: "latest-dev"})
	evs.waitFor(t, "the ticket closed by the event", decided(r.SysID, isync.DecisionReported))
	if notes := h.notes(r.SysID); h.state(r.SysID) != "3" || len(notes) != 2 {
		t.Fatalf("state %s, notes %q", h.state(r.SysID), notes)
	}
}

// The webhook path: a queued id is processed at once, with no listing.
func TestQueuedTicketWithoutPoll(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	r := h.ritm("python", nil)
	evs := h.events()
	e := h.engine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.RunQueue(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for i := 0; i < 3; i++ {
		if !e.Enqueue("servicenow", r.SysID) {
			t.Fatal("queue refused")
		}
	}
	evs.waitFor(t, "the queued ticket reported", decided(r.SysID, isync.DecisionReported))
	if h.state(r.SysID) != "3" || len(h.notes(r.SysID)) != 1 || h.cg.CountCalls("CreateRepo") != 1 {
		t.Fatalf("state %s, %d notes, %d CreateRepo", h.state(r.SysID), len(h.notes(r.SysID)), h.cg.CountCalls("CreateRepo"))
	}
	for _, req := range h.sn.Requests() {
		if strings.Contains(req.RawQuery, "approval%3Dapproved") {
			t.Errorf("the queued ticket was found by listing: %s", req.RawQuery)
		}
	}
}
