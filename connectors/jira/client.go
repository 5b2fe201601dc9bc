// Package jira is the bridge's Jira source: it reads approved image-request
// issues with the configured JQL, on Jira Cloud (enhanced search,
// /rest/api/2/search/jql with nextPageToken) or Data Center (/rest/api/2/search
// with startAt), and writes each result back as ONE transition carrying the
// comment, or, when the transition has no screen, a comment guarded by a marker
// check followed by the transition.
//
// Client: github.com/andygrunwald/go-jira v1.17.0 over the upstream kit
// (internal/upstream: retries, Retry-After, rate limits, error classes,
// scrubbing of credentials).
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
	"strings"

	jira "github.com/andygrunwald/go-jira"

	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
	"github.com/chainguard-dev/image-request-bridge/internal/upstream"
)

// Deployment kinds.
const (
	Cloud      = "cloud"
	DataCenter = "datacenter"
	Auto       = "auto"
)

// Authentication schemes (jira.auth; auto follows the deployment).
const (
	AuthBasic  = "basic"  // email (or Data Center user name) + API token or password
	AuthBearer = "bearer" // Data Center personal access token
)

// Comment visibilities (jira.comment_visibility).
const (
	VisibilityInternal = "internal"
	VisibilityPublic   = "public"
)

// htmlHint is what an HTML page in place of a Jira answer usually means.
const htmlHint = "is the URL right, or is an SSO proxy or maintenance page in front of Jira?"

// anonymousKey marks a request's context: send it without credentials.
type anonymousKey struct{}

// anonymous returns ctx for a request sent without credentials: GET
// serverInfo, which Jira answers anonymously, before the bridge knows which
// credentials the instance takes.
func anonymous(ctx context.Context) context.Context {
	return context.WithValue(ctx, anonymousKey{}, true)
}

// newUpstream returns the kit client of Jira: basic auth (email + API token,
// Cloud) or a personal access token (Authorization: Bearer, Data Center), as
// scheme says for each request ("": none), scrubbed from every answer.
func newUpstream(email string, token secret.Secret, scheme func() string, o upstream.Options) *upstream.Client {
	o.Name, o.Display = Name, "Jira"
	o.Authorize = func(r *http.Request) error {
		r.Header.Set("Accept", "application/json")
		if r.Context().Value(anonymousKey{}) != nil {
			return nil
		}
		if scheme() == AuthBasic {
			r.SetBasicAuth(email, token.Reveal())
		} else {
			r.Header.Set("Authorization", "Bearer "+token.Reveal())
		}
		return nil
	}
	o.Secrets = func() []string {
		tok := token.Reveal()
		return []string{tok, email + ":" + tok}
	}
	// Source.classify names the scheme that was refused; this is the kit's
	// fallback.
	o.UnauthenticatedHint = "Jira refused the credentials: check jira.email and jira.api_token (Cloud: an API token of the integration account; Data Center: a personal access token)"
	o.ForbiddenHint = "the Jira integration account lacks a permission (Browse projects, Add comments, Transition issues)"
	o.HTMLHint = htmlHint
	o.MaxBody = maxAnswer
	return upstream.New(o)
}

// maxAnswer bounds how much of one Jira answer is read.
const maxAnswer = 64 << 20

// apiErr turns go-jira's (response, error) pair into a clear error. go-jira
// has already read the body into its own error when it could; when the body
// was not JSON, the error text holds it, which is cut here so an HTML page is
// named, not dumped.
func (s *Source) apiErr(method, path string, resp *jira.Response, err error) error {
	if err == nil {
		return nil
	}
	if resp == nil || resp.Response == nil {
		if strings.Contains(err.Error(), "invalid character '<'") {
			return s.up.HTMLError(method, path, 0)
		}
		return fmt.Errorf("Jira %s %s: %w", method, path, err)
	}
	if strings.Contains(err.Error(), "invalid character '<'") {
		return s.up.HTMLError(method, path, resp.StatusCode)
	}
	ae := s.up.NewError(method, path, resp.Response)
	var je *jira.Error
	switch {
	case errors.As(err, &je):
		ae.Messages, ae.Fields = je.ErrorMessages, je.Errors
		if len(ae.Messages) == 0 && len(ae.Fields) == 0 {
			ae.Messages = []string{http.StatusText(resp.StatusCode)}
		}
	case strings.Contains(err.Error(), "<html") || strings.Contains(err.Error(), "<!DOCTYPE") || strings.Contains(resp.Header.Get("Content-Type"), "text/html"):
		ae.Messages = []string{"Jira " + upstream.ErrHTML.Error() + " (" + htmlHint + ")"}
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

// classify gives err its class: the kit's (401, 403 blocked), a 401 naming
// the credentials that were refused and the fix, and 410, which on Jira
// means an API removed on Cloud.
func (s *Source) classify(err error) error {
	var se *isync.Error
	if errors.As(err, &se) {
		return err
	}
	switch upstream.StatusOf(err) {
	case http.StatusGone:
		return isync.Blocked("jira:gone", "Jira answered 410 Gone: this API was removed on Jira Cloud (CHANGE-2046); set jira.deployment: cloud", err)
	case http.StatusUnauthorized:
		return isync.Blocked("jira:unauthenticated", s.unauthenticatedHint(), err)
	}
	return s.up.Classify(err)
}

// unauthenticatedHint says which credentials Jira refused and what fixes
// them, by the scheme and deployment in use.
func (s *Source) unauthenticatedHint() string {
	dep := s.o.Deployment
	if d := s.resolvedDeployment(); d != "" {
		dep = d
	}
	switch {
	case s.scheme() == AuthBearer && dep == Cloud:
		return "Jira Cloud refused the token sent as Bearer (jira.auth: bearer): Jira Cloud takes an API token only with basic auth; set jira.auth: auto (or basic) and jira.email to the account the token belongs to"
	case s.scheme() == AuthBearer:
		return "Jira Data Center refused the personal access token sent as Bearer; check jira.api_token (a personal access token: profile > Personal Access Tokens, of a user who may browse and transition the project), or set jira.auth: basic with jira.email for an instance that only takes basic auth"
	case dep == Cloud:
		return "Jira Cloud refused the email and API token sent as basic auth; check jira.email (the Atlassian account the token belongs to) and jira.api_token (an API token from id.atlassian.com > Security > API tokens, not the account password)"
	case dep == DataCenter && s.o.Auth == AuthBasic:
		return "Jira Data Center refused the user name and password sent as basic auth (jira.auth: basic); check jira.email (the user name) and jira.api_token, or remove jira.auth to send jira.api_token as a personal access token (Bearer)"
	default:
		return "Jira refused the email and API token sent as basic auth; check jira.email and jira.api_token, or on Data Center set jira.deployment: datacenter to send a personal access token as Bearer"
	}
}

// doJSON sends a request built with go-jira's client and decodes the answer
// into out (nil: discard); for calls go-jira has no typed method for, or whose
// typed structs drop fields the bridge needs.
func (s *Source) doJSON(ctx context.Context, method, path string, body, out any) error {
	req, err := s.c.NewRequestWithContext(ctx, method, path, body)
	if err != nil {
		return fmt.Errorf("building Jira %s %s: %w", method, path, err)
	}
	resp, err := s.c.Do(req, nil)
	if resp == nil || resp.Response == nil {
		return s.apiErr(method, path, nil, err)
	}
	defer resp.Body.Close()
	data, rerr := io.ReadAll(resp.Body) // read whole and capped by the kit
	if err != nil {
		return s.decodeError(method, path, resp.Response, data)
	}
	if rerr != nil {
		return fmt.Errorf("Jira %s %s: reading response: %w", method, path, rerr)
	}
	// An HTML page with a 2xx status (an SSO proxy, a maintenance page) is not
	// Jira's answer: the call did not reach it, whether or not a body was wanted.
	if upstream.IsHTML(http.Header{}, data) {
		return s.up.HTMLError(method, path, resp.StatusCode)
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
func (s *Source) decodeError(method, path string, resp *http.Response, body []byte) *upstream.APIError {
	ae := s.up.NewError(method, path, resp)
	b := bytes.TrimSpace(body)
	switch {
	case len(b) > 0 && b[0] == '<':
		ae.Messages = []string{"Jira " + upstream.ErrHTML.Error() + " (" + htmlHint + ")"}
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
