package jira

import (
	"net/http"
	"strconv"
	"time"

	"github.com/chainguard-dev/image-request-bridge/internal/fake/httpfake"
)

// Fault makes matching requests fail the way a real instance or the network
// in front of it does. Faults are checked before authentication, so they also
// hit requests that would otherwise answer 401.
type Fault struct {
	// Method matches the request method; "" matches any.
	Method string
	// PathContains must be a substring of the request URI (path and query,
	// e.g. "/transitions" or "nextPageToken="); "" matches any request.
	PathContains string

	// Status is the HTTP status to answer with, with Jira's error envelope
	// {"errorMessages":[...],"errors":{}}: 401 is the unauthenticated body
	// (with X-Seraph-LoginReason), 404 the missing issue, 410 the CHANGE-2046
	// removal, 429 the rate-limited body. A 429 sets Retry-After,
	// X-RateLimit-Limit and X-RateLimit-Remaining: 0, plus on Cloud
	// X-RateLimit-Reset (ISO-8601, yyyy-MM-ddTHH:mmZ, rounded up to the
	// minute) and RateLimit-Reason, on Data Center
	// X-RateLimit-Interval-Seconds and X-RateLimit-FillRate. Other statuses
	// set Retry-After only when RetryAfter is given (some Cloud 503s do).
	Status int
	// RetryAfter is the Retry-After of a 429 (or any status), in seconds. For
	// a 429, 0 means 1.
	RetryAfter int
	// Header is set on the answer of a fault with a status or a body, after
	// Jira's own headers (for example Retry-After as an HTTP date).
	Header http.Header
	// RateLimitReason is the RateLimit-Reason of a Cloud 429: jira-burst-based
	// (default), jira-per-issue-on-write, jira-quota-based or jira-cost-based.
	RateLimitReason string
	// Body replaces the answer's body (sent as JSON content). With Status 0
	// the status is 200, which serves truncated or malformed payloads.
	Body string
	// HTML answers with an HTML page instead of JSON (text/html): with status
	// 200 (the default) the Jira log-in page a single sign-on proxy or an
	// expired session serves in place of API answers, with an error Status
	// a "temporarily unavailable" page.
	HTML bool
	// Delay holds the answer back this long. Without ApplyFirst the request
	// is served (or failed) only after the delay; if the client gives up
	// first nothing happens. With ApplyFirst the operation is applied at once
	// and only the answer is late.
	Delay time.Duration
	// Reset drops the connection without answering (the TCP connection is
	// reset). Note that Go's HTTP client silently resends an idempotent
	// request (GET) that fails this way on a reused keep-alive connection.
	Reset bool
	// ApplyFirst performs the real operation (for example applies the
	// transition and appends its comment) and then fails as described by the
	// other fields: the ambiguous outcome a client must handle without
	// resending blindly. With no failure set, the real answer is sent after
	// Delay.
	ApplyFirst bool
	// Times is how many matching requests the fault affects (0 means 1).
	Times int
}

// common returns the fields of f that every fake shares.
func (f Fault) common() httpfake.Fault {
	return httpfake.Fault{
		Method:       f.Method,
		PathContains: f.PathContains,
		Status:       f.Status,
		RetryAfter:   f.RetryAfter,
		Header:       f.Header,
		Body:         f.Body,
		HTML:         f.HTML,
		Delay:        f.Delay,
		Reset:        f.Reset,
		ApplyFirst:   f.ApplyFirst,
		Times:        f.Times,
	}
}

// fromCommon returns the Jira fault with c's fields.
func fromCommon(c httpfake.Fault) Fault {
	return Fault{
		Method:       c.Method,
		PathContains: c.PathContains,
		Status:       c.Status,
		RetryAfter:   c.RetryAfter,
		Header:       c.Header,
		Body:         c.Body,
		HTML:         c.HTML,
		Delay:        c.Delay,
		Reset:        c.Reset,
		ApplyFirst:   c.ApplyFirst,
		Times:        c.Times,
	}
}

// InjectFault queues f. Each request takes the first queued fault it matches,
// in injection order; a fault is removed once it has affected Times requests.
func (s *Server) InjectFault(f Fault) { s.front.InjectFault(f) }

// ClearFaults removes every queued fault.
func (s *Server) ClearFaults() { s.front.ClearFaults() }

// SetFaultRate answers the given share of requests (0 to 1) with a random
// fault, the way a flaky instance and the network in front of it do: 500,
// 502, 503, 429 with Retry-After, a reset connection, an answer slower than
// any sane client timeout, an HTML page with status 200, truncated JSON.
// Writes fail after being applied half of the time (the ambiguous case),
// except for a 429 or an HTML page, which come before any work.
// Queued faults (InjectFault) come first. seed makes a run repeatable.
func (s *Server) SetFaultRate(rate float64, seed uint64) { s.front.SetFaultRate(rate, seed) }

// newHandler returns the front of the instance: request log, latency and
// faults, with Jira's error bodies, pages and headers.
func (s *Server) newHandler() *httpfake.Handler[Fault] {
	return &httpfake.Handler[Fault]{
		Serve:         s.serve,
		Clock:         s.clock,
		Latency:       s.latency,
		NoRequestLog:  s.noRequestLog,
		Base:          Fault.common,
		Wrap:          fromCommon,
		TruncatedBody: `{"issues":[{"id":"1`,
		HTMLPage:      faultPage,
		FaultHeaders:  s.faultHeaders,
		ErrorBody:     func(status int) []byte { return []byte(faultBody(status)) },
	}
}

// faultPage returns the HTML page of a fault answered with status: the log-in
// page with 200, else the "temporarily unavailable" page, with Retry-After if
// the fault sets one.
func faultPage(h http.Header, f Fault, status int) string {
	if status < 400 {
		return loginPage
	}
	if f.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(f.RetryAfter))
	}
	return unavailablePage
}

// faultHeaders sets the headers Jira sends with status.
func (s *Server) faultHeaders(h http.Header, f Fault, status int) {
	switch {
	case status == http.StatusUnauthorized:
		h.Set("X-Seraph-LoginReason", "AUTHENTICATED_FAILED")
	case status == http.StatusTooManyRequests:
		after := f.RetryAfter
		if after <= 0 {
			after = 1
		}
		h.Set("Retry-After", strconv.Itoa(after))
		h.Set("X-RateLimit-Limit", "100")
		h.Set("X-RateLimit-Remaining", "0")
		if s.cloud() {
			h.Set("X-RateLimit-Reset", RateLimitReset(s.clock(), after))
			reason := f.RateLimitReason
			if reason == "" {
				reason = "jira-burst-based"
			}
			h.Set("RateLimit-Reason", reason)
		} else {
			h.Set("X-RateLimit-Interval-Seconds", "1")
			h.Set("X-RateLimit-FillRate", "10")
		}
	case f.RetryAfter > 0:
		h.Set("Retry-After", strconv.Itoa(f.RetryAfter))
	}
}

// RateLimitReset returns the X-RateLimit-Reset a Cloud 429 carries when the
// budget refills retryAfter seconds after now: ISO-8601 in UTC to the minute
// (yyyy-MM-ddTHH:mmZ), rounded up so that it is never earlier than the
// Retry-After.
func RateLimitReset(now time.Time, retryAfter int) string {
	t := now.UTC().Add(time.Duration(retryAfter) * time.Second)
	if m := t.Truncate(time.Minute); !m.Equal(t) {
		t = m.Add(time.Minute)
	}
	return t.Format("2006-01-02T15:04Z")
}

// faultBody returns Jira's error body for status.
func faultBody(status int) string {
	switch status {
	case http.StatusBadRequest:
		return errorJSON([]string{"The request is invalid."}, nil)
	case http.StatusUnauthorized:
		return UnauthenticatedBody
	case http.StatusForbidden:
		return errorJSON([]string{"You do not have permission to perform this operation."}, nil)
	case http.StatusNotFound:
		return IssueNotFoundBody
	case http.StatusGone:
		return SearchRemovedBody
	case http.StatusTooManyRequests:
		return RateLimitedBody
	case http.StatusInternalServerError:
		return errorJSON([]string{"Internal server error"}, nil)
	}
	return errorJSON([]string{http.StatusText(status)}, nil)
}

// loginPage is what an API request gets when a single sign-on proxy or an
// expired session redirects it to the log-in form: status 200, HTML.
const loginPage = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Log in - Jira</title>
</head>
<body id="jira" class="aui-layout aui-theme-default page-type-login">
<div id="page">
<section id="content" role="main">
<form action="/login.jsp" class="aui" id="login-form" method="post">
<h1>Welcome to Jira</h1>
<label for="login-form-username">Username</label>
<input class="text medium-field" id="login-form-username" name="os_username" type="text">
<label for="login-form-password">Password</label>
<input class="text medium-field" id="login-form-password" name="os_password" type="password">
<input class="aui-button aui-button-primary" id="login-form-submit" name="login" type="submit" value="Log In">
</form>
</section>
</div>
</body>
</html>
`

// unavailablePage is the HTML a proxy or a node in maintenance serves with an
// error status.
const unavailablePage = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Jira is temporarily unavailable</title>
</head>
<body>
<h1>Jira is temporarily unavailable</h1>
<p>We're working on it. Please try again in a few minutes.</p>
</body>
</html>
`
