// Package httpfake holds what the in-process HTTP fakes of remote services
// (ServiceNow, Jira) share: the request log, injected and random faults
// (error statuses, HTML pages, slow answers, dropped connections, writes that
// are applied and then fail), per-request latency and an ordered-object JSON
// writer. Each fake supplies only what is specific to its API: how it serves
// a request, its error bodies, its HTML pages and its extra fault headers.
package httpfake

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// MaxBody bounds how much of a request body a fake reads.
const MaxBody = 10 << 20

// Handler is the front of a fake: it holds every answer back by Latency,
// logs the request, applies the first matching fault and otherwise hands the
// request to Serve. F is the fake's fault type: Fault itself, or a type with
// more fields that Base and Wrap convert from and to Fault. The fields are
// set before the handler serves its first request; the methods are safe for
// concurrent use.
type Handler[F any] struct {
	// Serve answers a request as the fake's service would.
	Serve http.HandlerFunc
	// Clock stamps logged requests.
	Clock func() time.Time
	// Latency holds every answer back, measured from the request's arrival.
	// A client that gives up first gets nothing and nothing happens.
	Latency time.Duration
	// NoRequestLog stops the handler from keeping the requests it receives.
	NoRequestLog bool

	// Base returns the common fields of a fault and Wrap builds a fault from
	// them; both may be nil when F is Fault.
	Base func(F) Fault
	Wrap func(Fault) F
	// TruncatedBody is the cut-off JSON a random fault sends with status 200.
	TruncatedBody string
	// HTMLPage returns the page an HTML fault answers with status, after
	// setting any headers of its own on h.
	HTMLPage func(h http.Header, f F, status int) string
	// FaultHeaders, if set, adds the fake's headers to the answer of a fault
	// with a status or a body, such as a 429's Retry-After and rate-limit
	// headers.
	FaultHeaders func(h http.Header, f F, status int)
	// ErrorBody returns the fake's error body for status, sent when a fault
	// sets no Body.
	ErrorBody func(status int) []byte

	mu        sync.Mutex
	requests  []*Request
	faults    []*activeFault[F]
	faultRate float64 // share of requests answered with a random fault (SetFaultRate)
	faultRng  *rand.Rand
}

// Request is one request received by a fake.
type Request struct {
	Method, Path, RawQuery string
	Header                 http.Header
	// Status is the HTTP status answered, 0 if the connection was dropped or
	// the client went away before an answer.
	Status int
	Body   string // request body
	Time   time.Time
}

// Requests returns every request received since the start or the last
// ResetRequests, in arrival order.
func (h *Handler[F]) Requests() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Request, len(h.requests))
	for i, r := range h.requests {
		out[i] = *r
		out[i].Header = r.Header.Clone()
	}
	return out
}

// ResetRequests forgets the requests received so far.
func (h *Handler[F]) ResetRequests() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests = nil
}

// statusWriter records the status of the answer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP logs the request, applies the first matching fault, and
// otherwise serves the request normally.
func (h *Handler[F]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !sleep(r, h.Latency) {
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, MaxBody))
	r.Body = io.NopCloser(bytes.NewReader(body))
	var logged *Request
	if !h.NoRequestLog {
		logged = &Request{
			Method:   r.Method,
			Path:     r.URL.Path,
			RawQuery: r.URL.RawQuery,
			Header:   r.Header.Clone(),
			Body:     string(body),
		}
	}
	h.mu.Lock()
	if logged != nil {
		logged.Time = h.Clock()
		h.requests = append(h.requests, logged)
	}
	f, faulted := h.takeFaultLocked(r)
	h.mu.Unlock()

	sw := &statusWriter{ResponseWriter: w}
	if logged != nil {
		defer func() {
			h.mu.Lock()
			logged.Status = sw.status
			h.mu.Unlock()
		}()
	}
	if faulted {
		h.serveFault(sw, r, body, f)
		return
	}
	h.Serve(sw, r)
}

// sleep waits d, or until the client goes away (false).
func sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}
