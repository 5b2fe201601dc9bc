// Package ratelimit keeps the bridge polite to each upstream: a token-bucket
// rate (golang.org/x/time/rate) with bounded concurrency, and a pause for the
// whole upstream when it answers 429 or 503 with Retry-After or
// X-RateLimit-Reset, so that a backlog drains at the configured pace and never
// faster.
package ratelimit

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxPause caps a pause asked for by an upstream (a ServiceNow rate-limit rule
// can say "retry in 30 minutes"; the engine's backoff handles the rest).
const maxPause = 5 * time.Minute

// Limiter paces the calls to one upstream.
type Limiter struct {
	lim *rate.Limiter
	sem chan struct{}
	now func() time.Time

	mu          sync.Mutex
	pausedUntil time.Time
}

// New returns a limiter allowing rps requests per second (bursts of burst, at
// least 1) with at most concurrency in flight (0: unbounded). rps <= 0
// disables the rate (concurrency and pauses still apply).
func New(rps float64, burst, concurrency int) *Limiter {
	l := &Limiter{now: time.Now}
	if burst < 1 {
		burst = 1
	}
	if rps > 0 {
		l.lim = rate.NewLimiter(rate.Limit(rps), burst)
	}
	if concurrency > 0 {
		l.sem = make(chan struct{}, concurrency)
	}
	return l
}

// Acquire waits for a slot: the upstream's pause, a concurrency slot and a
// token. The returned release must be called when the call is over.
func (l *Limiter) Acquire(ctx context.Context) (release func(), err error) {
	if err := l.waitPause(ctx); err != nil {
		return nil, err
	}
	if l.sem != nil {
		select {
		case l.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	release = func() {
		if l.sem != nil {
			<-l.sem
		}
	}
	if l.lim != nil {
		if err := l.lim.Wait(ctx); err != nil {
			release()
			return nil, err
		}
	}
	return release, nil
}

func (l *Limiter) waitPause(ctx context.Context) error {
	for {
		l.mu.Lock()
		d := l.pausedUntil.Sub(l.now())
		l.mu.Unlock()
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// Pause holds every call to the upstream for d (at most maxPause).
func (l *Limiter) Pause(d time.Duration) {
	if d <= 0 {
		return
	}
	d = min(d, maxPause)
	l.mu.Lock()
	defer l.mu.Unlock()
	if until := l.now().Add(d); until.After(l.pausedUntil) {
		l.pausedUntil = until
	}
}

// RoundTripper paces HTTP requests through next and pauses on 429/503.
func (l *Limiter) RoundTripper(next http.RoundTripper) http.RoundTripper {
	return roundTripper{l, next}
}

type roundTripper struct {
	l    *Limiter
	next http.RoundTripper
}

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	release, err := rt.l.Acquire(req.Context())
	if err != nil {
		return nil, err
	}
	defer release()
	resp, err := rt.next.RoundTrip(req)
	if err == nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		rt.l.Pause(PauseFor(resp.Header, rt.l.now()))
	}
	return resp, err
}

// PauseFor reads how long an upstream asks to be left alone: Retry-After in
// seconds or as an HTTP date, else X-RateLimit-Reset as Unix seconds
// (ServiceNow) or an ISO-8601 time (Jira Cloud). Zero when neither says.
func PauseFor(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.Atoi(v); err == nil {
			return time.Duration(s) * time.Second
		}
		if t, err := http.ParseTime(v); err == nil {
			return t.Sub(now)
		}
	}
	if v := strings.TrimSpace(h.Get("X-RateLimit-Reset")); v != "" {
		if s, err := strconv.ParseInt(v, 10, 64); err == nil {
			return time.Unix(s, 0).Sub(now)
		}
		for _, layout := range []string{time.RFC3339, "2006-01-02T15:04Z", "2006-01-02T15:04:05Z0700"} {
			if t, err := time.Parse(layout, v); err == nil {
				return t.Sub(now)
			}
		}
	}
	return 0
}

// UnaryClientInterceptor paces gRPC calls; RESOURCE_EXHAUSTED that reads as
// throttling pauses the upstream briefly.
func (l *Limiter) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		release, err := l.Acquire(ctx)
		if err != nil {
			return err
		}
		defer release()
		err = invoker(ctx, method, req, reply, cc, opts...)
		if status.Code(err) == codes.ResourceExhausted && strings.Contains(strings.ToLower(status.Convert(err).Message()), "rate") {
			l.Pause(time.Second)
		}
		return err
	}
}
