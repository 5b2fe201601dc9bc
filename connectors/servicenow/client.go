// Package servicenow is the bridge's ServiceNow source: it reads approved
// requested items (RITMs, table sc_req_item) of one catalog item through the
// Table API and writes each result back as ONE PATCH carrying work_notes,
// state and close_notes.
//
// API: https://docs.servicenow.com (REST API reference, Table API):
// GET/PATCH /api/now/table/{table}[/{sys_id}], POST /oauth_token.do.
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
	"strconv"
	"strings"
	stdsync "sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/rs/zerolog"

	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// maxBody caps how much of a response is read (a page of 1000 RITMs is far less).
const maxBody = 32 << 20

// APIError is a non-2xx answer from ServiceNow, decoded from its
// {"error":{"message","detail"},"status":"failure"} body when there is one.
type APIError struct {
	Method     string
	Path       string
	Status     int
	Message    string
	Detail     string
	RetryAfter time.Duration // from Retry-After on 429
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("ServiceNow %s %s: HTTP %d", e.Method, e.Path, e.Status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf("; retry after %s", e.RetryAfter)
	}
	return msg
}

// ErrHTML is returned when ServiceNow answers with an HTML page instead of JSON:
// a hibernating developer instance, a maintenance page or an SSO proxy.
var ErrHTML = errors.New("ServiceNow answered with an HTML page instead of JSON (is the instance hibernating, under maintenance or behind an SSO proxy?)")

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

// client is a Table API client over go-retryablehttp.
type client struct {
	base *url.URL
	auth Auth
	http *retryablehttp.Client
	log  zerolog.Logger

	tokMu     stdsync.Mutex
	token     string
	refresh   string
	expiresAt time.Time
	now       func() time.Time
}

type methodKey struct{}

// newClient builds the HTTP client. GETs retry on network errors, 429 and 5xx
// (honouring Retry-After up to retryWaitMax); writes retry only on 429, which
// ServiceNow sends before doing anything: a write that may have landed is never
// resent blindly (a retried PATCH with work_notes duplicates the note).
func newClient(base string, auth Auth, timeout time.Duration, retryMax int, retryWaitMax time.Duration, log zerolog.Logger) (*client, error) {
	u, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("servicenow: instance_url %q is not an absolute URL", base)
	}
	rc := retryablehttp.NewClient()
	rc.HTTPClient.Timeout = timeout
	rc.RetryMax = retryMax
	rc.RetryWaitMin = 500 * time.Millisecond
	rc.RetryWaitMax = retryWaitMax
	rc.Logger = nil
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if resp != nil && resp.StatusCode == http.StatusTooManyRequests {
			// Retry in the client only when ServiceNow asks for a short wait; a long
			// Retry-After (rate-limit rules are hourly) goes back to the engine.
			if ra := retryAfter(resp); ra > retryWaitMax {
				return false, nil
			}
			return true, nil
		}
		if m, _ := ctx.Value(methodKey{}).(string); m != http.MethodGet {
			return false, nil
		}
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	return &client{base: u, auth: auth, http: rc, log: log, now: time.Now}, nil
}

func retryAfter(resp *http.Response) time.Duration {
	if resp == nil {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// do sends one request and decodes a JSON answer into out (nil: discard).
// A 401 with OAuth refreshes the token and resends once: ServiceNow rejected the
// request before doing anything, so that resend is safe for writes too.
func (c *client) do(ctx context.Context, method, path string, query url.Values, body any, out any) (http.Header, error) {
	hdr, err := c.doOnce(ctx, method, path, query, body, out)
	var ae *APIError
	if c.auth.ClientID != "" && errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
		c.tokMu.Lock()
		c.token = "" // force a new grant
		c.tokMu.Unlock()
		hdr, err = c.doOnce(ctx, method, path, query, body, out)
	}
	return hdr, err
}

func (c *client) doOnce(ctx context.Context, method, path string, query url.Values, body any, out any) (http.Header, error) {
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
	req, err := retryablehttp.NewRequestWithContext(context.WithValue(ctx, methodKey{}, method), method, u.String(), rdr)
	if err != nil {
		return nil, fmt.Errorf("building %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := c.authorize(ctx, req.Request); err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the method and path say enough; the full URL repeats the whole query
		}
		return nil, fmt.Errorf("ServiceNow %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("ServiceNow %s %s: reading response: %w", method, path, err)
	}
	c.tokMu.Lock()
	data = c.scrubLocked(data)
	c.tokMu.Unlock()
	if looksHTML(resp, data) {
		return nil, fmt.Errorf("ServiceNow %s %s: HTTP %d: %w", method, path, resp.StatusCode, ErrHTML)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := &APIError{Method: method, Path: path, Status: resp.StatusCode}
		var eb struct {
			Error struct {
				Message string `json:"message"`
				Detail  any    `json:"detail"`
			} `json:"error"`
			OAuthError string `json:"error_description"`
		}
		if json.Unmarshal(data, &eb) == nil {
			ae.Message = eb.Error.Message
			if d, ok := eb.Error.Detail.(string); ok {
				ae.Detail = d
			}
			if ae.Message == "" {
				ae.Message = eb.OAuthError
			}
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			ae.RetryAfter = retryAfter(resp)
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
		return resp.Header, &APIError{Method: method, Path: path, Status: resp.StatusCode, Message: eb.Error.Message}
	}
	return resp.Header, nil
}

func looksHTML(resp *http.Response, data []byte) bool {
	if strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
		return true
	}
	t := bytes.TrimSpace(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))
	return len(t) > 0 && t[0] == '<'
}

func (c *client) authorize(ctx context.Context, req *http.Request) error {
	if c.auth.ClientID == "" {
		req.SetBasicAuth(c.auth.Username, c.auth.Password.Reveal())
		return nil
	}
	tok, err := c.bearer(ctx)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

// bearer returns a valid OAuth access token, minting or refreshing it when it
// expires within a minute (tokens last about 30 minutes).
func (c *client) bearer(ctx context.Context) (string, error) {
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	if c.token != "" && c.now().Add(time.Minute).Before(c.expiresAt) {
		return c.token, nil
	}
	if c.refresh != "" {
		form := c.baseForm()
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", c.refresh)
		if tok, err := c.grant(ctx, form); err == nil {
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
	return c.grant(ctx, form)
}

func (c *client) baseForm() url.Values {
	return url.Values{"client_id": {c.auth.ClientID}, "client_secret": {c.auth.ClientSecret.Reveal()}}
}

func (c *client) grant(ctx context.Context, form url.Values) (string, error) {
	u := *c.base
	u.Path = c.base.Path + "/oauth_token.do"
	req, err := retryablehttp.NewRequestWithContext(context.WithValue(ctx, methodKey{}, http.MethodGet), http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("building OAuth token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("ServiceNow OAuth token request: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	data = c.scrubLocked(data)
	var tr struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresIn    int    `json:"expires_in"`
		Error        string `json:"error"`
		ErrorDesc    string `json:"error_description"`
	}
	if looksHTML(resp, data) {
		return "", fmt.Errorf("ServiceNow OAuth token request: %w", ErrHTML)
	}
	if err := json.Unmarshal(data, &tr); err != nil || resp.StatusCode != http.StatusOK || tr.AccessToken == "" {
		// Never echo the form: it holds the client secret and password.
		return "", isync.Blocked("servicenow:oauth", "ServiceNow refused the OAuth grant; check servicenow.oauth.client_id/client_secret and the integration user",
			fmt.Errorf("POST /oauth_token.do: HTTP %d %s %s", resp.StatusCode, tr.Error, tr.ErrorDesc))
	}
	c.token, c.refresh = tr.AccessToken, tr.RefreshToken
	if tr.ExpiresIn <= 0 {
		tr.ExpiresIn = 1799
	}
	c.expiresAt = c.now().Add(time.Duration(tr.ExpiresIn) * time.Second)
	return c.token, nil
}

// scrubLocked removes from an answer every credential this client sends
// (password, client secret, OAuth tokens, the Basic auth pair), so that an
// instance or proxy echoing them cannot carry them into errors, logs or
// notes. The caller holds tokMu.
func (c *client) scrubLocked(data []byte) []byte {
	vals := []string{c.token, c.refresh}
	if p := c.auth.Password.Reveal(); p != "" {
		vals = append(vals, p, c.auth.Username+":"+p)
	}
	if cs := c.auth.ClientSecret.Reveal(); cs != "" {
		vals = append(vals, cs, c.auth.ClientID+":"+cs)
	}
	return secret.Scrub(data, vals...)
}

// list GETs a table and returns the response headers (Link, X-Total-Count).
// A v1-style 404 on an empty result is an empty page, not an error.
func (c *client) list(ctx context.Context, path string, query url.Values, out *listResponse) (http.Header, error) {
	hdr, err := c.do(ctx, http.MethodGet, path, query, nil, out)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound && ae.Message == "No Record found" {
		out.Result = nil
		return http.Header{}, nil
	}
	return hdr, err
}
