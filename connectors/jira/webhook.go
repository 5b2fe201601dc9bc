package jira

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/chainguard-dev/image-request-bridge/internal/source"
)

// Webhook implements source.Webhooker: a Jira admin webhook with a secret
// signs its body in X-Hub-Signature ("sha256=<hex>") and names its delivery
// in X-Atlassian-Webhook-Identifier.
func (connector) Webhook(s source.Section) *source.Webhook {
	c, ok := s.(*Config)
	if !ok || c.WebhookSecret.IsZero() {
		return nil
	}
	return &source.Webhook{
		Secret:    c.WebhookSecret,
		Signature: func(h http.Header) ([]byte, bool) { return Signature(h.Get("X-Hub-Signature")) },
		Parse:     ParseDelivery,
		MaxBody:   MaxWebhookBody,
	}
}

// MaxWebhookBody is the largest delivery accepted: an issue_updated body
// carries the whole issue and its changelog, tens of KiB with a long
// description or many custom fields.
const MaxWebhookBody = 256 << 10

// Signature decodes an X-Hub-Signature value: "sha256=<hex>".
func Signature(v string) ([]byte, bool) {
	v = strings.TrimSpace(v)
	if len(v) != 7+2*sha256.Size || !strings.EqualFold(v[:7], "sha256=") {
		return nil, false
	}
	b, err := hex.DecodeString(v[7:])
	return b, err == nil
}

// payload is the part of a Jira admin webhook body the bridge reads.
type payload struct {
	WebhookEvent string `json:"webhookEvent"`
	Issue        *struct {
		ID  json.RawMessage `json:"id"`
		Key string          `json:"key"`
	} `json:"issue"`
}

var (
	hookIDRe  = regexp.MustCompile(`^[0-9]{1,19}$`)
	hookKeyRe = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}-[0-9]{1,19}$`)
)

// IssueID accepts an issue id given as a JSON string or number of digits.
func IssueID(raw json.RawMessage) (string, bool) {
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", false
		}
		v = n.String()
	}
	return v, hookIDRe.MatchString(v)
}

// ParseDelivery reads a verified delivery: the issue id of an issue created
// or updated (other events are ignored), deduped on the webhook identifier
// header. The header is not signed, so the server also dedupes on the signed
// body, which carries the event's timestamp: a captured delivery replayed with
// fresh identifiers is still refused.
func ParseDelivery(h http.Header, body []byte) (source.Delivery, error) {
	hdrID := h.Get("X-Atlassian-Webhook-Identifier")
	d := source.Delivery{ID: source.LogSafe(hdrID), DedupeID: hdrID}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		return d, errors.New("body is not the expected JSON object")
	}
	if ev := p.WebhookEvent; ev != "jira:issue_updated" && ev != "jira:issue_created" {
		if len(ev) <= 64 && source.LogSafe(ev) != "" {
			d.Detail = map[string]string{"event": ev}
		}
		d.Ignored = true
		return d, nil
	}
	if p.Issue == nil {
		return d, errors.New("issue.id is missing")
	}
	if hookKeyRe.MatchString(p.Issue.Key) {
		d.Key = p.Issue.Key
	}
	id, ok := IssueID(p.Issue.ID)
	if !ok {
		return d, errors.New("issue.id must be a numeric id")
	}
	d.TicketID = id
	return d, nil
}
