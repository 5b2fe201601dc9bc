package jira

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
)

// Webhook headers.
const (
	HeaderSignature  = "X-Hub-Signature"
	HeaderIdentifier = "X-Atlassian-Webhook-Identifier"
	HeaderRetry      = "X-Atlassian-Webhook-Retry"
	HeaderFlow       = "X-Atlassian-Webhook-Flow"
)

// WebhookDelivery returns the body and headers Jira sends to an admin
// webhook (event jira:issue_updated, issue_generic) for the last status change
// of the issue, as it stands now.
//
// The changelog is the issue's last recorded status change (a transition or
// an Update), with the user who made it; an issue that has none is reported
// as just moved into its status by DefaultApprover from the source of the
// workflow transition leading there (Waiting for approval → Approved by
// default). Like Jira, issue.self lacks the /issue/ segment. The body is
// signed like a webhook saved with a secret: X-Hub-Signature: sha256=<hex of
// HMAC-SHA256(secret, body)>; an empty secret sends no signature.
// X-Atlassian-Webhook-Identifier is new on each call (a retry of the same
// delivery keeps it, see WebhookRetry) and X-Atlassian-Webhook-Retry is 0. On
// Cloud the body carries matchedWebhookIds and an accountId user; on Data
// Center a name/key user. It returns nil, nil for an unknown issue.
func (s *Server) WebhookDelivery(key, secret string) (body []byte, header http.Header) {
	s.mu.Lock()
	rec := s.lookupLocked(key)
	if rec == nil {
		s.mu.Unlock()
		return nil, nil
	}
	actor := DefaultApprover
	var change *changeItem
	changeID := ""
	for i := len(rec.histories) - 1; i >= 0 && change == nil; i-- {
		h := rec.histories[i]
		for _, it := range h.items {
			if it.field == "status" {
				c := it
				change, actor, changeID = &c, h.author, h.id
				break
			}
		}
	}
	if change == nil {
		from := ""
		for _, t := range s.workflow.Transitions {
			if t.From != "" && t.To == rec.issue.Status {
				from = t.From
				break
			}
		}
		c := s.statusChange(from, rec.issue.Status)
		if from == "" {
			c.from, c.fromString = "", ""
		}
		change = &c
		s.changelogID++
		changeID = strconv.Itoa(s.changelogID)
	}
	sel := parseFieldSelection([]string{"*all"}, "")
	fields := object{}
	for _, f := range s.fieldValuesLocked(rec, 0) {
		if sel.has(f.id, f.navigable) {
			fields = append(fields, member{f.id, f.value})
		}
	}
	payload := object{
		{"timestamp", s.clock().UnixMilli()},
		{"webhookEvent", "jira:issue_updated"},
		{"issue_event_type_name", "issue_generic"},
	}
	if s.cloud() {
		payload = append(payload, member{"matchedWebhookIds", []int{1}})
	}
	payload = append(payload,
		member{"user", s.userJSON(completeUser(actor))},
		member{"issue", object{
			{"id", rec.issue.ID},
			{"self", s.apiURL(rec.issue.ID)},
			{"key", rec.issue.Key},
			{"fields", fields},
		}},
		member{"changelog", object{{"id", changeID}, {"items", changeItemsJSON([]changeItem{*change})}}},
	)
	s.mu.Unlock()

	body, err := marshal(payload)
	if err != nil {
		panic(err)
	}
	header = http.Header{}
	header.Set("Content-Type", "application/json; charset=UTF-8")
	header.Set("User-Agent", "Atlassian Webhook HTTP Client")
	header.Set(HeaderIdentifier, newUUID())
	header.Set(HeaderRetry, "0")
	header.Set(HeaderFlow, "Primary")
	if secret != "" {
		header.Set(HeaderSignature, SignWebhook(body, secret))
	}
	return body, header
}

// WebhookRetry returns the headers of the next retry of a delivery: the same
// identifier and signature, X-Atlassian-Webhook-Retry one higher.
func WebhookRetry(header http.Header) http.Header {
	h := header.Clone()
	n, _ := strconv.Atoi(h.Get(HeaderRetry))
	h.Set(HeaderRetry, strconv.Itoa(n+1))
	return h
}

// SignWebhook returns the X-Hub-Signature of body under secret:
// "sha256=" and the hex HMAC-SHA256.
func SignWebhook(body []byte, secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// newUUID returns a random version 4 UUID.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}
