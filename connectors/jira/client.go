// Package jira is the bridge's Jira source: it reads approved image-request
// issues with the configured JQL, on Jira Cloud (enhanced search,
// /rest/api/2/search/jql with nextPageToken) or Data Center (/rest/api/2/search
// with startAt), and writes each result back as ONE transition carrying the
// comment, or, when the transition has no screen, a comment guarded by a marker
// check followed by the transition.
//
// Client: github.com/andygrunwald/go-jira v1.17.0 over go-retryablehttp.
// API: https://developer.atlassian.com/cloud/jira/platform/rest/v2/ and
// https://docs.atlassian.com/software/jira/docs/api/REST/latest/ (Data Center).
package jira

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	jira "github.com/andygrunwald/go-jira"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Deployment kinds.
const (
	Cloud      = "cloud"
	DataCenter = "datacenter"
	Auto       = "auto"
)

// APIError is a non-2xx answer from Jira.
type APIError struct {
	Method     string
	Path       string
	Status     int
	Messages   []string          // errorMessages
	Fields     map[string]string // errors: field → message
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("Jira %s %s: HTTP %d", e.Method, e.Path, e.Status)
	var parts []string
	parts = append(parts, e.Messages...)
	for f, m := range e.Fields {
		parts = append(parts, f+": "+m)
	}
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, "; ")
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf("; retry after %s", e.RetryAfter)
	}
	return msg
}

// ErrHTML is returned when Jira answers with an HTML page instead of JSON (a
// login page of an SSO proxy, a maintenance page).
var ErrHTML = errors.New("Jira answered with an HTML page instead of JSON (is the URL right, or is an SSO proxy or maintenance page in front of Jira?)")

type methodKey struct{}

// methodTagger records the request method in the context so that the retry
// policy, which may see no response, knows whether the request was a write.
type methodTagger struct{ next http.RoundTripper }

func (m methodTagger) RoundTrip(r *http.Request) (*http.Response, error) {
	return m.next.RoundTrip(r.WithContext(context.WithValue(r.Context(), methodKey{}, r.Method)))
}

// authTransport sets Cloud basic auth (email + API token) or a Data Center
// personal access token (Authorization: Bearer).
type authTransport struct {
	email string
	token secret.Secret
	pat   bool
	next  http.RoundTripper
}

func (a *authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if a.pat {
		r.Header.Set("Authorization", "Bearer "+a.token.Reveal())
	} else {
		r.SetBasicAuth(a.email, a.token.Reveal())
	}
	r.Header.Set("Accept", "application/json")
	resp, err := a.next.RoundTrip(r)
	if err != nil || resp == nil || resp.Body == nil {
		return resp, err
	}
	// An answer that echoes the credentials (a proxy, an error page) must not
	// carry them into errors, logs or comments: every body is read here and
	// scrubbed before go-jira or the bridge sees it.
	data, rerr := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	resp.Body.Close()
	if rerr == nil && len(data) > maxAnswer {
		rerr = fmt.Errorf("Jira %s %s: the answer is larger than %d MiB", r.Method, r.URL.Path, maxAnswer>>20)
	}
	if rerr != nil {
		return nil, rerr
	}
	tok := a.token.Reveal()
	data = secret.Scrub(data, tok, a.email+":"+tok)
	resp.Body = io.NopCloser(bytes.NewReader(data))
	resp.ContentLength = int64(len(data))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// maxAnswer bounds how much of one Jira answer is read.
const maxAnswer = 64 << 20

// newHTTPClient returns the *http.Client go-jira uses: retryablehttp with
// PassthroughErrorHandler (Jira's error bodies reach the error), retrying reads
// on network errors, 429 and 5xx, and writes only on 429 (rejected before
// anything happened); a write that may have landed is checked by the caller,
// never resent blindly.
func newHTTPClient(auth *authTransport, timeout time.Duration, retryMax int, retryWaitMax time.Duration, wrap func(http.RoundTripper) http.RoundTripper) *http.Client {
	rc := retryablehttp.NewClient()
	rc.HTTPClient.Timeout = timeout
	auth.next = rc.HTTPClient.Transport
	if wrap != nil {
		auth.next = wrap(auth.next)
	}
	rc.HTTPClient.Transport = auth
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
			return retryAfter(resp) <= retryWaitMax, nil
		}
		if m, _ := ctx.Value(methodKey{}).(string); m != "" && m != http.MethodGet {
			return false, nil
		}
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	return &http.Client{Transport: methodTagger{&retryablehttp.RoundTripper{Client: rc}}}
}

func retryAfter(resp *http.Response) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// apiErr turns go-jira's (response, error) pair into a clear error. go-jira
// has already read the body into its own error when it could; when the body
// was not JSON, the error text holds it, which is cut here so an HTML page is
// named, not dumped.
func apiErr(method, path string, resp *jira.Response, err error) error {
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "invalid character '<'") {
		return fmt.Errorf("Jira %s %s: %w", method, path, ErrHTML)
	}
	if resp == nil || resp.Response == nil {
		return fmt.Errorf("Jira %s %s: %w", method, path, err)
	}
	ae := &APIError{Method: method, Path: path, Status: resp.StatusCode}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		ae.RetryAfter = retryAfter(resp.Response)
	}
	var je *jira.Error
	switch {
	case errors.As(err, &je):
		ae.Messages, ae.Fields = je.ErrorMessages, je.Errors
		if len(ae.Messages) == 0 && len(ae.Fields) == 0 {
			ae.Messages = []string{http.StatusText(resp.StatusCode)}
		}
	case strings.Contains(err.Error(), "<html") || strings.Contains(err.Error(), "<!DOCTYPE") || strings.Contains(resp.Header.Get("Content-Type"), "text/html"):
		ae.Messages = []string{ErrHTML.Error()}
	default:
		ae.Messages = []string{legacyMessage(err.Error())}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// A 2xx whose body could not be decoded: truncated or not JSON.
		return fmt.Errorf("Jira %s %s: decoding response: %s", method, path, cut(err.Error(), 200))
	}
	return ae
}

// legacyMessage extracts messages from the legacy {"errors":[...]} array shape
// go-jira cannot decode, or cuts the raw text.
func legacyMessage(s string) string {
	if i := strings.Index(s, "{"); i >= 0 {
		var v struct {
			Errors        []string `json:"errors"`
			ErrorMessages []string `json:"errorMessages"`
			Message       string   `json:"message"`
		}
		if json.Unmarshal([]byte(s[i:]), &v) == nil {
			all := append(append(v.ErrorMessages, v.Errors...), v.Message)
			if msg := strings.TrimSpace(strings.Join(all, "; ")); msg != "" && msg != ";" {
				return strings.Trim(msg, "; ")
			}
		}
	}
	return cut(s, 300)
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// status returns the HTTP status of err, or 0.
func status(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// ambiguous reports whether a failed write may nevertheless have been applied.
func ambiguous(err error) bool {
	s := status(err)
	return s == 0 || s >= 500
}

// classify maps errors that no retry will fix onto the engine's classes.
func classify(err error) error {
	switch s := status(err); {
	case s == http.StatusUnauthorized:
		return isync.Blocked("jira:unauthenticated", "Jira refused the credentials: check jira.email and jira.api_token (Cloud: an API token of the integration account; Data Center: a personal access token)", err)
	case s == http.StatusForbidden:
		return isync.Blocked("jira:forbidden", "the Jira integration account lacks a permission (Browse projects, Add comments, Transition issues)", err)
	case s == http.StatusGone:
		return isync.Blocked("jira:gone", "Jira answered 410 Gone: this API was removed on Jira Cloud (CHANGE-2046); set jira.deployment: cloud", err)
	}
	return err
}

// doJSON sends a request built with go-jira's client and decodes the answer
// into out (nil: discard); for calls go-jira has no typed method for, or whose
// typed structs drop fields the bridge needs.
func doJSON(ctx context.Context, c *jira.Client, method, path string, body, out any) error {
	req, err := c.NewRequestWithContext(ctx, method, path, body)
	if err != nil {
		return fmt.Errorf("building Jira %s %s: %w", method, path, err)
	}
	resp, err := c.Do(req, nil)
	if resp == nil || resp.Response == nil {
		return apiErr(method, path, nil, err)
	}
	defer resp.Body.Close()
	data, rerr := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return decodeError(method, path, resp.Response, data)
	}
	if rerr != nil {
		return fmt.Errorf("Jira %s %s: reading response: %w", method, path, rerr)
	}
	// An HTML page with a 2xx status (an SSO proxy, a maintenance page) is not
	// Jira's answer: the call did not reach it, whether or not a body was wanted.
	if b := bytes.TrimSpace(data); len(b) > 0 && b[0] == '<' {
		return fmt.Errorf("Jira %s %s: %w", method, path, ErrHTML)
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("Jira %s %s: decoding response: %w", method, path, err)
	}
	return nil
}

// decodeError reads Jira's error body: {"errorMessages":[…],"errors":{…}}, the
// legacy {"errors":[…]} array, a Data Center {"message":…} or an HTML page.
func decodeError(method, path string, resp *http.Response, body []byte) *APIError {
	ae := &APIError{Method: method, Path: path, Status: resp.StatusCode}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		ae.RetryAfter = retryAfter(resp)
	}
	b := bytes.TrimSpace(body)
	switch {
	case len(b) > 0 && b[0] == '<':
		ae.Messages = []string{ErrHTML.Error()}
	case len(b) > 0 && b[0] == '{':
		var v struct {
			ErrorMessages []string        `json:"errorMessages"`
			Errors        json.RawMessage `json:"errors"`
			Message       string          `json:"message"`
		}
		if json.Unmarshal(b, &v) == nil {
			ae.Messages = v.ErrorMessages
			var m map[string]string
			var list []string
			if json.Unmarshal(v.Errors, &m) == nil {
				ae.Fields = m
			} else if json.Unmarshal(v.Errors, &list) == nil {
				ae.Messages = append(ae.Messages, list...)
			}
			if v.Message != "" {
				ae.Messages = append(ae.Messages, v.Message)
			}
		}
	}
	if len(ae.Messages) == 0 && len(ae.Fields) == 0 {
		if len(b) > 0 && b[0] != '<' {
			ae.Messages = []string{cut(string(b), 300)}
		} else if len(b) == 0 {
			ae.Messages = []string{http.StatusText(resp.StatusCode)}
		}
	}
	return ae
}
