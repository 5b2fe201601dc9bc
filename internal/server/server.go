// Package server is the bridge's HTTP server: the ServiceNow and Jira
// webhooks, the Chainguard CloudEvents endpoint, health, readiness and
// metrics.
//
// A webhook only names a ticket. Each delivery is verified (HMAC over the raw
// body, compared in constant time) before its body is parsed, deduplicated on
// its delivery id, and answered as soon as the ticket id is queued; the engine
// re-reads the ticket from its source before acting on it.
package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/chainguard-dev/image-request-bridge/internal/metrics"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Defaults.
const (
	DefaultListen  = ":8080"
	DefaultMaxBody = 1 << 20 // 1 MiB
	DefaultIssuer  = "https://issuer.enforce.dev"

	dedupeTTL       = 10 * time.Minute
	dedupeMax       = 10_000
	retryAfter      = "30" // seconds; what a sender is asked to wait when the queue is full
	readyTimeout    = 5 * time.Second
	shutdownTimeout = 10 * time.Second
)

// Endpoint names, used in logs and metrics.
const (
	endpointServiceNow = "servicenow"
	endpointJira       = "jira"
	endpointChainguard = "chainguard"
)

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
	Listen           string // address for ListenAndServe (default ":8080")
	Engine           Engine
	ServiceNowSecret secret.Secret // zero: /webhooks/servicenow answers 404 (not configured)
	JiraSecret       secret.Secret // zero: /webhooks/jira answers 404 (not configured)
	Chainguard       *Chainguard   // nil: /events/chainguard answers 404
	// Ready reports readiness; nil error = ready. /readyz calls it with a 5s
	// timeout and shows its error text, which must never hold a secret. nil:
	// always ready.
	Ready   func(ctx context.Context) error
	Metrics *metrics.Metrics // nil: a fresh set
	Logger  zerolog.Logger
	MaxBody int64 // largest accepted request body (default 1 MiB)
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

	snSeen, jiraSeen, cgSeen *seen
	cg                       *cgReceiver // nil: not configured
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
	s := &Server{
		o:        o,
		m:        o.Metrics,
		log:      o.Logger.With().Str("component", "server").Logger(),
		snSeen:   newSeen(dedupeTTL, dedupeMax, time.Now),
		jiraSeen: newSeen(dedupeTTL, dedupeMax, time.Now),
		cgSeen:   newSeen(dedupeTTL, dedupeMax, time.Now),
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
	mux.HandleFunc("POST /webhooks/servicenow", s.serviceNow)
	mux.HandleFunc("POST /webhooks/jira", s.jira)
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
	ev := s.log.Info().Str("endpoint", d.endpoint).Str("result", result).Int("status", status)
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

// enqueue answers a verified delivery naming source's ticket id.
func (s *Server) enqueue(w http.ResponseWriter, d *delivery, dedupe *seen, source, id, deliveryKey string) {
	if !dedupe.add(deliveryKey) {
		s.answer(w, d, http.StatusOK, metrics.ResultDuplicate, "duplicate")
		return
	}
	if !s.o.Engine.Enqueue(source, id) {
		// Not acted on: the sender's retry must not be taken for a duplicate.
		dedupe.forget(deliveryKey)
		s.answer(w, d, http.StatusServiceUnavailable, metrics.ResultQueueFull, "queue full, retry later")
		return
	}
	s.answer(w, d, http.StatusAccepted, metrics.ResultAccepted, "accepted")
}

var (
	sysIDRe      = regexp.MustCompile(`^[0-9a-f]{32}$`)
	ritmNumberRe = regexp.MustCompile(`^[A-Z]{2,8}[0-9]{1,16}$`)
	jiraIDRe     = regexp.MustCompile(`^[0-9]{1,19}$`)
	jiraKeyRe    = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}-[0-9]{1,19}$`)
	deliveryIDRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	uidpRe       = regexp.MustCompile(`^[0-9a-f]+(/[0-9a-f]+)*$`)
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

func mac(key secret.Secret, body []byte) []byte {
	h := hmac.New(sha256.New, []byte(key.Reveal()))
	h.Write(body)
	return h.Sum(nil)
}

// serviceNowSignature decodes an X-Signature value: the HMAC-SHA256 in base64
// (what GlideCertificateEncryption.generateMac returns) or hex, optionally
// prefixed "sha256=".
func serviceNowSignature(v string) ([]byte, bool) {
	v = strings.TrimSpace(v)
	if len(v) > 7 && strings.EqualFold(v[:7], "sha256=") {
		v = v[7:]
	}
	if len(v) == 2*sha256.Size {
		if b, err := hex.DecodeString(v); err == nil {
			return b, true
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(v); err == nil && len(b) == sha256.Size {
			return b, true
		}
	}
	return nil, false
}

// jiraSignature decodes an X-Hub-Signature value: "sha256=<hex>".
func jiraSignature(v string) ([]byte, bool) {
	v = strings.TrimSpace(v)
	if len(v) != 7+2*sha256.Size || !strings.EqualFold(v[:7], "sha256=") {
		return nil, false
	}
	b, err := hex.DecodeString(v[7:])
	return b, err == nil
}

// serviceNowPayload is the body the bridge's business rule sends (see
// integrations/servicenow). Other fields are ignored.
type serviceNowPayload struct {
	SysID   string `json:"sys_id"`
	Number  string `json:"number"`
	EventID string `json:"event_id"`
}

func (s *Server) serviceNow(w http.ResponseWriter, r *http.Request) {
	d := &delivery{endpoint: endpointServiceNow, start: time.Now()}
	if s.o.ServiceNowSecret.IsZero() {
		s.notConfigured(w, d)
		return
	}
	body, ok := s.readBody(w, r, d)
	if !ok {
		return
	}
	sig, ok := serviceNowSignature(r.Header.Get("X-Signature"))
	if !ok || !hmac.Equal(mac(s.o.ServiceNowSecret, body), sig) {
		s.answer(w, d, http.StatusUnauthorized, metrics.ResultBadSignature, "invalid or missing signature")
		return
	}
	var p serviceNowPayload
	if err := json.Unmarshal(body, &p); err != nil {
		s.answer(w, d, http.StatusBadRequest, metrics.ResultBadRequest, "body is not the expected JSON object")
		return
	}
	d.key = wellFormed(ritmNumberRe, p.Number)
	sysID := strings.ToLower(p.SysID)
	if !sysIDRe.MatchString(sysID) {
		s.answer(w, d, http.StatusBadRequest, metrics.ResultBadRequest, "sys_id must be 32 hex characters")
		return
	}
	d.ticket = sysID
	// The signed body's event_id wins over the unsigned header.
	key := p.EventID
	if key == "" {
		key = r.Header.Get("X-Event-Id")
	}
	d.id = wellFormed(deliveryIDRe, key)
	if key == "" {
		key = bodyKey(body)
	} else {
		key = "id:" + key
	}
	s.enqueue(w, d, s.snSeen, "servicenow", sysID, key)
}

// jiraPayload is the part of a Jira admin webhook body the bridge reads.
type jiraPayload struct {
	WebhookEvent string `json:"webhookEvent"`
	Issue        *struct {
		ID  json.RawMessage `json:"id"`
		Key string          `json:"key"`
	} `json:"issue"`
}

// jiraIssueID accepts the id as a JSON string or number of digits.
func jiraIssueID(raw json.RawMessage) (string, bool) {
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", false
		}
		v = n.String()
	}
	return v, jiraIDRe.MatchString(v)
}

func (s *Server) jira(w http.ResponseWriter, r *http.Request) {
	d := &delivery{endpoint: endpointJira, start: time.Now()}
	if s.o.JiraSecret.IsZero() {
		s.notConfigured(w, d)
		return
	}
	body, ok := s.readBody(w, r, d)
	if !ok {
		return
	}
	sig, ok := jiraSignature(r.Header.Get("X-Hub-Signature"))
	if !ok || !hmac.Equal(mac(s.o.JiraSecret, body), sig) {
		s.answer(w, d, http.StatusUnauthorized, metrics.ResultBadSignature, "invalid or missing signature")
		return
	}
	hdrID := r.Header.Get("X-Atlassian-Webhook-Identifier")
	d.id = wellFormed(deliveryIDRe, hdrID)
	var p jiraPayload
	if err := json.Unmarshal(body, &p); err != nil {
		s.answer(w, d, http.StatusBadRequest, metrics.ResultBadRequest, "body is not the expected JSON object")
		return
	}
	if ev := p.WebhookEvent; ev != "jira:issue_updated" && ev != "jira:issue_created" {
		if ev != "" && len(ev) <= 64 && deliveryIDRe.MatchString(ev) {
			d.detail = map[string]string{"event": ev}
		}
		s.answer(w, d, http.StatusOK, metrics.ResultIgnored, "ignored")
		return
	}
	if p.Issue == nil {
		s.answer(w, d, http.StatusBadRequest, metrics.ResultBadRequest, "issue.id is missing")
		return
	}
	d.key = wellFormed(jiraKeyRe, p.Issue.Key)
	id, ok := jiraIssueID(p.Issue.ID)
	if !ok {
		s.answer(w, d, http.StatusBadRequest, metrics.ResultBadRequest, "issue.id must be a numeric id")
		return
	}
	d.ticket = id
	key := bodyKey(body)
	if hdrID != "" {
		key = "id:" + hdrID
	}
	s.enqueue(w, d, s.jiraSeen, "jira", id, key)
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
