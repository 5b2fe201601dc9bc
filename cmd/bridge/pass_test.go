package main

import (
	"errors"
	"testing"

	"github.com/rs/zerolog"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// TestPassOutcome: a pass is a successful poll unless it failed, the store's
// writes are failing, or every ticket it worked on failed; its summary is
// logged at warn when some tickets failed and at error when the pass failed.
func TestPassOutcome(t *testing.T) {
	storeErr := errors.New("store claim servicenow/1: database or disk is full")
	cases := []struct {
		name     string
		st       isync.Stats
		err      error
		stopping bool
		storeErr error
		ok       bool
		level    zerolog.Level
	}{
		{"clean", isync.Stats{Listed: 2, Decisions: map[isync.Decision]int{isync.DecisionProvisioned: 2}}, nil, false, nil, true, zerolog.InfoLevel},
		{"nothing listed", isync.Stats{}, nil, false, nil, true, zerolog.InfoLevel},
		{"some failed", isync.Stats{Listed: 2, Errors: 1, Decisions: map[isync.Decision]int{isync.DecisionProvisioned: 1}}, nil, false, nil, true, zerolog.WarnLevel},
		{"all failed", isync.Stats{Listed: 39, Errors: 39}, nil, false, nil, false, zerolog.ErrorLevel},
		{"store failing", isync.Stats{Listed: 1, Skipped: 1}, nil, false, storeErr, false, zerolog.ErrorLevel},
		{"pass error", isync.Stats{}, errors.New("listing: 500"), false, nil, false, zerolog.ErrorLevel},
		{"shutdown", isync.Stats{Listed: 3, Errors: 3}, isync.ErrStopping, true, nil, false, zerolog.InfoLevel},
	}
	for _, c := range cases {
		ok, level, msg := passOutcome(c.st, c.err, c.stopping, c.storeErr)
		if ok != c.ok || level != c.level {
			t.Errorf("%s: ok %v level %v (%q), want ok %v level %v", c.name, ok, level, msg, c.ok, c.level)
		}
	}
}
