package servicenow

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source for WithClock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2024, 1, 2, 15, 4, 5, 0, time.UTC)}
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

// req describes a request; the zero value is an authenticated GET.
type req struct {
	method string
	path   string
	body   string
	header map[string]string
	noAuth bool
	bearer string
	client *http.Client
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
	switch {
	case rq.bearer != "":
		hr.Header.Set("Authorization", "Bearer "+rq.bearer)
	case !rq.noAuth:
		hr.SetBasicAuth(DefaultUser, DefaultPassword)
	}
	for k, v := range rq.header {
		hr.Header.Set(k, v)
	}
	c := rq.client
	if c == nil {
		c = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	}
	resp, err := c.Do(hr)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// list decodes {"result":[...]}.
func list(t *testing.T, body string) []map[string]any {
	t.Helper()
	var v struct {
		Result []map[string]any `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode list %q: %v", body, err)
	}
	return v.Result
}

// record decodes {"result":{...}}.
func record(t *testing.T, body string) map[string]any {
	t.Helper()
	var v struct {
		Result map[string]any `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode record %q: %v", body, err)
	}
	return v.Result
}

// errorOf decodes a Table API error body.
func errorOf(t *testing.T, body string) (message string, detail any, status string) {
	t.Helper()
	var v struct {
		Error struct {
			Message string `json:"message"`
			Detail  any    `json:"detail"`
		} `json:"error"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode error %q: %v", body, err)
	}
	return v.Error.Message, v.Error.Detail, v.Status
}

func numbers(rows []map[string]any) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r["number"].(string))
	}
	return out
}

func wantStatus(t *testing.T, resp *http.Response, body string, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, want, body)
	}
}
