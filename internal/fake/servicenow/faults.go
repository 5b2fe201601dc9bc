package servicenow

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
	// e.g. "/sc_req_item/" or "sysparm_offset=2"); "" matches any request,
	// including POST /oauth_token.do.
	PathContains string

	// Status is the HTTP status to answer with. 400, 401, 403, 404, 429 and
	// 500 come with the platform's error body; 401 also sets
	// WWW-Authenticate: Basic realm="Service-now"; 429 sets Retry-After and
	// X-RateLimit-Limit, -Reset and -Rule. 500 answers the transaction-quota
	// body ("Transaction cancelled: maximum execution time exceeded").
	Status int
	// RetryAfter is the Retry-After of a 429, in seconds (0 means 1).
	RetryAfter int
	// Body replaces the answer's body (sent as JSON content). With Status 0
	// the status is 200, which serves truncated or malformed payloads.
	Body string
	// HTML answers with the page of a hibernating developer instance
	// (text/html, class="instance-hibernating-page") and status 200, or
	// Status if set.
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
	// ApplyFirst performs the real operation (for example applies the PATCH
	// and appends its work note) and then fails as described by the other
	// fields: the ambiguous outcome a client must handle without resending
	// blindly. With no failure set, the real answer is sent after Delay.
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
		f.Body = `{"result":[{"sys_id":"`
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
		w.Header().Set("Content-Type", "text/html;charset=UTF-8")
		w.WriteHeader(status)
		io.WriteString(w, hibernatingPage)
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
	switch status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Basic realm="Service-now"`)
	case http.StatusTooManyRequests:
		after := f.RetryAfter
		if after <= 0 {
			after = 1
		}
		h.Set("Retry-After", strconv.Itoa(after))
		h.Set("X-RateLimit-Limit", "10")
		h.Set("X-RateLimit-Reset", strconv.FormatInt(s.clock().Add(time.Duration(after)*time.Second).Unix(), 10))
		h.Set("X-RateLimit-Rule", RateLimitRuleSysID)
	}
	body := []byte(f.Body)
	if f.Body == "" {
		body = faultBody(status)
	}
	writeRaw(w, status, body)
}

// RateLimitRuleSysID is the X-RateLimit-Rule of injected 429 answers.
const RateLimitRuleSysID = "5e1c2d3b4a59687766554433221100ff"

// Error bodies the platform sends, for use as Fault.Body.
var (
	// ACLUpdateBody is a 403 from an update ACL.
	ACLUpdateBody = string(errorJSON("Operation Failed", strPtr("ACL Exception Update Failed due to security constraints")))
	// TransactionCancelledBody is the answer of a request cancelled by the
	// 60 s REST transaction quota.
	TransactionCancelledBody = string(errorJSON("Transaction cancelled: maximum execution time exceeded",
		strPtr("Transaction cancelled: maximum execution time exceeded Check logs for error trace or enable glide.rest.debug property to verify REST request processing")))
	// RateLimitedBody is the body of a 429.
	RateLimitedBody = string(errorJSON("Rate limit exceeded", strPtr("Rate limit of 10 requests per hour for Table API exceeded")))
)

// BusinessRuleAbortBody is the 403 body of an update aborted by the named
// business rule (or a data policy), rather than by an ACL.
func BusinessRuleAbortBody(rule string) string {
	return string(errorJSON("Operation Failed", strPtr(
		"Operation against file 'sc_req_item' was aborted by Business Rule '"+rule+"'. Business Rule Stack:"+rule)))
}

// faultBody returns the platform's error body for status.
func faultBody(status int) []byte {
	switch status {
	case http.StatusBadRequest:
		return errorJSON("Requested URI does not represent any resource", nil)
	case http.StatusUnauthorized:
		return errorJSON("User Not Authenticated", strPtr("Required to provide Auth information"))
	case http.StatusForbidden:
		return []byte(ACLUpdateBody)
	case http.StatusNotFound:
		return errorJSON("No Record found", strPtr("Record doesn't exist or ACL restricts the record retrieval"))
	case http.StatusTooManyRequests:
		return []byte(RateLimitedBody)
	case http.StatusInternalServerError:
		return []byte(TransactionCancelledBody)
	}
	return errorJSON(http.StatusText(status), nil)
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

// hibernatingPage is what a sleeping developer instance serves in place of
// any API answer.
const hibernatingPage = `<html>
<head>
<title>ServiceNow Developers</title>
<meta charset="utf-8"/>
</head>
<body class="instance-hibernating-page">
<div class="instance-hibernating-page-container">
<h1>Your instance is hibernating</h1>
<p>This instance is hibernating because it has not been used recently. Sign in to the developer portal to wake it up.</p>
<a href="https://developer.servicenow.com/dev.do">Wake up your instance</a>
</div>
</body>
</html>
`
