package chainguard

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// The engine's contract (internal/sync: Circuit).
var _ interface{ Unavailable() error } = (*Provisioner)(nil)

// noSleep is Options.Sleep that does not wait.
func noSleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

// sleeps records the waits of retries in place, without waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return ctx.Err()
}

func (s *sleeps) get() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// logBuffer is a log sink safe for concurrent writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

const (
	logOpened = "the Chainguard API is unreachable"
	logClosed = "the Chainguard API answers again"
)

// Two UNAVAILABLE answers to CreateRepo, then success: one Provision call
// succeeds, one repository is created, and the call waited twice, each wait
// jittered within its doubling backoff.
func TestRetryInPlaceTwoUnavailable(t *testing.T) {
	var rec sleeps
	srv, p := setup(t, func(o *Options) { o.Sleep = rec.sleep })
	srv.InjectError("CreateRepo", codes.Unavailable, "no healthy upstream", 2)
	res, err := p.Provision(ctx(t), ref("python", "latest"))
	if err != nil {
		t.Fatalf("a blip of two UNAVAILABLE answers failed the call: %v", err)
	}
	repos := srv.OrgRepos()
	if len(repos) != 1 || res.RepoID != repos[0].GetId() || res.AlreadyPresent {
		t.Fatalf("result %+v, repos %v", res, repos)
	}
	if n := srv.CountCalls("CreateRepo"); n != 3 {
		t.Fatalf("CreateRepo called %d times, want 3", n)
	}
	waits := rec.get()
	if len(waits) != 2 {
		t.Fatalf("waited %v, want 2 waits", waits)
	}
	for i, w := range waits {
		hi := DefaultRetryBackoff << i
		if w < hi/2 || w > hi {
			t.Errorf("wait %d = %v, want within [%v, %v]", i, w, hi/2, hi)
		}
	}
}

// Which answers are retried in place: each code once, then success.
func TestRetryInPlace(t *testing.T) {
	for _, tc := range []struct {
		code  codes.Code
		msg   string
		retry bool
	}{
		{codes.Unavailable, "transient", true},
		{codes.DeadlineExceeded, "backend timed out", true},
		{codes.Aborted, "conflict", true},
		{codes.ResourceExhausted, "rate limit exceeded", true},
		{codes.Internal, "transient", false},
		{codes.Unknown, "transient", false},
		{codes.ResourceExhausted, "the organization has reached its maximum of 2500 repositories", false},
		{codes.PermissionDenied, "caller does not have the required capabilities", false},
	} {
		t.Run(tc.code.String()+"/"+tc.msg, func(t *testing.T) {
			srv, p := setup(t, nil)
			srv.InjectError("CreateRepo", tc.code, tc.msg, 1)
			_, err := p.Provision(ctx(t), ref("python", "latest"))
			calls := srv.CountCalls("CreateRepo")
			switch {
			case tc.retry && (err != nil || calls != 2):
				t.Fatalf("err %v after %d calls, want success after 2", err, calls)
			case !tc.retry && (err == nil || calls != 1):
				t.Fatalf("err %v after %d calls, want the error after 1", err, calls)
			}
		})
	}
}

// A retry after an attempt that landed but whose answer was lost meets
// ALREADY_EXISTS (PreventExisting), which is a success: one repository.
func TestRetryAfterLostAnswer(t *testing.T) {
	srv, p := setup(t, nil)
	srv.InjectLostAnswer("CreateRepo", codes.Unavailable, "connection reset", 1)
	res, err := p.Provision(ctx(t), ref("python", "latest"))
	if err != nil {
		t.Fatal(err)
	}
	repos := srv.OrgRepos()
	if len(repos) != 1 || res.RepoID != repos[0].GetId() {
		t.Fatalf("result %+v, repos %v", res, repos)
	}
	if n := srv.CountCalls("CreateRepo"); n != 2 {
		t.Fatalf("CreateRepo called %d times, want 2", n)
	}
}

// Retries stop after Attempts; the error is the last answer, retryable.
func TestRetryBoundedByAttempts(t *testing.T) {
	var rec sleeps
	srv, p := setup(t, func(o *Options) { o.Sleep = rec.sleep })
	srv.InjectError("CreateRepo", codes.Unavailable, "no healthy upstream", 100)
	_, err := p.Provision(ctx(t), ref("python", "latest"))
	wantClass(t, err, isync.ClassRetryable, "")
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("error %v, want the UNAVAILABLE answer", err)
	}
	if n := srv.CountCalls("CreateRepo"); n != DefaultRetryAttempts {
		t.Fatalf("CreateRepo called %d times, want %d", n, DefaultRetryAttempts)
	}
	waits := rec.get()
	if len(waits) != DefaultRetryAttempts-1 {
		t.Fatalf("waits %v, want %d", waits, DefaultRetryAttempts-1)
	}
	for i, w := range waits {
		if hi := min(DefaultRetryBackoff<<i, DefaultRetryBackoffMax); w < hi/2 || w > hi {
			t.Errorf("wait %d = %v, want within [%v, %v]", i, w, hi/2, hi)
		}
	}
}

// A wait that would outlast the call's deadline is not started: the call
// returns its last error at once.
func TestRetryBoundedByDeadline(t *testing.T) {
	var rec sleeps
	srv, p := setup(t, func(o *Options) {
		o.Sleep = rec.sleep
		o.Retry = RetryPolicy{Backoff: time.Hour, BackoffMax: time.Hour}
	})
	srv.InjectError("CreateRepo", codes.Unavailable, "no healthy upstream", 1)
	_, err := p.Provision(ctx(t), ref("python", "latest")) // a 10 s deadline
	wantClass(t, err, isync.ClassRetryable, "")
	if n, waits := srv.CountCalls("CreateRepo"), rec.get(); n != 1 || len(waits) != 0 {
		t.Fatalf("%d calls, waits %v; want 1 call and no wait", n, waits)
	}
}

// An API that refuses connections fails the call at once, after its retries
// in place, instead of waiting for a connection until the deadline (the
// SDK's WaitForReady).
func TestUnreachableFailsFast(t *testing.T) {
	var rec sleeps
	srv, p := setup(t, func(o *Options) { o.Sleep = rec.sleep })
	srv.Close()
	// The engine's default per-ticket deadline; waiting for a connection
	// would end the call only there.
	c, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := p.Provision(c, ref("python", "latest"))
	if c.Err() != nil {
		t.Fatalf("the call ran into its deadline: %v", err)
	}
	wantClass(t, err, isync.ClassRetryable, "")
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("error %v, want UNAVAILABLE", err)
	}
	if n := len(rec.get()); n != DefaultRetryAttempts-1 {
		t.Fatalf("%d waits, want %d (one call, retried in place)", n, DefaultRetryAttempts-1)
	}
}

// The circuit opens after Threshold calls in a row find the API down: then
// calls fail at once without reaching the API, Unavailable says so, and the
// outage is logged once. After the cool-down one probe goes; a failed probe
// doubles the cool-down (up to its maximum), a successful one closes the
// circuit, logged once.
func TestCircuit(t *testing.T) {
	clk := newClock()
	var logs logBuffer
	srv, p := setup(t, func(o *Options) { o.Now, o.Logger = clk.Now, zerolog.New(&logs) })
	srv.InjectError("GetEffectiveEntitlements", codes.Unavailable, "no healthy upstream", 1<<20)

	for i := range DefaultCircuitThreshold {
		if err := p.Unavailable(); err != nil {
			t.Fatalf("circuit open after %d failed calls: %v", i, err)
		}
		if err := p.Check(ctx(t)); status.Code(err) != codes.Unavailable || isync.CauseOf(err) != "" {
			t.Fatalf("call %d: %v, want the API's UNAVAILABLE", i, err)
		}
	}
	err := p.Unavailable()
	wantClass(t, err, isync.ClassRetryable, CauseUnavailable, "unreachable", "tries it again at 2026-03-01T09:00:05Z")
	if !strings.Contains(err.Error(), "no healthy upstream") {
		t.Fatalf("Unavailable() = %v, want the last failure", err)
	}
	calls := srv.CountCalls("GetEffectiveEntitlements")
	if calls != DefaultCircuitThreshold*DefaultRetryAttempts {
		t.Fatalf("%d calls reached the API, want %d", calls, DefaultCircuitThreshold*DefaultRetryAttempts)
	}
	for range 3 {
		err = p.Check(ctx(t))
		wantClass(t, err, isync.ClassRetryable, CauseUnavailable)
		_, err = p.Provision(ctx(t), ref("python", "latest"))
		wantClass(t, err, isync.ClassRetryable, CauseUnavailable)
	}
	if n := srv.CountCalls("GetEffectiveEntitlements"); n != calls || len(srv.OrgRepos()) != 0 {
		t.Fatalf("calls went through the open circuit: %d, want %d", n, calls)
	}

	// Failed probes: the cool-down doubles, 5 s to 1 min.
	for _, cooldown := range []time.Duration{5, 10, 20, 40, 60, 60} {
		cooldown *= time.Second
		clk.Advance(cooldown - time.Second)
		if p.Unavailable() == nil {
			t.Fatalf("circuit half-open before its %v cool-down ended", cooldown)
		}
		clk.Advance(time.Second)
		if err := p.Unavailable(); err != nil {
			t.Fatalf("no probe allowed after the %v cool-down: %v", cooldown, err)
		}
		before := srv.CountCalls("GetEffectiveEntitlements")
		if err := p.Check(ctx(t)); status.Code(err) != codes.Unavailable {
			t.Fatalf("probe: %v", err)
		}
		if n := srv.CountCalls("GetEffectiveEntitlements") - before; n != 1 {
			t.Fatalf("the probe made %d calls, want 1", n)
		}
		wantClass(t, p.Unavailable(), isync.ClassRetryable, CauseUnavailable)
	}

	// A probe that gets an answer closes the circuit.
	srv.InjectError("GetEffectiveEntitlements", codes.OK, "", 0)
	clk.Advance(time.Minute)
	if err := p.Check(ctx(t)); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if err := p.Unavailable(); err != nil {
		t.Fatalf("circuit still open after a successful probe: %v", err)
	}
	if _, err := p.Provision(ctx(t), ref("python", "latest")); err != nil {
		t.Fatal(err)
	}
	if o, c := logs.count(logOpened), logs.count(logClosed); o != 1 || c != 1 {
		t.Fatalf("logged the outage %d times and its end %d times, want once each:\n%s", o, c, logs.buf.String())
	}
}

// Answers that say nothing about the API's reachability (a refusal, a
// success) reset the count: only failures in a row open the circuit.
func TestCircuitNeedsFailuresInARow(t *testing.T) {
	srv, p := setup(t, nil)
	for range 3 {
		srv.InjectError("GetEffectiveEntitlements", codes.Unavailable, "no healthy upstream", DefaultRetryAttempts*(DefaultCircuitThreshold-1))
		for range DefaultCircuitThreshold - 1 {
			if err := p.Check(ctx(t)); status.Code(err) != codes.Unavailable {
				t.Fatalf("check: %v", err)
			}
		}
		srv.InjectError("GetEffectiveEntitlements", codes.PermissionDenied, "caller does not have the required capabilities", 1)
		wantClass(t, p.Check(ctx(t)), isync.ClassBlocked, CausePermissionDenied)
	}
	if err := p.Unavailable(); err != nil {
		t.Fatalf("circuit open without %d failures in a row: %v", DefaultCircuitThreshold, err)
	}
}

// An API that refuses connections opens the circuit; when it listens again,
// the probe reconnects at once (not after the connection's reconnect
// backoff) and closes the circuit.
func TestCircuitConnectionRefusedRecovers(t *testing.T) {
	clk := newClock()
	var logs logBuffer
	srv, p := setup(t, func(o *Options) { o.Now, o.Logger, o.Mode = clk.Now, zerolog.New(&logs), ModeRepo })
	addr := strings.TrimPrefix(srv.Addr(), "http://")
	srv.Close()
	for range DefaultCircuitThreshold {
		_, err := p.Provision(ctx(t), ref("python", "latest"))
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("provision against a closed port: %v", err)
		}
	}
	wantClass(t, p.Unavailable(), isync.ClassRetryable, CauseUnavailable, "unreachable")
	_, err := p.Provision(ctx(t), ref("python", "latest"))
	wantClass(t, err, isync.ClassRetryable, CauseUnavailable)

	back, err := fake.New(fake.WithAddress(addr))
	if err != nil {
		t.Fatalf("restart the fake on %s: %v", addr, err)
	}
	t.Cleanup(back.Close)
	clk.Advance(DefaultCircuitCooldown)
	if _, err := p.Provision(ctx(t), ref("python", "latest")); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if err := p.Unavailable(); err != nil {
		t.Fatal(err)
	}
	if n := len(back.OrgRepos()); n != 1 {
		t.Fatalf("%d repos, want 1", n)
	}
	if o, c := logs.count(logOpened), logs.count(logClosed); o != 1 || c != 1 {
		t.Fatalf("logged the outage %d times and its end %d times, want once each", o, c)
	}
}

// A probe whose caller gives up says nothing: the next call probes.
func TestCircuitCancelledProbe(t *testing.T) {
	clk := newClock()
	srv, p := setup(t, func(o *Options) { o.Now = clk.Now })
	srv.InjectError("GetEffectiveEntitlements", codes.Unavailable, "no healthy upstream", DefaultRetryAttempts*DefaultCircuitThreshold)
	for range DefaultCircuitThreshold {
		_ = p.Check(ctx(t))
	}
	clk.Advance(DefaultCircuitCooldown)
	c, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Check(c); err == nil {
		t.Fatal("a cancelled probe succeeded")
	}
	if err := p.Unavailable(); err != nil {
		t.Fatalf("a cancelled probe reopened the circuit: %v", err)
	}
	if err := p.Check(ctx(t)); err != nil {
		t.Fatalf("probe: %v", err)
	}
}

// An outage costs a backlog a bounded number of calls, not a deadline per
// ticket: 200 tickets at concurrency 4 against a refused port make at most
// Threshold+3 calls (those in flight as the circuit opens), each retried in
// place; the rest fail at once with the circuit's error.
func TestOutageBacklog(t *testing.T) {
	var rec sleeps
	srv, p := setup(t, func(o *Options) { o.Sleep = rec.sleep })
	srv.Close()
	const tickets, workers = 200, 4
	work := make(chan int)
	var mu sync.Mutex
	refused := 0
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range work {
				_, err := p.Provision(ctx(t), ref("python", "latest"))
				if isync.ClassOf(err) != isync.ClassRetryable {
					t.Errorf("provision during an outage: %v", err)
				}
				if isync.CauseOf(err) == CauseUnavailable {
					mu.Lock()
					refused++
					mu.Unlock()
				}
			}
		})
	}
	for i := range tickets {
		work <- i
	}
	close(work)
	wg.Wait()
	const admitted = DefaultCircuitThreshold + workers - 1
	if refused < tickets-admitted {
		t.Errorf("%d of %d calls failed at once, want at least %d", refused, tickets, tickets-admitted)
	}
	if n := len(rec.get()); n > admitted*(DefaultRetryAttempts-1) {
		t.Errorf("%d waits in place, want at most %d", n, admitted*(DefaultRetryAttempts-1))
	}
	wantClass(t, p.Unavailable(), isync.ClassRetryable, CauseUnavailable)
}
