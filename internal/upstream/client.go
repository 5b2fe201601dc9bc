// Package upstream is the one HTTP kit the connectors share: a retrying
// client over go-retryablehttp with the bridge's retry rule, the one
// status → class mapping, the one Retry-After policy, HTML-page detection,
// body size caps, credential scrubbing of answers, the per-upstream rate
// limit, concurrency and pause (internal/ratelimit), and the metrics
// transport hook.
//
// The retry rule:
//   - reads (GET, HEAD) are retried in place on network errors, 5xx (but 501)
//     and 429, with short jittered backoff, bounded by RetryMax and the
//     context's deadline;
//   - writes are retried only when the upstream provably did nothing: a 429,
//     or a 401 that Refresh fixes. Never after a 5xx or a lost answer: the
//     caller re-reads before anything else;
//   - a wait the upstream asks for (Retry-After in seconds or as an HTTP
//     date, X-RateLimit-Reset) pauses the whole upstream in its limiter; a
//     wait up to RetryWaitMax is slept in place, a longer one never is: the
//     call ends at once with an *APIError whose PausedUntil says until when,
//     and later calls fail at once (retryable, cause "<name>:paused") until
//     the pause is over, unless it ends within their bounds.
package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/chainguard-dev/image-request-bridge/internal/ratelimit"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Defaults of Options.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultRetryMax     = 4
	DefaultRetryWaitMin = 500 * time.Millisecond
	DefaultRetryWaitMax = 30 * time.Second
	DefaultMaxBody      = 32 << 20
)

// Options configure a Client; zero values take the defaults.
type Options struct {
	// Name is the upstream's stable key ("servicenow", "jira"): the prefix
	// of blocking causes and the limiter's name.
	Name string
	// Display names the upstream in messages ("ServiceNow"; default Name).
	Display string
	// Timeout bounds one attempt, answer included (default 30s).
	Timeout time.Duration
	// RetryMax is how many times a call is retried in place (default 4;
	// negative: never, except once after a 401 that Refresh fixes).
	RetryMax int
	// RetryWaitMin and RetryWaitMax bound the backoff between attempts
	// (defaults 500ms and 30s). RetryWaitMax is also the longest wait an
	// upstream may ask for that is slept in place.
	RetryWaitMin, RetryWaitMax time.Duration
	// MaxBody caps the bytes read of one answer (default 32 MiB); a larger
	// answer is an error.
	MaxBody int64
	// Limiter paces the calls and holds the upstream's pause; nil: a limiter
	// of its own with no rate and no concurrency bound (pauses still apply).
	// Share one Limiter between the clients of one upstream. Its clock also
	// times the waits between attempts.
	Limiter *ratelimit.Limiter
	// RecheckTimeout bounds the read after a write whose answer was lost,
	// its retries included (default DefaultRecheckTimeout); see Recheck.
	RecheckTimeout time.Duration
	// WrapTransport, when set, wraps the transport each attempt goes through
	// (metrics).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Transport is the base transport (default: a clone of
	// http.DefaultTransport).
	Transport http.RoundTripper
	// Authorize sets the credentials on each attempt (on a clone of the
	// request). An error ends the call; it is wrapped with ErrNotSent.
	Authorize func(*http.Request) error
	// Refresh, on a 401, drops cached credentials; when it returns true the
	// call is resent once (writes too: the upstream refused it before doing
	// anything).
	Refresh func(ctx context.Context) bool
	// Secrets returns the credentials scrubbed from every answer before
	// anyone reads it (internal/secret.Scrub).
	Secrets func() []string
	// UnauthenticatedHint and ForbiddenHint are the reasons of the Blocked
	// errors Classify makes of a 401 and a 403: what an admin must fix.
	UnauthenticatedHint, ForbiddenHint string
	// HTMLHint says, in HTMLError, what an HTML page in place of an answer
	// usually means for this upstream.
	HTMLHint string
}

// Client sends requests to one upstream. It is safe for concurrent use.
type Client struct {
	o   Options
	lim *ratelimit.Limiter
	rc  *retryablehttp.Client
}

// New returns a client; it makes no request.
func New(o Options) *Client {
	if o.Display == "" {
		o.Display = o.Name
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryMax == 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.RetryMax < 0 {
		o.RetryMax = 0
	}
	if o.RetryWaitMin <= 0 {
		o.RetryWaitMin = DefaultRetryWaitMin
	}
	if o.RetryWaitMax <= 0 {
		o.RetryWaitMax = DefaultRetryWaitMax
	}
	o.RetryWaitMin = min(o.RetryWaitMin, o.RetryWaitMax)
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.RecheckTimeout <= 0 {
		o.RecheckTimeout = DefaultRecheckTimeout
	}
	c := &Client{o: o, lim: o.Limiter}
	if c.lim == nil {
		c.lim = ratelimit.New(0, 1, 0, ratelimit.WithName(o.Name), ratelimit.WithMaxWait(o.RetryWaitMax))
	}
	base := o.Transport
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	if o.WrapTransport != nil {
		base = o.WrapTransport(base)
	}
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{
		Timeout:   o.Timeout,
		Transport: &attemptTransport{c: c, next: base},
	}
	// One more than RetryMax leaves room for the resend after a refreshed 401;
	// checkRetry enforces RetryMax for the rest.
	rc.RetryMax = o.RetryMax + 1
	rc.RetryWaitMin, rc.RetryWaitMax = o.RetryWaitMin, o.RetryWaitMax
	rc.Logger = nil
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.CheckRetry = c.checkRetry
	rc.Backoff = c.backoff
	c.rc = rc
	return c
}

// Name returns the upstream's stable key.
func (c *Client) Name() string { return c.o.Name }

// Limiter returns the limiter the client's calls go through.
func (c *Client) Limiter() *ratelimit.Limiter { return c.lim }

// HTTPClient returns an *http.Client whose every request goes through Do,
// for libraries that take one (go-jira).
func (c *Client) HTTPClient() *http.Client {
	return &http.Client{Transport: roundTripperFunc(c.Do)}
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type callKey struct{}

// call is the retry state of one Do.
type call struct {
	write     bool
	attempts  int // answers checked so far
	refreshed bool
}

// Do sends req with the retry rule (see the package doc). The answer's body
// is read whole (at most MaxBody), scrubbed of Secrets and given back
// readable. A non-2xx answer is returned as a response, not an error: build
// the error with NewError. Errors raised before the request went out wrap
// ErrNotSent; a pause the call cannot wait out is a retryable *isync.Error
// wrapping *ratelimit.PausedError.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	st := &call{write: req.Method != http.MethodGet && req.Method != http.MethodHead}
	r, err := retryablehttp.FromRequest(req.WithContext(context.WithValue(req.Context(), callKey{}, st)))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	resp, err := c.rc.Do(r)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the caller names the method and path; the URL repeats the query
		}
		return nil, err
	}
	return resp, nil
}

// checkRetry is the retry rule.
func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	st, _ := ctx.Value(callKey{}).(*call)
	if st == nil {
		st = &call{write: true}
	}
	st.attempts++
	if err != nil {
		var pe *ratelimit.PausedError
		if st.write || errors.Is(err, ErrNotSent) || errors.Is(err, errTooLarge) || errors.As(err, &pe) {
			// A lost answer to a write is the caller's to check; a pause (from
			// a limiter in WrapTransport) is not waited out here.
			return false, nil
		}
		if ok, _ := retryablehttp.DefaultRetryPolicy(ctx, nil, err); !ok {
			return false, nil
		}
		return c.retryAfterWait(ctx, st, 0)
	}
	switch s := resp.StatusCode; {
	case s == http.StatusUnauthorized:
		if c.o.Refresh != nil && !st.refreshed {
			st.refreshed = true
			return c.o.Refresh(ctx), nil // resent at once
		}
		return false, nil
	case s == http.StatusTooManyRequests || s >= 500 && s != http.StatusNotImplemented:
		wait := ratelimit.PauseFor(resp.Header, c.lim.Now())
		if wait > 0 && (s == http.StatusTooManyRequests || s == http.StatusServiceUnavailable) {
			// The whole upstream asked for a rest, not only this call.
			c.lim.Pause(wait)
		}
		if wait > c.o.RetryWaitMax {
			return false, nil // never slept in place: the caller gets PausedUntil
		}
		if s != http.StatusTooManyRequests && st.write {
			return false, nil // a 5xx to a write may come after the work
		}
		return c.retryAfterWait(ctx, st, wait)
	}
	return false, nil
}

// retryAfterWait decides whether another attempt fits RetryMax and the
// context's deadline, given the wait the upstream asked for (0: none), and
// if so waits before it on the limiter's clock: wait, or a jittered
// exponential backoff (half to all of RetryWaitMin doubled per retry, at
// most RetryWaitMax). The wait is slept here rather than by retryablehttp
// (whose Backoff is 0) so that time is an input.
func (c *Client) retryAfterWait(ctx context.Context, st *call, wait time.Duration) (bool, error) {
	if !c.retryWithin(ctx, st, wait) {
		return false, nil
	}
	if wait == 0 {
		d := c.expBackoff(c.retries(st))
		wait = d/2 + rand.N(d/2+1)
	}
	if err := c.lim.Clock().Sleep(ctx, wait); err != nil {
		return false, err
	}
	return true, nil
}

// retries is how many retries the call has had so far.
func (c *Client) retries(st *call) int {
	n := st.attempts - 1
	if st.refreshed {
		n-- // the resend after a refresh is not a retry
	}
	return n
}

// retryWithin reports whether another attempt fits RetryMax and the
// context's deadline, given the wait before it (0: backoff).
func (c *Client) retryWithin(ctx context.Context, st *call, wait time.Duration) bool {
	retries := c.retries(st)
	if retries >= c.o.RetryMax {
		return false
	}
	if wait == 0 {
		wait = c.expBackoff(retries) / 2 // the shortest jittered wait
	}
	if dl, ok := ctx.Deadline(); ok && wait >= time.Until(dl) {
		return false
	}
	return true
}

// expBackoff is RetryWaitMin doubled per retry, at most RetryWaitMax.
func (c *Client) expBackoff(retry int) time.Duration {
	d := c.o.RetryWaitMin
	for range retry {
		if d *= 2; d >= c.o.RetryWaitMax {
			return c.o.RetryWaitMax
		}
	}
	return d
}

// backoff is retryablehttp's wait between attempts: none, since
// retryAfterWait has waited already.
func (c *Client) backoff(_, _ time.Duration, _ int, _ *http.Response) time.Duration { return 0 }

// errTooLarge is an answer over MaxBody: asking again gets the same.
var errTooLarge = errors.New("the answer is larger than the cap")

// attemptTransport is what each attempt goes through: the credentials, the
// limiter, then the answer is read whole, capped and scrubbed.
type attemptTransport struct {
	c    *Client
	next http.RoundTripper
}

func (t *attemptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// Credentials first: obtaining them may call the upstream (an OAuth
	// grant), which must not wait for a slot this attempt holds.
	if t.c.o.Authorize != nil {
		req = req.Clone(req.Context())
		if err := t.c.o.Authorize(req); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
		}
	}
	release, err := t.c.lim.Acquire(req.Context())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	defer release()
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, t.c.o.MaxBody+1))
	resp.Body.Close()
	if err == nil && int64(len(data)) > t.c.o.MaxBody {
		err = fmt.Errorf("%w (%d MiB)", errTooLarge, t.c.o.MaxBody>>20)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if t.c.o.Secrets != nil {
		data = secret.Scrub(data, t.c.o.Secrets()...)
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	resp.ContentLength = int64(len(data))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// NewError returns the *APIError of a non-2xx answer, with the wait it
// asked for and the pause it caused; the caller adds what the body says.
func (c *Client) NewError(method, path string, resp *http.Response) *APIError {
	ae := &APIError{Upstream: c.o.Display, Method: method, Path: path}
	if resp == nil {
		return ae
	}
	ae.Status = resp.StatusCode
	if ae.Status == http.StatusTooManyRequests || ae.Status >= 500 {
		now := c.lim.Now()
		ae.RetryAfter = ratelimit.PauseFor(resp.Header, now)
		if until := c.lim.PausedUntil(); ae.RetryAfter > c.o.RetryWaitMax && until.After(now) {
			ae.PausedUntil = until
		}
	}
	return ae
}

// Classify gives err its class: an *APIError with 401 becomes Blocked with
// the cause "<name>:unauthenticated", with 403 "<name>:forbidden" (reasons:
// the hints); an error that already has a class, and any other, is returned
// unchanged (unclassified errors are retryable).
func (c *Client) Classify(err error) error {
	if err == nil {
		return nil
	}
	var se *isync.Error
	if errors.As(err, &se) {
		return err
	}
	switch StatusOf(err) {
	case http.StatusUnauthorized:
		return isync.Blocked(c.o.Name+":unauthenticated", c.hint(c.o.UnauthenticatedHint, "refused the credentials"), err)
	case http.StatusForbidden:
		return isync.Blocked(c.o.Name+":forbidden", c.hint(c.o.ForbiddenHint, "refused the call: the integration user lacks a permission"), err)
	}
	return err
}

func (c *Client) hint(h, fallback string) string {
	if h != "" {
		return h
	}
	return c.o.Display + " " + fallback
}

// HTMLError is the error of an HTML page answered in place of JSON to method
// path with status; errors.Is(err, ErrHTML) holds.
func (c *Client) HTMLError(method, path string, status int) error {
	return fmt.Errorf("%s %s %s: HTTP %d: %w", c.o.Display, method, path, status, &htmlError{upstream: c.o.Display, hint: c.o.HTMLHint})
}

// DefaultRecheckTimeout bounds the read that asks whether a write whose
// answer was lost landed after all (see Client.Recheck).
const DefaultRecheckTimeout = 15 * time.Second

// Recheck returns the context for the read that follows a write whose answer
// was lost (a timeout, a reset, a 5xx): whether the write landed decides
// whether it may be sent again, so the read must run even when the write's
// own context has ended (its deadline is often why the answer was lost); it
// is bounded by Options.RecheckTimeout instead, retries included, so neither
// a hung upstream nor shutdown waits on it for longer.
//
// A ctx cancelled (shutdown, not a deadline), before or during the read,
// ends it: the check fails, and the caller reports the write as not known to
// have landed; the engine re-reads the ticket before it writes again anyway.
func (c *Client) Recheck(ctx context.Context) (context.Context, context.CancelFunc) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.RecheckTimeout)
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			cancel()
		}
	})
	return rctx, func() { stop(); cancel() }
}
