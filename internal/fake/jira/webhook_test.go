package jira

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// verify checks a delivery the way a receiver must: HMAC-SHA256 over the raw
// body, compared in constant time.
func verify(body []byte, header http.Header, secret string) bool {
	sig, ok := strings.CutPrefix(header.Get("x-hub-signature"), "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

func TestWebhookDelivery(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	i := s.AddIssue(Issue{Summary: "Request python:latest-dev", Labels: []string{"chainguard"},
		Fields: map[string]any{"customfield_10050": "python:latest-dev", "customfield_10052": map[string]any{"value": "prod"}}})
	const secret = "test-webhook-secret-not-real"
	body, h := s.WebhookDelivery(i.Key, secret)
	if !verify(body, h, secret) || verify(body, h, "other") || h.Get(HeaderSignature) != SignWebhook(body, secret) {
		t.Fatalf("signature %q", h.Get(HeaderSignature))
	}
	if h.Get("Content-Type") != "application/json; charset=UTF-8" || h.Get(HeaderRetry) != "0" || h.Get(HeaderFlow) != "Primary" ||
		len(h.Get(HeaderIdentifier)) != 36 {
		t.Errorf("%v", h)
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	if v["webhookEvent"] != "jira:issue_updated" || v["issue_event_type_name"] != "issue_generic" ||
		v["timestamp"] != float64(c.Now().UnixMilli()) || path(v, "matchedWebhookIds", 0) == nil ||
		path(v, "user", "accountId") != DefaultApprover.AccountID ||
		path(v, "issue", "key") != i.Key || path(v, "issue", "self") != s.URL()+"/rest/api/2/"+i.ID ||
		path(v, "issue", "fields", "status", "name") != "Approved" ||
		path(v, "issue", "fields", "customfield_10050") != "python:latest-dev" ||
		path(v, "issue", "fields", "customfield_10052", "value") != "prod" {
		t.Errorf("%s", body)
	}
	item := path(v, "changelog", "items", 0).(map[string]any)
	if item["field"] != "status" || item["fieldtype"] != "jira" || item["from"] != "10103" || item["fromString"] != "Waiting for approval" ||
		item["to"] != "10104" || item["toString"] != "Approved" || path(v, "changelog", "id") == "" {
		t.Errorf("%v", item)
	}

	// A new delivery has a new identifier; a retry keeps it.
	_, h2 := s.WebhookDelivery(i.Key, secret)
	if h2.Get(HeaderIdentifier) == h.Get(HeaderIdentifier) {
		t.Error("identifier reused")
	}
	r := WebhookRetry(WebhookRetry(h))
	if r.Get(HeaderIdentifier) != h.Get(HeaderIdentifier) || r.Get(HeaderRetry) != "2" || h.Get(HeaderRetry) != "0" {
		t.Errorf("%v", r)
	}

	// After the bridge's transition, the delivery reports that change.
	c.Advance(time.Minute)
	resp, b := do(t, s, req{method: http.MethodPost, path: "/rest/api/2/issue/" + i.Key + "/transitions",
		body: `{"transition":{"id":"51"},"fields":{"resolution":{"name":"Declined"}}}`})
	wantStatus(t, resp, b, 204)
	body, h = s.WebhookDelivery(i.Key, "")
	if h.Get(HeaderSignature) != "" {
		t.Error("signed without a secret")
	}
	json.Unmarshal(body, &v)
	if path(v, "changelog", "items", 0, "toString") != "Rejected" || path(v, "changelog", "items", 0, "fromString") != "Approved" ||
		path(v, "user", "accountId") != s.Myself().AccountID || path(v, "issue", "fields", "resolution", "name") != "Declined" {
		t.Errorf("%s", body)
	}

	if b, h := s.WebhookDelivery("IMG-404", secret); b != nil || h != nil {
		t.Error("delivery for an unknown issue")
	}
}

func TestWebhookDeliveryDataCenter(t *testing.T) {
	s := start(t, WithDeployment(DataCenter))
	i := s.AddIssue(Issue{Status: StatusOpen})
	s.Update(i.Key, func(is *Issue) { is.Status = StatusWaitingForApproval })
	body, h := s.WebhookDelivery(i.Key, "s3cret")
	if !verify(body, h, "s3cret") {
		t.Fatal("signature")
	}
	var v map[string]any
	json.Unmarshal(body, &v)
	if v["matchedWebhookIds"] != nil || path(v, "user", "name") != "aapprover" || path(v, "user", "accountId") != nil ||
		path(v, "changelog", "items", 0, "fromString") != "Open" || path(v, "changelog", "items", 0, "toString") != "Waiting for approval" {
		t.Errorf("%s", body)
	}
	// An issue in the workflow's first status has no predecessor.
	j := s.AddIssue(Issue{Status: StatusOpen})
	body, _ = s.WebhookDelivery(j.Key, "")
	json.Unmarshal(body, &v)
	if item := path(v, "changelog", "items", 0).(map[string]any); item["from"] != nil || item["toString"] != "Open" {
		t.Errorf("%s", body)
	}
}
