package sync_test

import (
	"strings"
	"testing"
	"time"

	cgfake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// A ticket naming three images, one unknown: two provisioned, all three
// reported in one note, partial success stated plainly, closed complete.
func TestTicketNamingThreeImages(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	r := h.ritm("python:latest-dev, pythn\nnode:20", nil)
	h.pass(h.engine())
	notes := h.notes(r.SysID)
	if h.state(r.SysID) != "3" || len(notes) != 1 {
		t.Fatalf("state %s, notes %q", h.state(r.SysID), notes)
	}
	for _, want := range []string{"Provisioned 2 of 3 images", "1 could not be provisioned", `Image 1: "python:latest-dev" provisioned; pull as cgr.dev/` + orgName + "/python:latest-dev",
		`Image 2: "pythn" not provisioned: "pythn" is not in the Chainguard catalog; did you mean`, `Image 3: "node:20" provisioned`} {
		if !strings.Contains(notes[0], want) {
			t.Errorf("note lacks %q:\n%s", want, notes[0])
		}
	}
	if n := h.cg.CountCalls("CreateRepo"); n != 2 {
		t.Errorf("CreateRepo calls = %d, want 2", n)
	}
	sn, cg := h.writes()
	h.pass(h.engine())
	if a, b := h.writes(); a != sn || b != cg {
		t.Errorf("second pass wrote")
	}
	// None provisionable: closed incomplete, every reason given.
	r2 := h.ritm("pythn, ghcr.io/x/y", nil)
	h.pass(h.engine())
	if notes := h.notes(r2.SysID); h.state(r2.SysID) != "4" || len(notes) != 1 || !strings.Contains(notes[0], "none of the 2 images") || !strings.Contains(notes[0], "ghcr.io") {
		t.Fatalf("state %s, notes %q", h.state(r2.SysID), notes)
	}
	// Too many images in one field: one clear rejection, nothing provisioned.
	r3 := h.ritm(strings.Repeat("python,", 5000), nil)
	before := h.cg.CountCalls("CreateRepo")
	h.pass(h.engine())
	if notes := h.notes(r3.SysID); h.state(r3.SysID) != "4" || len(notes) != 1 || !strings.Contains(notes[0], "at most 10") || h.cg.CountCalls("CreateRepo") != before {
		t.Fatalf("state %s, notes %q", h.state(r3.SysID), notes)
	}
}

// The per-requester daily limit blocks (one note) and lets the request
// through once the 24-hour window allows.
func TestDailyLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{engineOpts: func(o *isync.Options) { o.DailyLimit = 2; o.Concurrency = 1 }})
	var ids []string
	for _, img := range []string{"python", "node", "go"} {
		ids = append(ids, h.ritm(img, func(r *snfake.RITM) { r.RequestedFor = "62826bf03710200044e0bfc8bcbe5df1" }).SysID)
	}
	h.pass(h.engine())
	closed, blocked := 0, ""
	for _, id := range ids {
		if h.state(id) == "3" {
			closed++
		} else {
			blocked = id
		}
	}
	if closed != 2 || blocked == "" {
		t.Fatalf("%d closed, want 2 and one blocked", closed)
	}
	if notes := h.notes(blocked); len(notes) != 1 || !strings.Contains(notes[0], "daily limit is 2") {
		t.Fatalf("blocked notes %q", notes)
	}
	h.clock.Add(2 * time.Hour)
	h.pass(h.engine())
	if h.state(blocked) != "1" || len(h.notes(blocked)) != 1 {
		t.Fatalf("inside the window: state %s, %d notes", h.state(blocked), len(h.notes(blocked)))
	}
	h.clock.Add(23 * time.Hour)
	h.pass(h.engine())
	if h.state(blocked) != "3" || len(h.notes(blocked)) != 2 {
		t.Fatalf("after the window: state %s, %d notes", h.state(blocked), len(h.notes(blocked)))
	}
}

// The organization's repository cap reached mid-backlog: the tickets past it
// stay open with one note each, and complete once room is made.
func TestQuotaCapMidBacklog(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{cgOpts: []cgfake.Option{cgfake.WithMaxRepos(3)}, engineOpts: func(o *isync.Options) { o.Concurrency = 1 }})
	var ids []string
	for _, img := range []string{"python", "node", "go", "nginx", "redis"} {
		ids = append(ids, h.ritm(img, nil).SysID)
	}
	for i := 0; i < 3; i++ {
		h.pass(h.engine())
		h.clock.Add(time.Hour)
	}
	closed := 0
	for _, id := range ids {
		switch h.state(id) {
		case "3":
			closed++
		case "1":
			if notes := h.notes(id); len(notes) != 1 || !strings.Contains(notes[0], "chainguard:quota") {
				t.Errorf("blocked ticket notes %q", notes)
			}
		}
	}
	if closed != 3 || len(h.cg.OrgRepos()) != 3 {
		t.Fatalf("%d closed, %d repos; want 3 and 3", closed, len(h.cg.OrgRepos()))
	}
}
