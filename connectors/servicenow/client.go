// Package servicenow is the bridge's ServiceNow source: it reads approved
// requested items (RITMs, table sc_req_item) of one catalog item through the
// Table API and writes each result back as ONE PATCH carrying work_notes,
// state and close_notes.
//
// API: https://docs.servicenow.com (REST API reference, Table API):
// GET/PATCH /api/now/table/{table}[/{sys_id}], POST /oauth_token.do.
//
// Retries, Retry-After, rate limits, error classes, HTML pages and the
// scrubbing of credentials are the upstream kit's (internal/upstream).
package servicenow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
	"github.com/chainguard-dev/image-request-bridge/internal/upstream"
)

// Auth holds the integration user's credentials.
type Auth struct {
	Username string
	Password secret.Secret
	// OAuth: when ClientID is set, requests carry a Bearer token minted by
	// POST /oauth_token.do and refreshed before it expires.
	ClientID     string
	ClientSecret secret.Secret
	GrantType    string // "password" (default) or "client_credentials"
}

// client is a Table API client over the upstream kit.
type client struct {
	base *url.URL
	auth Auth
	api  *upstream.Client // Table API calls, authorized
	tok  *upstream.Client // the OAuth grant: no Authorization, no refresh
	log  zerolog.Logger

	// tokMu is held while a token is read or granted: one grant at a time.
	// A channel, not a mutex, so that a call waiting behind a slow grant
	// gives up when its own context ends (its deadline, shutdown).
	tokMu     chan struct{}
	token     string
	refresh   string
	expiresAt time.Time
	now       func() time.Time
	// secrets is what answers are scrubbed of; read without tokMu, which a
	// grant in flight holds.
	secrets atomic.Pointer[[]string]
}

// newClient builds the HTTP client; see upstream's retry rule. A retried
// PATCH with work_notes would duplicate the note, so a write that may have
// landed is never resent: Report re-reads instead.
func newClient(base string, auth Auth, o upstream.Options, log zerolog.Logger) (*client, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("servicenow: instance_url %q is not an absolute URL", base)
	}
	c := &client{base: u, auth: auth, log: log, now: time.Now, tokMu: make(chan struct{}, 1)}
	c.setSecretsLocked()
	o.Name, o.Display = Name, "ServiceNow"
	o.Secrets = func() []string { return *c.secrets.Load() }
	o.UnauthenticatedHint = "ServiceNow refused the credentials: check servicenow.username and servicenow.password (or the OAuth client) of the integration user"
	o.ForbiddenHint = "the ServiceNow integration user lacks a role or an ACL (read on sc_req_item and its variables, write on its work_notes, state and close_notes)"
	o.HTMLHint = "is the instance hibernating, under maintenance or behind an SSO proxy?"
	c.tok = upstream.New(o) // shares o.Limiter: one upstream
	o.Limiter = c.tok.Limiter()
	o.Authorize = c.authorize
	if auth.ClientID != "" {
		o.Refresh = func(ctx context.Context) bool {
			if c.lockTok(ctx) != nil {
				return false
			}
			defer c.unlockTok()
			c.token = "" // force a new grant
			return true
		}
	}
	c.api = upstream.New(o)
	return c, nil
}

// do sends one call and decodes a JSON answer into out (nil: discard).
func (c *client) do(ctx context.Context, method, path string, query url.Values, body any, out any) (http.Header, error) {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = query.Encode() // sorted keys: request logs compare
	var rdr io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding %s %s body: %w", method, path, err)
		}
		rdr = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rdr)
	if err != nil {
		return nil, fmt.Errorf("building %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.api.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ServiceNow %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body) // read whole and capped by the kit
	if upstream.IsHTML(resp.Header, data) {
		return nil, c.api.HTMLError(method, path, resp.StatusCode)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := c.api.NewError(method, path, resp)
		var eb struct {
			Error struct {
				Message string `json:"message"`
				Detail  any    `json:"detail"`
			} `json:"error"`
			OAuthError string `json:"error_description"`
		}
		if json.Unmarshal(data, &eb) == nil {
			msg := eb.Error.Message
			if msg == "" {
				msg = eb.OAuthError
			}
			if msg != "" {
				ae.Messages = []string{msg}
			}
			if d, ok := eb.Error.Detail.(string); ok {
				ae.Detail = d
			}
		}
		return resp.Header, ae
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return resp.Header, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return nil, fmt.Errorf("ServiceNow %s %s: decoding response (%d bytes): %w", method, path, len(data), err)
	}
	// A transaction cancelled by the 60 s quota can come back as a 200 whose body
	// is an error object.
	var eb struct {
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &eb) == nil && eb.Error != nil && eb.Error.Message != "" {
		ae := c.api.NewError(method, path, resp)
		ae.Messages = []string{eb.Error.Message}
		return resp.Header, ae
	}
	return resp.Header, nil
}

// message returns the first message of err's *upstream.APIError, or "".
func message(err error) string {
	var ae *upstream.APIError
	if errors.As(err, &ae) && len(ae.Messages) > 0 {
		return ae.Messages[0]
	}
	return ""
}

func (c *client) authorize(req *http.Request) error {
	if c.auth.ClientID == "" {
		req.SetBasicAuth(c.auth.Username, c.auth.Password.Reveal())
		return nil
	}
	tok, err := c.bearer(req.Context())
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

// bearer returns a valid OAuth access token, minting or refreshing it when it
// expires within a minute (tokens last about 30 minutes).
func (c *client) bearer(ctx context.Context) (string, error) {
	if err := c.lockTok(ctx); err != nil {
		return "", fmt.Errorf("waiting for the ServiceNow OAuth grant under way: %w", err)
	}
	defer c.unlockTok()
	if c.token != "" && c.now().Add(time.Minute).Before(c.expiresAt) {
		return c.token, nil
	}
	if c.refresh != "" {
		form := c.baseForm()
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", c.refresh)
		if tok, err := c.grantLocked(ctx, form); err == nil {
			return tok, nil
		}
		c.refresh = "" // expired or revoked: start over with the configured grant
	}
	form := c.baseForm()
	if c.auth.GrantType == "client_credentials" {
		form.Set("grant_type", "client_credentials")
	} else {
		form.Set("grant_type", "password")
		form.Set("username", c.auth.Username)
		form.Set("password", c.auth.Password.Reveal())
	}
	return c.grantLocked(ctx, form)
}

// lockTok takes tokMu, or returns ctx's error if ctx ends first.
func (c *client) lockTok(ctx context.Context) error {
	select {
	case c.tokMu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *client) unlockTok() { <-c.tokMu }

func (c *client) baseForm() url.Values {
	return url.Values{"client_id": {c.auth.ClientID}, "client_secret": {c.auth.ClientSecret.Reveal()}}
}

// grantLocked POSTs the OAuth grant. It is a write to the kit: retried only
// on a 429 (the instance did nothing), never after a lost answer. The caller
// holds tokMu.
func (c *client) grantLocked(ctx context.Context, form url.Values) (string, error) {
	u := *c.base
	u.Path = c.base.Path + "/oauth_token.do"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("building OAuth token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.tok.Do(req)
	if err != nil {
		return "", fmt.Errorf("ServiceNow OAuth token request: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var tr struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int    `json:"expires_in"`
		Error        string `json:"error"`
		ErrorDesc    string `json:"error_description"`
	}
	if upstream.IsHTML(resp.Header, data) {
		return "", c.tok.HTMLError(http.MethodPost, "/oauth_token.do", resp.StatusCode)
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		ae := c.tok.NewError(http.MethodPost, "/oauth_token.do", resp)
		return "", isync.Retryable(fmt.Errorf("ServiceNow OAuth token request: %w", ae))
	}
	if err := json.Unmarshal(data, &tr); err != nil || resp.StatusCode != http.StatusOK || tr.AccessToken == "" {
		// Never echo the form: it holds the client secret and password.
		return "", isync.Blocked("servicenow:oauth", "ServiceNow refused the OAuth grant; check servicenow.oauth.client_id/client_secret and the integration user",
			fmt.Errorf("POST /oauth_token.do: HTTP %d %s %s", resp.StatusCode, tr.Error, tr.ErrorDesc))
	}
	c.token, c.refresh = tr.AccessToken, tr.RefreshToken
	c.setSecretsLocked()
	if tr.ExpiresIn <= 0 {
		tr.ExpiresIn = 1799
	}
	c.expiresAt = c.now().Add(time.Duration(tr.ExpiresIn) * time.Second)
	return c.token, nil
}

// setSecretsLocked records every credential this client sends (password,
// client secret, OAuth tokens, the Basic auth pair), scrubbed from every
// answer so that an instance or proxy echoing them cannot carry them into
// errors, logs or notes. The caller holds tokMu (or owns c).
func (c *client) setSecretsLocked() {
	vals := []string{c.token, c.refresh}
	if p := c.auth.Password.Reveal(); p != "" {
		vals = append(vals, p, c.auth.Username+":"+p)
	}
	if cs := c.auth.ClientSecret.Reveal(); cs != "" {
		vals = append(vals, cs, c.auth.ClientID+":"+cs)
	}
	c.secrets.Store(&vals)
}

// list GETs a table and returns the response headers (Link, X-Total-Count).
// A v1-style 404 on an empty result is an empty page, not an error.
func (c *client) list(ctx context.Context, path string, query url.Values, out *listResponse) (http.Header, error) {
	hdr, err := c.do(ctx, http.MethodGet, path, query, nil, out)
	if upstream.StatusOf(err) == http.StatusNotFound && message(err) == "No Record found" {
		out.Result = nil
		return http.Header{}, nil
	}
	return hdr, err
}
