package jira_test

import (
	"testing"

	"github.com/chainguard-dev/image-request-bridge/connectors/jira"
	jfake "github.com/chainguard-dev/image-request-bridge/internal/fake/jira"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
	"github.com/chainguard-dev/image-request-bridge/internal/sync/sourcetest"
)

// TestConformance runs the Source conformance suite against the fake, on
// Cloud (enhanced search, nextPageToken) and Data Center (startAt), with
// the source's default settings.
func TestConformance(t *testing.T) {
	for _, dep := range []string{jira.Cloud, jira.DataCenter} {
		t.Run(dep, func(t *testing.T) { sourcetest.Run(t, jiraHarness{deployment: dep}) })
	}
}

type jiraHarness struct{ deployment string }

func (h jiraHarness) Start(t *testing.T, cfg sourcetest.Config) sourcetest.Upstream {
	f := jfake.New(jfake.WithDeployment(h.deployment))
	t.Cleanup(f.Close)
	return &jiraUpstream{f: f, cfg: cfg}
}

type jiraUpstream struct {
	f   *jfake.Server
	cfg sourcetest.Config
}

func (u *jiraUpstream) build(t *testing.T, token string, mod func(*jira.Options)) isync.Source {
	t.Helper()
	o := jira.Options{URL: u.f.URL(), Deployment: u.f.Deployment(), JQL: "project = IMG AND status = Approved",
		ImageField: "Image name", JustificationField: "Justification", PageSize: u.cfg.PageSize}
	if u.f.Deployment() == jfake.Cloud {
		o.Email = jfake.DefaultEmail
	}
	o.APIToken = secret.New(token)
	if mod != nil {
		mod(&o)
	}
	s, err := jira.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (u *jiraUpstream) token() string {
	if u.f.Deployment() == jfake.Cloud {
		return jfake.DefaultAPIToken
	}
	return jfake.DefaultPAT
}

func (u *jiraUpstream) Source(t *testing.T) isync.Source { return u.build(t, u.token(), nil) }

func (u *jiraUpstream) SourceWithCredential(t *testing.T, cred string) isync.Source {
	return u.build(t, cred, nil)
}

func (u *jiraUpstream) Secrets() []string { return []string{jfake.DefaultAPIToken, jfake.DefaultPAT} }

func (u *jiraUpstream) UnknownID() string { return "99999" }

func (u *jiraUpstream) seed(status, image, justification string) string {
	return u.f.AddIssue(jfake.Issue{Status: status, Fields: map[string]any{
		u.f.FieldID("Image name"): image, u.f.FieldID("Justification"): justification}}).ID
}

func (u *jiraUpstream) SeedApproved(t *testing.T, image, justification string) string {
	return u.seed(jfake.StatusApproved, image, justification)
}

func (u *jiraUpstream) SeedAwaiting(t *testing.T, image, justification string) string {
	return u.seed(jfake.StatusWaitingForApproval, image, justification)
}

// Close resolves the issue as Done, as a person does from the issue view.
func (u *jiraUpstream) Close(t *testing.T, id string) {
	u.f.Update(id, func(i *jfake.Issue) { i.Status, i.Resolution = jfake.StatusDone, "Done" })
}

func (u *jiraUpstream) Inject(t *testing.T, f sourcetest.Fault) {
	switch f {
	case sourcetest.WriteAnswerLost:
		u.f.InjectFault(jfake.Fault{Method: "POST", Reset: true, ApplyFirst: true})
	case sourcetest.WriteServerError:
		u.f.InjectFault(jfake.Fault{Method: "POST", Status: 503})
	case sourcetest.Forbidden:
		u.f.InjectFault(jfake.Fault{Status: 403, Times: 1000})
	default:
		t.Fatalf("fault %s not modelled", f)
	}
}

// teamRequired is Jira's answer to a transition whose screen requires a
// field the request does not set.
const teamRequired = `{"errorMessages":[],"errors":{"customfield_10070":"Team is required."}}`

func (u *jiraUpstream) WriteRefusals() []sourcetest.WriteRefusal {
	return []sourcetest.WriteRefusal{
		{Name: "required_field", Arrange: func(t *testing.T) isync.Source {
			u.f.InjectFault(jfake.Fault{Method: "POST", PathContains: "/transitions", Status: 400, Body: teamRequired, Times: 1000})
			return u.Source(t)
		}},
		{Name: "missing_transition", Arrange: func(t *testing.T) isync.Source {
			return u.build(t, u.token(), func(o *jira.Options) { o.DoneTransition = "Ship it" })
		}},
	}
}

func (u *jiraUpstream) Notes(t *testing.T, id string) []string {
	var out []string
	for _, c := range u.f.Comments(id) {
		out = append(out, c.Body)
	}
	return out
}

func (u *jiraUpstream) State(t *testing.T, id string) sourcetest.State {
	is, ok := u.f.Issue(id)
	if !ok {
		t.Fatalf("no issue %s", id)
	}
	switch is.Status {
	case jfake.StatusDone:
		return sourcetest.ClosedComplete
	case jfake.StatusRejected:
		return sourcetest.ClosedIncomplete
	}
	return sourcetest.Open
}
