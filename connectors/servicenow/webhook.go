package servicenow

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/chainguard-dev/image-request-bridge/internal/source"
)

// Webhook implements source.Webhooker: the business rule in
// integrations/servicenow posts {"sys_id", "number", "event_id"} signed with
// X-Signature, the HMAC-SHA256 of the body under webhook_secret.
func (connector) Webhook(s source.Section) *source.Webhook {
	c, ok := s.(*Config)
	if !ok || c.WebhookSecret.IsZero() {
		return nil
	}
	return &source.Webhook{
		Secret:    c.WebhookSecret,
		Signature: func(h http.Header) ([]byte, bool) { return Signature(h.Get("X-Signature")) },
		Parse:     ParseDelivery,
		MaxBody:   MaxWebhookBody,
	}
}

// MaxWebhookBody is the largest delivery accepted: the business rule's body
// is under 1 KiB.
const MaxWebhookBody = 16 << 10

// Signature decodes an X-Signature value: the HMAC-SHA256 in base64 (what
// GlideCertificateEncryption.generateMac returns) or hex, optionally
// prefixed "sha256=".
func Signature(v string) ([]byte, bool) {
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

// payload is the body the bridge's business rule sends. Other fields are
// ignored.
type payload struct {
	SysID   string `json:"sys_id"`
	Number  string `json:"number"`
	EventID string `json:"event_id"`
}

var ritmNumberRe = regexp.MustCompile(`^[A-Z]{2,8}[0-9]{1,16}$`)

// ParseDelivery reads a verified delivery: the RITM's sys_id to re-read, and
// its event id (the signed body's event_id wins over the unsigned
// X-Event-Id header) to dedupe on.
func ParseDelivery(h http.Header, body []byte) (source.Delivery, error) {
	var p payload
	if err := json.Unmarshal(body, &p); err != nil {
		return source.Delivery{}, errors.New("body is not the expected JSON object")
	}
	var d source.Delivery
	if ritmNumberRe.MatchString(p.Number) {
		d.Key = p.Number
	}
	sysID := strings.ToLower(p.SysID)
	if !sysIDRe.MatchString(sysID) {
		return d, errors.New("sys_id must be 32 hex characters")
	}
	d.TicketID = sysID
	d.DedupeID = p.EventID
	if d.DedupeID == "" {
		d.DedupeID = h.Get("X-Event-Id")
	}
	d.ID = source.LogSafe(d.DedupeID)
	return d, nil
}
