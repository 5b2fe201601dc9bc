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
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/chainguard-dev/image-request-bridge/connectors/jira"
	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/metrics"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

const (
	snSecret   = "servicenow-test-secret-not-real"
	jiraSecret = "test-webhook-secret-not-real" // the Jira fixture's signing secret
)

// fakeEngine records what the server hands it.
type fakeEngine struct {
	mu     stdsync.Mutex
	full   bool
	queued []string
	events []isync.RepoEvent
}

func (e *fakeEngine) Enqueue(source, id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.full {
		return false
	}
	e.queued = append(e.queued, source+"/"+id)
	return true
}

func (e *fakeEngine) RepoEvent(_ context.Context, ev isync.RepoEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, ev)
}

func (e *fakeEngine) setFull(v bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.full = v
}

func (e *fakeEngine) Queued() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.queued...)
}

func (e *fakeEngine) Events() []isync.RepoEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]isync.RepoEvent(nil), e.events...)
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  stdsync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	t      *testing.T
	engine *fakeEngine
	srv    *Server
	http   *httptest.Server
	logs   *syncBuffer
	m      *metrics.Metrics
}

// testWebhooks returns the webhooks of the two registered sources with these
// secrets ("" = not configured), as the bridge builds them from their
// sections.
func testWebhooks(snSecret, jiraSecret string) []Webhook {
	sn := &servicenow.Config{Enabled: true, WebhookSecret: secret.New(snSecret)}
	jc := &jira.Config{Enabled: true, WebhookSecret: secret.New(jiraSecret)}
	return []Webhook{
		{Name: servicenow.Name, Hook: servicenow.Connector.(source.Webhooker).Webhook(sn)},
		{Name: jira.Name, Hook: jira.Connector.(source.Webhooker).Webhook(jc)},
	}
}

// newHarness serves a Server over real HTTP. mod adjusts the options.
func newHarness(t *testing.T, mod func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, engine: &fakeEngine{}, logs: &syncBuffer{}, m: metrics.New("servicenow", "jira")}
	o := Options{
		Engine:   h.engine,
		Webhooks: testWebhooks(snSecret, jiraSecret),
		Metrics:  h.m,
		Logger:   zerolog.New(h.logs),
	}
	if mod != nil {
		mod(&o)
	}
	srv, err := New(t.Context(), o)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	h.srv = srv
	h.http = httptest.NewServer(srv.Handler())
	t.Cleanup(h.http.Close)
	return h
}

type response struct {
	status int
	body   string
	header http.Header
}

func (h *harness) do(method, path string, body io.Reader, header map[string]string) response {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.t.Context(), method, h.http.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := h.http.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, body: string(b), header: resp.Header}
}

func (h *harness) post(path string, body []byte, header map[string]string) response {
	h.t.Helper()
	return h.do(http.MethodPost, path, bytes.NewReader(body), header)
}

func (h *harness) wantQueued(want ...string) {
	h.t.Helper()
	got := h.engine.Queued()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		h.t.Errorf("queued = %q, want %q", got, want)
	}
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hmacOf(key string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(body)
	return m.Sum(nil)
}

// snSign is what the business rule sends: base64, as generateMac returns it.
func snSign(key string, body []byte) string {
	return base64.StdEncoding.EncodeToString(hmacOf(key, body))
}

func snHeaders(sig string) map[string]string {
	h := map[string]string{"Content-Type": "application/json", "User-Agent": "ServiceNow/1.0"}
	if sig != "" {
		h["X-Signature"] = sig
	}
	return h
}

const snTicket = "servicenow/a1b2c3d4e5f60718293a4b5c6d7e8f90"

func TestServiceNowSignedDeliveryEnqueuesOnce(t *testing.T) {
	body := fixture(t, "servicenow_webhook_ritm_approved.json")
	for name, sig := range map[string]string{
		"base64":          snSign(snSecret, body),
		"hex":             hex.EncodeToString(hmacOf(snSecret, body)),
		"base64 unpadded": base64.RawStdEncoding.EncodeToString(hmacOf(snSecret, body)),
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, nil)
			r := h.post("/webhooks/servicenow", body, snHeaders(sig))
			if r.status != http.StatusAccepted {
				t.Fatalf("status = %d %q, want 202", r.status, r.body)
			}
			h.wantQueued(snTicket)

			// The same delivery again (ServiceNow resent it, or someone replays it).
			r = h.post("/webhooks/servicenow", body, snHeaders(sig))
			if r.status != http.StatusOK || !strings.Contains(r.body, "duplicate") {
				t.Fatalf("replay: status = %d %q, want 200 duplicate", r.status, r.body)
			}
			h.wantQueued(snTicket)
		})
	}
}

func TestServiceNowReplayedEventID(t *testing.T) {
	h := newHarness(t, nil)
	body := fixture(t, "servicenow_webhook_ritm_approved.json")
	if r := h.post("/webhooks/servicenow", body, snHeaders(snSign(snSecret, body))); r.status != http.StatusAccepted {
		t.Fatalf("first: status = %d %q", r.status, r.body)
	}
	// A different body with the same event_id (re-signed): still a duplicate.
	other := bytes.Replace(body, []byte(`"sys_mod_count": "3"`), []byte(`"sys_mod_count": "4"`), 1)
	if bytes.Equal(other, body) {
		t.Fatal("fixture changed: cannot build a second body")
	}
	if r := h.post("/webhooks/servicenow", other, snHeaders(snSign(snSecret, other))); r.status != http.StatusOK {
		t.Fatalf("same event_id: status = %d %q, want 200", r.status, r.body)
	}
	h.wantQueued(snTicket)

	// Without event_id in the body, X-Event-Id is the key.
	thin := []byte(`{"sys_id":"0123456789abcdef0123456789abcdef","number":"RITM0010002"}`)
	hdr := snHeaders(snSign(snSecret, thin))
	hdr["X-Event-Id"] = "evt-1"
	if r := h.post("/webhooks/servicenow", thin, hdr); r.status != http.StatusAccepted {
		t.Fatalf("X-Event-Id: status = %d %q", r.status, r.body)
	}
	if r := h.post("/webhooks/servicenow", thin, hdr); r.status != http.StatusOK {
		t.Fatalf("X-Event-Id replay: status = %d %q", r.status, r.body)
	}
	// Without any id, the same bytes are the same delivery.
	bare := []byte(`{"sys_id":"fedcba9876543210fedcba9876543210"}`)
	if r := h.post("/webhooks/servicenow", bare, snHeaders(snSign(snSecret, bare))); r.status != http.StatusAccepted {
		t.Fatalf("no id: status = %d %q", r.status, r.body)
	}
	if r := h.post("/webhooks/servicenow", bare, snHeaders(snSign(snSecret, bare))); r.status != http.StatusOK {
		t.Fatalf("no id, same bytes: status = %d %q, want 200", r.status, r.body)
	}
	h.wantQueued(snTicket, "servicenow/0123456789abcdef0123456789abcdef", "servicenow/fedcba9876543210fedcba9876543210")
}

func TestServiceNowRefusedDeliveries(t *testing.T) {
	body := fixture(t, "servicenow_webhook_ritm_approved.json")
	forgedBody := bytes.Replace(body, []byte("a1b2c3d4e5f60718293a4b5c6d7e8f90"), []byte("ffffffffffffffffffffffffffffffff"), 1)
	badJSON := []byte(`{"sys_id": "a1b2c3d4e5f60718293a4b5c6d7e8f90",`)
	badID := []byte(`{"sys_id": "a1b2c3d4; DROP TABLE", "event_id": "x"}`)
	numericID := []byte(`{"sys_id": 12, "event_id": "x"}`)

	for name, tc := range map[string]struct {
		body    []byte
		sig     string
		maxBody int64
		chunked bool
		want    int
	}{
		"unsigned":                   {body: body, want: http.StatusUnauthorized},
		"wrong secret":               {body: body, sig: snSign("not-the-secret", body), want: http.StatusUnauthorized},
		"forged body, old signature": {body: forgedBody, sig: snSign(snSecret, body), want: http.StatusUnauthorized},
		"signature not base64":       {body: body, sig: "!!!!", want: http.StatusUnauthorized},
		"truncated signature":        {body: body, sig: snSign(snSecret, body)[:20], want: http.StatusUnauthorized},
		"oversized":                  {body: body, sig: snSign(snSecret, body), maxBody: 128, want: http.StatusRequestEntityTooLarge},
		"oversized, no length":       {body: body, sig: snSign(snSecret, body), maxBody: 128, chunked: true, want: http.StatusRequestEntityTooLarge},
		"malformed JSON":             {body: badJSON, sig: snSign(snSecret, badJSON), want: http.StatusBadRequest},
		"bad sys_id":                 {body: badID, sig: snSign(snSecret, badID), want: http.StatusBadRequest},
		"sys_id not a string":        {body: numericID, sig: snSign(snSecret, numericID), want: http.StatusBadRequest},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) { o.MaxBody = tc.maxBody })
			var rd io.Reader = bytes.NewReader(tc.body)
			if tc.chunked {
				rd = io.MultiReader(rd) // unknown length: sent chunked
			}
			r := h.do(http.MethodPost, "/webhooks/servicenow", rd, snHeaders(tc.sig))
			if r.status != tc.want {
				t.Fatalf("status = %d %q, want %d", r.status, r.body, tc.want)
			}
			h.wantQueued()
		})
	}
}

func TestServiceNowQueueFull(t *testing.T) {
	h := newHarness(t, nil)
	body := fixture(t, "servicenow_webhook_ritm_approved.json")
	h.engine.setFull(true)
	r := h.post("/webhooks/servicenow", body, snHeaders(snSign(snSecret, body)))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("status = %d Retry-After %q, want 503 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	h.wantQueued()
	// The sender's retry is not a duplicate: it was never acted on.
	h.engine.setFull(false)
	if r := h.post("/webhooks/servicenow", body, snHeaders(snSign(snSecret, body))); r.status != http.StatusAccepted {
		t.Fatalf("retry: status = %d %q, want 202", r.status, r.body)
	}
	h.wantQueued(snTicket)
}

// jiraFixture returns the fixture body and its recorded headers.
func jiraFixture(t *testing.T) ([]byte, map[string]string) {
	t.Helper()
	body := fixture(t, "jira_webhook_issue_updated_status_approved.json")
	var raw map[string]string
	if err := json.Unmarshal(fixture(t, "jira_webhook_issue_updated_status_approved.headers.json"), &raw); err != nil {
		t.Fatal(err)
	}
	delete(raw, "_note")
	hdr := map[string]string{}
	for k, v := range raw {
		hdr[strings.ToLower(k)] = v // proxies lower-case header names
	}
	return body, hdr
}

func TestJiraRetriedDeliveryEnqueuesOnce(t *testing.T) {
	h := newHarness(t, nil)
	body, hdr := jiraFixture(t)
	for i, want := range []int{http.StatusAccepted, http.StatusOK, http.StatusOK} {
		if i > 0 {
			hdr["X-Atlassian-Webhook-Retry"] = string(rune('0' + i))
		}
		r := h.post("/webhooks/jira", body, hdr)
		if r.status != want {
			t.Fatalf("delivery %d: status = %d %q, want %d", i+1, r.status, r.body, want)
		}
	}
	h.wantQueued("jira/10482")
}

func TestJiraRefusedAndIgnoredDeliveries(t *testing.T) {
	body, hdr := jiraFixture(t)
	sign := func(b []byte) string { return "sha256=" + hex.EncodeToString(hmacOf(jiraSecret, b)) }
	with := func(sig string) map[string]string {
		m := map[string]string{"X-Atlassian-Webhook-Identifier": hdr["x-atlassian-webhook-identifier"]}
		if sig != "" {
			m["X-Hub-Signature"] = sig
		}
		return m
	}
	comment := []byte(`{"webhookEvent":"comment_created","issue":{"id":"10482","key":"IMG-42"}}`)
	badID := []byte(`{"webhookEvent":"jira:issue_updated","issue":{"id":"10482 OR 1=1","key":"IMG-42"}}`)
	noIssue := []byte(`{"webhookEvent":"jira:issue_updated"}`)
	numericID := []byte(`{"webhookEvent":"jira:issue_created","issue":{"id":10483,"key":"IMG-43"}}`)

	for name, tc := range map[string]struct {
		body    []byte
		header  map[string]string
		maxBody int64
		want    int
		queued  []string
	}{
		"unsigned":             {body: body, header: with(""), want: http.StatusUnauthorized},
		"wrong secret":         {body: body, header: with("sha256=" + hex.EncodeToString(hmacOf("nope", body))), want: http.StatusUnauthorized},
		"tampered body":        {body: append([]byte(" "), body...), header: hdr, want: http.StatusUnauthorized},
		"sha1 prefix":          {body: body, header: with("sha1=" + hex.EncodeToString(hmacOf(jiraSecret, body))[:40]), want: http.StatusUnauthorized},
		"bare hex":             {body: body, header: with(hex.EncodeToString(hmacOf(jiraSecret, body))), want: http.StatusUnauthorized},
		"oversized":            {body: body, header: hdr, maxBody: 1024, want: http.StatusRequestEntityTooLarge},
		"other event ignored":  {body: comment, header: with(sign(comment)), want: http.StatusOK},
		"malformed JSON":       {body: []byte("{"), header: with(sign([]byte("{"))), want: http.StatusBadRequest},
		"bad issue id":         {body: badID, header: with(sign(badID)), want: http.StatusBadRequest},
		"no issue":             {body: noIssue, header: with(sign(noIssue)), want: http.StatusBadRequest},
		"numeric id, no retry": {body: numericID, header: map[string]string{"X-Hub-Signature": sign(numericID)}, want: http.StatusAccepted, queued: []string{"jira/10483"}},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) { o.MaxBody = tc.maxBody })
			r := h.post("/webhooks/jira", tc.body, tc.header)
			if r.status != tc.want {
				t.Fatalf("status = %d %q, want %d", r.status, r.body, tc.want)
			}
			h.wantQueued(tc.queued...)
		})
	}
}

func TestNotConfiguredEndpoints(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.Webhooks = testWebhooks("", "")
	})
	body, hdr := jiraFixture(t)
	for _, p := range []string{"/webhooks/servicenow", "/webhooks/jira", "/events/chainguard"} {
		if r := h.post(p, body, hdr); r.status != http.StatusNotFound {
			t.Errorf("POST %s: status = %d, want 404", p, r.status)
		}
	}
	h.wantQueued()
}

func TestRoutes(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct {
		method, path string
		want         int
		body         string
	}{
		{http.MethodGet, "/healthz", http.StatusOK, "ok"},
		{http.MethodHead, "/healthz", http.StatusOK, ""},
		{http.MethodGet, "/readyz", http.StatusOK, "ready"},
		{http.MethodGet, "/nope", http.StatusNotFound, ""},
		{http.MethodGet, "/webhooks/jira", http.StatusMethodNotAllowed, ""},
		{http.MethodPut, "/webhooks/servicenow", http.StatusMethodNotAllowed, ""},
		{http.MethodPost, "/healthz", http.StatusMethodNotAllowed, ""},
		{http.MethodDelete, "/metrics", http.StatusMethodNotAllowed, ""},
	} {
		r := h.do(tc.method, tc.path, nil, nil)
		if r.status != tc.want || (tc.body != "" && strings.TrimSpace(r.body) != tc.body) {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, tc.path, r.status, r.body, tc.want, tc.body)
		}
	}
}

func TestReadyzFollowsReady(t *testing.T) {
	var notReady atomic.Pointer[error]
	h := newHarness(t, func(o *Options) {
		o.Ready = func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				return errors.New("no deadline")
			}
			if p := notReady.Load(); p != nil {
				return *p
			}
			return nil
		}
	})
	if r := h.do(http.MethodGet, "/readyz", nil, nil); r.status != http.StatusOK {
		t.Fatalf("ready: %d %q", r.status, r.body)
	}
	err := errors.New("store: database is locked")
	notReady.Store(&err)
	r := h.do(http.MethodGet, "/readyz", nil, nil)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "database is locked") {
		t.Fatalf("not ready: %d %q, want 503 with the reason", r.status, r.body)
	}
	notReady.Store(nil)
	if r := h.do(http.MethodGet, "/readyz", nil, nil); r.status != http.StatusOK {
		t.Fatalf("ready again: %d %q", r.status, r.body)
	}
	// /healthz does not depend on readiness.
	notReady.Store(&err)
	if r := h.do(http.MethodGet, "/healthz", nil, nil); r.status != http.StatusOK {
		t.Fatalf("healthz while not ready: %d", r.status)
	}
}

func TestMetricsEndpointAfterDeliveries(t *testing.T) {
	h := newHarness(t, nil)
	body, hdr := jiraFixture(t)
	for range 3 {
		h.post("/webhooks/jira", body, hdr)
	}
	h.post("/webhooks/servicenow", []byte(`{}`), snHeaders("bogus"))
	h.m.Observe(isync.Event{Source: "jira", Decision: isync.DecisionProvisioned})

	r := h.do(http.MethodGet, "/metrics", nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("/metrics: %d", r.status)
	}
	for _, want := range []string{
		`bridge_webhook_deliveries_total{endpoint="jira",result="accepted"} 1`,
		`bridge_webhook_deliveries_total{endpoint="jira",result="duplicate"} 2`,
		`bridge_webhook_deliveries_total{endpoint="servicenow",result="bad_signature"} 1`,
		`bridge_tickets_total{decision="provisioned",source="jira"} 1`,
		`bridge_tickets_total{decision="rejected",source="servicenow"} 0`,
		`bridge_upstream_errors_total{reason="auth",upstream="chainguard"} 0`,
		`go_goroutines `, // the default registry is served too
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestLogsHoldNoBodiesOrSignatures(t *testing.T) {
	h := newHarness(t, nil)
	body, hdr := jiraFixture(t)
	h.post("/webhooks/jira", body, hdr)
	sn := fixture(t, "servicenow_webhook_ritm_approved.json")
	sig := snSign(snSecret, sn)
	h.post("/webhooks/servicenow", sn, snHeaders(sig))
	h.post("/webhooks/servicenow", sn, snHeaders("forged"))

	logs := h.logs.String()
	for _, leak := range []string{
		hdr["x-hub-signature"], strings.TrimPrefix(hdr["x-hub-signature"], "sha256="), sig,
		snSecret, jiraSecret, "python:latest-dev", "Alex Approver", "forged",
	} {
		if strings.Contains(logs, leak) {
			t.Errorf("logs contain %q:\n%s", leak, logs)
		}
	}
	for _, want := range []string{`"endpoint":"jira"`, `"ticket":"10482"`, `"key":"IMG-42"`, `"ticket":"a1b2c3d4e5f60718293a4b5c6d7e8f90"`, `"result":"bad_signature"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

func TestServeShutsDownGracefully(t *testing.T) {
	engine := &fakeEngine{}
	release := make(chan struct{})
	entered := make(chan struct{})
	srv, err := New(t.Context(), Options{
		Engine: engine,
		Ready: func(ctx context.Context) error {
			close(entered)
			<-release
			return nil
		},
		Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	base := "http://" + ln.Addr().String()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz = %d", resp.StatusCode)
	}

	// A request in flight when the stop comes still gets its answer.
	inflight := make(chan int, 1)
	go func() {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			inflight <- -1
			return
		}
		resp.Body.Close()
		inflight <- resp.StatusCode
	}()
	<-entered
	cancel()
	// The listener closes promptly, while the request is still in flight.
	closed := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err != nil {
			closed = true
			break
		}
		c.Close()
	}
	if !closed {
		t.Error("still accepting connections after the stop")
	}
	close(release)
	if got := <-inflight; got != http.StatusOK {
		t.Errorf("in-flight request: %d, want 200", got)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve() = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func TestNewRequiresEngine(t *testing.T) {
	if _, err := New(t.Context(), Options{}); err == nil {
		t.Error("New without an engine: want an error")
	}
	if _, err := New(t.Context(), Options{Engine: &fakeEngine{}, Chainguard: &Chainguard{Group: "not a uidp"}}); err == nil {
		t.Error("New with a malformed group: want an error")
	}
}

func TestSeen(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newSeen(time.Minute, 3, func() time.Time { return now })
	if !s.add("a") || s.add("a") {
		t.Fatal("add a: want new, then seen")
	}
	now = now.Add(61 * time.Second)
	if !s.add("a") {
		t.Fatal("a after its TTL: want new")
	}
	s.add("b")
	s.add("c")
	s.add("d") // full: evicts the oldest, a
	if s.len() != 3 {
		t.Fatalf("len = %d, want 3", s.len())
	}
	if !s.add("a") {
		t.Fatal("a after eviction: want new")
	}
	s.forget("c")
	if !s.add("c") {
		t.Fatal("c after forget: want new")
	}
	if s.add("c") {
		t.Fatal("c re-added: want seen")
	}
	// Many forgets leave the order queue bounded.
	for i := range 100 {
		id := string(rune('A' + i%26))
		s.add(id)
		s.forget(id)
	}
	if len(s.order) > 2*s.max {
		t.Fatalf("order queue grew to %d", len(s.order))
	}
}

func TestServiceNowSignatureForms(t *testing.T) {
	mac := hmacOf("k", []byte("body"))
	for _, v := range []string{
		base64.StdEncoding.EncodeToString(mac),
		base64.RawStdEncoding.EncodeToString(mac),
		base64.URLEncoding.EncodeToString(mac),
		hex.EncodeToString(mac),
		strings.ToUpper(hex.EncodeToString(mac)),
		"sha256=" + hex.EncodeToString(mac),
		" " + base64.StdEncoding.EncodeToString(mac) + " ",
	} {
		got, ok := servicenow.Signature(v)
		if !ok || !bytes.Equal(got, mac) {
			t.Errorf("servicenow.Signature(%q) = %x, %v", v, got, ok)
		}
	}
	for _, v := range []string{"", "abc", hex.EncodeToString(mac[:31]), base64.StdEncoding.EncodeToString(append(mac, 0))} {
		if _, ok := servicenow.Signature(v); ok {
			t.Errorf("servicenow.Signature(%q) accepted", v)
		}
	}
}
