package campaign

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// upstreamCalls counts every request the fakes received.
func (w *world) upstreamCalls() (sn, jira, cg int) {
	sn, jira = len(w.sn.Requests()), len(w.jf.Requests())
	return sn, jira, len(w.cg.Calls())
}

// drain runs `bridge run` until every ticket is closed (or the deadline).
func (w *world) drain(t *testing.T, deadline time.Duration) (took time.Duration, out string) {
	t.Helper()
	var buf bytes.Buffer
	var mu sync.Mutex
	cmd := exec.Command(bridgeBin, "run", "--config", w.config)
	cmd.Stdout, cmd.Stderr = &lockedWriter{&mu, &buf}, &lockedWriter{&mu, &buf}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for time.Since(start) < deadline && w.tally().open > 0 {
		time.Sleep(200 * time.Millisecond)
	}
	took = time.Since(start)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	mu.Lock()
	defer mu.Unlock()
	return took, buf.String()
}

// TestFaultCampaign: the fakes answer 20 % of requests with a fault (5xx,
// 429 with Retry-After, resets, timeouts, HTML with status 200, truncated
// JSON; gRPC UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL; writes half of the time
// applied before failing). Every ticket still completes with exactly one note.
func TestFaultCampaign(t *testing.T) {
	tickets := 60
	if long() {
		tickets = 400
	}
	const rate = 0.20
	seed := campaign(t)

	base := newWorld(t, tickets)
	baseTook, _ := base.drain(t, 2*time.Minute)
	bsn, bjira, bcg := base.upstreamCalls()

	w := newWorld(t, tickets)
	w.sn.SetFaultRate(rate, seed)
	w.jf.SetFaultRate(rate, seed+1)
	w.cg.SetFaultRate(rate, seed+2)
	took, out := w.drain(t, 5*time.Minute)
	sn, jira, cg := w.upstreamCalls()
	got := w.tally()
	per := func(n int) float64 { return float64(n) / float64(tickets) }
	fmt.Printf("fault campaign: %d tickets at %.0f%% faults: lost %d, left open %d, duplicate result notes %d, tickets without a note %d, duplicate repositories %d; took %s (%s without faults)\n",
		tickets, rate*100, got.lost, got.open, got.dupNotes, got.noNote, max(0, -got.images), took.Round(time.Second), baseTook.Round(time.Second))
	fmt.Printf("fault campaign: upstream calls per ticket with faults / without: ServiceNow+Jira %.2f / %.2f, Chainguard %.2f / %.2f; extra %.2f calls per ticket\n",
		per(sn+jira), per(bsn+bjira), per(cg), per(bcg), per(sn+jira+cg)-per(bsn+bjira+bcg))
	if got.lost != 0 || got.open != 0 || got.dupNotes != 0 || got.noNote != 0 || got.images < 0 {
		t.Fatalf("invariants broken under faults: %+v\nbridge output (tail):\n%s", got, tail(out, 3000))
	}
	if strings.Contains(out, "panic") {
		t.Fatalf("the bridge panicked:\n%s", tail(out, 3000))
	}
}
