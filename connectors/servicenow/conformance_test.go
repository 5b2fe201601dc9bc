package servicenow_test

import (
	"testing"

	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
	"github.com/chainguard-dev/image-request-bridge/internal/sync/sourcetest"
)

// TestConformance runs the Source conformance suite against the fake
// instance, with the source's default settings.
func TestConformance(t *testing.T) { sourcetest.Run(t, snHarness{}) }

type snHarness struct{}

func (snHarness) Start(t *testing.T, cfg sourcetest.Config) sourcetest.Upstream {
	f := snfake.New()
	t.Cleanup(f.Close)
	requester := snfake.UserSysID("dana.developer")
	f.SetDisplayValue(requester, "Dana Developer")
	return &snUpstream{f: f, cfg: cfg, requester: requester}
}

type snUpstream struct {
	f         *snfake.Server
	cfg       sourcetest.Config
	requester string
}

func (u *snUpstream) build(t *testing.T, password string) isync.Source {
	t.Helper()
	s, err := servicenow.New(servicenow.Options{
		InstanceURL: u.f.URL(),
		Auth:        servicenow.Auth{Username: snfake.DefaultUser, Password: secret.New(password)},
		CatalogItem: catItem,
		PageSize:    u.cfg.PageSize,
		// On, as the configuration has it by default.
		RequesterComment: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (u *snUpstream) Source(t *testing.T) isync.Source { return u.build(t, snfake.DefaultPassword) }

func (u *snUpstream) SourceWithCredential(t *testing.T, cred string) isync.Source {
	return u.build(t, cred)
}

func (u *snUpstream) Secrets() []string { return []string{snfake.DefaultPassword} }

func (u *snUpstream) UnknownID() string { return "0123456789abcdef0123456789abcdef" }

func (u *snUpstream) seed(approval, image, justification string) string {
	return u.f.AddRITM(snfake.RITM{CatItem: catItem, Approval: approval, RequestedFor: u.requester,
		Variables: map[string]string{"image_name": image, "justification": justification}}).SysID
}

func (u *snUpstream) SeedApproved(t *testing.T, image, justification string) string {
	return u.seed("approved", image, justification)
}

func (u *snUpstream) SeedAwaiting(t *testing.T, image, justification string) string {
	return u.seed("requested", image, justification)
}

// Close sets Closed Complete, as a fulfiller does from the form; the
// instance's close rule makes the RITM inactive.
func (u *snUpstream) Close(t *testing.T, id string) {
	u.f.Update(id, func(r *snfake.RITM) { r.State = "3" })
}

func (u *snUpstream) Inject(t *testing.T, f sourcetest.Fault) {
	switch f {
	case sourcetest.WriteAnswerLost:
		u.f.InjectFault(snfake.Fault{Method: "PATCH", Reset: true, ApplyFirst: true})
	case sourcetest.WriteServerError:
		u.f.InjectFault(snfake.Fault{Method: "PATCH", Status: 503})
	case sourcetest.Forbidden:
		u.f.InjectFault(snfake.Fault{Status: 403, Times: 1000})
	default:
		t.Fatalf("fault %s not modelled", f)
	}
}

func (u *snUpstream) WriteRefusals() []sourcetest.WriteRefusal {
	refuse := func(body string) func(t *testing.T) isync.Source {
		return func(t *testing.T) isync.Source {
			u.f.InjectFault(snfake.Fault{Method: "PATCH", Status: 403, Body: body, Times: 1000})
			return u.Source(t)
		}
	}
	return []sourcetest.WriteRefusal{
		{Name: "write_ACL", Arrange: refuse(snfake.ACLUpdateBody)},
		{Name: "business_rule_abort", Arrange: refuse(snfake.BusinessRuleAbortBody("Require assignment group"))},
	}
}

func (u *snUpstream) Notes(t *testing.T, id string) []string {
	var out []string
	for _, e := range u.f.Journal(id) {
		if e.Element == "work_notes" {
			out = append(out, e.Value)
		}
	}
	return out
}

func (u *snUpstream) State(t *testing.T, id string) sourcetest.State {
	r, ok := u.f.RITM(id)
	if !ok {
		t.Fatalf("no RITM %s", id)
	}
	switch r.State {
	case "3":
		return sourcetest.ClosedComplete
	case "4", "7":
		return sourcetest.ClosedIncomplete
	}
	return sourcetest.Open
}
