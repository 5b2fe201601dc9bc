package jira

import (
	"context"
	"net/http"
	"strings"
	"testing"

	gojira "github.com/andygrunwald/go-jira"
)

func TestAuthRequired(t *testing.T) {
	ctx := context.Background()
	cloud := start(t)
	dc := start(t, WithDeployment(DataCenter))
	for _, rq := range []struct {
		s  *Server
		rq req
	}{
		{cloud, req{path: "/rest/api/2/myself", noAuth: true}},
		{cloud, req{path: "/rest/api/2/myself", noAuth: true, header: map[string]string{"Authorization": "Basic YnJpZGdlQGV4YW1wbGUuY29tOndyb25n"}}},
		{cloud, req{path: "/rest/api/2/myself", noAuth: true, header: map[string]string{"Authorization": "Bearer " + DefaultPAT}}},
		{dc, req{path: "/rest/api/2/myself", noAuth: true}},
		{dc, req{path: "/rest/api/2/myself", noAuth: true, header: map[string]string{"Authorization": "Bearer wrong"}}},
		{dc, req{path: "/rest/api/2/search/jql", noAuth: true}},
	} {
		resp, body := do(t, rq.s, rq.rq)
		wantStatus(t, resp, body, http.StatusUnauthorized)
		if body != `{"errorMessages":["You are not authenticated. Authentication required to perform this operation."],"errors":{}}` {
			t.Errorf("body %s", body)
		}
		if (rq.rq.header != nil) != (resp.Header.Get("X-Seraph-LoginReason") == "AUTHENTICATED_FAILED") {
			t.Errorf("X-Seraph-LoginReason %q", resp.Header.Get("X-Seraph-LoginReason"))
		}
	}

	// go-jira with wrong credentials gets a *jira.Error and the 401.
	c, _ := gojira.NewClient((&gojira.BasicAuthTransport{Username: DefaultEmail, Password: "nope"}).Client(), cloud.URL())
	_, resp, err := c.User.GetSelfWithContext(ctx)
	if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("resp %v err %v", resp, err)
	}
	if je := jiraError(t, err); len(je.ErrorMessages) != 1 || !strings.HasPrefix(je.ErrorMessages[0], "You are not authenticated") {
		t.Errorf("%+v", je)
	}

	// Custom credentials.
	s := start(t, WithBasicAuth("svc@example.org", "tok"))
	c, _ = gojira.NewClient((&gojira.BasicAuthTransport{Username: "svc@example.org", Password: "tok"}).Client(), s.URL())
	me, _, err := c.User.GetSelfWithContext(ctx)
	if err != nil || me.EmailAddress != "svc@example.org" || me.AccountID == "" {
		t.Fatalf("%+v %v", me, err)
	}
	p := start(t, WithDeployment(DataCenter), WithPAT("pat-2"))
	c, _ = gojira.NewClient((&gojira.PATAuthTransport{Token: "pat-2"}).Client(), p.URL())
	me, _, err = c.User.GetSelfWithContext(ctx)
	if err != nil || me.Name != "image-bridge" || me.Key == "" || me.AccountID != "" {
		t.Fatalf("%+v %v", me, err)
	}
}

func TestServerInfoAndMyself(t *testing.T) {
	for _, tc := range []struct {
		deployment, want string
	}{{Cloud, "Cloud"}, {DataCenter, "Server"}} {
		t.Run(tc.deployment, func(t *testing.T) {
			s := start(t, WithDeployment(tc.deployment))
			resp, body := do(t, s, req{path: "/rest/api/2/serverInfo"})
			wantStatus(t, resp, body, 200)
			v := decode(t, body)
			if v["deploymentType"] != tc.want || v["baseUrl"] != s.URL() || v["version"] == "" {
				t.Errorf("%s", body)
			}
			resp, body = do(t, s, req{path: "/rest/api/latest/myself"})
			wantStatus(t, resp, body, 200)
			me := decode(t, body)
			if tc.deployment == Cloud {
				if me["accountId"] != s.Myself().AccountID || me["emailAddress"] != DefaultEmail || me["name"] != nil {
					t.Errorf("%s", body)
				}
			} else if me["name"] != "image-bridge" || me["key"] != "JIRAUSER10000" || me["accountId"] != nil {
				t.Errorf("%s", body)
			}
		})
	}
}

func TestFieldList(t *testing.T) {
	s := start(t, WithCustomField("Image name", "customfield_10400", "text"), WithCustomField("Region", "10410", "select"))
	fields, _, err := client(t, s).Field.GetListWithContext(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]gojira.Field{}
	for _, f := range fields {
		byName[f.Name] = f
	}
	img := byName["Image name"]
	if img.ID != "customfield_10400" || !img.Custom || img.Schema.Type != "string" ||
		img.Schema.Custom != "com.atlassian.jira.plugin.system.customfieldtypes:textfield" || img.Schema.CustomID != 10400 ||
		strings.Join(img.ClauseNames, ",") != "cf[10400],Image name" {
		t.Errorf("%+v", img)
	}
	region := byName["Region"]
	if region.ID != "customfield_10410" || region.Schema.Type != "option" || !strings.HasSuffix(region.Schema.Custom, ":select") {
		t.Errorf("%+v", region)
	}
	if env := byName["Environment"]; env.ID != "customfield_10052" || env.Schema.Type != "option" {
		t.Errorf("%+v", env)
	}
	for _, name := range []string{"Summary", "Status", "Resolution", "Reporter", "Labels", "Issue Type", "Project", "Comment"} {
		if f, ok := byName[name]; !ok || f.Custom || f.Schema.System == "" {
			t.Errorf("system field %s: %+v", name, f)
		}
	}
	if got := strings.Join(byName["Issue Type"].ClauseNames, ","); got != "issuetype,type" {
		t.Errorf("issuetype clauses %s", got)
	}
	if s.FieldID("image NAME") != "customfield_10400" || s.FieldID("Team") != "customfield_10053" ||
		s.FieldID("Summary") != "summary" || s.FieldID("nope") != "" {
		t.Error("FieldID")
	}
}

func TestCustomFieldDeclarationsPanic(t *testing.T) {
	for _, opt := range []Option{
		WithCustomField("Other", "customfield_10050", "text"),
		WithCustomField("X", "customfield_abc", "text"),
		WithCustomField("X", "10999", "multiselect"),
		WithDeployment("server"),
		WithWorkflow(Workflow{Statuses: []Status{{Name: "A", Category: "new"}}, Transitions: []Transition{{ID: "1", Name: "t", To: "B"}}}),
		WithWorkflow(Workflow{Statuses: []Status{{Name: "A", Category: "new"}}, Transitions: []Transition{{ID: "1", Name: "t", To: "A", RequireResolution: true}}}),
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			New(opt).Close()
		}()
	}
}

func TestRoutingErrors(t *testing.T) {
	s := start(t)
	resp, body := do(t, s, req{path: "/rest/api/2/nothing?x=1"})
	wantStatus(t, resp, body, 404)
	if v := decode(t, body); v["status-code"] != float64(404) || v["message"] != "null for uri: "+s.URL()+"/rest/api/2/nothing?x=1" {
		t.Errorf("%s", body)
	}
	resp, body = do(t, s, req{method: http.MethodDelete, path: "/rest/api/2/serverInfo"})
	wantStatus(t, resp, body, 405)
	resp, body = do(t, s, req{path: "/rest/api/3/serverInfo"})
	wantStatus(t, resp, body, 404)
}

func TestContextPath(t *testing.T) {
	s := start(t, WithDeployment(DataCenter), WithContextPath("/jira/"))
	if !strings.HasSuffix(s.URL(), "/jira") {
		t.Fatal(s.URL())
	}
	i := s.AddIssue(Issue{})
	got, _, err := client(t, s).Issue.GetWithContext(context.Background(), i.Key, nil)
	if err != nil || got.Key != i.Key || !strings.HasPrefix(got.Self, s.URL()+"/rest/api/2/issue/") {
		t.Fatalf("%+v %v", got, err)
	}
}

func TestRequestLog(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	s.AddIssue(Issue{})
	do(t, s, req{path: "/rest/api/2/issue/IMG-1?fields=summary"})
	do(t, s, req{method: http.MethodPost, path: "/rest/api/2/issue/IMG-1/comment", body: `{"body":"hi"}`})
	reqs := s.Requests()
	if len(reqs) != 2 || reqs[0].Path != "/rest/api/2/issue/IMG-1" || reqs[0].RawQuery != "fields=summary" || reqs[0].Status != 200 ||
		reqs[1].Method != "POST" || reqs[1].Body != `{"body":"hi"}` || reqs[1].Status != 201 || !reqs[1].Time.Equal(c.Now()) ||
		reqs[1].Header.Get("Content-Type") != "application/json" {
		t.Errorf("%+v", reqs)
	}
	s.ResetRequests()
	if len(s.Requests()) != 0 {
		t.Error("not reset")
	}
}
