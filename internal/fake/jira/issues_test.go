package jira

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	gojira "github.com/andygrunwald/go-jira"
)

func TestAddIssueDefaults(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	a := s.AddIssue(Issue{})
	b := s.AddIssue(Issue{Key: "IMG-40"})
	d := s.AddIssue(Issue{})
	o := s.AddIssue(Issue{Project: "ops", Status: "10002", Resolution: "won't do"})
	if a.ID != "10001" || a.Key != "IMG-1" || a.Project != "IMG" || a.IssueType != "Image Request" || a.Status != "Approved" ||
		a.Reporter != DefaultReporter || !a.Created.Equal(c.Now()) || !a.Updated.Equal(a.Created) || a.Fields == nil || a.Labels == nil {
		t.Errorf("%+v", a)
	}
	if b.ID != "10002" || b.Key != "IMG-40" || d.Key != "IMG-41" || d.ID != "10003" {
		t.Errorf("%+v %+v", b, d)
	}
	if o.Key != "OPS-1" || o.Status != "Done" || o.Resolution != "Won't Do" || !o.ResolutionDate.Equal(o.Updated) {
		t.Errorf("%+v", o)
	}
	// A partial reporter is completed.
	p := s.AddIssue(Issue{Reporter: User{DisplayName: "Sam Smith", Email: "sam@example.com"}})
	if r := p.Reporter; r.Name != "sam" || !strings.HasPrefix(r.AccountID, "712020:") || !strings.HasPrefix(r.Key, "JIRAUSER") {
		t.Errorf("%+v", r)
	}
	for _, bad := range []Issue{{Key: "IMG-40"}, {ID: "10001"}, {Status: "Nope"}, {Resolution: "Fixed"}, {Project: "IMG", Key: "OPS-9"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic for %+v", bad)
				}
			}()
			s.AddIssue(bad)
		}()
	}
	if len(s.Issues()) != 5 {
		t.Errorf("%d issues", len(s.Issues()))
	}
}

func TestGetIssueCloud(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	i := s.AddIssue(Issue{
		Summary: "Request python:latest-dev for data-eng",
		Labels:  []string{"chainguard", "image-request"},
		Fields: map[string]any{
			"customfield_10050": "python:latest-dev",
			"customfield_10051": "Migrating CI base images",
			"customfield_10052": map[string]any{"value": "prod"},
			"customfield_10010": map[string]any{"requestType": map[string]any{"id": "41", "name": "Chainguard image request"}},
		},
	})
	s.AddIssue(Issue{Fields: map[string]any{"customfield_10052": "prod"}})
	jc := client(t, s)
	ctx := context.Background()
	is, _, err := jc.Issue.GetWithContext(ctx, i.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := is.Fields
	if is.ID != i.ID || is.Key != "IMG-1" || is.Self != s.URL()+"/rest/api/2/issue/10001" || f.Summary != i.Summary ||
		f.Type.Name != "Image Request" || f.Project.Key != "IMG" || f.Status.ID != "10104" || f.Status.StatusCategory.Key != "indeterminate" ||
		f.Resolution != nil || strings.Join(f.Labels, ",") != "chainguard,image-request" ||
		time.Time(f.Created).UnixMilli() != c.Now().UnixMilli() {
		t.Errorf("%+v", f)
	}
	if r := f.Reporter; r.AccountID != DefaultReporter.AccountID || r.AccountType != "atlassian" || r.DisplayName != "Dana Developer" ||
		r.Name != "" || r.Key != "" || r.EmailAddress != "" {
		t.Errorf("reporter %+v", r)
	}
	if v, _ := f.Unknowns.String("customfield_10050"); v != "python:latest-dev" {
		t.Errorf("image %q", v)
	}
	if v, _ := f.Unknowns.Value("customfield_10052/value"); v != "prod" {
		t.Errorf("env %v", v)
	}
	if v, ok := f.Unknowns["customfield_10053"]; !ok || v != nil {
		t.Errorf("unset team %v %v", v, ok)
	}
	if v, _ := f.Unknowns.Value("customfield_10010/requestType/name"); v != "Chainguard image request" {
		t.Errorf("request type %v", v)
	}
	// Select options get a stable id per value.
	resp, body := do(t, s, req{path: "/rest/api/2/issue/IMG-2?fields=customfield_10052"})
	wantStatus(t, resp, body, 200)
	id1, _ := f.Unknowns.Value("customfield_10052/id")
	if v := decode(t, body); path(v, "fields", "customfield_10052", "id") != id1 ||
		path(v, "fields", "customfield_10052", "self") != s.URL()+"/rest/api/2/customFieldOption/"+id1.(string) {
		t.Errorf("%s", body)
	}
	// go-jira's GetCustomFields turns null into "<nil>".
	cf, _, err := jc.Issue.GetCustomFieldsWithContext(ctx, i.Key)
	if err != nil || cf["customfield_10053"] != "<nil>" || cf["customfield_10050"] != "python:latest-dev" {
		t.Errorf("%v %v", cf, err)
	}

	// fields, expand=names,transitions, lower-case key.
	resp, body = do(t, s, req{path: "/rest/api/2/issue/img-1?fields=status,customfield_10050&expand=names,transitions"})
	wantStatus(t, resp, body, 200)
	v := decode(t, body)
	if fs := v["fields"].(map[string]any); len(fs) != 2 || path(v, "names", "customfield_10050") != "Image name" ||
		path(v, "transitions", 0, "id") != "41" {
		t.Errorf("%s", body)
	}

	resp, body = do(t, s, req{path: "/rest/api/2/issue/IMG-77"})
	wantStatus(t, resp, body, 404)
	if body != `{"errorMessages":["Issue does not exist or you do not have permission to see it."],"errors":{}}` {
		t.Errorf("%s", body)
	}
	_, resp2, err := jc.Issue.GetWithContext(ctx, "IMG-77", nil)
	if resp2.StatusCode != 404 || jiraError(t, err).ErrorMessages[0] != "Issue does not exist or you do not have permission to see it." {
		t.Errorf("%v", err)
	}
}

func TestGetIssueDataCenter(t *testing.T) {
	s := start(t, WithDeployment(DataCenter))
	i := s.AddIssue(Issue{Resolution: "Done", Status: StatusDone})
	is, _, err := client(t, s).Issue.GetWithContext(context.Background(), i.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := is.Fields.Reporter; r.Name != "ddeveloper" || r.Key != "JIRAUSER10100" || r.EmailAddress != "dana.developer@example.com" || r.AccountID != "" {
		t.Errorf("%+v", r)
	}
	if is.Fields.Resolution == nil || is.Fields.Resolution.ID != "10000" || time.Time(is.Fields.Resolutiondate).IsZero() {
		t.Errorf("%+v", is.Fields)
	}
}

func TestComments(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	i := s.AddIssue(Issue{})
	jc := client(t, s)
	ctx := context.Background()

	// go-jira's AddComment sends empty author, updateAuthor and visibility.
	c.Advance(time.Minute)
	got, resp, err := jc.Issue.AddCommentWithContext(ctx, i.Key, &gojira.Comment{Body: "first"})
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("%v %v", resp, err)
	}
	if got.ID == "" || got.Body != "first" || got.Author.AccountID != s.Myself().AccountID || got.Created == "" {
		t.Errorf("%+v", got)
	}
	if is, _ := s.Issue(i.Key); !is.Updated.Equal(c.Now()) {
		t.Errorf("updated %v", is.Updated)
	}
	for _, b := range []string{"second", "third"} {
		r, body := do(t, s, req{method: http.MethodPost, path: "/rest/api/2/issue/" + i.ID + "/comment", body: `{"body":"` + b + `"}`})
		wantStatus(t, r, body, 201)
	}
	r, body := do(t, s, req{path: "/rest/api/2/issue/" + i.Key + "/comment?startAt=1&maxResults=1"})
	wantStatus(t, r, body, 200)
	v := decode(t, body)
	if v["startAt"] != float64(1) || v["maxResults"] != float64(1) || v["total"] != float64(3) || path(v, "comments", 0, "body") != "second" {
		t.Errorf("%s", body)
	}
	r, body = do(t, s, req{path: "/rest/api/2/issue/" + i.Key + "/comment?orderBy=-created"})
	wantStatus(t, r, body, 200)
	if path(decode(t, body), "comments", 0, "body") != "third" {
		t.Errorf("%s", body)
	}
	cs := s.Comments(i.Key)
	r, body = do(t, s, req{path: "/rest/api/2/issue/" + i.Key + "/comment/" + cs[1].ID})
	wantStatus(t, r, body, 200)
	r, body = do(t, s, req{path: "/rest/api/2/issue/" + i.Key + "/comment/1"})
	wantStatus(t, r, body, 404)

	for _, tc := range []struct{ body, want string }{
		{`{"body":""}`, `{"errorMessages":[],"errors":{"comment":"Comment body can not be empty!"}}`},
		{`{}`, `{"errorMessages":[],"errors":{"comment":"Comment body can not be empty!"}}`},
		{`{"body":{"type":"doc","version":1,"content":[]}}`, `{"errorMessages":[],"errors":{"comment":"Comment body is not valid!"}}`},
	} {
		r, body := do(t, s, req{method: http.MethodPost, path: "/rest/api/2/issue/" + i.Key + "/comment", body: tc.body})
		wantStatus(t, r, body, 400)
		if body != tc.want {
			t.Errorf("%s: %s", tc.body, body)
		}
	}
	r, body = do(t, s, req{method: http.MethodPost, path: "/rest/api/2/issue/IMG-9/comment", body: `{"body":"x"}`})
	wantStatus(t, r, body, 404)
	if len(s.Comments(i.Key)) != 3 {
		t.Errorf("%d comments", len(s.Comments(i.Key)))
	}
}

func TestCommentLimit(t *testing.T) {
	s := start(t)
	i := s.AddIssue(Issue{})
	jc := client(t, s)
	ctx := context.Background()
	if _, _, err := jc.Issue.AddCommentWithContext(ctx, i.Key, &gojira.Comment{Body: strings.Repeat("x", DefaultCommentLimit)}); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	_, resp, err := jc.Issue.AddCommentWithContext(ctx, i.Key, &gojira.Comment{Body: strings.Repeat("x", DefaultCommentLimit+1)})
	if resp.StatusCode != 400 || jiraError(t, err).Errors["comment"] != "The entered text is too long. It exceeds the allowed limit of 32,767 characters." {
		t.Errorf("%v", err)
	}
	// Characters are UTF-16 code units: an emoji counts twice.
	_, resp, _ = jc.Issue.AddCommentWithContext(ctx, i.Key, &gojira.Comment{Body: strings.Repeat("x", DefaultCommentLimit-1) + "🚀"})
	if resp.StatusCode != 400 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if _, _, err := jc.Issue.AddCommentWithContext(ctx, i.Key, &gojira.Comment{Body: strings.Repeat("é", DefaultCommentLimit)}); err != nil {
		t.Errorf("BMP characters count once: %v", err)
	}

	small := start(t, WithCommentLimit(1000))
	j := small.AddIssue(Issue{})
	r, body := do(t, small, req{method: http.MethodPost, path: "/rest/api/2/issue/" + j.Key + "/comment", body: `{"body":"` + strings.Repeat("y", 1001) + `"}`})
	wantStatus(t, r, body, 400)
	if !strings.Contains(body, "allowed limit of 1,000 characters") {
		t.Errorf("%s", body)
	}
}

func TestUpdate(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	i := s.AddIssue(Issue{Status: StatusWaitingForApproval})
	c.Advance(time.Minute)
	s.Update(i.Key, func(is *Issue) {
		is.Key = "IMG-99" // ignored
		is.Status = "approved"
		is.Labels = append(is.Labels, "urgent")
		is.Fields["customfield_10052"] = map[string]any{"value": "dev"}
	})
	got, _ := s.Issue(i.Key)
	if got.Key != i.Key || got.Status != StatusApproved || !got.Updated.Equal(c.Now()) || got.Labels[0] != "urgent" {
		t.Errorf("%+v", got)
	}
	// The copy handed out is detached.
	got.Fields["customfield_10052"].(map[string]any)["value"] = "changed"
	if again, _ := s.Issue(i.Key); again.Fields["customfield_10052"].(map[string]any)["value"] != "dev" {
		t.Error("stored issue shares maps")
	}
	is, _, err := client(t, s).Issue.GetWithContext(context.Background(), i.Key, &gojira.GetQueryOptions{Expand: "changelog"})
	if err != nil || len(is.Changelog.Histories) != 1 || is.Changelog.Histories[0].Author.DisplayName != "Alex Approver" {
		t.Fatalf("%+v %v", is.Changelog, err)
	}
	s.Update("IMG-404", func(*Issue) { t.Error("called for an unknown issue") })
}

func TestProperties(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	i := s.AddIssue(Issue{})
	c.Advance(time.Minute)
	p := "/rest/api/2/issue/" + i.Key + "/properties/"
	r, body := do(t, s, req{method: http.MethodPut, path: p + "bridge.run", body: `{"run":"01JA6Y8Q2K","attempt":1}`})
	if r.StatusCode != 201 {
		t.Fatalf("%d %s", r.StatusCode, body)
	}
	r, _ = do(t, s, req{method: http.MethodPut, path: p + "bridge.run", body: `{"run":"01JA6Y8Q2K","attempt":2}`})
	if r.StatusCode != 200 {
		t.Fatalf("%d", r.StatusCode)
	}
	r, body = do(t, s, req{path: p + "bridge.run"})
	wantStatus(t, r, body, 200)
	if body != `{"key":"bridge.run","value":{"run":"01JA6Y8Q2K","attempt":2}}` {
		t.Errorf("%s", body)
	}
	if v, ok := s.Property(i.Key, "bridge.run"); !ok || string(v) != `{"run":"01JA6Y8Q2K","attempt":2}` {
		t.Errorf("%s", v)
	}
	r, body = do(t, s, req{path: "/rest/api/2/issue/" + i.Key + "/properties"})
	wantStatus(t, r, body, 200)
	if path(decode(t, body), "keys", 0, "key") != "bridge.run" {
		t.Errorf("%s", body)
	}
	r, body = do(t, s, req{path: "/rest/api/2/issue/" + i.Key + "?fields=summary&properties=bridge.run"})
	wantStatus(t, r, body, 200)
	if path(decode(t, body), "properties", "bridge.run", "attempt") != float64(2) {
		t.Errorf("%s", body)
	}
	r, body = do(t, s, req{method: http.MethodPut, path: p + "bad", body: `{nope`})
	wantStatus(t, r, body, 400)
	r, _ = do(t, s, req{method: http.MethodDelete, path: p + "bridge.run"})
	if r.StatusCode != 204 {
		t.Errorf("%d", r.StatusCode)
	}
	r, body = do(t, s, req{path: p + "bridge.run"})
	wantStatus(t, r, body, 404)
	if body != `{"errorMessages":["The property with key 'bridge.run' does not exist."],"errors":{}}` {
		t.Errorf("%s", body)
	}
	// Properties are not fields: updated is unchanged.
	if got, _ := s.Issue(i.Key); !got.Updated.Equal(i.Updated) {
		t.Errorf("updated moved to %v", got.Updated)
	}
}

func TestResolutionsStatusesProject(t *testing.T) {
	s := start(t)
	jc := client(t, s)
	ctx := context.Background()
	rs, _, err := jc.Resolution.GetListWithContext(ctx)
	if err != nil || len(rs) != 4 || rs[2].Name != "Declined" {
		t.Errorf("%+v %v", rs, err)
	}
	sts, _, err := jc.Status.GetAllStatusesWithContext(ctx)
	if err != nil || len(sts) != 6 || sts[2].Name != "Approved" || sts[2].StatusCategory.Key != "indeterminate" {
		t.Errorf("%+v %v", sts, err)
	}
	p, _, err := jc.Project.GetWithContext(ctx, "IMG")
	if err != nil || p.Key != "IMG" || p.Name != "Image Requests" {
		t.Errorf("%+v %v", p, err)
	}
	_, resp, _ := jc.Project.GetWithContext(ctx, "NOPE")
	if resp.StatusCode != 404 {
		t.Errorf("%d", resp.StatusCode)
	}
}

func TestConcurrentUse(t *testing.T) {
	s := start(t)
	jc := client(t, s)
	ctx := context.Background()
	var keys []string
	for range 8 {
		keys = append(keys, s.AddIssue(Issue{}).Key)
	}
	done := make(chan error)
	for _, k := range keys {
		go func() {
			_, err := jc.Issue.DoTransitionWithPayloadWithContext(ctx, k, map[string]any{
				"transition": map[string]any{"id": "41"},
				"fields":     map[string]any{"resolution": map[string]any{"name": "Done"}},
				"update":     map[string]any{"comment": []any{map[string]any{"add": map[string]any{"body": "done " + k}}}},
			})
			if err == nil {
				_, _, err = jc.Issue.SearchV2JQLWithContext(ctx, "project = IMG", &gojira.SearchOptionsV2{Fields: []string{"*all"}})
			}
			done <- err
		}()
		go func() { s.Update(k, func(i *Issue) { i.Labels = []string{"seen"} }); done <- nil }()
	}
	for range 2 * len(keys) {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	for _, k := range keys {
		if got, _ := s.Issue(k); got.Status != StatusDone || len(s.Comments(k)) != 1 {
			t.Errorf("%+v", got)
		}
	}
}

// On a service-desk project a comment added over REST is public unless its
// sd.public.comment property says {"internal": true}; the property is kept
// and rendered with expand=properties. On a software project there are no
// customers: the property changes nothing.
func TestCommentVisibility(t *testing.T) {
	for _, dep := range []string{Cloud, DataCenter} {
		t.Run(dep, func(t *testing.T) {
			s := start(t, WithDeployment(dep), WithProjectType("DEV", ProjectTypeSoftware))
			sd := s.AddIssue(Issue{})
			dev := s.AddIssue(Issue{Project: "DEV"})
			internal := `"properties":[{"key":"sd.public.comment","value":{"internal":true}}]`
			post := func(key, body string) {
				t.Helper()
				r, b := do(t, s, req{method: http.MethodPost, path: "/rest/api/2/issue/" + key + "/comment", body: body})
				wantStatus(t, r, b, 201)
			}
			post(sd.Key, `{"body":"public by default"}`)
			post(sd.Key, `{"body":"for agents",`+internal+`}`)
			post(sd.Key, `{"body":"said public","properties":[{"key":"sd.public.comment","value":{"internal":false}}]}`)
			post(dev.Key, `{"body":"no customers here",`+internal+`}`)
			// The transition's update.comment takes the same properties.
			r, b := do(t, s, req{method: http.MethodPost, path: "/rest/api/2/issue/" + sd.Key + "/transitions",
				body: `{"transition":{"id":"41"},"fields":{"resolution":{"name":"Done"}},"update":{"comment":[{"add":{"body":"closed",` + internal + `}}]}}`})
			wantStatus(t, r, b, 204)

			var got []string
			for _, c := range append(s.Comments(sd.Key), s.Comments(dev.Key)...) {
				got = append(got, c.Body+"="+c.Visibility())
			}
			if want := "public by default=public,for agents=internal,said public=public,closed=internal,no customers here=public"; strings.Join(got, ",") != want {
				t.Errorf("visibility %s\nwant %s", strings.Join(got, ","), want)
			}
			if p := s.Comments(dev.Key)[0].Properties[SDPublicCommentKey]; string(p) != `{"internal":true}` {
				t.Errorf("software project property %s", p)
			}

			r, b = do(t, s, req{path: "/rest/api/2/issue/" + sd.Key + "/comment?expand=properties"})
			wantStatus(t, r, b, 200)
			v := decode(t, b)
			if path(v, "comments", 1, "properties", 0, "key") != SDPublicCommentKey || path(v, "comments", 0, "properties", 0, "key") != nil {
				t.Errorf("expand=properties: %s", b)
			}
			if jsd := path(v, "comments", 1, "jsdPublic"); (dep == Cloud) != (jsd == false) || (dep == DataCenter && jsd != nil) {
				t.Errorf("jsdPublic of an internal comment on %s: %v", dep, jsd)
			}
			r, b = do(t, s, req{path: "/rest/api/2/project/DEV"})
			if path(decode(t, b), "projectTypeKey") != ProjectTypeSoftware {
				t.Errorf("project %s", b)
			}

			r, b = do(t, s, req{method: http.MethodPost, path: "/rest/api/2/issue/" + sd.Key + "/comment", body: `{"body":"x","properties":[{"value":{}}]}`})
			wantStatus(t, r, b, 400)
			if len(s.Comments(sd.Key)) != 4 {
				t.Errorf("a refused comment was added")
			}
		})
	}
}

// serverInfo answers without credentials, as Jira's does ("can be accessed
// anonymously"), but credentials sent and refused are a 401 there too.
func TestServerInfoAnonymous(t *testing.T) {
	for _, dep := range []string{Cloud, DataCenter} {
		s := start(t, WithDeployment(dep), WithContextPath("/jira"))
		r, b := do(t, s, req{path: "/rest/api/2/serverInfo", noAuth: true})
		wantStatus(t, r, b, 200)
		r, b = do(t, s, req{path: "/rest/api/2/serverInfo", noAuth: true, header: map[string]string{"Authorization": "Bearer wrong"}})
		wantStatus(t, r, b, 401)
		r, b = do(t, s, req{path: "/rest/api/2/myself", noAuth: true})
		wantStatus(t, r, b, 401)
	}
}
