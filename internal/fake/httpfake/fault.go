package httpfake

import (
	"bytes"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"
)

// Fault makes matching requests fail the way a real service or the network
// in front of it does. Faults are checked before authentication, so they also
// hit requests that would otherwise answer 401.
type Fault struct {
	// Method matches the request method; "" matches any.
	Method string
	// PathContains must be a substring of the request URI (path and query);
	// "" matches any request.
	PathContains string

	// Status is the HTTP status to answer with, with the fake's error body
	// for that status unless Body is set.
	Status int
	// RetryAfter is the Retry-After of a 429, in seconds (0 means 1).
	RetryAfter int
	// Header is set on the answer of a fault with a status or a body, after
	// the fake's own fault headers: for example Retry-After as an HTTP date,
	// or on a 503.
	Header http.Header
	// Body replaces the answer's body (sent as JSON content). With Status 0
	// the status is 200, which serves truncated or malformed payloads.
	Body string
	// HTML answers with the fake's HTML page (text/html) and status 200, or
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
	// ApplyFirst performs the real operation and then fails as described by
	// the other fields: the ambiguous outcome a client must handle without
	// resending blindly. With no failure set, the real answer is sent after
	// Delay.
	ApplyFirst bool
	// Times is how many matching requests the fault affects (0 means 1).
	Times int
}

type activeFault[F any] struct {
	fault F
	left  int
}

// base returns the common fields of f.
func (h *Handler[F]) base(f F) Fault {
	if h.Base == nil {
		return any(f).(Fault)
	}
	return h.Base(f)
}

// wrap turns a common fault into the fake's fault type.
func (h *Handler[F]) wrap(f Fault) F {
	if h.Wrap == nil {
		return any(f).(F)
	}
	return h.Wrap(f)
}

// InjectFault queues f. Each request takes the first queued fault it matches,
// in injection order; a fault is removed once it has affected Times requests.
func (h *Handler[F]) InjectFault(f F) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.base(f).Times
	if n <= 0 {
		n = 1
	}
	h.faults = append(h.faults, &activeFault[F]{fault: f, left: n})
}

// ClearFaults removes every queued fault.
func (h *Handler[F]) ClearFaults() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = nil
}

// SetFaultRate answers the given share of requests (0 to 1) with a random
// fault, the way a flaky service and the network in front of it do: 500,
// 502, 503, 429 with Retry-After, a reset connection, an answer slower than
// any sane client timeout, an HTML page with status 200, TruncatedBody with
// status 200. Writes fail after being applied half of the time (the
// ambiguous case), except for a 429 or an HTML page, which come before any
// work. Queued faults (InjectFault) come first. seed makes a run repeatable.
func (h *Handler[F]) SetFaultRate(rate float64, seed uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faultRate, h.faultRng = rate, rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// takeFaultLocked consumes the first fault matching r, or draws a random one.
func (h *Handler[F]) takeFaultLocked(r *http.Request) (F, bool) {
	for i, a := range h.faults {
		f := h.base(a.fault)
		if f.Method != "" && !strings.EqualFold(f.Method, r.Method) {
			continue
		}
		if f.PathContains != "" && !strings.Contains(r.URL.RequestURI(), f.PathContains) {
			continue
		}
		a.left--
		if a.left == 0 {
			h.faults = append(h.faults[:i:i], h.faults[i+1:]...)
		}
		return a.fault, true
	}
	if h.faultRate > 0 && h.faultRng.Float64() < h.faultRate {
		return h.wrap(randomFault(h.faultRng, r, h.TruncatedBody)), true
	}
	var zero F
	return zero, false
}

// randomFault draws one of the faults described at SetFaultRate, with
// truncated as the cut-off body.
func randomFault(rng *rand.Rand, r *http.Request, truncated string) Fault {
	var f Fault
	switch rng.IntN(8) {
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
		f.Body = truncated
	}
	// A write may have been applied before a 5xx, a reset or a timeout (the
	// ambiguous case); never before a 429 or an HTML page, which the service
	// sends without doing anything.
	f.ApplyFirst = r.Method != http.MethodGet && f.Status != http.StatusTooManyRequests && !f.HTML && rng.IntN(2) == 0
	if f.Body != "" && r.Method != http.MethodGet {
		// A 200 with a cut body comes from a server that did the work.
		f.ApplyFirst = true
	}
	return f
}

// serveFault answers r according to ff; body is the request body already
// read.
func (h *Handler[F]) serveFault(w http.ResponseWriter, r *http.Request, body []byte, ff F) {
	f := h.base(ff)
	var applied *httptest.ResponseRecorder
	if f.ApplyFirst {
		applied = httptest.NewRecorder()
		h.Serve(applied, r)
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
		page := h.HTMLPage(w.Header(), ff, status)
		w.Header().Set("Content-Type", "text/html;charset=UTF-8")
		w.WriteHeader(status)
		io.WriteString(w, page)
	case f.Status != 0 || f.Body != "":
		status := f.Status
		if status == 0 {
			status = http.StatusOK
		}
		if h.FaultHeaders != nil {
			h.FaultHeaders(w.Header(), ff, status)
		}
		for k, v := range f.Header {
			w.Header()[http.CanonicalHeaderKey(k)] = v
		}
		b := []byte(f.Body)
		if f.Body == "" {
			b = h.ErrorBody(status)
		}
		WriteRaw(w, status, b)
	case applied != nil:
		maps.Copy(w.Header(), applied.Header())
		w.WriteHeader(applied.Code)
		w.Write(applied.Body.Bytes())
	default:
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.Serve(w, r)
	}
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
