package app

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/chainguard-dev/image-request-bridge/connectors"
	"github.com/chainguard-dev/image-request-bridge/internal/config"
	cgfake "github.com/chainguard-dev/image-request-bridge/internal/fake/chainguard"
	"github.com/chainguard-dev/image-request-bridge/internal/metrics"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	"github.com/chainguard-dev/image-request-bridge/internal/server"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// exampleConnector is a third intake that exists only in this test: nothing
// outside this file names it, yet the configuration, the webhook routes, the
// metrics, the online checks and the engine take it in once it is listed.
type exampleConnector struct{}

type exampleSection struct {
	Enabled           bool          `yaml:"enabled"`
	Channel           string        `yaml:"channel"`
	Token             secret.Secret `yaml:"token,omitempty"`
	TokenFile         string        `yaml:"token_file,omitempty"`
	WebhookSecret     secret.Secret `yaml:"webhook_secret,omitempty"`
	WebhookSecretFile string        `yaml:"webhook_secret_file,omitempty"`
	Schedule          string        `yaml:"schedule"`
	Timeout           time.Duration `yaml:"timeout"`
}

func (s *exampleSection) Settings() source.Settings {
	return source.Settings{Enabled: s.Enabled, Schedule: s.Schedule, Timeout: s.Timeout}
}

func (s *exampleSection) Defaults() {
	if s.Schedule == "" {
		s.Schedule = "@every 1m"
	}
	if s.Timeout == 0 {
		s.Timeout = 10 * time.Second
	}
}

func (s *exampleSection) Validate(p *source.Problems) {
	if s.Channel == "" {
		p.Add("channel", "required")
	}
	p.Secret("token", s.Token)
	p.Schedule("schedule", s.Schedule)
}

func (s *exampleSection) Secrets() []source.SecretRef {
	return []source.SecretRef{
		{Key: "token", Value: &s.Token, File: &s.TokenFile},
		{Key: "webhook_secret", Value: &s.WebhookSecret, File: &s.WebhookSecretFile},
	}
}

func (exampleConnector) Name() string               { return "example" }
func (exampleConnector) NewSection() source.Section { return &exampleSection{} }
func (exampleConnector) Build(s source.Section, _ source.Deps) (isync.Source, error) {
	return exampleSource{}, nil
}

func (exampleConnector) Webhook(s source.Section) *source.Webhook {
	sec := s.(*exampleSection)
	if sec.WebhookSecret.IsZero() {
		return nil
	}
	return &source.Webhook{
		Secret: sec.WebhookSecret,
		Signature: func(h http.Header) ([]byte, bool) {
			b, err := hex.DecodeString(h.Get("X-Example-Signature"))
			return b, err == nil
		},
		Parse: func(_ http.Header, body []byte) (source.Delivery, error) {
			id := strings.TrimSpace(string(body))
			if id == "" {
				return source.Delivery{}, errors.New("no ticket id")
			}
			return source.Delivery{TicketID: id}, nil
		},
	}
}

var errExampleDown = errors.New("example: GET /api/ping: HTTP 503")

func (exampleConnector) Checks(isync.Source) []source.Check {
	return []source.Check{{Name: "example", Run: func(context.Context) error { return errExampleDown }}}
}

// exampleSource has no tickets.
type exampleSource struct{}

func (exampleSource) Name() string                                             { return "example" }
func (exampleSource) Approved(context.Context, func(isync.Ticket) error) error { return nil }
func (exampleSource) Get(_ context.Context, id string) (isync.Ticket, error) {
	return isync.Ticket{}, fmt.Errorf("example: no ticket %s", id)
}
func (exampleSource) Report(context.Context, isync.Ticket, isync.Report) error { return nil }

type queue struct{ got []string }

func (q *queue) Enqueue(src, id string) bool                { q.got = append(q.got, src+"/"+id); return true }
func (q *queue) RepoEvent(context.Context, isync.RepoEvent) {}

// TestRegisteredSourceIsTakenInEverywhere: a connector added to the registry
// list is configured under its own key (strict keys with suggestions,
// *_file twins, redaction), built, checked, routed and counted, with no
// change outside its package.
func TestRegisteredSourceIsTakenInEverywhere(t *testing.T) {
	cg, err := cgfake.New(cgfake.WithToken(testCGToken), cgfake.WithOrg(testOrgID, testOrgName))
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	sources := append(connectors.Sources[:len(connectors.Sources):len(connectors.Sources)], exampleConnector{})
	base := fmt.Sprintf(`
state: { dsn: %q }
chainguard: { api_url: %q, org_id: %q, org_name: %q, token: %q }
`, filepath.Join(t.TempDir(), "bridge.db"), cg.Addr(), testOrgID, testOrgName, testCGToken)

	// Strict decoding and validation of the new section.
	_, err = config.ParseWith([]byte(base+"example: { enabled: true, chanel: x, token: t }\n"), "c.yaml", sources)
	if err == nil || !strings.Contains(err.Error(), `unknown key "chanel" in example (did you mean "channel"?)`) {
		t.Errorf("unknown key: err = %v", err)
	}
	_, err = config.ParseWith([]byte(base+"example: { enabled: true }\n"), "c.yaml", sources)
	if err == nil || !strings.Contains(err.Error(), "example.channel: required") || !strings.Contains(err.Error(), "example.token: required: set example.token, or example.token_file") {
		t.Errorf("validation: err = %v", err)
	}

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	writeFile(t, tokenFile, "example-token-never-shown\n")
	const hookSecret = "example-hook-secret-never-shown"
	cfg, err := config.ParseWith([]byte(base+fmt.Sprintf("example: { enabled: true, channel: ops, token_file: %s, webhook_secret: %s }\n", tokenFile, hookSecret)), filepath.Join(dir, "c.yaml"), sources)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Section("example").(*exampleSection).Token.Reveal(); got != "example-token-never-shown" {
		t.Errorf("token from token_file = %q", got)
	}
	r := cfg.Redacted()
	if !strings.Contains(r, "example:") || !strings.Contains(r, "token_file: "+tokenFile) || !strings.Contains(r, "webhook_secret: <secret>") ||
		strings.Contains(r, "never-shown") {
		t.Errorf("validate output:\n%s", r)
	}

	// Built, checked and counted.
	m := metrics.New(EnabledNames(cfg)...)
	a, err := Build(t.Context(), cfg, zerolog.New(io.Discard), Options{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if len(a.Sources) != 1 || a.Sources[0].Name() != "example" {
		t.Fatalf("sources = %v", a.Sources)
	}
	var names []string
	for _, c := range a.Checks() {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "chainguard,example" {
		t.Errorf("checks = %v", names)
	}
	if err := a.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), errExampleDown.Error()) || strings.Contains(err.Error(), "example: example:") {
		t.Errorf("Ready = %v", err)
	}
	if st, err := a.Engine.Pass(t.Context(), "example"); err != nil || st.Listed != 0 {
		t.Errorf("pass = %+v, %v", st, err)
	}
	if n := testutil.CollectAndCount(m.Registry(), "bridge_last_successful_poll_timestamp_seconds"); n != 1 {
		t.Errorf("last-poll series = %d, want 1 (example)", n)
	}

	// Routed: /webhooks/example verifies and queues; the other sources'
	// paths answer 404 (not configured).
	q := &queue{}
	srv, err := server.New(t.Context(), server.Options{Engine: q, Webhooks: Webhooks(cfg), Metrics: m, Logger: zerolog.New(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	post := func(path, sig string) int {
		req, _ := http.NewRequest(http.MethodPost, hs.URL+path, bytes.NewReader([]byte("T-1")))
		req.Header.Set("X-Example-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	h := hmac.New(sha256.New, []byte(hookSecret))
	h.Write([]byte("T-1"))
	if got := post("/webhooks/example", "00"); got != http.StatusUnauthorized {
		t.Errorf("unsigned: %d", got)
	}
	if got := post("/webhooks/example", hex.EncodeToString(h.Sum(nil))); got != http.StatusAccepted {
		t.Errorf("signed: %d", got)
	}
	if strings.Join(q.got, ",") != "example/T-1" {
		t.Errorf("queued %v", q.got)
	}
	for _, name := range source.Names(connectors.Sources) {
		if got := post("/webhooks/"+name, ""); got != http.StatusNotFound {
			t.Errorf("/webhooks/%s: %d, want 404", name, got)
		}
	}
	if got := webhookCount(t, m, "example", metrics.ResultAccepted); got != 1 {
		t.Errorf("accepted deliveries of example = %v", got)
	}
}

// webhookCount reads bridge_webhook_deliveries_total{endpoint, result}.
func webhookCount(t *testing.T, m *metrics.Metrics, endpoint, result string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "bridge_webhook_deliveries_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["endpoint"] == endpoint && labels["result"] == result {
				return mt.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series bridge_webhook_deliveries_total{endpoint=%q,result=%q}", endpoint, result)
	return 0
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
