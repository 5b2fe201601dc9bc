package bench

import (
	"context"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Meter counts the bridge's upstream calls and splits each ticket's time into
// upstream time (on the wire: from sending a request to reading the last byte
// of its answer) and the bridge's own time (everything else: the engine, the
// store, building requests and decoding answers, logging).
//
// The engine drives one ticket on one goroutine, from the Claim that starts it
// to the store call that ends its lease (its last Save, or Release), and the HTTP and gRPC clients run their calls
// on the caller's goroutine. So the meter keys an open ticket by goroutine, and
// the wire time of a call made on that goroutine belongs to that ticket.
type Meter struct {
	mu       sync.Mutex
	calls    map[string]int           // "upstream kind" → count
	wire     map[string]time.Duration // upstream → total wire time
	open     map[int64]*span          // by goroutine
	own      []time.Duration          // per finished ticket
	upstream []time.Duration          // per finished ticket
	store    []time.Duration          // per finished ticket: the part of own time spent in the store
}

type span struct {
	ticket string
	start  time.Time
	wire   time.Duration
	store  time.Duration
}

// NewMeter returns an empty meter.
func NewMeter() *Meter {
	return &Meter{calls: map[string]int{}, wire: map[string]time.Duration{}, open: map[int64]*span{}}
}

// addWire records d of wire time on the current goroutine's ticket.
func (m *Meter) addWire(upstream string, d time.Duration) {
	g := goid()
	m.mu.Lock()
	m.wire[upstream] += d
	if sp := m.open[g]; sp != nil {
		sp.wire += d
	}
	m.mu.Unlock()
}

func (m *Meter) count(key string) {
	m.mu.Lock()
	m.calls[key]++
	m.mu.Unlock()
}

// Calls returns a copy of the call counts.
func (m *Meter) Calls() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int, len(m.calls))
	for k, v := range m.calls {
		out[k] = v
	}
	return out
}

// Wire returns the total wire time so far, over all upstreams.
func (m *Meter) Wire() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var t time.Duration
	for _, d := range m.wire {
		t += d
	}
	return t
}

// Spans returns the own, upstream and store time of every finished ticket.
func (m *Meter) Spans() (own, upstream, store []time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.own), slices.Clone(m.upstream), slices.Clone(m.store)
}

// addStore records d of store time on the current goroutine's ticket.
func (m *Meter) addStore(g int64, d time.Duration) {
	m.mu.Lock()
	if sp := m.open[g]; sp != nil {
		sp.store += d
	}
	m.mu.Unlock()
}

// Transport wraps an HTTP transport: it counts each request under
// "<upstream> <kind>" and times it until its body is read or closed.
func (m *Meter) Transport(upstream string, classify func(*http.Request) string) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			m.count(upstream + " " + classify(r))
			start := time.Now()
			resp, err := next.RoundTrip(r)
			m.addWire(upstream, time.Since(start))
			if resp != nil && resp.Body != nil {
				resp.Body = &timedBody{ReadCloser: resp.Body, m: m, upstream: upstream}
			}
			return resp, err
		})
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// timedBody adds the time spent reading an answer to its wire time.
type timedBody struct {
	io.ReadCloser
	m        *Meter
	upstream string
}

func (b *timedBody) Read(p []byte) (int, error) {
	start := time.Now()
	n, err := b.ReadCloser.Read(p)
	b.m.addWire(b.upstream, time.Since(start))
	return n, err
}

// UnaryInterceptor counts and times gRPC calls under "chainguard <Method>".
func (m *Meter) UnaryInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		m.count("chainguard " + path.Base(method))
		start := time.Now()
		err := invoker(ctx, method, req, reply, cc, opts...)
		m.addWire("chainguard", time.Since(start))
		return err
	}
}

// Store wraps the engine's store: a ticket's span opens with the Claim that
// starts it and closes with the call that ends its lease.
func (m *Meter) Store(next isync.Store) isync.Store { return &meteredStore{Store: next, m: m} }

type meteredStore struct {
	isync.Store
	m *Meter
}

func (s *meteredStore) Claim(ctx context.Context, source, ticketID, key, owner string, now, until time.Time) (isync.Record, bool, error) {
	return s.claim(source, ticketID, func() (isync.Record, bool, error) {
		return s.Store.Claim(ctx, source, ticketID, key, owner, now, until)
	})
}

func (s *meteredStore) ClaimStart(ctx context.Context, source, ticketID, key, owner string, now, until time.Time, first isync.Record) (isync.Record, bool, error) {
	return s.claim(source, ticketID, func() (isync.Record, bool, error) {
		return s.Store.ClaimStart(ctx, source, ticketID, key, owner, now, until, first)
	})
}

// claim opens the ticket's span (unless this goroutine already has it open:
// a renewal) and times the claim.
func (s *meteredStore) claim(source, ticketID string, call func() (isync.Record, bool, error)) (isync.Record, bool, error) {
	g := goid()
	start := time.Now()
	s.m.mu.Lock()
	if sp := s.m.open[g]; sp == nil || sp.ticket != source+"/"+ticketID {
		s.m.open[g] = &span{ticket: source + "/" + ticketID, start: start}
	}
	s.m.mu.Unlock()
	rec, ok, err := call()
	s.m.addStore(g, time.Since(start))
	return rec, ok, err
}

func (s *meteredStore) Save(ctx context.Context, rec *isync.Record, audit ...isync.AuditEntry) error {
	start := time.Now()
	err := s.Store.Save(ctx, rec, audit...)
	if err == nil && rec.LeaseOwner == "" {
		s.end(rec.Source, rec.TicketID, start) // the save ended the lease: the ticket's last store call
		return err
	}
	s.m.addStore(goid(), time.Since(start))
	return err
}

func (s *meteredStore) Append(ctx context.Context, e isync.AuditEntry) error {
	start := time.Now()
	err := s.Store.Append(ctx, e)
	s.m.addStore(goid(), time.Since(start))
	return err
}

func (s *meteredStore) Release(ctx context.Context, source, ticketID, owner string) error {
	start := time.Now()
	err := s.Store.Release(ctx, source, ticketID, owner)
	s.end(source, ticketID, start)
	return err
}

// end closes the span of the ticket this goroutine is working on, with its
// last store call, which started at start.
func (s *meteredStore) end(source, ticketID string, start time.Time) {
	g := goid()
	end := time.Now()
	s.m.mu.Lock()
	if sp := s.m.open[g]; sp != nil && sp.ticket == source+"/"+ticketID {
		sp.store += end.Sub(start)
		s.m.own = append(s.m.own, end.Sub(sp.start)-sp.wire)
		s.m.upstream = append(s.m.upstream, sp.wire)
		s.m.store = append(s.m.store, sp.store)
		delete(s.m.open, g)
	}
	s.m.mu.Unlock()
}

// ClassifyServiceNow names a Table API request.
func ClassifyServiceNow(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, "/oauth_token.do"):
		return "oauth"
	case strings.Contains(p, "/sys_journal_field"):
		return "journal"
	case strings.Contains(p, "/sc_item_option_mtom"):
		return "variables"
	case r.Method == http.MethodPatch:
		return "PATCH"
	case strings.HasSuffix(p, "/sc_req_item"):
		return "list"
	default:
		return r.Method + " record"
	}
}

// ClassifyJira names a Jira REST request.
func ClassifyJira(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasSuffix(p, "/search/jql"), strings.HasSuffix(p, "/search"):
		return "search"
	case strings.HasSuffix(p, "/transitions"):
		return r.Method + " transitions"
	case strings.HasSuffix(p, "/comment"):
		return r.Method + " comment"
	case strings.Contains(p, "/issue/"):
		return r.Method + " issue"
	default:
		return r.Method + " " + path.Base(p)
	}
}

// percentile returns the q-quantile (0..1) of ds, nearest rank.
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}
