package chainguard

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// How a call rides out a blip, and how the bridge stops calling an API that
// is down. The values follow gRPC's example retry policy (4 attempts, 0.1 s
// doubling to 1 s): a blip costs the ticket well under two seconds, never a
// pass.
const (
	DefaultRetryAttempts   = 4
	DefaultRetryBackoff    = 100 * time.Millisecond
	DefaultRetryBackoffMax = time.Second

	DefaultCircuitThreshold    = 5
	DefaultCircuitCooldown     = 5 * time.Second
	DefaultCircuitCooldownMax  = time.Minute
	DefaultCircuitProbeTimeout = 5 * time.Second
)

// RetryPolicy bounds the retries in place of a call that failed transiently:
// UNAVAILABLE, DEADLINE_EXCEEDED answered by the server (not the caller's own
// deadline), ABORTED, and RESOURCE_EXHAUSTED that says it is rate limiting.
// Other answers, an exhausted quota among them, are returned at once. A retry
// is safe for every call the bridge makes: CreateRepo is sent with
// PreventExisting, so a retry after an attempt that landed answers
// ALREADY_EXISTS, which is a success; AddEntitlementImages of an image already
// entitled is a success too.
//
// Retries stop when the next wait would outlast the call's deadline; the last
// error is returned then, and the engine backs the ticket off.
type RetryPolicy struct {
	// Attempts is how many times a call is made at most, the first
	// included: 1 turns retries in place off. Default DefaultRetryAttempts.
	Attempts int
	// Backoff is the wait before the first retry; it doubles for each
	// further one, up to BackoffMax. Each wait is drawn at random between
	// half of it and all of it, so that workers hit by the same blip do not
	// retry in step. Defaults DefaultRetryBackoff and DefaultRetryBackoffMax.
	Backoff    time.Duration
	BackoffMax time.Duration
}

func (r RetryPolicy) withDefaults() RetryPolicy {
	if r.Attempts <= 0 {
		r.Attempts = DefaultRetryAttempts
	}
	if r.Backoff <= 0 {
		r.Backoff = DefaultRetryBackoff
	}
	if r.BackoffMax <= 0 {
		r.BackoffMax = DefaultRetryBackoffMax
	}
	r.BackoffMax = max(r.BackoffMax, r.Backoff)
	return r
}

// CircuitPolicy says when the API is considered down. After Threshold calls
// in a row (each after its retries in place) fail with UNAVAILABLE or
// DEADLINE_EXCEEDED, the circuit opens: for Cooldown every call fails at once
// with a Retryable error of Cause CauseUnavailable, and
// Provisioner.Unavailable reports it. Then one call, the probe, goes through
// (waiting up to ProbeTimeout for a connection); any answer from the server
// closes the circuit, a failure opens it again for twice as long, up to
// CooldownMax.
type CircuitPolicy struct {
	// Threshold is the number of failed calls in a row that opens the
	// circuit. Default DefaultCircuitThreshold.
	Threshold int
	// Cooldown is the first time the circuit stays open; CooldownMax bounds
	// its doubling. Defaults DefaultCircuitCooldown and
	// DefaultCircuitCooldownMax.
	Cooldown    time.Duration
	CooldownMax time.Duration
	// ProbeTimeout bounds the probe, which, unlike other calls, waits for a
	// connection. Default DefaultCircuitProbeTimeout.
	ProbeTimeout time.Duration
}

func (c CircuitPolicy) withDefaults() CircuitPolicy {
	if c.Threshold <= 0 {
		c.Threshold = DefaultCircuitThreshold
	}
	if c.Cooldown <= 0 {
		c.Cooldown = DefaultCircuitCooldown
	}
	if c.CooldownMax <= 0 {
		c.CooldownMax = DefaultCircuitCooldownMax
	}
	c.CooldownMax = max(c.CooldownMax, c.Cooldown)
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = DefaultCircuitProbeTimeout
	}
	return c
}

// sleep waits d, or until ctx ends (then it returns ctx.Err()).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retrier is a unary client interceptor that retries a call in place after a
// transient failure (see RetryPolicy). It is written here rather than as a
// retry policy in the connection's service config because the policy must
// tell a throttling RESOURCE_EXHAUSTED from an exhausted quota (by message,
// which a service config cannot), must leave the credential's own failures
// to it, and must wait through an injectable Sleep so that tests do not wait
// on the wall clock. go-grpc-kit's own retry interceptor is off by default
// (GRPC_CLIENT_MAX_RETRY=0) and has none of these either.
type retrier struct {
	policy RetryPolicy
	sleep  func(context.Context, time.Duration) error
}

func (r *retrier) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if probing(ctx) {
		return invoker(ctx, method, req, reply, cc, opts...) // the circuit's probe is one attempt
	}
	backoff := r.policy.Backoff
	for attempt := 1; ; attempt++ {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err == nil || attempt >= r.policy.Attempts || ctx.Err() != nil || !transient(err) {
			return err
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
			return err // no time for another attempt: the engine backs off
		}
		if r.sleep(ctx, wait) != nil {
			return err
		}
		backoff = min(2*backoff, r.policy.BackoffMax)
	}
}

// transient reports whether an attempt's failure may pass at once if the call
// is made again. Failures to obtain a token are the credential's to judge.
func transient(err error) bool {
	var ce *credError
	if errors.As(err, &ce) || isync.CauseOf(err) == CauseUnavailable {
		return false
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	case codes.ResourceExhausted:
		return throttled(st.Message())
	}
	return false
}

type probeKey struct{}

func probing(ctx context.Context) bool { return ctx.Value(probeKey{}) != nil }

// circuit is a unary client interceptor that stops calls to an API that is
// down (see CircuitPolicy). It sits outside the retrier: each call counts
// once, after its retries in place.
type circuit struct {
	policy CircuitPolicy
	now    func() time.Time
	log    zerolog.Logger
	api    string // the API's URL, redacted, for messages

	mu       sync.Mutex
	fails    int           // calls in a row that found the API down
	last     error         // the last of them
	open     bool          // calls fail at once until the probe succeeds
	since    time.Time     // when the circuit opened
	until    time.Time     // when the next probe may go
	cooldown time.Duration // the current time open
	probe    bool          // a probe is in flight
}

func newCircuit(p CircuitPolicy, now func() time.Time, log zerolog.Logger, api string) *circuit {
	return &circuit{policy: p, now: now, log: log, api: api}
}

func (c *circuit) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	probe, err := c.admit()
	if err != nil {
		return err
	}
	if !probe {
		err = invoker(ctx, method, req, reply, cc, opts...)
		c.record(ctx, false, err)
		return err
	}
	// The connection may be waiting out its reconnect backoff (up to two
	// minutes after a long outage): reconnect now, and give the probe a
	// bounded wait for the connection instead of failing fast.
	if cc != nil {
		cc.ResetConnectBackoff()
	}
	pctx, cancel := context.WithTimeout(context.WithValue(ctx, probeKey{}, true), c.policy.ProbeTimeout)
	defer cancel()
	err = invoker(pctx, method, req, reply, cc, append(opts, grpc.WaitForReady(true))...)
	c.record(ctx, true, err)
	return err
}

// admit decides whether a call may go, and whether it is the probe.
func (c *circuit) admit() (probe bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !c.open:
		return false, nil
	case c.probe || c.now().Before(c.until):
		return false, c.errLocked()
	}
	c.probe = true
	return true, nil
}

// record counts a call's outcome. ctx is the caller's: a call it cancelled
// says nothing about the API.
func (c *circuit) record(ctx context.Context, probe bool, err error) {
	down := false
	switch code := status.Code(err); {
	case errors.Is(ctx.Err(), context.Canceled), isync.CauseOf(err) == CauseUnavailable:
		c.mu.Lock()
		if probe {
			c.probe = false // no verdict: the next call probes
		}
		c.mu.Unlock()
		return
	case code == codes.Unavailable || code == codes.DeadlineExceeded:
		var ce *credError
		down = !errors.As(err, &ce) // the issuer's outage is not the API's
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if probe {
		c.probe = false
	}
	now := c.now()
	if !down {
		c.fails, c.last = 0, nil
		if c.open {
			c.open = false
			c.log.Info().Str("upstream", "chainguard").Str("api_url", c.api).
				Dur("outage", now.Sub(c.since)).Msg("the Chainguard API answers again; provisioning resumes")
		}
		return
	}
	c.fails++
	c.last = err
	switch {
	case c.open && probe:
		c.cooldown = min(2*c.cooldown, c.policy.CooldownMax)
		c.until = now.Add(c.cooldown)
	case !c.open && c.fails >= c.policy.Threshold:
		c.open, c.since, c.cooldown = true, now, c.policy.Cooldown
		c.until = now.Add(c.cooldown)
		c.log.Warn().Str("upstream", "chainguard").Str("api_url", c.api).Err(err).Int("failed_calls", c.fails).
			Dur("retry_in", c.cooldown).Msg("the Chainguard API is unreachable; provisioning waits until a probe call succeeds")
	}
}

// Unavailable returns nil while calls may go through (the circuit is closed,
// or its cool-down is over and a probe may go), else the error calls fail
// with now.
func (c *circuit) Unavailable() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.open || (!c.probe && !c.now().Before(c.until)) {
		return nil
	}
	return c.errLocked()
}

// errLocked is the error of a call refused while the circuit is open: a
// *isync.Error of ClassRetryable and Cause CauseUnavailable, wrapping the last
// failure, and a gRPC status UNAVAILABLE.
func (c *circuit) errLocked() error {
	next := "now (a probe call is under way)"
	if !c.probe {
		next = c.until.UTC().Format(time.RFC3339)
	}
	return &isync.Error{
		Class: isync.ClassRetryable,
		Cause: CauseUnavailable,
		Reason: fmt.Sprintf("the Chainguard API at %s is unreachable since %s (%d calls failed in a row; check chainguard.api_url and the network path to it); the bridge tries it again at %s",
			c.api, c.since.UTC().Format(time.RFC3339), c.fails, next),
		Err: &circuitError{last: c.last},
	}
}

// circuitError is a call refused without being made; it reads as UNAVAILABLE
// to gRPC's status functions (metrics, classify).
type circuitError struct{ last error }

func (e *circuitError) Error() string {
	if e.last == nil {
		return "not called"
	}
	return "not called; last failure: " + e.last.Error()
}
func (e *circuitError) Unwrap() error { return e.last }
func (e *circuitError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, "chainguard: circuit open: "+e.Error())
}

// The engine checks the circuit before every provisioning call.
var _ isync.Circuit = (*Provisioner)(nil)
