package sync_test

import (
	"strings"
	"testing"

	jfake "github.com/chainguard-dev/image-request-bridge/internal/fake/jira"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/policy"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

func testPolicy() *policy.Policy {
	p := &policy.Policy{
		SecurityGroup: "Security Review",
		Rules: []policy.Rule{
			{Name: "no-ai", Tiers: []string{"AI"}, Tier: policy.Deny, Reason: "AI images need a platform review first"},
			{Name: "fips-security", Tiers: []string{"FIPS"}, Tier: policy.Security},
			{Name: "dev-auto", Fields: map[string][]string{"environment": {"dev"}}, Tier: policy.Auto},
		},
	}
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return p
}

func withPolicy(o *isync.Options) { o.Policy = testPolicy() }

// Each tier's allow and refuse paths on ServiceNow (security: see
// TestPolicySecurity*).
func TestPolicyServiceNow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{engineOpts: withPolicy, listAwaiting: true})
	deny := h.ritm("pytorch", nil)
	allowed := h.ritm("python", func(r *snfake.RITM) { r.Variables["environment"] = "prod" })
	autoDev := h.ritm("node", func(r *snfake.RITM) { r.Approval = "requested"; r.Variables["environment"] = "dev" })
	waitProd := h.ritm("go", func(r *snfake.RITM) { r.Approval = "requested"; r.Variables["environment"] = "prod" })
	h.pass(h.engine())

	if notes := h.notes(deny.SysID); h.state(deny.SysID) != "4" || len(notes) != 1 || !strings.Contains(notes[0], "AI images need a platform review first") || !strings.Contains(notes[0], "no-ai") {
		t.Errorf("deny: state %s notes %q", h.state(deny.SysID), notes)
	}
	if notes := h.notes(allowed.SysID); h.state(allowed.SysID) != "3" || len(notes) != 1 || !strings.Contains(notes[0], "Approval tier: approval (default)") {
		t.Errorf("approval, approved: state %s notes %q", h.state(allowed.SysID), notes)
	}
	if notes := h.notes(autoDev.SysID); h.state(autoDev.SysID) != "3" || len(notes) != 1 || !strings.Contains(notes[0], `auto (rule "dev-auto")`) {
		t.Errorf("auto, awaiting approval: state %s notes %q", h.state(autoDev.SysID), notes)
	}
	if h.patches(waitProd.SysID) != 0 || len(h.notes(waitProd.SysID)) != 0 {
		t.Errorf("approval tier, awaiting approval: touched (%d PATCHes)", h.patches(waitProd.SysID))
	}
	if _, err := h.store.Get(t.Context(), "servicenow", waitProd.SysID); err == nil {
		t.Error("approval tier, awaiting approval: a store row was written")
	}
	for _, img := range []string{"pytorch", "go"} {
		for _, r := range h.cg.OrgRepos() {
			if r.GetName() == img {
				t.Errorf("%s was provisioned", img)
			}
		}
	}
	// Approved later: provisioned on the next pass.
	h.sn.Update(waitProd.SysID, func(r *snfake.RITM) { r.Approval = "approved" })
	h.pass(h.engine())
	if h.state(waitProd.SysID) != "3" {
		t.Errorf("after approval: state %s", h.state(waitProd.SysID))
	}
}

func TestPolicyJira(t *testing.T) {
	t.Parallel()
	for _, dep := range deployments {
		t.Run(dep, func(t *testing.T) {
			t.Parallel()
			h := newJiraHarness(t, dep, harnessOpts{engineOpts: withPolicy})
			h.jsrc = mustJiraAwaiting(t, h, `project = IMG AND status = Approved`, `project = IMG AND status = "Waiting for approval"`)
			env := func(v string) func(*jfake.Issue) {
				return func(i *jfake.Issue) { i.Fields[h.jf.FieldID("Environment")] = map[string]any{"value": v} }
			}
			deny := h.issue("pytorch", nil)
			autoDev := h.issue("node", func(i *jfake.Issue) { env("dev")(i); i.Status = "Waiting for approval" })
			waitProd := h.issue("go", func(i *jfake.Issue) { env("prod")(i); i.Status = "Waiting for approval" })
			h.pass(h.engine(h.jsrc))
			if s := h.status(deny.Key); s != "Rejected" || len(h.comments(deny.Key)) != 1 {
				t.Errorf("deny: %s, %d comments", s, len(h.comments(deny.Key)))
			}
			if c := h.comments(autoDev.Key); len(c) != 1 || !strings.Contains(c[0], "dev\\-auto") && !strings.Contains(c[0], "dev-auto") {
				t.Errorf("auto: comments %q", c)
			}
			if len(h.comments(waitProd.Key)) != 0 || h.status(waitProd.Key) != "Waiting for approval" {
				t.Errorf("approval tier, awaiting: touched")
			}
		})
	}
}

// Security tier on Jira: allowed when a JSM approver is in the security
// group, refused (closed with the reason) when none is.
func TestPolicySecurityJira(t *testing.T) {
	t.Parallel()
	for _, dep := range deployments {
		t.Run(dep, func(t *testing.T) {
			t.Parallel()
			h := newJiraHarness(t, dep, harnessOpts{engineOpts: withPolicy})
			sec := jfake.User{AccountID: "5b10ac8d82e05b22cc7d4e01", Name: "sam.sec", Key: "JIRAUSER10201", DisplayName: "Sam Security"}
			dev := jfake.User{AccountID: "5b10ac8d82e05b22cc7d4e02", Name: "dan.dev", Key: "JIRAUSER10202", DisplayName: "Dan Lead"}
			h.jf.AddGroupMember("Security Review", sec)
			allowed := h.issue("python-fips", nil)
			refused := h.issue("node-fips", nil)
			h.jf.SetApprovals(allowed.Key, jfake.Approval{ID: "1", Name: "Security", FinalDecision: "approved",
				Approvers: []jfake.ApproverDecision{{User: dev, Decision: "approved"}, {User: sec, Decision: "approved"}}})
			h.jf.SetApprovals(refused.Key, jfake.Approval{ID: "2", Name: "Manager", FinalDecision: "approved",
				Approvers: []jfake.ApproverDecision{{User: dev, Decision: "approved"}, {User: sec, Decision: "pending"}}})
			h.pass(h.engine())
			if c := h.comments(allowed.Key); h.status(allowed.Key) != "Done" || len(c) != 1 || !strings.Contains(c[0], "Sam Security") {
				t.Errorf("allowed: status %s comments %q", h.status(allowed.Key), c)
			}
			if c := h.comments(refused.Key); h.status(refused.Key) != "Rejected" || len(c) != 1 || !strings.Contains(c[0], "Security Review") {
				t.Errorf("refused: status %s comments %q", h.status(refused.Key), c)
			}
			for _, r := range h.cg.OrgRepos() {
				if r.GetName() == "node-fips" {
					t.Error("node-fips was provisioned without a security approval")
				}
			}
		})
	}
}

// Security tier on ServiceNow: allowed when an approver of the RITM is in
// the security group, refused when none is.
func TestPolicySecurityServiceNow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{engineOpts: withPolicy})
	sec, dev := snfake.UserSysID("sam.security"), snfake.UserSysID("dan.lead")
	h.sn.SetDisplayValue(sec, "Sam Security")
	h.sn.SetDisplayValue(dev, "Dan Lead")
	h.sn.AddGroupMember("Security Review", sec)
	allowed := h.ritm("python-fips", nil)
	refused := h.ritm("node-fips", nil)
	h.sn.AddApproval(allowed.SysID, dev, "approved")
	h.sn.AddApproval(allowed.SysID, sec, "approved")
	h.sn.AddApproval(refused.SysID, dev, "approved")
	h.sn.AddApproval(refused.SysID, sec, "rejected")
	h.pass(h.engine())
	if notes := h.notes(allowed.SysID); h.state(allowed.SysID) != "3" || len(notes) != 1 || !strings.Contains(notes[0], "Approved by: Sam Security") {
		t.Errorf("allowed: state %s notes %q", h.state(allowed.SysID), notes)
	}
	if notes := h.notes(refused.SysID); h.state(refused.SysID) != "4" || len(notes) != 1 || !strings.Contains(notes[0], "Security Review") {
		t.Errorf("refused: state %s notes %q", h.state(refused.SysID), notes)
	}
	for _, r := range h.cg.OrgRepos() {
		if r.GetName() == "node-fips" {
			t.Error("node-fips was provisioned without a security approval")
		}
	}
}
