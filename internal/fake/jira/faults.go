package jira

import (
	"bytes"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"
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

type activeFault struct {
	Fault
	left int
}

// InjectFault queues f. Each request takes the first queued fault it matches,
// in injection order; a fault is removed once it has affected Times requests.
func (s *Server) InjectFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := f.Times
	if n <= 0 {
		n = 1
	}
	s.faults = append(s.faults, &activeFault{Fault: f, left: n})
}

// ClearFaults removes every queued fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// takeFaultLocked consumes the first fault matching r.
func (s *Server) takeFaultLocked(r *http.Request) (Fault, bool) {
	for i, f := range s.faults {
		if f.Method != "" && !strings.EqualFold(f.Method, r.Method) {
			continue
		}
		if f.PathContains != "" && !strings.Contains(r.URL.RequestURI(), f.PathContains) {
			continue
		}
		f.left--
		if f.left == 0 {
			s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
		}
		return f.Fault, true
	}
	if s.faultRate > 0 && s.faultRng.Float64() < s.faultRate {
		return s.randomFaultLocked(r), true
	}
	return Fault{}, false
}

// SetFaultRate answers the given share of requests (0 to 1) with a random
// fault, the way a flaky instance and the network in front of it do: 500,
// 502, 503, 429 with Retry-After, a reset connection, an answer slower than
// any sane client timeout, an HTML page with status 200, truncated JSON.
// Writes fail after being applied half of the time (the ambiguous case),
// except for a 429 or an HTML page, which come before any work.
// Queued faults (InjectFault) come first. seed makes a run repeatable.
func (s *Server) SetFaultRate(rate float64, seed uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultRate, s.faultRng = rate, rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

func (s *Server) randomFaultLocked(r *http.Request) Fault {
	var f Fault
	switch s.faultRng.IntN(8) {
	case 0:
		f.Status = 500
	case 1:
		f.Status = 502
	case 2:
		f.Status = 503
	case 3:
		f.Status, f.RetryAfter = 429, 1
	case 4:
		f.Reset = true
	case 5:
		f.Delay = 20 * time.Second // past the client's timeout
	case 6:
		f.HTML = true
	default:
		f.Body = `{"issues":[{"id":"1`
	}
	// A write may have been applied before a 5xx, a reset or a timeout (the
	// ambiguous case); never before a 429 or an HTML page, which the instance
	// sends without doing anything.
	f.ApplyFirst = r.Method != http.MethodGet && f.Status != http.StatusTooManyRequests && !f.HTML && s.faultRng.IntN(2) == 0
	if f.Body != "" && r.Method != http.MethodGet {
		// A 200 with a cut body comes from a server that did the work.
		f.ApplyFirst = true
	}
	return f
}

// serveFault answers r according to f.
func (s *Server) serveFault(w http.ResponseWriter, r *http.Request, body []byte, f Fault) {
	var applied *httptest.ResponseRecorder
	if f.ApplyFirst {
		applied = httptest.NewRecorder()
		s.serve(applied, r)
	}
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	switch {
	case f.Reset:
		resetConnection(w)
	case f.HTML:
		status := f.Status
		if status == 0 {
			status = http.StatusOK
		}
		page := loginPage
		if status >= 400 {
			page = unavailablePage
			if f.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
			}
		}
		w.Header().Set("Content-Type", "text/html;charset=UTF-8")
		w.WriteHeader(status)
		io.WriteString(w, page)
	case f.Status != 0 || f.Body != "":
		s.writeFaultStatus(w, f)
	case applied != nil:
		maps.Copy(w.Header(), applied.Header())
		w.WriteHeader(applied.Code)
		w.Write(applied.Body.Bytes())
	default:
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.serve(w, r)
	}
}

// writeFaultStatus answers with f's status and body.
func (s *Server) writeFaultStatus(w http.ResponseWriter, f Fault) {
	status := f.Status
	if status == 0 {
		status = http.StatusOK
	}
	h := w.Header()
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
	body := []byte(f.Body)
	if f.Body == "" {
		body = []byte(faultBody(status))
	}
	writeRaw(w, status, body)
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

// resetConnection drops the client connection without an answer, with a TCP
// reset where possible.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable: abort the handler, which also drops the connection.
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
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
