// Package server is the bridge's HTTP server: the sources' webhooks
// (POST /webhooks/<source>), the Chainguard CloudEvents endpoint, health,
// readiness and metrics.
//
// A webhook only names a ticket. One handler serves every source's webhook:
// each delivery is verified (HMAC-SHA256 over the raw body with the source's
// secret, compared in constant time) before the source parses its body,
// deduplicated on its delivery id, and answered as soon as the ticket id is
// queued; the engine re-reads the ticket from its source before acting on it.
// How a delivery is signed and what it names belongs to the source
// (source.Webhook).
package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/chainguard-dev/image-request-bridge/internal/metrics"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Defaults.
const (
	DefaultListen  = ":8080"
	DefaultMaxBody = 1 << 20 // 1 MiB
	DefaultIssuer  = "https://issuer.enforce.dev"

	// DefaultMaxInFlight bounds the webhook bodies read at once across all
	// endpoints; with Jira's 256 KiB limit that is at most 16 MiB of bodies.
	DefaultMaxInFlight = 64
	// DefaultBodyTimeout is how long a webhook body has to arrive once its
	// headers have.
	DefaultBodyTimeout = 10 * time.Second
	// DedupeWindow is how long a delivery's keys are kept in Deliveries: a
	// replay within it is refused, across restarts.
	DedupeWindow = 24 * time.Hour

	dedupeTTL       = 10 * time.Minute // the in-memory front of the dedupe
	dedupeMax       = 10_000
	pruneEvery      = 10 * time.Minute // how often Deliveries is pruned
	deliveryTimeout = 5 * time.Second  // a Deliveries call
	rejectLogEvery  = 10 * time.Second // one line per endpoint and result of refused deliveries
	retryAfter      = "30"             // seconds; what a sender is asked to wait when the queue is full
	readyTimeout    = 5 * time.Second
	shutdownTimeout = 10 * time.Second
)

// endpointChainguard names the CloudEvents endpoint in logs and metrics; a
// webhook's endpoint is its source's name.
const endpointChainguard = metrics.Chainguard

// Engine is what the server hands deliveries to.
type Engine interface {
	// Enqueue queues a ticket id of source for a re-read. It must not block;
	// false means the queue is full.
	Enqueue(source, id string) bool
	// RepoEvent reports a Chainguard repo, tag or push event. ctx is the
	// delivery's request context: it ends when the delivery is answered.
	RepoEvent(ctx context.Context, ev isync.RepoEvent)
}

// Options configure a Server.
type Options struct {
	Listen string // address for ListenAndServe (default ":8080")
	Engine Engine
	// Webhooks are served at POST /webhooks/<Name>, one per source.
	Webhooks   []Webhook
	Chainguard *Chainguard // nil: /events/chainguard answers 404
	// Ready reports readiness; nil error = ready. /readyz calls it with a 5s
	// timeout and shows its error text, which should name each failing
	// upstream with its cause (app.App.Ready bounds each check below 5s so
	// that it can) and must never hold a secret. nil: always ready.
	Ready   func(ctx context.Context) error
	Metrics *metrics.Metrics // nil: a fresh set
	Logger  zerolog.Logger
	// MaxBody caps every request body (default 1 MiB); a webhook's limit is
	// its source.Webhook's MaxBody, or this if smaller.
	MaxBody int64
	// MaxInFlight bounds the webhook bodies being read at once, across all
	// endpoints (default 64); a delivery beyond it is answered 503.
	MaxInFlight int
	// BodyTimeout bounds the read of a webhook body (default 10 s).
	BodyTimeout time.Duration
	// Deliveries keeps the keys of deliveries acted on for DedupeWindow, so
	// that a replay is refused after a restart too (the store). nil: only
	// the last 10 minutes, in memory.
	Deliveries Deliveries
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Deliveries records webhook deliveries acted on (store.SQLite implements
// it). Keys are hashes of a delivery's signed body and of its delivery id.
type Deliveries interface {
	// FirstDelivery records keys and reports whether none was recorded
	// before.
	FirstDelivery(ctx context.Context, endpoint string, keys []string, now time.Time) (bool, error)
	// ForgetDelivery removes keys (the delivery was not acted on).
	ForgetDelivery(ctx context.Context, endpoint string, keys []string) error
	// PruneDeliveries removes keys recorded before before.
	PruneDeliveries(ctx context.Context, before time.Time) (int64, error)
}

// Webhook is one source's webhook endpoint.
type Webhook struct {
	Name string          // the source: the path is /webhooks/<Name>, the endpoint label <Name>
	Hook *source.Webhook // nil or without a secret: the path answers 404 (not configured)
}

// Chainguard configures the CloudEvents endpoint.
type Chainguard struct {
	Issuer string // OIDC issuer of delivery tokens (default https://issuer.enforce.dev)
	Group  string // the organization's UIDP: tokens must be for subject "webhook:<Group>"
}

// Server serves the bridge's HTTP endpoints.
type Server struct {
	o       Options
	m       *metrics.Metrics
	log     zerolog.Logger
	handler http.Handler

	cgSeen *seen
	cg     *cgReceiver // nil: not configured

	now       func() time.Time
	slots     chan struct{} // webhook bodies being read
	rejects   *limitedLog
	pruneMu   sync.Mutex
	lastPrune time.Time
}

// New builds a Server. With o.Chainguard set it also looks up the issuer's
// OIDC configuration; if the issuer cannot be reached yet, the lookup is
// retried on the next CloudEvent delivery, which is answered 503 until then.
func New(ctx context.Context, o Options) (*Server, error) {
	if o.Engine == nil {
		return nil, errors.New("server: no engine")
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = DefaultBodyTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{
		o:       o,
		m:       o.Metrics,
		log:     o.Logger.With().Str("component", "server").Logger(),
		cgSeen:  newSeen(dedupeTTL, dedupeMax, o.Now),
		now:     o.Now,
		slots:   make(chan struct{}, o.MaxInFlight),
		rejects: newLimitedLog(rejectLogEvery, o.Now),
	}
	if c := o.Chainguard; c != nil {
		issuer := c.Issuer
		if issuer == "" {
			issuer = DefaultIssuer
		}
		if !isUIDP(c.Group) {
			return nil, fmt.Errorf("server: chainguard group %q is not a UIDP", c.Group)
		}
		s.cg = newCGReceiver(ctx, issuer, c.Group, s.onEvent, s.log)
	}

	mux := http.NewServeMux()
	for _, wh := range o.Webhooks {
		if !nameRe.MatchString(wh.Name) {
			return nil, fmt.Errorf("server: webhook name %q: want lowercase letters, digits and _", wh.Name)
		}
		mux.Handle("POST /webhooks/"+wh.Name, s.webhook(wh))
	}
	mux.HandleFunc("POST /events/chainguard", s.chainguard)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { text(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.Gatherer(), promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	s.handler = mux
	return s, nil
}

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler { return s.handler }

// ListenAndServe listens on Options.Listen and serves until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.o.Listen)
	if err != nil {
		return fmt.Errorf("server: listen %s: %w", s.o.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done, then stops accepting connections and
// lets requests in flight finish for up to 10 seconds before closing them. It
// returns nil after a graceful stop.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// Requests in flight keep their context through a graceful stop.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:    stdlog.New(logWriter{s.log}, "", 0),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info().Str("addr", ln.Addr().String()).Msg("serving HTTP")

	select {
	case err := <-errc:
		return fmt.Errorf("server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	if err != nil {
		_ = hs.Close()
		err = fmt.Errorf("server: shutdown: %w", err)
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("server: %w", serr)
	}
	s.log.Info().Msg("HTTP server stopped")
	return err
}

// logWriter sends net/http's own error lines (TLS, malformed requests) to the log.
type logWriter struct{ log zerolog.Logger }

func (l logWriter) Write(p []byte) (int, error) {
	l.log.Warn().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.o.Ready == nil {
		text(w, http.StatusOK, "ready")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.o.Ready(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = fmt.Errorf("readiness check timed out after %s", readyTimeout)
	}
	if err != nil {
		text(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	text(w, http.StatusOK, "ready")
}

// delivery is one webhook delivery, for its log line and metric.
type delivery struct {
	endpoint string
	start    time.Time
	ticket   string // ticket id, once known and well-formed
	key      string // human key, when well-formed
	id       string // delivery id, when well-formed
	detail   map[string]string
}

// answer writes the response, counts the delivery and logs it. Bodies and
// signatures are never logged.
func (s *Server) answer(w http.ResponseWriter, d *delivery, status int, result, msg string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	text(w, status, msg)
	s.record(d, status, result)
}

func (s *Server) record(d *delivery, status int, result string) {
	s.m.WebhookReceived(d.endpoint, result)
	ev := s.log.Info()
	if refused(status, result) {
		// Anyone can send these, at any rate: one line per endpoint and
		// result per interval, with the count since the last line.
		n, ok := s.rejects.allow(d.endpoint + "/" + result)
		if !ok {
			return
		}
		ev = ev.Int("count", n)
	}
	ev = ev.Str("endpoint", d.endpoint).Str("result", result).Int("status", status)
	if d.ticket != "" {
		ev = ev.Str("ticket", d.ticket)
	}
	if d.key != "" {
		ev = ev.Str("key", d.key)
	}
	if d.id != "" {
		ev = ev.Str("delivery", d.id)
	}
	for k, v := range d.detail {
		ev = ev.Str(k, v)
	}
	ev.Stringer("took", time.Since(d.start).Round(time.Microsecond)).Msg("delivery")
}

func (s *Server) notConfigured(w http.ResponseWriter, d *delivery) {
	text(w, http.StatusNotFound, "not configured")
	s.log.Info().Str("endpoint", d.endpoint).Str("result", "not_configured").Int("status", http.StatusNotFound).Msg("delivery")
}

func text(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

// readBody reads the whole body, up to MaxBody. ok is false after a 413 or
// 400 answer.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, d *delivery) ([]byte, bool) {
	if r.ContentLength > s.o.MaxBody {
		s.answer(w, d, http.StatusRequestEntityTooLarge, metrics.ResultTooLarge, "body too large")
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.o.MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.answer(w, d, http.StatusRequestEntityTooLarge, metrics.ResultTooLarge, "body too large")
		} else {
			s.answer(w, d, http.StatusBadRequest, metrics.ResultBadRequest, "cannot read body")
		}
		return nil, false
	}
	return body, true
}

// refused reports whether a delivery's answer is one anyone can provoke
// (unverified, or a replay), whose log lines are rate-limited.
func refused(status int, result string) bool {
	switch result {
	case metrics.ResultBadSignature, metrics.ResultTooLarge, metrics.ResultDuplicate:
		return true
	case metrics.ResultBadRequest, metrics.ResultUnavailable:
		return status != http.StatusOK
	}
	return false
}

// enqueue answers a verified delivery naming source's ticket id, known by
// deliveryKeys: it is a duplicate if any key was seen.
func (s *Server) enqueue(w http.ResponseWriter, d *delivery, dedupe *seen, source, id string, deliveryKeys []string) {
	first, err := s.first(d.endpoint, dedupe, deliveryKeys)
	switch {
	case err != nil:
		s.log.Error().Err(err).Str("endpoint", d.endpoint).Msg("cannot record webhook delivery")
		s.answer(w, d, http.StatusServiceUnavailable, metrics.ResultError, "cannot record the delivery, retry later")
		return
	case !first:
		s.answer(w, d, http.StatusOK, metrics.ResultDuplicate, "duplicate")
		return
	}
	if !s.o.Engine.Enqueue(source, id) {
		// Not acted on: the sender's retry must not be taken for a duplicate.
		dedupe.forget(deliveryKeys...)
		if s.o.Deliveries != nil {
			ctx, cancel := context.WithTimeout(context.Background(), deliveryTimeout)
			if err := s.o.Deliveries.ForgetDelivery(ctx, d.endpoint, deliveryKeys); err != nil {
				s.log.Error().Err(err).Str("endpoint", d.endpoint).Msg("cannot forget webhook delivery")
			}
			cancel()
		}
		s.answer(w, d, http.StatusServiceUnavailable, metrics.ResultQueueFull, "queue full, retry later")
		return
	}
	s.answer(w, d, http.StatusAccepted, metrics.ResultAccepted, "accepted")
}

// first records keys in memory, then in Deliveries, and reports whether none
// was seen before. A replay flood is answered from memory.
func (s *Server) first(endpoint string, dedupe *seen, keys []string) (bool, error) {
	if !dedupe.add(keys...) {
		return false, nil
	}
	if s.o.Deliveries == nil {
		return true, nil
	}
	// Not the request's context: a write is not abandoned halfway because
	// the sender hung up.
	ctx, cancel := context.WithTimeout(context.Background(), deliveryTimeout)
	defer cancel()
	now := s.now()
	first, err := s.o.Deliveries.FirstDelivery(ctx, endpoint, keys, now)
	if err != nil {
		dedupe.forget(keys...)
		return false, err
	}
	s.prune(ctx, now)
	return first, nil
}

// prune drops Deliveries' keys older than DedupeWindow, every pruneEvery.
func (s *Server) prune(ctx context.Context, now time.Time) {
	s.pruneMu.Lock()
	due := now.Sub(s.lastPrune) >= pruneEvery
	if due {
		s.lastPrune = now
	}
	s.pruneMu.Unlock()
	if !due {
		return
	}
	if _, err := s.o.Deliveries.PruneDeliveries(ctx, now.Add(-DedupeWindow)); err != nil {
		s.log.Warn().Err(err).Msg("cannot prune webhook deliveries")
	}
}

var (
	nameRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)
	uidpRe = regexp.MustCompile(`^[0-9a-f]+(/[0-9a-f]+)*$`)
)

// isUIDP reports whether v looks like a Chainguard UIDP: hex segments
// separated by "/".
func isUIDP(v string) bool { return len(v) <= 512 && uidpRe.MatchString(v) }

// wellFormed returns v if it matches re, else "".
func wellFormed(re *regexp.Regexp, v string) string {
	if re.MatchString(v) {
		return v
	}
	return ""
}

// bodyKey is the dedupe key of a delivery without a delivery id: a retry
// resends the same bytes.
func bodyKey(body []byte) string {
	sum := sha256.Sum256(body)
	return "body:" + hex.EncodeToString(sum[:])
}

// webhook serves one source's deliveries. What a delivery costs before it is
// verified is bounded: a body without a well-formed signature header is
// refused unread; one with a signature takes one of MaxInFlight slots (503
// when none is free), has BodyTimeout to arrive, is hashed as it is read and
// kept only up to the endpoint's limit (413 beyond it).
func (s *Server) webhook(wh Webhook) http.HandlerFunc {
	dedupe := newSeen(dedupeTTL, dedupeMax, s.now)
	var limit int64
	if wh.Hook != nil {
		limit = wh.Hook.MaxBody
	}
	if limit <= 0 {
		limit = source.DefaultWebhookMaxBody
	}
	if s.o.MaxBody < limit {
		limit = s.o.MaxBody
	}
	return func(w http.ResponseWriter, r *http.Request) {
		d := &delivery{endpoint: wh.Name, start: time.Now()}
		hook := wh.Hook
		if hook == nil || hook.Secret.IsZero() {
			s.notConfigured(w, d)
			return
		}
		if r.ContentLength > limit {
			s.answer(w, d, http.StatusRequestEntityTooLarge, metrics.ResultTooLarge, "body too large")
			return
		}
		sig, ok := hook.Signature(r.Header)
		if !ok {
			s.answer(w, d, http.StatusUnauthorized, metrics.ResultBadSignature, "invalid or missing signature")
			return
		}
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		default:
			s.answer(w, d, http.StatusServiceUnavailable, metrics.ResultUnavailable, "busy, retry later")
			return
		}
		// A slow sender holds its slot for BodyTimeout at most. The error
		// is ignored: a ResponseWriter without deadlines (tests) keeps the
		// server's ReadTimeout.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.o.BodyTimeout))
		body, sum, err := readSigned(r.Body, hook.Secret, limit)
		switch {
		case errors.Is(err, errTooLarge):
			s.answer(w, d, http.StatusRequestEntityTooLarge, metrics.ResultTooLarge, "body too large")
			return
		case err != nil:
			s.answer(w, d, http.StatusBadRequest, metrics.ResultBadRequest, "cannot read body")
			return
		case !hmac.Equal(sum, sig):
			s.answer(w, d, http.StatusUnauthorized, metrics.ResultBadSignature, "invalid or missing signature")
			return
		}
		p, err := hook.Parse(r.Header, body)
		d.key, d.id, d.detail = p.Key, p.ID, p.Detail
		switch {
		case err != nil:
			s.answer(w, d, http.StatusBadRequest, metrics.ResultBadRequest, err.Error())
			return
		case p.Ignored:
			s.answer(w, d, http.StatusOK, metrics.ResultIgnored, "ignored")
			return
		case p.TicketID == "":
			s.answer(w, d, http.StatusBadRequest, metrics.ResultBadRequest, "the delivery names no ticket")
			return
		}
		d.ticket = p.TicketID
		// The signed body is always a key: a delivery id in an unsigned
		// header cannot make a captured delivery new again.
		keys := []string{bodyKey(body)}
		if p.DedupeID != "" {
			keys = append(keys, "id:"+p.DedupeID)
		}
		s.enqueue(w, d, dedupe, wh.Name, p.TicketID, keys)
	}
}

// errTooLarge is a body over its endpoint's limit.
var errTooLarge = errors.New("body too large")

// readSigned reads body, at most limit bytes of it, and returns it with its
// HMAC-SHA256 under key, computed as it streams. A body over limit is
// errTooLarge after limit+1 bytes have been read.
func readSigned(body io.Reader, key secret.Secret, limit int64) ([]byte, []byte, error) {
	h := hmac.New(sha256.New, []byte(key.Reveal()))
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.TeeReader(io.LimitReader(body, limit+1), h))
	if err != nil {
		return nil, nil, err
	}
	if n > limit {
		return nil, nil, errTooLarge
	}
	return buf.Bytes(), h.Sum(nil), nil
}

// statusRecorder remembers the status a wrapped handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

func (s *Server) chainguard(w http.ResponseWriter, r *http.Request) {
	d := &delivery{endpoint: endpointChainguard, start: time.Now()}
	if s.cg == nil {
		s.notConfigured(w, d)
		return
	}
	body, ok := s.readBody(w, r, d)
	if !ok {
		return
	}
	h, err := s.cg.get()
	if err != nil {
		s.answer(w, d, http.StatusServiceUnavailable, metrics.ResultUnavailable, "cannot verify events yet, retry later")
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	st := &cgDelivery{}
	rec := &statusRecorder{ResponseWriter: w}
	h.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), cgDeliveryKey{}, st)))

	result := st.result
	switch {
	case rec.status >= 200 && rec.status < 300:
		if result == "" {
			result = metrics.ResultAccepted
		}
	case rec.status == http.StatusUnauthorized || rec.status == http.StatusForbidden:
		result = metrics.ResultBadSignature
	case rec.status == http.StatusBadRequest:
		result = metrics.ResultBadRequest
	default:
		result = metrics.ResultError
	}
	d.ticket, d.id, d.detail = st.repoID, st.id, st.detail()
	s.record(d, rec.status, result)
}
