package jira

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	gojira "github.com/andygrunwald/go-jira"
)

const approvedJQL = `project = "IMG" AND status = "Approved" ORDER BY created ASC`

// addIssues adds n approved issues created a minute apart, plus one open
// issue that approvedJQL must not return.
func addIssues(s *Server, c *clock, n int) []Issue {
	var out []Issue
	for i := range n {
		out = append(out, s.AddIssue(Issue{
			Summary: fmt.Sprintf("Request image %d", i),
			Fields:  map[string]any{"customfield_10050": fmt.Sprintf("python:3.%d", i), "customfield_10052": map[string]any{"value": "prod"}},
		}))
		c.Advance(time.Minute)
	}
	s.AddIssue(Issue{Status: StatusOpen})
	return out
}

func TestSearchJQLTokenLoop(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	want := addIssues(s, c, 7)
	jc := client(t, s)
	ctx := context.Background()

	var got []gojira.Issue
	opts := &gojira.SearchOptionsV2{MaxResults: 3, Fields: []string{"summary", "status", "customfield_10050", "customfield_10052"}}
	pages := 0
	for {
		issues, resp, err := jc.Issue.SearchV2JQLWithContext(ctx, approvedJQL, opts)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, issues...)
		if pages < 3 && (resp.IsLast || resp.NextPageToken == "") {
			t.Fatalf("page %d: isLast %v token %q", pages, resp.IsLast, resp.NextPageToken)
		}
		if resp.IsLast || resp.NextPageToken == "" {
			if !resp.IsLast || resp.NextPageToken != "" {
				t.Errorf("last page: isLast %v token %q", resp.IsLast, resp.NextPageToken)
			}
			break
		}
		opts.NextPageToken = resp.NextPageToken
	}
	if pages != 3 || len(got) != 7 {
		t.Fatalf("%d pages, %d issues", pages, len(got))
	}
	for i, is := range got {
		if is.Key != want[i].Key || is.Fields == nil || is.Fields.Summary != want[i].Summary || is.Fields.Status.Name != "Approved" ||
			is.Fields.Status.StatusCategory.Key != "indeterminate" {
			t.Fatalf("issue %d: %+v", i, is)
		}
		if img, _ := is.Fields.Unknowns.String("customfield_10050"); img != fmt.Sprintf("python:3.%d", i) {
			t.Errorf("image %q", img)
		}
		if env, _ := is.Fields.Unknowns.Value("customfield_10052/value"); env != "prod" {
			t.Errorf("env %v", env)
		}
		if is.Fields.Reporter != nil || is.Fields.Comments != nil {
			t.Errorf("unrequested fields: %+v", is.Fields)
		}
	}

	// The request carried fields and maxResults; the token changes per page.
	var tokens []string
	for _, r := range s.Requests() {
		q, _ := url.ParseQuery(r.RawQuery)
		if r.Path != "/rest/api/2/search/jql" || q.Get("maxResults") != "3" || q.Get("jql") != approvedJQL {
			t.Errorf("request %+v", r)
		}
		tokens = append(tokens, q.Get("nextPageToken"))
	}
	if len(tokens) != 3 || tokens[0] != "" || tokens[1] == "" || tokens[1] == tokens[2] {
		t.Errorf("tokens %q", tokens)
	}
}

func TestSearchJQLDefaultsToIDs(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	addIssues(s, c, 2)
	issues, resp, err := client(t, s).Issue.SearchV2JQLWithContext(context.Background(), approvedJQL, nil)
	if err != nil || !resp.IsLast || len(issues) != 2 {
		t.Fatalf("%v %v %d", err, resp, len(issues))
	}
	for _, is := range issues {
		if is.ID == "" || is.Key != "" || is.Fields != nil {
			t.Errorf("%+v", is)
		}
	}
	resp2, body := do(t, s, req{path: "/rest/api/2/search/jql?jql=" + url.QueryEscape(approvedJQL)})
	wantStatus(t, resp2, body, 200)
	if body != `{"issues":[{"id":"10001"},{"id":"10002"}],"isLast":true}` {
		t.Errorf("%s", body)
	}

	// fields=*all, repeated fields parameters, exclusion, names.
	resp2, body = do(t, s, req{path: "/rest/api/2/search/jql?maxResults=1&expand=names&fields=summary&fields=labels,-labels&jql=" + url.QueryEscape(approvedJQL)})
	wantStatus(t, resp2, body, 200)
	v := decode(t, body)
	if f := path(v, "issues", 0, "fields").(map[string]any); len(f) != 1 || f["summary"] == nil {
		t.Errorf("%s", body)
	}
	if path(v, "names", "summary") != "Summary" || v["isLast"] != false || v["nextPageToken"] == nil {
		t.Errorf("%s", body)
	}
}

func TestSearchJQLPost(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	addIssues(s, c, 3)
	resp, body := do(t, s, req{method: http.MethodPost, path: "/rest/api/2/search/jql",
		body: `{"jql":"project = IMG AND status = Approved","maxResults":2,"fields":["summary"]}`})
	wantStatus(t, resp, body, 200)
	v := decode(t, body)
	tok, _ := v["nextPageToken"].(string)
	if len(v["issues"].([]any)) != 2 || tok == "" {
		t.Fatalf("%s", body)
	}
	resp, body = do(t, s, req{method: http.MethodPost, path: "/rest/api/2/search/jql",
		body: `{"jql":"project = IMG AND status = Approved","maxResults":2,"fields":["summary"],"nextPageToken":"` + tok + `"}`})
	wantStatus(t, resp, body, 200)
	if v := decode(t, body); len(v["issues"].([]any)) != 1 || v["isLast"] != true || path(v, "issues", 0, "key") != "IMG-3" {
		t.Errorf("%s", body)
	}
}

func TestSearchJQLErrors(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	addIssues(s, c, 3)
	jc := client(t, s)
	ctx := context.Background()

	for _, jql := range []string{"", "ORDER BY created DESC", "  order by key"} {
		_, resp, err := jc.Issue.SearchV2JQLWithContext(ctx, jql, &gojira.SearchOptionsV2{Fields: []string{"summary"}})
		if resp == nil || resp.StatusCode != 400 {
			t.Fatalf("%q: %v %v", jql, resp, err)
		}
		if je := jiraError(t, err); je.ErrorMessages[0] != "Unbounded JQL queries are not allowed here. Please add a search restriction to your query." {
			t.Errorf("%q: %v", jql, je.ErrorMessages)
		}
	}

	// A garbled token, a token for another query, an expired token.
	_, resp, _ := jc.Issue.SearchV2JQLWithContext(ctx, approvedJQL, &gojira.SearchOptionsV2{NextPageToken: "CAEaAggD"})
	if resp.StatusCode != 400 {
		t.Errorf("garbled token: %d", resp.StatusCode)
	}
	_, resp, err := jc.Issue.SearchV2JQLWithContext(ctx, approvedJQL, &gojira.SearchOptionsV2{MaxResults: 1})
	if err != nil {
		t.Fatal(err)
	}
	token := resp.NextPageToken
	_, resp, _ = jc.Issue.SearchV2JQLWithContext(ctx, "project = IMG", &gojira.SearchOptionsV2{NextPageToken: token})
	if resp.StatusCode != 400 {
		t.Errorf("token of another query: %d", resp.StatusCode)
	}
	c.Advance(6 * 24 * time.Hour)
	if _, _, err := jc.Issue.SearchV2JQLWithContext(ctx, approvedJQL, &gojira.SearchOptionsV2{NextPageToken: token}); err != nil {
		t.Errorf("token within 7 days: %v", err)
	}
	c.Advance(2 * 24 * time.Hour)
	_, resp, err = jc.Issue.SearchV2JQLWithContext(ctx, approvedJQL, &gojira.SearchOptionsV2{NextPageToken: token})
	if resp.StatusCode != 400 || jiraError(t, err).ErrorMessages[0] != "The provided next page token is invalid or expired." {
		t.Errorf("expired token: %v", err)
	}

	// Syntax and field errors.
	_, resp, err = jc.Issue.SearchV2JQLWithContext(ctx, `project = IN`, nil)
	if resp.StatusCode != 400 || jiraError(t, err).ErrorMessages[0] != "Error in the JQL Query: 'IN' is a reserved JQL word. You must surround it in quotation marks to use it in a query. (line 1, character 11)" {
		t.Errorf("%v", err)
	}
	_, resp, err = jc.Issue.SearchV2JQLWithContext(ctx, `"Image nom" ~ python`, nil)
	if resp.StatusCode != 400 || jiraError(t, err).ErrorMessages[0] != "Field 'Image nom' does not exist or you do not have permission to view it." {
		t.Errorf("%v", err)
	}
}

func TestSearchJQLPagingSkipsWhenResultsShrink(t *testing.T) {
	// Acting on issues while paging makes them leave the result set: the
	// positional token then skips issues. Clients must collect keys first.
	c := newClock()
	s := start(t, WithClock(c.Now))
	addIssues(s, c, 4)
	jc := client(t, s)
	ctx := context.Background()
	opts := &gojira.SearchOptionsV2{MaxResults: 2, Fields: []string{"status"}}
	var seen []string
	for {
		issues, resp, err := jc.Issue.SearchV2JQLWithContext(ctx, approvedJQL, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, is := range issues {
			seen = append(seen, is.Key)
			s.Update(is.Key, func(i *Issue) { i.Status = StatusDone; i.Resolution = "Done" })
		}
		if resp.IsLast {
			break
		}
		opts.NextPageToken = resp.NextPageToken
	}
	if strings.Join(seen, ",") != "IMG-1,IMG-2" {
		t.Errorf("seen %v", seen)
	}
}

func TestLegacySearch(t *testing.T) {
	c := newClock()
	ctx := context.Background()

	cloud := start(t, WithClock(c.Now))
	addIssues(cloud, c, 1)
	_, resp, err := client(t, cloud).Issue.SearchWithContext(ctx, approvedJQL, nil)
	if resp == nil || resp.StatusCode != http.StatusGone {
		t.Fatalf("%v %v", resp, err)
	}
	if je := jiraError(t, err); !strings.Contains(je.ErrorMessages[0], "CHANGE-2046") {
		t.Errorf("%v", je.ErrorMessages)
	}
	r, body := do(t, cloud, req{method: http.MethodPost, path: "/rest/api/2/search", body: `{"jql":"project = IMG"}`})
	wantStatus(t, r, body, http.StatusGone)

	dc := start(t, WithDeployment(DataCenter), WithClock(c.Now))
	want := addIssues(dc, c, 5)
	jc := client(t, dc)
	issues, resp, err := jc.Issue.SearchWithContext(ctx, approvedJQL, &gojira.SearchOptions{MaxResults: 2, StartAt: 2})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Total != 5 || resp.StartAt != 2 || resp.MaxResults != 2 || strings.Join(keys(issues), ",") != "IMG-3,IMG-4" {
		t.Fatalf("%+v %v", resp, keys(issues))
	}
	// Navigable fields by default, DC-style reporter, no comments.
	f := issues[0].Fields
	if f == nil || f.Summary != want[2].Summary || f.Reporter.Name != "ddeveloper" || f.Reporter.Key != "JIRAUSER10100" ||
		f.Reporter.EmailAddress != "dana.developer@example.com" || f.Reporter.AccountID != "" || f.Comments != nil {
		t.Errorf("%+v", f)
	}
	var all []string
	err = jc.Issue.SearchPagesWithContext(ctx, approvedJQL, &gojira.SearchOptions{MaxResults: 2}, func(i gojira.Issue) error {
		all = append(all, i.Key)
		return nil
	})
	if err != nil || strings.Join(all, ",") != "IMG-1,IMG-2,IMG-3,IMG-4,IMG-5" {
		t.Errorf("%v %v", all, err)
	}
	// Unbounded JQL runs on Data Center; maxResults=0 counts.
	r, body = do(t, dc, req{path: "/rest/api/2/search?maxResults=0"})
	wantStatus(t, r, body, 200)
	if v := decode(t, body); v["total"] != float64(6) || len(v["issues"].([]any)) != 0 {
		t.Errorf("%s", body)
	}
	r, body = do(t, dc, req{method: http.MethodPost, path: "/rest/api/2/search", body: `{"jql":"status = Open","fields":["status"],"startAt":0}`})
	wantStatus(t, r, body, 200)
	if v := decode(t, body); v["total"] != float64(1) || path(v, "issues", 0, "fields", "status", "name") != "Open" {
		t.Errorf("%s", body)
	}

	// /search/jql does not exist on Data Center: Jersey 404, empty *jira.Error.
	_, resp, err = jc.Issue.SearchV2JQLWithContext(ctx, approvedJQL, &gojira.SearchOptionsV2{Fields: []string{"summary"}})
	if resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("%v %v", resp, err)
	}
	if je := jiraError(t, err); len(je.ErrorMessages) != 0 || len(je.Errors) != 0 {
		t.Errorf("%+v", je)
	}
	r, body = do(t, dc, req{path: "/rest/api/2/search/jql?jql=project+%3D+IMG"})
	wantStatus(t, r, body, 404)
	if body != `{"message":"null for uri: `+dc.URL()+`/rest/api/2/search/jql?jql=project+%3D+IMG","status-code":404}` {
		t.Errorf("%s", body)
	}
}

func TestSearchCommentsCapped(t *testing.T) {
	s := start(t)
	i := s.AddIssue(Issue{})
	for n := range 25 {
		s.AddComment(i.Key, fmt.Sprintf("note %d", n), User{})
	}
	issues, _, err := client(t, s).Issue.SearchV2JQLWithContext(context.Background(), "key = "+i.Key, &gojira.SearchOptionsV2{Fields: []string{"comment"}})
	if err != nil || len(issues) != 1 || issues[0].Fields.Comments == nil || len(issues[0].Fields.Comments.Comments) != 20 {
		t.Fatalf("%v %+v", err, issues)
	}
	got, _, err := client(t, s).Issue.GetWithContext(context.Background(), i.Key, nil)
	if err != nil || len(got.Fields.Comments.Comments) != 25 {
		t.Fatalf("%v", err)
	}
	if !slices.EqualFunc(got.Fields.Comments.Comments[:20], issues[0].Fields.Comments.Comments, func(a, b *gojira.Comment) bool { return a.ID == b.ID }) {
		t.Error("different comments")
	}
}
