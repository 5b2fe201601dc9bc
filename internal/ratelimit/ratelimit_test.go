package ratelimit

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// maxInWindow is the most timestamps falling in any window of length w.
func maxInWindow(ts []time.Time, w time.Duration) int {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	best, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// The configured rate is never exceeded: on a virtual clock, 100 calls at
// 40/s with a burst of 1 take 99/40 s and never more than 41 fall in one
// second.
func TestRateBound(t *testing.T) {
	clk := NewVirtualClock(t0)
	l := New(40, 1, 3, WithClock(clk))
	var seen []time.Time
	for range 100 {
		release, err := l.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, clk.Now())
		release()
	}
	if n := maxInWindow(seen, time.Second); n > 41 {
		t.Errorf("%d calls in one second, limit 40/s", n)
	}
	if got, want := clk.Now().Sub(t0), 99*time.Second/40; got < want {
		t.Errorf("100 calls took %s, want at least %s", got, want)
	}
}

// No more than the configured concurrency is ever in flight: with 3 slots
// held, a fourth caller whose context is done gets no slot.
func TestConcurrencyBound(t *testing.T) {
	l := New(0, 1, 3)
	var releases []func()
	for range 3 {
		r, err := l.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	done, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Acquire(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("a fourth call got a slot: err = %v", err)
	}
	releases[0]()
	r, err := l.Acquire(t.Context())
	if err != nil {
		t.Fatalf("a freed slot was not reused: %v", err)
	}
	r()
}

// A 429 with a short Retry-After holds every caller of the upstream for that
// long (on the limiter's clock).
func TestPauseOnRetryAfter(t *testing.T) {
	clk := NewVirtualClock(t0)
	first := true
	var mu sync.Mutex
	var second time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if first {
			first = false
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		second = clk.Now()
	}))
	defer srv.Close()
	c := &http.Client{Transport: New(0, 1, 0, WithClock(clk)).RoundTripper(http.DefaultTransport)}
	for range 2 {
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := second.Sub(t0); got < time.Second {
		t.Errorf("the call after a 429 went out %s later, want the 1s Retry-After honoured", got)
	}
}

// A pause longer than the in-place bound, or than the caller's deadline, is
// never sat out: Acquire fails at once with a retryable error naming the
// upstream and when it resumes; once the pause is over, calls go through.
func TestLongPauseFailsFast(t *testing.T) {
	clk := NewVirtualClock(t0)
	l := New(0, 1, 0, WithClock(clk), WithName("servicenow"), WithMaxWait(30*time.Second))
	until := l.Pause(10 * time.Minute)
	if want := t0.Add(maxPause); !until.Equal(want) {
		t.Fatalf("paused until %s, want %s (capped)", until, want)
	}
	_, err := l.Acquire(t.Context())
	var pe *PausedError
	if !errors.As(err, &pe) || pe.Upstream != "servicenow" || !pe.Until.Equal(until) ||
		isync.ClassOf(err) != isync.ClassRetryable || isync.CauseOf(err) != "servicenow:paused" {
		t.Fatalf("err = %v (cause %q), want a retryable pause until %s", err, isync.CauseOf(err), until)
	}
	if clk.Now() != t0 {
		t.Errorf("Acquire waited %s", clk.Now().Sub(t0))
	}
	if !l.PausedUntil().After(clk.Now()) {
		t.Error("not paused during a pause")
	}

	// A short pause that outlasts the caller's deadline fails at once too.
	short := New(0, 1, 0, WithClock(clk), WithName("jira"))
	short.Pause(10 * time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := short.Acquire(ctx); !errors.As(err, &pe) || pe.Upstream != "jira" {
		t.Fatalf("err = %v, want a pause error", err)
	}
	// A short pause within both bounds is sat out (virtually).
	if r, err := short.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	} else {
		r()
	}

	clk.Advance(maxPause)
	if r, err := l.Acquire(t.Context()); err != nil {
		t.Fatalf("after the pause: %v", err)
	} else {
		r()
	}
	if l.PausedUntil().After(clk.Now()) {
		t.Error("still paused after the pause")
	}
}

func TestPauseFor(t *testing.T) {
	now := t0
	for name, c := range map[string]struct {
		h    http.Header
		want time.Duration
	}{
		"seconds":          {http.Header{"Retry-After": {"30"}}, 30 * time.Second},
		"http date":        {http.Header{"Retry-After": {now.Add(time.Minute).Format(http.TimeFormat)}}, time.Minute},
		"past http date":   {http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0},
		"servicenow unix":  {http.Header{"X-Ratelimit-Reset": {"1796040060"}}, time.Unix(1796040060, 0).Sub(now)},
		"jira cloud iso":   {http.Header{"X-Ratelimit-Reset": {"2026-11-30T12:02Z"}}, 2 * time.Minute},
		"nothing":          {http.Header{}, 0},
		"garbage":          {http.Header{"Retry-After": {"soon"}}, 0},
		"retry-after wins": {http.Header{"Retry-After": {"5"}, "X-Ratelimit-Reset": {"2026-11-30T12:02Z"}}, 5 * time.Second},
	} {
		if got := PauseFor(c.h, now); got != c.want {
			t.Errorf("%s: %s, want %s", name, got, c.want)
		}
	}
}
