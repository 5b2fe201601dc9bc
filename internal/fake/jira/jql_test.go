package jira

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	gojira "github.com/andygrunwald/go-jira"
)

var otherReporter = User{AccountID: "712020:0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e", Name: "jdoe", Key: "JIRAUSER10300", DisplayName: "Jane Doe", Email: "jdoe@example.com"}

// jqlFixture adds a small, varied set of issues.
func jqlFixture(t *testing.T, opts ...Option) (*Server, *clock) {
	t.Helper()
	c := newClock()
	s := start(t, append([]Option{WithClock(c.Now)}, opts...)...)
	s.AddIssue(Issue{Summary: "Request python:latest-dev for data-eng", Labels: []string{"chainguard", "image-request"},
		Fields: map[string]any{"customfield_10050": "python:latest-dev", "customfield_10052": map[string]any{"value": "prod"}, "customfield_10053": "data-eng"}})
	c.Advance(time.Hour)
	s.AddIssue(Issue{Summary: "Request node:22", Status: StatusOpen, Description: "For the web team",
		Fields: map[string]any{"customfield_10050": "node:22"}})
	c.Advance(time.Hour)
	s.AddIssue(Issue{Summary: "Request go", Status: StatusDone, Resolution: "Done", Labels: []string{"Chainguard"},
		Fields: map[string]any{"customfield_10052": "staging"}})
	c.Advance(time.Hour)
	s.AddIssue(Issue{Project: "OPS", IssueType: "Task", Summary: "Rotate keys", Status: StatusInProgress})
	c.Advance(time.Hour)
	s.AddIssue(Issue{Summary: "Request IN image", Status: StatusRejected, Resolution: "Declined", Reporter: otherReporter})
	s.AddComment("IMG-2", "Blocked on licence review", User{})
	return s, c
}

func runJQL(s *Server, jql string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	found, _, err := s.searchLocked(jql)
	var out []string
	for _, r := range found {
		out = append(out, r.issue.Key)
	}
	return out, err
}

func TestJQLMatching(t *testing.T) {
	s, _ := jqlFixture(t)
	for _, tc := range []struct{ jql, want string }{
		{`project = IMG`, "IMG-1,IMG-2,IMG-3,IMG-4"},
		{`PROJECT = "img"`, "IMG-1,IMG-2,IMG-3,IMG-4"},
		{`project = "Image Requests" and status = approved`, "IMG-1"},
		{`project in (IMG, OPS) AND status IN ("Approved", "In Progress")`, "IMG-1,OPS-1"},
		{`project = IMG AND status NOT IN (Approved, Open)`, "IMG-3,IMG-4"},
		{`project = IMG AND status != Approved`, "IMG-2,IMG-3,IMG-4"},
		{`status = 10104`, "IMG-1"},
		{`statusCategory = Done`, "IMG-3,IMG-4"},
		{`statusCategory = "In Progress"`, "IMG-1,OPS-1"},
		{`issuetype = "Image Request" AND type != Task`, "IMG-1,IMG-2,IMG-3,IMG-4"},
		{`type = task`, "OPS-1"},
		{`key = img-2`, "IMG-2"},
		{`issuekey IN (IMG-1, IMG-3)`, "IMG-1,IMG-3"},
		{`id = 10002`, "IMG-2"},
		{`key > IMG-2 AND project = IMG`, "IMG-3,IMG-4"},
		{`resolution = Unresolved`, "IMG-1,IMG-2,OPS-1"},
		{`resolution IS EMPTY`, "IMG-1,IMG-2,OPS-1"},
		{`resolution = EMPTY`, "IMG-1,IMG-2,OPS-1"},
		{`resolution is not empty`, "IMG-3,IMG-4"},
		{`resolution = "Won't Do" OR resolution = declined`, "IMG-4"},
		// != never matches an issue whose field is empty.
		{`resolution != Done`, "IMG-4"},
		{`labels = chainguard`, "IMG-1,IMG-3"},
		{`labels != chainguard`, ""},
		{`labels NOT IN (image-request)`, "IMG-3"},
		{`labels IS EMPTY`, "IMG-2,IMG-4,OPS-1"},
		{`labels in (EMPTY, image-request)`, "IMG-1,IMG-2,IMG-4,OPS-1"},
		{`reporter = "712020:0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"`, "IMG-4"},
		{`reporter = jdoe`, ""}, // Cloud: accountId only
		{`reporter != currentUser()`, "IMG-1,IMG-2,IMG-3,IMG-4,OPS-1"},
		{`assignee IS EMPTY AND project = OPS`, "OPS-1"},
		{`"Image name" ~ python`, "IMG-1"},
		{`"image NAME" ~ "NODE*"`, "IMG-2"},
		{`cf[10050] IS NOT EMPTY`, "IMG-1,IMG-2"},
		{`customfield_10050 is empty`, "IMG-3,IMG-4,OPS-1"},
		{`"Image name" !~ python`, "IMG-2"},
		{`Environment = Prod`, "IMG-1"},
		{`environment in (prod, staging)`, "IMG-1,IMG-3"},
		{`cf[10052] != prod`, "IMG-3"},
		{`Team ~ data`, "IMG-1"},
		{`summary ~ "request"`, "IMG-1,IMG-2,IMG-3,IMG-4"},
		{`description ~ web`, "IMG-2"},
		{`comment ~ licence`, "IMG-2"},
		{`text ~ licence OR text ~ "python:latest"`, "IMG-1,IMG-2"},
		{`project = IMG AND NOT status = Approved AND !(status = Open)`, "IMG-3,IMG-4"},
		{`project = IMG && (status = Open || status = Done)`, "IMG-2,IMG-3"},
		{`project = IMG AND status = Approved OR project = OPS`, "IMG-1,OPS-1"},
		{`project = IMG AND (status = Approved OR project = OPS)`, "IMG-1"},
		{`created >= "2025/10/14 11:00" AND created < "2025-10-14 13:00"`, "IMG-3,OPS-1"},
		{`created > 2025-10-15`, ""},
		{`created <= -3h`, "IMG-1,IMG-2"},
		{`updated > -90m`, "IMG-2,IMG-4,OPS-1"},
		{`resolved IS NOT EMPTY`, "IMG-3,IMG-4"},
		{`created < now()`, "IMG-1,IMG-2,IMG-3,OPS-1"},
		{"project = IMG\nORDER BY created DESC", "IMG-4,IMG-3,IMG-2,IMG-1"},
		{`project in (IMG, OPS) order by status desc, key asc`, "IMG-4,IMG-3,OPS-1,IMG-1,IMG-2"},
		{`project = IMG ORDER BY resolution ASC`, "IMG-3,IMG-4,IMG-1,IMG-2"},
		{`project = IMG ORDER BY resolution DESC`, "IMG-1,IMG-2,IMG-4,IMG-3"},
		{`project = IMG ORDER BY "Image name"`, "IMG-2,IMG-1,IMG-3,IMG-4"},
		{`project = IMG ORDER BY cf[10052] DESC, key DESC`, "IMG-4,IMG-2,IMG-3,IMG-1"},
		{`summary ~ "Request IN image"`, "IMG-4"},
		{`summary ~ 'it\'s' OR summary ~ "\"quoted\"" OR summary ~ "back\\slash"`, ""},
		{`summary ~ python:latest`, "IMG-1"},
		{`ORDER BY key DESC`, "OPS-1,IMG-4,IMG-3,IMG-2,IMG-1"},
		{``, "IMG-1,IMG-2,IMG-3,IMG-4,OPS-1"},
	} {
		got, err := runJQL(s, tc.jql)
		if err != nil {
			t.Errorf("%s: %v", tc.jql, err)
			continue
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%s: got %v, want %s", tc.jql, got, tc.want)
		}
	}
}

func TestJQLDataCenterReporter(t *testing.T) {
	s, _ := jqlFixture(t, WithDeployment(DataCenter))
	for _, tc := range []struct{ jql, want string }{
		{`reporter = jdoe`, "IMG-4"},
		{`reporter = JIRAUSER10300`, "IMG-4"},
		{`reporter in (ddeveloper)`, "IMG-1,IMG-2,IMG-3,OPS-1"},
		{`reporter = currentUser()`, ""},
	} {
		got, err := runJQL(s, tc.jql)
		if err != nil || strings.Join(got, ",") != tc.want {
			t.Errorf("%s: %v %v", tc.jql, got, err)
		}
	}
}

func TestJQLErrors(t *testing.T) {
	s, _ := jqlFixture(t)
	for _, tc := range []struct{ jql, want string }{
		{`project = IN`, "Error in the JQL Query: 'IN' is a reserved JQL word. You must surround it in quotation marks to use it in a query. (line 1, character 11)"},
		{`project = "IN"`, "The value 'IN' does not exist for the field 'project'."},
		{`summary in (a, b)`, "Error in the JQL Query: 'a' is a reserved JQL word. You must surround it in quotation marks to use it in a query. (line 1, character 13)"},
		{`project = do`, "Error in the JQL Query: 'do' is a reserved JQL word. You must surround it in quotation marks to use it in a query. (line 1, character 11)"},
		{`project = NOPE`, "The value 'NOPE' does not exist for the field 'project'."},
		{`status = "Needs attention"`, "The value 'Needs attention' does not exist for the field 'status'."},
		{`issuetype = Bug`, "The value 'Bug' does not exist for the field 'issuetype'."},
		{`resolution = Fixed`, "The value 'Fixed' does not exist for the field 'resolution'."},
		{`statusCategory = Blocked`, "The value 'Blocked' does not exist for the field 'statusCategory'."},
		{`key = IMG-99`, "An issue with key 'IMG-99' does not exist for field 'key'."},
		{`issuekey = foo`, "The issue key 'foo' for field 'issuekey' is invalid."},
		{`Colour = red`, "Field 'Colour' does not exist or you do not have permission to view it."},
		{`cf[99999] = x`, "Field 'cf[99999]' does not exist or you do not have permission to view it."},
		{`customfield_99999 ~ x`, "Field 'customfield_99999' does not exist or you do not have permission to view it."},
		{`"Image name" = "python:latest-dev"`, "The operator '=' is not supported by the 'Image name' field."},
		{`summary in (x, y)`, "The operator 'in' is not supported by the 'summary' field."},
		{`status ~ Open`, "The operator '~' is not supported by the 'status' field."},
		{`key is empty`, "The operator 'is' is not supported by the 'key' field."},
		{`project = IMG AND`, "Error in the JQL Query: Expecting a field name at the end of the query."},
		{`project =`, "Error in the JQL Query: Expecting either a value, list or function before the end of the query."},
		{`project`, "Error in the JQL Query: Expecting operator before the end of the query. The valid operators are '=', '!=', '<', '>', '<=', '>=', '~', '!~', 'IN', 'NOT IN', 'IS' and 'IS NOT'."},
		{`project foo IMG`, "Error in the JQL Query: Expecting operator but got 'foo'. The valid operators are '=', '!=', '<', '>', '<=', '>=', '~', '!~', 'IN', 'NOT IN', 'IS' and 'IS NOT'. (line 1, character 9)"},
		{`project = IMG status = Open`, "Error in the JQL Query: Expecting either 'OR' or 'AND' but got 'status'. (line 1, character 15)"},
		{`(project = IMG`, "Error in the JQL Query: Expecting ')' before the end of the query."},
		{`project in (IMG, OPS`, "Error in the JQL Query: Expecting ')' before the end of the query."},
		{`project in IMG`, "Error in the JQL Query: Expecting '(' but got 'IMG'. (line 1, character 12)"},
		{`summary ~ "unterminated`, "Error in the JQL Query: The quoted string 'unterminated' has not been completed. (line 1, character 11)"},
		{`summary ~ "bad \q escape"`, "Error in the JQL Query: The escape sequence '\\q' is illegal. (line 1, character 16)"},
		{`reporter = bridge@example.com`, "Error in the JQL Query: The character '@' is a reserved JQL character. You must enclose it in a string or use the escape '\\u0040' instead. (line 1, character 18)"},
		{`labels = v1.2`, "Error in the JQL Query: The character '.' is a reserved JQL character. You must enclose it in a string or use the escape '\\u002e' instead. (line 1, character 12)"},
		{"project = IMG\n  AND status = IN", "Error in the JQL Query: 'IN' is a reserved JQL word. You must surround it in quotation marks to use it in a query. (line 2, character 16)"},
		{`status is Open`, "Error in the JQL Query: Expecting 'EMPTY' or 'NULL' after 'IS' but got 'Open'. (line 1, character 11)"},
		{`project = IMG ORDER key`, "Error in the JQL Query: Expecting 'BY' but got 'key'. (line 1, character 21)"},
		{`project = IMG ORDER BY description`, "Field 'description' does not support sorting."},
		{`project = IMG ORDER BY nope`, "Field 'nope' does not exist or you do not have permission to view it."},
		{`created > yesterday`, "Date value 'yesterday' for field 'created' is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'."},
		{`reporter in membersOf("admins")`, "Unable to find JQL function 'membersOf()'."},
		{`status = currentUser()`, "A value provided by the function 'currentUser' is invalid for the field 'status'."},
		{`= IMG`, "Error in the JQL Query: Expecting a field name but got '='. You must surround '=' in quotation marks to use it as a field name. (line 1, character 1)"},
	} {
		_, err := runJQL(s, tc.jql)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.jql, err, tc.want)
		}
	}
}

// TestJQLOverHTTP checks that JQL errors reach go-jira as *jira.Error with the
// message, on both searches.
func TestJQLOverHTTP(t *testing.T) {
	ctx := context.Background()
	s, _ := jqlFixture(t)
	_, resp, err := client(t, s).Issue.SearchV2JQLWithContext(ctx, `"Image name" = "python"`, nil)
	if resp.StatusCode != 400 || jiraError(t, err).ErrorMessages[0] != "The operator '=' is not supported by the 'Image name' field." {
		t.Errorf("%v", err)
	}
	issues, _, err := client(t, s).Issue.SearchV2JQLWithContext(ctx, `project = "IMG" AND "Image name" ~ "python" AND Environment = "prod"`, &gojira.SearchOptionsV2{Fields: []string{"*all"}})
	if err != nil || len(issues) != 1 || issues[0].Key != "IMG-1" {
		t.Fatalf("%v %v", issues, err)
	}

	dc, _ := jqlFixture(t, WithDeployment(DataCenter))
	_, resp, err = client(t, dc).Issue.SearchWithContext(ctx, `project = NOPE`, nil)
	if resp.StatusCode != 400 || jiraError(t, err).ErrorMessages[0] != "The value 'NOPE' does not exist for the field 'project'." {
		t.Errorf("%v", err)
	}
	r, body := do(t, dc, req{path: "/rest/api/2/search?jql=" + url.QueryEscape(`project = IN`)})
	wantStatus(t, r, body, http.StatusBadRequest)
	if body != `{"errorMessages":["Error in the JQL Query: 'IN' is a reserved JQL word. You must surround it in quotation marks to use it in a query. (line 1, character 11)"],"errors":{}}` {
		t.Errorf("%s", body)
	}
}
