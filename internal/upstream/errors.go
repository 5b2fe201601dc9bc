package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/chainguard-dev/image-request-bridge/internal/ratelimit"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// APIError is a non-2xx answer (or a 2xx whose body is an error object) from
// an upstream, with what its body said.
type APIError struct {
	Upstream string // display name: "ServiceNow", "Jira"
	Method   string
	Path     string // path only; the query may be long and is not repeated
	Status   int
	Messages []string          // the body's messages, in order
	Fields   map[string]string // field → message (Jira's "errors" object)
	Detail   string            // a longer explanation (ServiceNow's error.detail)
	// RetryAfter is the wait the answer asked for (Retry-After or
	// X-RateLimit-Reset), 0 if none.
	RetryAfter time.Duration
	// PausedUntil is set when RetryAfter was too long to wait in place: the
	// upstream is paused in its limiter until then.
	PausedUntil time.Time
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("%s %s %s: HTTP %d", e.Upstream, e.Method, e.Path, e.Status)
	parts := append([]string(nil), e.Messages...)
	fields := make([]string, 0, len(e.Fields))
	for f := range e.Fields {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		parts = append(parts, f+": "+e.Fields[f])
	}
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, "; ")
	}
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf("; retry after %s", e.RetryAfter)
	}
	if !e.PausedUntil.IsZero() {
		msg += "; calls paused until " + e.PausedUntil.UTC().Format(time.RFC3339)
	}
	return msg
}

// Class is the class of the answer's status (see ClassOf).
func (e *APIError) Class() isync.Class { return ClassOf(e.Status) }

// ClassOf is the one status → class mapping: 401 and 403 are Blocked (no
// retry fixes credentials or permissions); everything else, 429, 5xx and a
// network failure (status 0) included, is Retryable. Statuses whose meaning
// depends on the call (400 on a write, 404 or 410 on a path derived from the
// configuration) are decided by the connector, which knows the call.
func ClassOf(status int) isync.Class {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return isync.ClassBlocked
	}
	return isync.ClassRetryable
}

// StatusOf returns the HTTP status of the *APIError in err's chain, or 0.
func StatusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// ErrNotSent marks an error raised before a request went out (the limiter
// refused it, the credentials could not be obtained): a write that fails
// this way certainly did nothing.
var ErrNotSent = errors.New("the request was not sent")

// Ambiguous reports whether a failed write may nevertheless have been
// applied: a lost answer (network error, timeout), a 5xx, an HTML page or an
// undecodable body. A 4xx or an error raised before sending is not.
func Ambiguous(err error) bool {
	if err == nil || errors.Is(err, ErrNotSent) {
		return false
	}
	var pe *ratelimit.PausedError
	if errors.As(err, &pe) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500
	}
	var se *isync.Error
	if errors.As(err, &se) && se.Class != isync.ClassRetryable {
		return false
	}
	return true
}

// ErrHTML is the error (errors.Is) of an answer that is an HTML page instead
// of JSON: a log-in page of a single sign-on proxy, a maintenance page, a
// hibernating instance. The call did not reach the API.
var ErrHTML = errors.New("answered with an HTML page instead of JSON")

type htmlError struct{ upstream, hint string }

func (e *htmlError) Error() string {
	msg := e.upstream + " " + ErrHTML.Error()
	if e.hint != "" {
		msg += " (" + e.hint + ")"
	}
	return msg
}

func (e *htmlError) Is(target error) bool { return target == ErrHTML }

// IsHTML reports whether an answer is an HTML page: a text/html content type
// or a body starting with '<' (after a byte-order mark and blanks).
func IsHTML(h http.Header, body []byte) bool {
	if strings.Contains(strings.ToLower(h.Get("Content-Type")), "text/html") {
		return true
	}
	t := strings.TrimSpace(strings.TrimPrefix(string(body[:min(len(body), 512)]), "\xef\xbb\xbf"))
	return len(t) > 0 && t[0] == '<'
}
