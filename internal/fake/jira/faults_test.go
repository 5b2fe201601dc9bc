package jira

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	gojira "github.com/andygrunwald/go-jira"
	"github.com/hashicorp/go-retryablehttp"
)

func TestFaultStatuses(t *testing.T) {
	c := newClock() // 09:12:44.118
	cloud := start(t, WithClock(c.Now))
	dc := start(t, WithDeployment(DataCenter), WithClock(c.Now))
	for _, s := range []*Server{cloud, dc} {
		s.AddIssue(Issue{})
	}
	const p = "/rest/api/2/issue/IMG-1"
	cases := []struct {
		name    string
		s       *Server
		fault   Fault
		message string
		check   func(*testing.T, *http.Response)
	}{
		{"400", cloud, Fault{Status: 400}, "The request is invalid.", nil},
		{"401", cloud, Fault{Status: 401}, "You are not authenticated. Authentication required to perform this operation.", func(t *testing.T, r *http.Response) {
			if r.Header.Get("X-Seraph-LoginReason") != "AUTHENTICATED_FAILED" {
				t.Errorf("%v", r.Header)
			}
		}},
		{"403", cloud, Fault{Status: 403}, "You do not have permission to perform this operation.", nil},
		{"404", cloud, Fault{Status: 404}, "Issue does not exist or you do not have permission to see it.", nil},
		{"410", cloud, Fault{Status: 410}, "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046", nil},
		{"429 cloud", cloud, Fault{Status: 429, RetryAfter: 7}, "The request has been rate-limited. Please try again later.", func(t *testing.T, r *http.Response) {
			h := r.Header
			if h.Get("Retry-After") != "7" || h.Get("X-RateLimit-Limit") != "100" || h.Get("X-RateLimit-Remaining") != "0" ||
				h.Get("X-RateLimit-Reset") != "2025-10-14T09:13Z" || h.Get("RateLimit-Reason") != "jira-burst-based" {
				t.Errorf("%v", h)
			}
		}},
		{"429 cloud per issue", cloud, Fault{Status: 429, RateLimitReason: "jira-per-issue-on-write"}, "The request has been rate-limited. Please try again later.", func(t *testing.T, r *http.Response) {
			if r.Header.Get("Retry-After") != "1" || r.Header.Get("RateLimit-Reason") != "jira-per-issue-on-write" {
				t.Errorf("%v", r.Header)
			}
		}},
		{"429 dc", dc, Fault{Status: 429, RetryAfter: 3}, "The request has been rate-limited. Please try again later.", func(t *testing.T, r *http.Response) {
			h := r.Header
			if h.Get("Retry-After") != "3" || h.Get("X-RateLimit-Remaining") != "0" || h.Get("X-RateLimit-Interval-Seconds") == "" ||
				h.Get("X-RateLimit-FillRate") == "" || h.Get("X-RateLimit-Reset") != "" || h.Get("RateLimit-Reason") != "" {
				t.Errorf("%v", h)
			}
		}},
		{"500", cloud, Fault{Status: 500}, "Internal server error", nil},
		{"503", cloud, Fault{Status: 503, RetryAfter: 30}, "Service Unavailable", func(t *testing.T, r *http.Response) {
			if r.Header.Get("Retry-After") != "30" {
				t.Errorf("%v", r.Header)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.InjectFault(tc.fault)
			_, resp, err := client(t, tc.s).Issue.GetWithContext(context.Background(), "IMG-1", nil)
			if resp == nil || resp.StatusCode != tc.fault.Status {
				t.Fatalf("%v %v", resp, err)
			}
			if resp.Header.Get("Content-Type") != jsonContentType {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
			if je := jiraError(t, err); len(je.ErrorMessages) != 1 || je.ErrorMessages[0] != tc.message {
				t.Errorf("%+v", je)
			}
			if tc.check != nil {
				tc.check(t, resp.Response)
			}
			// Consumed: the next request succeeds.
			r, body := do(t, tc.s, req{path: p})
			wantStatus(t, r, body, 200)
		})
	}
}

func TestRateLimitReset(t *testing.T) {
	at := time.Date(2025, 10, 14, 9, 12, 0, 0, time.UTC)
	for after, want := range map[int]string{0: "2025-10-14T09:12Z", 1: "2025-10-14T09:13Z", 60: "2025-10-14T09:13Z", 61: "2025-10-14T09:14Z"} {
		if got := RateLimitReset(at, after); got != want {
			t.Errorf("%d: %s, want %s", after, got, want)
		}
	}
}

func TestFaultMatchingOrderAndTimes(t *testing.T) {
	s := start(t)
	i := s.AddIssue(Issue{})
	s.InjectFault(Fault{Method: "POST", PathContains: "/transitions", Status: 503, Times: 2})
	s.InjectFault(Fault{PathContains: "nextPageToken=", Status: 400})
	s.InjectFault(Fault{Status: 500})

	r, body := do(t, s, req{path: "/rest/api/2/search/jql?jql=project%3DIMG&nextPageToken=abc"})
	wantStatus(t, r, body, 400)
	r, body = do(t, s, req{path: "/rest/api/2/serverInfo"})
	wantStatus(t, r, body, 500)
	tr := `{"transition":{"id":"41"},"fields":{"resolution":{"name":"Done"}}}`
	for range 2 {
		r, body = do(t, s, req{method: http.MethodPost, path: "/rest/api/2/issue/" + i.Key + "/transitions", body: tr})
		wantStatus(t, r, body, 503)
	}
	r, body = do(t, s, req{method: http.MethodPost, path: "/rest/api/2/issue/" + i.Key + "/transitions", body: tr})
	wantStatus(t, r, body, 204)

	s.InjectFault(Fault{Status: 500, Times: 10})
	s.ClearFaults()
	r, body = do(t, s, req{path: "/rest/api/2/serverInfo"})
	wantStatus(t, r, body, 200)

	// Faults come before authentication.
	s.InjectFault(Fault{Status: 429})
	r, body = do(t, s, req{path: "/rest/api/2/serverInfo", noAuth: true})
	wantStatus(t, r, body, 429)

	// A body-only fault answers 200 with a broken payload that go-jira
	// cannot decode.
	s.InjectFault(Fault{Body: `{"issues":[{"id":"1"`})
	_, _, err := client(t, s).Issue.SearchV2JQLWithContext(context.Background(), "project = IMG", nil)
	if err == nil {
		t.Error("no error for a truncated body")
	}
	s.InjectFault(Fault{Status: 400, Body: LegacyErrorsArrayBody})
	_, _, err = client(t, s).Issue.GetWithContext(context.Background(), i.Key, nil)
	if err == nil || !strings.Contains(err.Error(), "could not parse JSON") {
		t.Errorf("%v", err)
	}
}

func TestFaultHTML(t *testing.T) {
	s := start(t)
	s.AddIssue(Issue{})
	s.InjectFault(Fault{HTML: true})
	r, body, err := try(s, req{path: "/rest/api/2/issue/IMG-1"})
	if err != nil || r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(body, `id="login-form"`) {
		t.Fatalf("%v %v %s", r, err, body)
	}
	// go-jira fails to decode the page.
	s.InjectFault(Fault{HTML: true})
	if _, _, err := client(t, s).Issue.GetWithContext(context.Background(), "IMG-1", nil); err == nil {
		t.Error("no error for an HTML page")
	}
	s.InjectFault(Fault{HTML: true, Status: 503, RetryAfter: 5})
	_, resp, err := client(t, s).Issue.GetWithContext(context.Background(), "IMG-1", nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "5" || err == nil || !strings.Contains(err.Error(), "temporarily unavailable") {
		t.Errorf("%v %v", resp, err)
	}
}

func TestFaultDelay(t *testing.T) {
	s := start(t)
	s.AddIssue(Issue{})
	s.InjectFault(Fault{Delay: 150 * time.Millisecond})
	began := time.Now()
	r, body := do(t, s, req{path: "/rest/api/2/issue/IMG-1"})
	wantStatus(t, r, body, 200)
	if d := time.Since(began); d < 150*time.Millisecond {
		t.Errorf("answered after %v", d)
	}

	// A client that gives up first sees a timeout; the comment is not added.
	s.InjectFault(Fault{Delay: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err := client(t, s).Issue.AddCommentWithContext(ctx, "IMG-1", &gojira.Comment{Body: "late"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(s.Comments("IMG-1")); n != 0 {
		t.Errorf("%d comments", n)
	}
}

func TestFaultReset(t *testing.T) {
	s := start(t)
	i := s.AddIssue(Issue{})
	s.InjectFault(Fault{Reset: true})
	if _, _, err := try(s, req{path: "/rest/api/2/issue/IMG-1"}); err == nil {
		t.Fatal("no error from a reset connection")
	}

	// Reset after applying: the transition and its comment happen, the
	// client sees an error.
	s.InjectFault(Fault{Method: "POST", Reset: true, ApplyFirst: true})
	_, err := client(t, s).Issue.DoTransitionWithPayloadWithContext(context.Background(), i.Key, map[string]any{
		"transition": map[string]any{"id": "41"},
		"fields":     map[string]any{"resolution": map[string]any{"name": "Done"}},
		"update":     map[string]any{"comment": []any{map[string]any{"add": map[string]any{"body": "done"}}}},
	})
	if err == nil {
		t.Fatal("no error from a reset connection")
	}
	if got, _ := s.Issue(i.Key); got.Status != StatusDone || len(s.Comments(i.Key)) != 1 {
		t.Errorf("not applied: %+v", got)
	}
	reqs := s.Requests()
	if reqs[len(reqs)-1].Status != 0 {
		t.Errorf("logged status %d", reqs[len(reqs)-1].Status)
	}
}

func TestFaultApplyFirst(t *testing.T) {
	s := start(t)
	i := s.AddIssue(Issue{})
	jc := client(t, s)
	ctx := context.Background()
	s.InjectFault(Fault{Method: "POST", PathContains: "/comment", Status: 500, ApplyFirst: true})
	_, resp, err := jc.Issue.AddCommentWithContext(ctx, i.Key, &gojira.Comment{Body: "Provisioned"})
	if resp.StatusCode != 500 || err == nil {
		t.Fatalf("%v %v", resp, err)
	}
	if n := len(s.Comments(i.Key)); n != 1 {
		t.Errorf("%d comments, want 1", n)
	}

	// ApplyFirst with only a delay: applied at once, answered late.
	s.InjectFault(Fault{ApplyFirst: true, Delay: 5 * time.Second})
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, _, err := jc.Issue.AddCommentWithContext(tctx, i.Key, &gojira.Comment{Body: "again"}); err == nil {
		t.Fatal("expected a timeout")
	}
	if n := len(s.Comments(i.Key)); n != 2 {
		t.Errorf("%d comments, want 2", n)
	}
	s.InjectFault(Fault{ApplyFirst: true, Delay: 10 * time.Millisecond})
	got, resp, err := jc.Issue.AddCommentWithContext(ctx, i.Key, &gojira.Comment{Body: "third"})
	if err != nil || resp.StatusCode != 201 || got.Body != "third" {
		t.Errorf("%v %v", got, err)
	}
}

// TestRetryableClient drives the fake through the bridge's transport stack:
// go-jira over go-retryablehttp, which honours Retry-After on a 429 and
// replays the POST body.
func TestRetryableClient(t *testing.T) {
	s := start(t)
	i := s.AddIssue(Issue{})
	rc := retryablehttp.NewClient()
	rc.Logger = nil
	rc.RetryWaitMin, rc.RetryWaitMax, rc.RetryMax = time.Millisecond, 2*time.Second, 2
	rc.HTTPClient.Transport = &gojira.BasicAuthTransport{Username: DefaultEmail, Password: DefaultAPIToken, Transport: rc.HTTPClient.Transport}
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	jc, err := gojira.NewClient(rc.StandardClient(), s.URL())
	if err != nil {
		t.Fatal(err)
	}
	s.InjectFault(Fault{Method: "POST", Status: 429, RetryAfter: 1})
	began := time.Now()
	resp, err := jc.Issue.DoTransitionWithPayloadWithContext(context.Background(), i.Key, map[string]any{
		"transition": map[string]any{"id": "41"},
		"fields":     map[string]any{"resolution": map[string]any{"name": "Done"}},
		"update":     map[string]any{"comment": []any{map[string]any{"add": map[string]any{"body": "done"}}}},
	})
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("%v %v", resp, err)
	}
	if d := time.Since(began); d < time.Second {
		t.Errorf("Retry-After not honoured: %v", d)
	}
	reqs := s.Requests()
	if len(reqs) != 2 || reqs[0].Status != 429 || reqs[1].Status != 204 || reqs[0].Body != reqs[1].Body {
		t.Errorf("%+v", reqs)
	}
	if len(s.Comments(i.Key)) != 1 {
		t.Error("comment count")
	}

	// Exhausted retries still hand go-jira the last answer.
	s.InjectFault(Fault{Status: 503, Times: 3})
	_, resp2, err := jc.Issue.GetWithContext(context.Background(), i.Key, nil)
	if resp2 == nil || resp2.StatusCode != 503 || err == nil {
		t.Errorf("%v %v", resp2, err)
	}
	if n := len(s.Requests()); n != 5 {
		t.Errorf("%d requests", n)
	}
}
