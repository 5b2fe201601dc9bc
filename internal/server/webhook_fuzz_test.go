package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"chainguard.dev/sdk/events/registry"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/rs/zerolog"

	"github.com/chainguard-dev/image-request-bridge/connectors/jira"
	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/metrics"
)

// Signature modes of the webhook fuzzers: how the fuzzed delivery is signed.
const (
	sigAsGiven   = iota // the fuzzed header value, verbatim
	sigHexLower         // the right HMAC, hex
	sigHexUpper         // the right HMAC, "SHA256=" and upper-case hex, padded with spaces
	sigBase64           // the right HMAC, base64 (ServiceNow's generateMac)
	sigBase64URL        // the right HMAC, unpadded base64url
	sigFlipped          // the right HMAC, hex, one digit changed
	sigOtherKey         // an HMAC of the body under another key
	sigOtherBody        // the right key over another body
	sigTruncated        // the right HMAC, hex, without its last byte
	sigModes
)

// signWith builds the signature header of a delivery in the given mode, and
// says whether it is a correct signature of body under key.
func signWith(mode uint8, key string, body []byte, given string, prefix string) (string, bool) {
	sum := func(k string, b []byte) []byte {
		h := hmac.New(sha256.New, []byte(k))
		h.Write(b)
		return h.Sum(nil)
	}
	good := sum(key, body)
	switch mode % sigModes {
	case sigHexLower:
		return prefix + hex.EncodeToString(good), true
	case sigHexUpper:
		return "  " + strings.ToUpper(prefix) + strings.ToUpper(hex.EncodeToString(good)) + " ", true
	case sigBase64:
		return base64.StdEncoding.EncodeToString(good), true
	case sigBase64URL:
		return base64.RawURLEncoding.EncodeToString(good), true
	case sigFlipped:
		h := []byte(hex.EncodeToString(good))
		i := len(given) % len(h)
		if h[i] == '0' {
			h[i] = '1'
		} else {
			h[i] = '0'
		}
		return prefix + string(h), false
	case sigOtherKey:
		return prefix + hex.EncodeToString(sum(key+"x", body)), false
	case sigOtherBody:
		return prefix + hex.EncodeToString(sum(key, append(bytes.Clone(body), 'x'))), false
	case sigTruncated:
		return prefix + hex.EncodeToString(good[:len(good)-1]), false
	}
	return given, false
}

// decodesTo reports whether header, read any way the README allows (hex or
// base64 in any alphabet, an optional "sha256=" prefix, surrounding spaces),
// holds exactly mac. It is the independent oracle for "correctly signed".
func decodesTo(header string, mac []byte, allowBase64 bool) bool {
	v := strings.TrimSpace(header)
	if len(v) >= 7 && strings.EqualFold(v[:7], "sha256=") {
		v = v[7:]
	}
	if b, err := hex.DecodeString(v); err == nil && hmac.Equal(b, mac) {
		return true
	}
	if !allowBase64 {
		return false
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(v); err == nil && hmac.Equal(b, mac) {
			return true
		}
	}
	return false
}

func fuzzServer(f *testing.F, mod func(*Options)) (*Server, *fakeEngine) {
	eng := &fakeEngine{}
	o := Options{Engine: eng, Webhooks: testWebhooks(snSecret, jiraSecret),
		Metrics: metrics.New("servicenow", "jira"), Logger: zerolog.New(io.Discard)}
	if mod != nil {
		mod(&o)
	}
	srv, err := New(context.Background(), o)
	if err != nil {
		f.Fatal(err)
	}
	return srv, eng
}

// deliverTo serves one delivery in-process.
func deliverTo(srv *Server, path string, body []byte, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	for k, v := range header {
		req.Header[http.CanonicalHeaderKey(k)] = []string{v}
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	return rec
}

func snBody(sysID, eventID string) []byte {
	b, _ := json.Marshal(map[string]string{"sys_id": sysID, "event_id": eventID, "number": "RITM0010001"})
	return b
}

// FuzzServiceNowWebhook: a delivery is verified (not answered 401) exactly
// when its X-Signature is the HMAC-SHA256 of its body under the secret, in
// hex or base64; only verified deliveries queue anything; nothing panics.
func FuzzServiceNowWebhook(f *testing.F) {
	srv, eng := fuzzServer(f, nil)
	good := snBody("0123456789abcdef0123456789abcdef", "ev-1")
	for mode := uint8(0); mode < sigModes; mode++ {
		f.Add(good, "", mode, "x")
	}
	f.Add([]byte{}, "", uint8(sigAsGiven), "")
	f.Add([]byte(`{"sys_id":"0123456789abcdef0123456789abcdef"}`), "sha256=", uint8(sigAsGiven), "")
	f.Add(good, strings.Repeat("0", 64), uint8(sigAsGiven), "")
	f.Add(good, strings.Repeat("A", 44), uint8(sigAsGiven), "")
	f.Add(good, "sha256="+strings.Repeat("g", 64), uint8(sigAsGiven), "")
	f.Fuzz(func(t *testing.T, body []byte, given string, mode uint8, eventHeader string) {
		if len(body) > servicenow.MaxWebhookBody {
			return // answered 413 before any verification
		}
		sig, signed := signWith(mode, snSecret, body, given, "")
		mac := hmac.New(sha256.New, []byte(snSecret))
		mac.Write(body)
		want := decodesTo(sig, mac.Sum(nil), true)
		if signed && !want {
			t.Fatalf("oracle: %q is a correct signature it does not accept", sig)
		}
		before := len(eng.Queued())
		rec := deliverTo(srv, "/webhooks/servicenow", body, map[string]string{"X-Signature": sig, "X-Event-Id": eventHeader})
		verified := rec.Code != http.StatusUnauthorized
		if verified != want {
			t.Fatalf("body %q, X-Signature %q: answered %d, correctly signed: %v", body, sig, rec.Code, want)
		}
		if !verified && len(eng.Queued()) != before {
			t.Fatalf("an unverified delivery queued %v", eng.Queued()[before:])
		}
		if rec.Code == http.StatusAccepted {
			var p struct {
				SysID string `json:"sys_id"`
			}
			if json.Unmarshal(body, &p) != nil || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(strings.ToLower(p.SysID)) {
				t.Fatalf("accepted a delivery naming no sys_id: %q", body)
			}
		}
	})
}

// FuzzJiraWebhook: as FuzzServiceNowWebhook for X-Hub-Signature, which is
// only ever "sha256=<hex>".
func FuzzJiraWebhook(f *testing.F) {
	srv, eng := fuzzServer(f, nil)
	good := []byte(`{"webhookEvent":"jira:issue_updated","issue":{"id":"10001","key":"IMG-1"}}`)
	for mode := uint8(0); mode < sigModes; mode++ {
		f.Add(good, "", mode, "d-1")
	}
	f.Add([]byte(`{"webhookEvent":"jira:issue_updated","issue":{"id":10001}}`), "sha256=", uint8(sigAsGiven), "")
	f.Add(good, "sha256="+strings.Repeat("0", 64), uint8(sigAsGiven), "")
	f.Add(good, "sha1="+strings.Repeat("0", 40), uint8(sigAsGiven), "")
	f.Fuzz(func(t *testing.T, body []byte, given string, mode uint8, deliveryID string) {
		if len(body) > jira.MaxWebhookBody {
			return // answered 413 before any verification
		}
		sig, signed := signWith(mode, jiraSecret, body, given, "sha256=")
		mac := hmac.New(sha256.New, []byte(jiraSecret))
		mac.Write(body)
		want := strings.HasPrefix(strings.ToLower(strings.TrimSpace(sig)), "sha256=") && decodesTo(sig, mac.Sum(nil), false)
		if mode%sigModes == sigBase64 || mode%sigModes == sigBase64URL {
			signed = false // Jira signs in hex only: base64 is not its format
		}
		if signed && !want {
			t.Fatalf("oracle: %q is a correct signature it does not accept", sig)
		}
		before := len(eng.Queued())
		rec := deliverTo(srv, "/webhooks/jira", body, map[string]string{"X-Hub-Signature": sig, "X-Atlassian-Webhook-Identifier": deliveryID})
		verified := rec.Code != http.StatusUnauthorized
		if verified != want {
			t.Fatalf("body %q, X-Hub-Signature %q: answered %d, correctly signed: %v", body, sig, rec.Code, want)
		}
		if !verified && len(eng.Queued()) != before {
			t.Fatalf("an unverified delivery queued %v", eng.Queued()[before:])
		}
	})
}

// fuzzIssuer is a minimal OIDC issuer (discovery and JWKS) for the
// CloudEvents fuzzer, which cannot use oidctest (it wants a *testing.T).
func fuzzIssuer(f *testing.F) (jose.Signer, jose.Signer, string) {
	key := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			f.Fatal(err)
		}
		return k
	}
	pk, other := key(), key()
	signer := func(k *rsa.PrivateKey) jose.Signer {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k}, nil)
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	f.Cleanup(srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/keys",
			"authorization_endpoint": srv.URL + "/authz", "token_endpoint": srv.URL + "/token"})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Algorithm: string(jose.RS256), Key: &pk.PublicKey}}})
	})
	return signer(pk), signer(other), srv.URL
}

func fuzzToken(s jose.Signer, issuer, subject string, body []byte) (string, error) {
	return jwt.Signed(s).Claims(jwt.Claims{
		Issuer: issuer, Subject: subject, Audience: jwt.Audience{"customer"},
		IssuedAt: jwt.NewNumericDate(time.Now()), Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).Claims(map[string]any{"webhook": map[string]string{"digest": fmt.Sprintf("sha256:%x", sha256.Sum256(body))}}).Serialize()
}

// FuzzChainguardEvent: a CloudEvent reaches the engine only with a token the
// issuer signed, for the bridge's group, over exactly this body; random
// headers and bodies never do, and nothing panics.
func FuzzChainguardEvent(f *testing.F) {
	signer, otherSigner, issuer := fuzzIssuer(f)
	srv, eng := fuzzServer(f, func(o *Options) { o.Chainguard = &Chainguard{Issuer: issuer, Group: testGroup} })
	push := []byte(`{"actor":{"subject":"x"},"body":{"repository":"example.com/python","repo_id":"` + testRepoID + `","tag":"latest","type":"manifest"}}`)
	for mode := uint8(0); mode < 6; mode++ {
		f.Add(push, "", mode, registry.PushedEventType)
	}
	f.Add([]byte(`{}`), "Bearer not.a.jwt", uint8(0), registry.RepoCreatedEventType)
	f.Add([]byte(`null`), "Bearer ", uint8(0), "")
	f.Fuzz(func(t *testing.T, body []byte, auth string, mode uint8, ceType string) {
		var (
			tok   string
			err   error
			valid bool
		)
		switch mode % 6 {
		case 1: // right issuer, group and body
			tok, err = fuzzToken(signer, issuer, "webhook:"+testGroup, body)
			valid = true
		case 2: // another body
			tok, err = fuzzToken(signer, issuer, "webhook:"+testGroup, append(bytes.Clone(body), ' '))
		case 3: // another group
			tok, err = fuzzToken(signer, issuer, "webhook:"+otherGroup, body)
		case 4: // another key
			tok, err = fuzzToken(otherSigner, issuer, "webhook:"+testGroup, body)
		case 5: // not a webhook
			tok, err = fuzzToken(signer, issuer, "user:"+testGroup, body)
		}
		if err != nil {
			t.Fatal(err)
		}
		if tok != "" {
			auth = "Bearer " + tok
		}
		h := ceHeaders("ev-fuzz", ceType, testRepoID, "")
		h["Authorization"] = auth
		before := len(eng.Events())
		rec := deliverTo(srv, "/events/chainguard", body, h)
		reached := len(eng.Events()) != before
		if !valid && (reached || rec.Code/100 == 2) {
			t.Fatalf("mode %d, Authorization %q: answered %d, reached the engine: %v", mode%6, auth, rec.Code, reached)
		}
		if valid && (rec.Code == http.StatusUnauthorized || rec.Code == http.StatusForbidden) {
			t.Fatalf("a correctly signed event was refused: %d %q", rec.Code, rec.Body.String())
		}
	})
}
