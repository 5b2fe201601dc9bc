// Package ratelimit keeps the bridge polite to each upstream: a token-bucket
// rate (golang.org/x/time/rate) with bounded concurrency, and a pause for the
// whole upstream when it asks to be left alone (429 or 503 with Retry-After
// or X-RateLimit-Reset), so that a backlog drains at the configured pace and
// never faster.
//
// A pause is never sat out by a caller that cannot afford it: Acquire fails
// at once, with a retryable error naming the upstream and the time it
// resumes, when the pause outlasts the caller's deadline or the limiter's
// in-place bound (WithMaxWait). Time is an input (WithClock), so that tests
// run on a virtual clock.
package ratelimit

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// maxPause caps a pause asked for by an upstream (a ServiceNow rate-limit rule
// can say "retry in 30 minutes"; the engine's backoff handles the rest).
const maxPause = 5 * time.Minute

// DefaultMaxWait is the longest pause Acquire sits out in place unless
// WithMaxWait says otherwise: the connectors' default retry_wait_max.
const DefaultMaxWait = 30 * time.Second

// Clock is the limiter's source of time. Sleep waits d, or until ctx ends
// (then it returns ctx.Err()).
type Clock interface {
	Now() time.Time
	Sleep(ctx context.Context, d time.Duration) error
}

// Wall is the real clock.
var Wall Clock = wallClock{}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// PausedError says that an upstream asked to be left alone until Until. It
// reaches callers wrapped in a retryable *isync.Error with the cause
// "<upstream>:paused".
type PausedError struct {
	Upstream string
	Until    time.Time
}

func (e *PausedError) Error() string {
	return fmt.Sprintf("%s asked to be left alone: calls are paused until %s", e.Upstream, e.Until.UTC().Format(time.RFC3339))
}

// Limiter paces the calls to one upstream. Its methods are safe for
// concurrent use.
type Limiter struct {
	name    string
	lim     *rate.Limiter
	sem     chan struct{}
	clock   Clock
	maxWait time.Duration

	mu          sync.Mutex
	pausedUntil time.Time
}

// Option configures a Limiter.
type Option func(*Limiter)

// WithClock sets the limiter's clock (default Wall).
func WithClock(c Clock) Option { return func(l *Limiter) { l.clock = c } }

// WithName names the upstream in errors and causes (default "upstream").
func WithName(name string) Option { return func(l *Limiter) { l.name = name } }

// WithMaxWait sets the longest pause Acquire sits out in place (default
// DefaultMaxWait); a longer one fails the call at once.
func WithMaxWait(d time.Duration) Option { return func(l *Limiter) { l.maxWait = d } }

// New returns a limiter allowing rps requests per second (bursts of burst, at
// least 1) with at most concurrency in flight (0: unbounded). rps <= 0
// disables the rate (concurrency and pauses still apply).
func New(rps float64, burst, concurrency int, opts ...Option) *Limiter {
	l := &Limiter{name: "upstream", clock: Wall, maxWait: DefaultMaxWait}
	for _, o := range opts {
		o(l)
	}
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

// Name returns the upstream's name.
func (l *Limiter) Name() string { return l.name }

// Clock returns the limiter's clock.
func (l *Limiter) Clock() Clock { return l.clock }

// Now returns the limiter clock's time.
func (l *Limiter) Now() time.Time { return l.clock.Now() }

// Acquire waits for a slot: the end of the upstream's pause, a concurrency
// slot and a token. The returned release must be called when the call is
// over. It fails at once, with a retryable error wrapping *PausedError, when
// the pause outlasts ctx's deadline or the in-place bound; it fails with a
// retryable error when the token's wait outlasts ctx's deadline, and with
// ctx.Err() when ctx ends.
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
		now := l.clock.Now()
		r := l.lim.ReserveN(now, 1)
		d := r.DelayFrom(now)
		if dl, ok := ctx.Deadline(); ok && d > time.Until(dl) {
			r.CancelAt(now)
			release()
			return nil, isync.Retryable(fmt.Errorf("%s: the rate limit's wait of %s outlasts the call's deadline", l.name, d))
		}
		if err := l.clock.Sleep(ctx, d); err != nil {
			r.CancelAt(l.clock.Now())
			release()
			return nil, err
		}
	}
	return release, nil
}

func (l *Limiter) pausedErr(until time.Time) error {
	return &isync.Error{Class: isync.ClassRetryable, Cause: l.name + ":paused", Err: &PausedError{Upstream: l.name, Until: until}}
}

func (l *Limiter) waitPause(ctx context.Context) error {
	for {
		until := l.PausedUntil()
		d := until.Sub(l.clock.Now())
		if d <= 0 {
			return nil
		}
		if d > l.maxWait {
			return l.pausedErr(until)
		}
		if dl, ok := ctx.Deadline(); ok && d > time.Until(dl) {
			return l.pausedErr(until)
		}
		if err := l.clock.Sleep(ctx, d); err != nil {
			return err
		}
	}
}

// PausedUntil returns the end of the current pause (zero or past: none).
func (l *Limiter) PausedUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pausedUntil
}

// Pause holds every call to the upstream for d (at most 5 minutes) and
// returns the time calls resume. A shorter pause never cuts a longer one.
func (l *Limiter) Pause(d time.Duration) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if d <= 0 {
		return l.pausedUntil
	}
	d = min(d, maxPause)
	if until := l.clock.Now().Add(d); until.After(l.pausedUntil) {
		l.pausedUntil = until
	}
	return l.pausedUntil
}

// RoundTripper paces HTTP requests through next and pauses on 429/503 that
// say how long to wait.
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
		rt.l.Pause(PauseFor(resp.Header, rt.l.clock.Now()))
	}
	return resp, err
}

// PauseFor reads how long an upstream asks to be left alone: Retry-After in
// seconds or as an HTTP date, else X-RateLimit-Reset as Unix seconds
// (ServiceNow) or an ISO-8601 time (Jira Cloud). Zero when neither says (or
// the time is past).
func PauseFor(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.Atoi(v); err == nil {
			return max(time.Duration(s)*time.Second, 0)
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0)
		}
	}
	if v := strings.TrimSpace(h.Get("X-RateLimit-Reset")); v != "" {
		if s, err := strconv.ParseInt(v, 10, 64); err == nil {
			return max(time.Unix(s, 0).Sub(now), 0)
		}
		for _, layout := range []string{time.RFC3339, "2006-01-02T15:04Z", "2006-01-02T15:04:05Z0700"} {
			if t, err := time.Parse(layout, v); err == nil {
				return max(t.Sub(now), 0)
			}
		}
	}
	return 0
}

// UnaryClientInterceptor paces gRPC calls; RESOURCE_EXHAUSTED that reads as
// throttling pauses the upstream briefly. A pause the call cannot sit out
// fails it at once with the retryable error Acquire returns.
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
