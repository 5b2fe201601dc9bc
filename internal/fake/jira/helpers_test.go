package jira

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	gojira "github.com/andygrunwald/go-jira"
)

// clock is a settable time source for WithClock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2025, 10, 14, 9, 12, 44, 118_000_000, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func start(t *testing.T, opts ...Option) *Server {
	t.Helper()
	s := New(opts...)
	t.Cleanup(s.Close)
	return s
}

// client returns a go-jira client authenticated for s: Basic email/API
// token on Cloud, PAT on Data Center.
func client(t *testing.T, s *Server) *gojira.Client {
	t.Helper()
	var rt http.RoundTripper
	if s.Deployment() == Cloud {
		rt = &gojira.BasicAuthTransport{Username: DefaultEmail, Password: DefaultAPIToken}
	} else {
		rt = &gojira.PATAuthTransport{Token: DefaultPAT}
	}
	c, err := gojira.NewClient(&http.Client{Transport: rt, Timeout: 10 * time.Second}, s.URL())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// req describes a raw request; the zero value is an authenticated GET.
type req struct {
	method string
	path   string
	body   string
	header map[string]string
	noAuth bool
}

// do sends rq to s and returns the response and its body.
func do(t *testing.T, s *Server, rq req) (*http.Response, string) {
	t.Helper()
	resp, body, err := try(s, rq)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.method, rq.path, err)
	}
	return resp, body
}

func try(s *Server, rq req) (*http.Response, string, error) {
	if rq.method == "" {
		rq.method = http.MethodGet
	}
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	hr, err := http.NewRequest(rq.method, s.URL()+rq.path, body)
	if err != nil {
		return nil, "", err
	}
	hr.Header.Set("Accept", "application/json")
	if rq.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	if !rq.noAuth {
		if s.Deployment() == Cloud {
			hr.SetBasicAuth(DefaultEmail, DefaultAPIToken)
		} else {
			hr.Header.Set("Authorization", "Bearer "+DefaultPAT)
		}
	}
	for k, v := range rq.header {
		hr.Header.Set(k, v)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Do(hr)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func wantStatus(t *testing.T, resp *http.Response, body string, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, want, body)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusNoContent && ct != jsonContentType {
		t.Errorf("Content-Type %q", ct)
	}
}

// decode unmarshals a JSON body into a generic value.
func decode(t *testing.T, body string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return v
}

// jiraError extracts go-jira's *Error.
func jiraError(t *testing.T, err error) *gojira.Error {
	t.Helper()
	var je *gojira.Error
	if !errors.As(err, &je) {
		t.Fatalf("error %v (%T) is not a *jira.Error", err, err)
	}
	return je
}

// keys returns the keys of issues.
func keys(issues []gojira.Issue) []string {
	out := make([]string, 0, len(issues))
	for _, i := range issues {
		out = append(out, i.Key)
	}
	return out
}

// path walks a decoded JSON value along keys and indexes.
func path(v any, steps ...any) any {
	for _, s := range steps {
		switch k := s.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}
