package jira

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	gojira "github.com/andygrunwald/go-jira"
)

func transitionIDs(ts []gojira.Transition) string {
	var out []string
	for _, t := range ts {
		out = append(out, t.ID+":"+t.Name+">"+t.To.Name)
	}
	return strings.Join(out, ",")
}

func TestGetTransitionsDependOnStatus(t *testing.T) {
	s := start(t)
	jc := client(t, s)
	ctx := context.Background()
	for status, want := range map[string]string{
		StatusOpen:               "11:Submit>Waiting for approval",
		StatusWaitingForApproval: "21:Approve>Approved,31:Decline>Rejected,91:Reopen>Open",
		StatusApproved:           "41:Done>Done,51:Reject>Rejected,91:Reopen>Open",
		StatusInProgress:         "71:Complete>Done,81:Reject>Rejected,91:Reopen>Open",
		StatusDone:               "91:Reopen>Open",
	} {
		i := s.AddIssue(Issue{Status: status})
		ts, _, err := jc.Issue.GetTransitionsWithContext(ctx, i.Key)
		if err != nil {
			t.Fatal(err)
		}
		if got := transitionIDs(ts); got != want {
			t.Errorf("%s: %s, want %s", status, got, want)
		}
	}

	i := s.AddIssue(Issue{})
	ts, _, err := jc.Issue.GetTransitionsWithContext(ctx, i.ID)
	if err != nil {
		t.Fatal(err)
	}
	done := ts[0]
	if done.To.ID != "10002" || done.To.StatusCategory.Key != "done" || !done.Fields["resolution"].Required ||
		done.Fields["comment"].Required {
		t.Errorf("%+v", done)
	}
	if reopen := ts[2]; len(reopen.Fields) != 0 {
		t.Errorf("%+v", reopen)
	}

	// The raw shape: hasScreen, isGlobal, allowed resolutions, and no fields
	// without expand.
	resp, body := do(t, s, req{path: "/rest/api/2/issue/" + i.Key + "/transitions?expand=transitions.fields"})
	wantStatus(t, resp, body, 200)
	v := decode(t, body)
	if v["expand"] != "transitions" || path(v, "transitions", 0, "hasScreen") != true || path(v, "transitions", 0, "isGlobal") != false ||
		path(v, "transitions", 2, "isGlobal") != true || path(v, "transitions", 2, "hasScreen") != false {
		t.Errorf("%s", body)
	}
	var names []string
	for _, a := range path(v, "transitions", 0, "fields", "resolution", "allowedValues").([]any) {
		names = append(names, a.(map[string]any)["name"].(string))
	}
	if strings.Join(names, ",") != "Done,Won't Do,Declined,Duplicate" {
		t.Errorf("allowed %v", names)
	}
	resp, body = do(t, s, req{path: "/rest/api/2/issue/" + i.Key + "/transitions"})
	wantStatus(t, resp, body, 200)
	if path(decode(t, body), "transitions", 0, "fields") != nil {
		t.Errorf("fields without expand: %s", body)
	}
	resp, body = do(t, s, req{path: "/rest/api/2/issue/" + i.Key + "/transitions?transitionId=51"})
	wantStatus(t, resp, body, 200)
	if ts := decode(t, body)["transitions"].([]any); len(ts) != 1 {
		t.Errorf("%s", body)
	}
	resp, body = do(t, s, req{path: "/rest/api/2/issue/IMG-404/transitions"})
	wantStatus(t, resp, body, 404)
}

func TestDoTransitionWithCommentAndResolution(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	i := s.AddIssue(Issue{})
	c.Advance(time.Minute)
	jc := client(t, s)
	ctx := context.Background()

	payload := map[string]any{
		"transition": map[string]any{"id": "41"},
		"fields":     map[string]any{"resolution": map[string]any{"name": "Done"}},
		"update":     map[string]any{"comment": []any{map[string]any{"add": map[string]any{"body": "Provisioned cgr.dev/example/python:latest-dev"}}}},
	}
	resp, err := jc.Issue.DoTransitionWithPayloadWithContext(ctx, i.Key, payload)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("%v %v", resp, err)
	}
	got, _ := s.Issue(i.Key)
	if got.Status != StatusDone || got.Resolution != "Done" || !got.Updated.Equal(c.Now()) || !got.ResolutionDate.Equal(c.Now()) {
		t.Errorf("%+v", got)
	}
	cs := s.Comments(i.Key)
	if len(cs) != 1 || cs[0].Body != "Provisioned cgr.dev/example/python:latest-dev" || cs[0].Author != s.Myself() {
		t.Errorf("%+v", cs)
	}
	// Read back through go-jira.
	is, _, err := jc.Issue.GetWithContext(ctx, i.Key, &gojira.GetQueryOptions{Expand: "changelog"})
	if err != nil {
		t.Fatal(err)
	}
	if is.Fields.Status.Name != "Done" || is.Fields.Resolution == nil || is.Fields.Resolution.Name != "Done" ||
		time.Time(is.Fields.Updated).UnixMilli() != c.Now().UnixMilli() || len(is.Fields.Comments.Comments) != 1 {
		t.Errorf("%+v", is.Fields)
	}
	if is.Changelog == nil || len(is.Changelog.Histories) != 1 || len(is.Changelog.Histories[0].Items) != 2 ||
		is.Changelog.Histories[0].Items[0].FromString != "Approved" || is.Changelog.Histories[0].Items[0].ToString != "Done" {
		t.Errorf("changelog %+v", is.Changelog)
	}

	// The transition is no longer available from Done.
	resp, err = jc.Issue.DoTransitionWithPayloadWithContext(ctx, i.Key, payload)
	if resp.StatusCode != 400 || strings.Join(jiraError(t, err).ErrorMessages, "") != "Transition id '41' is not valid for this issue." {
		t.Errorf("%v", err)
	}
	if len(s.Comments(i.Key)) != 1 {
		t.Error("comment added by a failed transition")
	}

	// Reopen clears the resolution; Reject from In Progress has another id.
	if _, err := jc.Issue.DoTransitionWithContext(ctx, i.Key, "91"); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Issue(i.Key)
	if got.Status != StatusOpen || got.Resolution != "" || !got.ResolutionDate.IsZero() {
		t.Errorf("%+v", got)
	}
}

func TestGoJiraTransitionPayloadStruct(t *testing.T) {
	// go-jira's CreateTransitionPayload sends the whole jira.Resolution
	// struct ({"self":"","id":"","description":"","name":"Won't Do"}).
	s := start(t)
	i := s.AddIssue(Issue{})
	p := gojira.CreateTransitionPayload{
		Transition: gojira.TransitionPayload{ID: "51"},
		Fields:     gojira.TransitionPayloadFields{Resolution: &gojira.Resolution{Name: "Won't Do"}},
		Update:     gojira.TransitionPayloadUpdate{Comment: []gojira.TransitionPayloadComment{{Add: gojira.TransitionPayloadCommentBody{Body: "Image not in catalog"}}}},
	}
	if _, err := client(t, s).Issue.DoTransitionWithPayloadWithContext(context.Background(), i.Key, p); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Issue(i.Key)
	if got.Status != StatusRejected || got.Resolution != "Won't Do" || len(s.Comments(i.Key)) != 1 {
		t.Errorf("%+v", got)
	}
}

func TestTransitionErrors(t *testing.T) {
	s := start(t, WithCommentLimit(10))
	approved := s.AddIssue(Issue{})
	inProgress := s.AddIssue(Issue{Status: StatusInProgress})
	for _, tc := range []struct {
		key, body string
		status    int
		want      string
	}{
		{approved.Key, `{"transition":{"id":"71"}}`, 400,
			`{"errorMessages":["Transition id '71' is not valid for this issue."],"errors":{}}`},
		{approved.Key, `{"transition":{"id":"41"},"update":{"comment":[{"add":{"body":"done"}}]}}`, 400,
			`{"errorMessages":[],"errors":{"resolution":"Resolution is required."}}`},
		{approved.Key, `{"transition":{"id":"41"},"fields":{"resolution":{"name":"Fixed"}}}`, 400,
			`{"errorMessages":[],"errors":{"resolution":"Could not find valid 'id' or 'name' in resolution object."}}`},
		{approved.Key, `{"transition":{"id":"41"},"fields":{"resolution":{"name":"Done"}},"update":{"comment":[{"add":{"body":"01234567890"}}]}}`, 400,
			`{"errorMessages":[],"errors":{"comment":"The entered text is too long. It exceeds the allowed limit of 10 characters."}}`},
		{approved.Key, `{"transition":{"id":"41"},"fields":{"resolution":{"name":"Done"}},"update":{"comment":[{"add":{"body":""}}]}}`, 400,
			`{"errorMessages":[],"errors":{"comment":"Comment body can not be empty!"}}`},
		{approved.Key, `{"transition":{"id":"41"},"fields":{"resolution":{"name":"Done"},"labels":["x"]}}`, 400,
			`{"errorMessages":[],"errors":{"labels":"Field 'labels' cannot be set. It is not on the appropriate screen, or unknown."}}`},
		{inProgress.Key, `{"transition":{"id":"71"},"fields":{"resolution":{"name":"Done"}}}`, 400,
			`{"errorMessages":[],"errors":{"resolution":"Field 'resolution' cannot be set. It is not on the appropriate screen, or unknown."}}`},
		{inProgress.Key, `{"transition":{"id":"71"},"update":{"comment":[{"add":{"body":"done"}}]}}`, 400,
			`{"errorMessages":[],"errors":{"comment":"Field 'comment' cannot be set. It is not on the appropriate screen, or unknown."}}`},
		{inProgress.Key, `{"transition":{}}`, 400, `{"errorMessages":["Missing 'transition' identifier"],"errors":{}}`},
		{inProgress.Key, `not json`, 400, ``},
		{"IMG-99", `{"transition":{"id":"41"}}`, 404, IssueNotFoundBody},
	} {
		resp, body := do(t, s, req{method: http.MethodPost, path: "/rest/api/2/issue/" + tc.key + "/transitions", body: tc.body})
		wantStatus(t, resp, body, tc.status)
		if tc.want != "" && body != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.body, body, tc.want)
		}
	}
	for _, key := range []string{approved.Key, inProgress.Key} {
		got, _ := s.Issue(key)
		if got.Resolution != "" || len(s.Comments(key)) != 0 || (got.Status != StatusApproved && got.Status != StatusInProgress) {
			t.Errorf("failed transitions changed %+v", got)
		}
	}

	// go-jira sees field errors in Errors.
	_, err := client(t, s).Issue.DoTransitionWithPayloadWithContext(context.Background(), inProgress.Key,
		map[string]any{"transition": map[string]any{"id": "71"}, "fields": map[string]any{"resolution": map[string]any{"name": "Done"}}})
	if je := jiraError(t, err); !strings.HasPrefix(je.Errors["resolution"], "Field 'resolution' cannot be set") {
		t.Errorf("%+v", je)
	}
}

func TestTransitionWithoutScreenLeavesUnresolved(t *testing.T) {
	s := start(t)
	i := s.AddIssue(Issue{Status: StatusInProgress})
	// A numeric id is accepted too.
	resp, body := do(t, s, req{method: http.MethodPost, path: "/rest/api/2/issue/" + i.Key + "/transitions", body: `{"transition":{"id":71}}`})
	wantStatus(t, resp, body, 204)
	got, _ := s.Issue(i.Key)
	if got.Status != StatusDone || got.Resolution != "" {
		t.Errorf("%+v", got)
	}
	// 81 Reject has a screen but no required resolution.
	j := s.AddIssue(Issue{Status: StatusInProgress})
	resp, body = do(t, s, req{method: http.MethodPost, path: "/rest/api/2/issue/" + j.Key + "/transitions", body: `{"transition":{"id":"81"},"update":{"comment":[{"add":{"body":"no"}}]}}`})
	wantStatus(t, resp, body, 204)
	if got, _ := s.Issue(j.Key); got.Status != StatusRejected || got.Resolution != "" || len(s.Comments(j.Key)) != 1 {
		t.Errorf("%+v", got)
	}
}

func TestCustomWorkflow(t *testing.T) {
	w := Workflow{
		Statuses: []Status{
			{Name: "Approved", Category: CategoryIndeterminate},
			{ID: "10110", Name: "Needs Attention", Category: CategoryIndeterminate},
			{Name: "Closed", Category: CategoryDone},
		},
		Transitions: []Transition{
			{ID: "41", Name: "Mark provisioned", From: "Approved", To: "Closed", Screen: true, RequireResolution: true},
			{ID: "51", Name: "Needs attention", From: "Approved", To: "10110"},
			{ID: "61", Name: "Back", From: "Closed", To: "Approved", KeepResolution: true},
		},
	}
	s := start(t, WithWorkflow(w))
	i := s.AddIssue(Issue{})
	jc := client(t, s)
	ctx := context.Background()
	ts, _, err := jc.Issue.GetTransitionsWithContext(ctx, i.Key)
	if err != nil || transitionIDs(ts) != "41:Mark provisioned>Closed,51:Needs attention>Needs Attention" {
		t.Fatalf("%s %v", transitionIDs(ts), err)
	}
	if _, err := jc.Issue.DoTransitionWithPayloadWithContext(ctx, i.Key, json.RawMessage(`{"transition":{"id":"41"},"fields":{"resolution":{"id":"10000"}}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := jc.Issue.DoTransitionWithContext(ctx, i.Key, "61"); err != nil {
		t.Fatal(err)
	}
	// Without the "clear resolution" post function the resolution stays.
	if got, _ := s.Issue(i.Key); got.Status != "Approved" || got.Resolution != "Done" {
		t.Errorf("%+v", got)
	}
	if got, _ := runJQL(s, `status = "Needs Attention" OR resolution = Done`); strings.Join(got, ",") != i.Key {
		t.Errorf("%v", got)
	}
}
