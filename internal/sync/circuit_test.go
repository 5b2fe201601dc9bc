package sync_test

import (
	"bytes"
	"errors"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/chainguard-dev/image-request-bridge/internal/chainguard"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// circuitProv is the real provisioner with a circuit the test opens and
// closes.
type circuitProv struct {
	*chainguard.Provisioner
	mu   stdsync.Mutex
	down error
}

var _ isync.Circuit = (*circuitProv)(nil)

func (c *circuitProv) Unavailable() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down
}

func (c *circuitProv) set(err error) {
	c.mu.Lock()
	c.down = err
	c.mu.Unlock()
}

// logBuffer is a log sink safe for the engine's workers.
type logBuffer struct {
	mu  stdsync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// count counts the lines holding every one of subs.
func (l *logBuffer) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range strings.Split(l.buf.String(), "\n") {
		all := line != ""
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

// While the provisioner says its upstream is down, no provisioning call is
// started: each ticket waits BackoffMin without an attempt counted, and the
// outage is logged once at warn, naming its cause, however many tickets and
// passes meet it. Once it is back, every ticket is provisioned on its first
// attempt and the recovery is logged once.
func TestCircuitOpenStartsNoCall(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	var ids []string
	for _, img := range []string{"python", "node", "go", "redis", "nginx:latest-dev", "curl, jq"} {
		ids = append(ids, h.ritm(img, nil).SysID)
	}
	prov := &circuitProv{Provisioner: h.prov}
	prov.set(&isync.Error{Class: isync.ClassRetryable, Cause: "chainguard:unavailable",
		Reason: "console-api.enforce.dev refused 3 connections in a row; calls resume after 09:00:30", Err: errors.New("connection refused")})
	logs := &logBuffer{}
	engine := func() *isync.Engine {
		return isync.New(h.store, prov, []isync.Source{h.src}, isync.Options{Instance: "test-bridge", Version: "test",
			BackoffMin: time.Minute, BackoffMax: 10 * time.Minute, Now: h.clock.Now, Logger: zerolog.New(logs)})
	}
	e := engine() // one process meets the whole outage
	for i := 0; i < 3; i++ {
		st := h.pass(e)
		if st.Decisions[isync.DecisionRetry] != len(ids) || st.Errors != 0 {
			t.Fatalf("pass %d while down: %+v; want every ticket put back", i+1, st)
		}
		for _, id := range ids {
			rec := h.record("servicenow", id)
			if rec.Attempts != 0 || rec.State == isync.StateProvisioning || !rec.NextAttemptAt.Equal(h.clock.Now().Add(time.Minute)) ||
				!strings.Contains(rec.LastError, "connection refused") {
				t.Fatalf("pass %d: record %s: state %s, attempts %d, next %s, last error %q; want no attempt, due in BackoffMin",
					i+1, id, rec.State, rec.Attempts, rec.NextAttemptAt, rec.LastError)
			}
		}
		h.clock.Add(time.Minute)
	}
	if _, cg := h.writes(); cg != 0 {
		t.Fatalf("%d provisioning calls while the circuit was open, want 0", cg)
	}
	if n := logs.count(`"level":"warn"`); n != 1 || logs.count(`"level":"warn"`, "chainguard:unavailable", "connection refused") != 1 {
		t.Fatalf("%d warnings while down, want 1 naming the cause:\n%s", n, logs.buf.String())
	}
	for _, id := range ids {
		if n := len(h.notes(id)); n != 0 || h.state(id) != "1" {
			t.Fatalf("ticket %s: %d notes, state %s while down; want it untouched", id, n, h.state(id))
		}
	}

	prov.set(nil)
	h.pass(e)
	for _, id := range ids {
		if s := h.state(id); s != "3" {
			t.Errorf("ticket %s: state %s once back, want 3", id, s)
		}
		if rec := h.record("servicenow", id); rec.Attempts != 1 {
			t.Errorf("ticket %s: %d attempts, want 1", id, rec.Attempts)
		}
	}
	if n := logs.count("upstream is back"); n != 1 {
		t.Errorf("%d recovery lines, want 1", n)
	}
}
