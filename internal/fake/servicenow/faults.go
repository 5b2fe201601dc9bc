package servicenow

import (
	"net/http"
	"strconv"
	"time"

	"github.com/chainguard-dev/image-request-bridge/internal/fake/httpfake"
)

// Fault makes matching requests fail the way a real instance or the network
// in front of it does. Faults are checked before authentication, so they also
// hit requests that would otherwise answer 401.
//
// RetryAfter sets Retry-After on any status (a 503 may carry one); Header
// sets further headers (Retry-After as an HTTP date).
//
// PathContains is matched against the request URI (path and query, e.g.
// "/sc_req_item/" or "sysparm_offset=2"); "" also matches POST
// /oauth_token.do. Status 400, 401, 403, 404, 429 and 500 come with the
// platform's error body; 401 also sets WWW-Authenticate: Basic
// realm="Service-now"; 429 sets Retry-After and X-RateLimit-Limit, -Reset and
// -Rule. 500 answers the transaction-quota body ("Transaction cancelled:
// maximum execution time exceeded"). HTML answers with the page of a
// hibernating developer instance (class="instance-hibernating-page").
// ApplyFirst, for example, applies the PATCH and appends its work note before
// failing.
type Fault = httpfake.Fault

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
// faults, with the platform's error bodies and headers.
func (s *Server) newHandler() *httpfake.Handler[Fault] {
	return &httpfake.Handler[Fault]{
		Serve:         s.serve,
		Clock:         s.clock,
		Latency:       s.latency,
		NoRequestLog:  s.noRequestLog,
		TruncatedBody: `{"result":[{"sys_id":"`,
		HTMLPage:      func(http.Header, Fault, int) string { return hibernatingPage },
		FaultHeaders:  s.faultHeaders,
		ErrorBody:     faultBody,
	}
}

// faultHeaders sets the headers the platform sends with status.
func (s *Server) faultHeaders(h http.Header, f Fault, status int) {
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
	default:
		if f.RetryAfter > 0 { // a 503 from the node or a load balancer may say when
			h.Set("Retry-After", strconv.Itoa(f.RetryAfter))
		}
	}
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
