package server

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"chainguard.dev/go-oidctest/pkg/oidctest"
	"chainguard.dev/sdk/civil"
	"chainguard.dev/sdk/events"
	"chainguard.dev/sdk/events/registry"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

const (
	testGroup  = "d2020cd12118237dcd06214184a6d17c1f831a08"
	otherGroup = "7c9e6679742f4b2ea1c0ff1d3a6b5e047c9e6679"
	testRepoID = testGroup + "/4a3c5e6f7a8b9c0d"
	testTagID  = testRepoID + "/0f1e2d3c4b5a6978"
)

func mintToken(t *testing.T, signer jose.Signer, issuer, subject string, body []byte) string {
	t.Helper()
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer:   issuer,
		IssuedAt: jwt.NewNumericDate(time.Now()),
		Expiry:   jwt.NewNumericDate(time.Now().Add(time.Hour)),
		Subject:  subject,
		Audience: jwt.Audience{"customer"},
	}).Claims(map[string]any{
		"webhook": map[string]string{"digest": fmt.Sprintf("sha256:%x", sha256.Sum256(body))},
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ceHeaders are a binary-mode CloudEvent delivery's headers, as Chainguard sends them.
func ceHeaders(id, typ, subject, token string) map[string]string {
	h := map[string]string{
		"Content-Type":   "application/json",
		"User-Agent":     "Chainguard Enforce",
		"Ce-Specversion": "1.0",
		"Ce-Id":          id,
		"Ce-Type":        typ,
		"Ce-Source":      "https://console-api.enforce.dev/registry/v1/repos",
		"Ce-Subject":     subject,
		"Ce-Group":       testGroup,
		"Ce-Audience":    "customer",
	}
	if token != "" {
		h["Authorization"] = "Bearer " + token
	}
	return h
}

func occurrence(t *testing.T, body any) []byte {
	t.Helper()
	b, err := json.Marshal(events.Occurrence{Actor: &events.Actor{Subject: testGroup + "/abcdef0123456789"}, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestChainguardEvents(t *testing.T) {
	signer, issuer := oidctest.NewIssuer(t)
	h := newHarness(t, func(o *Options) { o.Chainguard = &Chainguard{Issuer: issuer, Group: testGroup} })

	push := occurrence(t, registry.PushEvent{
		Repository: "example.com/python", RepoID: testRepoID, DisplayName: "python", Tag: "latest-dev",
		Digest: "sha256:" + strings.Repeat("a", 64), Type: "manifest", When: civil.DateTimeOf(time.Now()),
	})
	repoCreated := occurrence(t, map[string]any{
		"id": testRepoID, "name": "python", "sync_config": map[string]any{"source": "cgr.dev/chainguard/python"},
		"field_from_the_future": true,
	})
	tagCreated := occurrence(t, map[string]any{"id": testTagID, "name": "3.12", "digest": "sha256:" + strings.Repeat("b", 64)})

	deliver := func(id, typ, subject string, body []byte) response {
		t.Helper()
		return h.post("/events/chainguard", body, ceHeaders(id, typ, subject, mintToken(t, signer, issuer, "webhook:"+testGroup, body)))
	}
	for _, tc := range []struct {
		id, typ, subject string
		body             []byte
	}{
		{"ev-1", registry.PushedEventType, testRepoID, push},
		{"ev-2", registry.RepoCreatedEventType, testRepoID, repoCreated},
		{"ev-3", TagCreatedEventType, testTagID, tagCreated},
	} {
		if r := deliver(tc.id, tc.typ, tc.subject, tc.body); r.status != http.StatusOK {
			t.Fatalf("%s: status = %d %q, want 200", tc.typ, r.status, r.body)
		}
	}
	want := []isync.RepoEvent{
		{Type: registry.PushedEventType, RepoID: testRepoID, Repo: "python", Tag: "latest-dev"},
		{Type: registry.RepoCreatedEventType, RepoID: testRepoID, Repo: "python"},
		{Type: TagCreatedEventType, RepoID: testRepoID, Tag: "3.12"},
	}
	if got := h.engine.Events(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("RepoEvents:\n got %+v\nwant %+v", got, want)
	}

	// Chainguard delivers at least once: the same ce-id is not handed on twice.
	if r := deliver("ev-1", registry.PushedEventType, testRepoID, push); r.status != http.StatusOK {
		t.Fatalf("redelivery: status = %d", r.status)
	}
	// Events the bridge does not act on are acknowledged and dropped.
	pull := occurrence(t, registry.PullEvent{Repository: "example.com/python", RepoID: testRepoID})
	if r := deliver("ev-4", registry.PulledEventType, testRepoID, pull); r.status != http.StatusOK {
		t.Fatalf("pull event: status = %d", r.status)
	}
	blob := occurrence(t, registry.PushEvent{Repository: "example.com/python", RepoID: testRepoID, Type: "blob"})
	if r := deliver("ev-5", registry.PushedEventType, testRepoID, blob); r.status != http.StatusOK {
		t.Fatalf("blob push: status = %d", r.status)
	}
	// A verified event whose body is not the expected resource is refused.
	bad := occurrence(t, map[string]any{"id": testRepoID, "name": 42})
	if r := deliver("ev-6", registry.RepoCreatedEventType, testRepoID, bad); r.status != http.StatusBadRequest {
		t.Fatalf("malformed repo body: status = %d %q, want 400", r.status, r.body)
	}
	if got := h.engine.Events(); len(got) != len(want) {
		t.Fatalf("RepoEvents after duplicates and ignored events: %+v", got)
	}

	r := h.do(http.MethodGet, "/metrics", nil, nil)
	for _, line := range []string{
		`bridge_webhook_deliveries_total{endpoint="chainguard",result="accepted"} 3`,
		`bridge_webhook_deliveries_total{endpoint="chainguard",result="duplicate"} 1`,
		`bridge_webhook_deliveries_total{endpoint="chainguard",result="ignored"} 2`,
		`bridge_webhook_deliveries_total{endpoint="chainguard",result="bad_request"} 1`,
	} {
		if !strings.Contains(r.body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

func TestChainguardRefusedEvents(t *testing.T) {
	signer, issuer := oidctest.NewIssuer(t)
	otherSigner, _ := oidctest.NewIssuer(t)
	push := occurrence(t, registry.PushEvent{Repository: "example.com/python", RepoID: testRepoID, Tag: "latest"})

	for name, tc := range map[string]struct {
		token   string
		body    []byte
		maxBody int64
		want    int
	}{
		"no token":                {body: push, want: http.StatusUnauthorized},
		"token for another group": {token: mintToken(t, signer, issuer, "webhook:"+otherGroup, push), body: push, want: http.StatusForbidden},
		"sub-group subject":       {token: mintToken(t, signer, issuer, "webhook:"+testGroup+"/0123456789abcdef", push), body: push, want: http.StatusForbidden},
		"not a webhook subject":   {token: mintToken(t, signer, issuer, "user:"+testGroup, push), body: push, want: http.StatusForbidden},
		"signed by another key":   {token: mintToken(t, otherSigner, issuer, "webhook:"+testGroup, push), body: push, want: http.StatusForbidden},
		"garbage token":           {token: "not.a.jwt", body: push, want: http.StatusForbidden},
		"digest of another body":  {token: mintToken(t, signer, issuer, "webhook:"+testGroup, []byte(`{}`)), body: push, want: http.StatusForbidden},
		"oversized":               {token: mintToken(t, signer, issuer, "webhook:"+testGroup, push), body: push, maxBody: 64, want: http.StatusRequestEntityTooLarge},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) {
				o.Chainguard = &Chainguard{Issuer: issuer, Group: testGroup}
				o.MaxBody = tc.maxBody
			})
			r := h.post("/events/chainguard", tc.body, ceHeaders("ev-1", registry.PushedEventType, testRepoID, tc.token))
			if r.status != tc.want {
				t.Fatalf("status = %d %q, want %d", r.status, r.body, tc.want)
			}
			if got := h.engine.Events(); len(got) != 0 {
				t.Fatalf("RepoEvent called: %+v", got)
			}
		})
	}
}

func TestChainguardRepoOutsideGroupIgnored(t *testing.T) {
	signer, issuer := oidctest.NewIssuer(t)
	h := newHarness(t, func(o *Options) { o.Chainguard = &Chainguard{Issuer: issuer, Group: testGroup} })
	foreign := otherGroup + "/4a3c5e6f7a8b9c0d"
	body := occurrence(t, registry.PushEvent{Repository: "other.com/python", RepoID: foreign, Tag: "latest"})
	r := h.post("/events/chainguard", body, ceHeaders("ev-1", registry.PushedEventType, foreign, mintToken(t, signer, issuer, "webhook:"+testGroup, body)))
	if r.status != http.StatusOK {
		t.Fatalf("status = %d %q", r.status, r.body)
	}
	if got := h.engine.Events(); len(got) != 0 {
		t.Fatalf("RepoEvent called for a foreign repo: %+v", got)
	}
}

func TestChainguardIssuerUnreachable(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	h := newHarness(t, func(o *Options) { o.Chainguard = &Chainguard{Issuer: down.URL, Group: testGroup} })
	r := h.post("/events/chainguard", []byte(`{}`), ceHeaders("ev-1", registry.PushedEventType, testRepoID, "x"))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("status = %d Retry-After %q, want 503 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
}

func TestChainguardPushWithoutEnvelopeOrCivilTime(t *testing.T) {
	signer, issuer := oidctest.NewIssuer(t)
	h := newHarness(t, func(o *Options) { o.Chainguard = &Chainguard{Issuer: issuer, Group: testGroup} })
	// A bare PushEvent (no Occurrence envelope) whose time carries a zone.
	body := []byte(`{"repository":"example.com/node","repo_id":"` + testRepoID + `","tag":"22","digest":"sha256:00","type":"manifest","when":"2024-01-02T15:04:05Z"}`)
	r := h.post("/events/chainguard", body, ceHeaders("ev-1", registry.PushedEventType, testRepoID, mintToken(t, signer, issuer, "webhook:"+testGroup, body)))
	if r.status != http.StatusOK {
		t.Fatalf("status = %d %q", r.status, r.body)
	}
	want := []isync.RepoEvent{{Type: registry.PushedEventType, RepoID: testRepoID, Repo: "node", Tag: "22"}}
	if got := h.engine.Events(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("RepoEvents = %+v, want %+v", got, want)
	}
}
