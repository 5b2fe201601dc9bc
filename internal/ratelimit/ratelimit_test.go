package ratelimit

import (
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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

// The configured rate and concurrency are never exceeded, however many
// callers push at once.
func TestRateAndConcurrencyBound(t *testing.T) {
	var mu sync.Mutex
	var seen []time.Time
	var inflight, peak atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		mu.Lock()
		seen = append(seen, time.Now())
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}))
	defer srv.Close()
	l := New(40, 1, 3)
	c := &http.Client{Transport: l.RoundTripper(http.DefaultTransport)}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 6; i++ {
				resp, err := c.Get(srv.URL)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 96 {
		t.Fatalf("%d requests", len(seen))
	}
	// 40/s with a burst of 1: at most 41 in any second (the bucket starts full).
	if n := maxInWindow(seen, time.Second); n > 41 {
		t.Errorf("%d requests in one second, limit 40/s", n)
	}
	if p := peak.Load(); p > 3 {
		t.Errorf("%d requests in flight, limit 3", p)
	}
}

// A 429 with Retry-After holds every caller of the upstream.
func TestPauseOnRetryAfter(t *testing.T) {
	var calls atomic.Int64
	var second time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		second = time.Now()
	}))
	defer srv.Close()
	c := &http.Client{Transport: New(0, 1, 0).RoundTripper(http.DefaultTransport)}
	start := time.Now()
	for i := 0; i < 2; i++ {
		resp, err := c.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if second.Sub(start) < 900*time.Millisecond {
		t.Errorf("the call after a 429 went out %s later, want the 1s Retry-After honoured", second.Sub(start))
	}
}

func TestPauseFor(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for name, c := range map[string]struct {
		h    http.Header
		want time.Duration
	}{
		"seconds":          {http.Header{"Retry-After": {"30"}}, 30 * time.Second},
		"http date":        {http.Header{"Retry-After": {now.Add(time.Minute).Format(http.TimeFormat)}}, time.Minute},
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
