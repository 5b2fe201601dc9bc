package sync_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chainguard-dev/image-request-bridge/connectors/jira"
	jfake "github.com/chainguard-dev/image-request-bridge/internal/fake/jira"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// jiraHarness adds a Jira fake and the real Jira source (go-jira over
// retryablehttp) to the harness.
type jiraHarness struct {
	*harness
	jf   *jfake.Server
	jsrc *jira.Source
}

func newJiraHarness(t *testing.T, deployment string, o harnessOpts, jopts ...jfake.Option) *jiraHarness {
	t.Helper()
	h := newHarness(t, o)
	jf := jfake.New(append([]jfake.Option{jfake.WithDeployment(deployment)}, jopts...)...)
	t.Cleanup(jf.Close)
	jo := jira.Options{
		URL:                jf.URL(),
		Deployment:         deployment,
		JQL:                `project = IMG AND status = Approved ORDER BY key`,
		ImageField:         "Image name",
		JustificationField: "Justification",
		ExtraFields:        []string{"Environment"},
		PageSize:           o.pageSize,
		Timeout:            5 * time.Second,
		RetryWaitMax:       50 * time.Millisecond,
	}
	if deployment == jfake.Cloud {
		jo.Email, jo.APIToken = jfake.DefaultEmail, secret.New(jfake.DefaultAPIToken)
	} else {
		jo.APIToken = secret.New(jfake.DefaultPAT)
	}
	src, err := jira.New(jo)
	if err != nil {
		t.Fatal(err)
	}
	return &jiraHarness{harness: h, jf: jf, jsrc: src}
}

func (h *jiraHarness) engine(sources ...isync.Source) *isync.Engine {
	if len(sources) == 0 {
		sources = []isync.Source{h.jsrc}
	}
	o := isync.Options{
		Instance: "test-bridge", Version: "test", Concurrency: 4,
		BackoffMin: time.Minute, BackoffMax: 10 * time.Minute,
		Now: h.clock.Now, Logger: testLogger(h.t),
	}
	if h.opts.engineOpts != nil {
		h.opts.engineOpts(&o)
	}
	return isync.New(h.store, h.prov, sources, o)
}

func (h *jiraHarness) issue(image string, mod func(*jfake.Issue)) jfake.Issue {
	i := jfake.Issue{Summary: "Image request", Fields: map[string]any{
		h.jf.FieldID("Image name"):    image,
		h.jf.FieldID("Justification"): "build pipeline",
		h.jf.FieldID("Environment"):   map[string]any{"value": "dev"},
	}}
	if mod != nil {
		mod(&i)
	}
	return h.jf.AddIssue(i)
}

func (h *jiraHarness) comments(key string) []string {
	var out []string
	for _, c := range h.jf.Comments(key) {
		out = append(out, c.Body)
	}
	return out
}

func (h *jiraHarness) status(key string) string {
	i, ok := h.jf.Issue(key)
	if !ok {
		h.t.Fatalf("issue %s vanished", key)
	}
	return i.Status
}

func (h *jiraHarness) jiraWrites() int {
	n := 0
	for _, r := range h.jf.Requests() {
		if r.Method != "GET" {
			n++
		}
	}
	return n
}

var deployments = []string{jfake.Cloud, jfake.DataCenter}

func TestJiraOutcomes(t *testing.T) {
	t.Parallel()
	for _, dep := range deployments {
		t.Run(dep, func(t *testing.T) {
			t.Parallel()
			h := newJiraHarness(t, dep, harnessOpts{})
			h.cg.AddOrgRepo("node")
			valid := h.issue("python:latest-dev", nil)
			present := h.issue("node", nil)
			unknown := h.issue("pythn", nil)
			invalid := h.issue("ghcr.io/acme/python", nil)
			missing := h.issue("", func(i *jfake.Issue) { i.Fields[h.jf.FieldID("Image name")] = nil })
			waiting := h.issue("python", func(i *jfake.Issue) { i.Status = "Waiting for approval" })
			other := h.issue("python", func(i *jfake.Issue) { i.Project = "OPS" })

			h.pass(h.engine())

			if s := h.status(valid.Key); s != "Done" {
				t.Errorf("valid: status %q, want Done", s)
			}
			if i, _ := h.jf.Issue(valid.Key); i.Resolution == "" {
				t.Error("valid: the transition requires a resolution and none was set")
			}
			c := h.comments(valid.Key)
			if len(c) != 1 || !strings.Contains(c[0], "cgr.dev/"+orgName+"/python:latest-dev") {
				t.Errorf("valid: comments %q", c)
			}
			if s := h.status(present.Key); s != "Done" || len(h.comments(present.Key)) != 1 || !strings.Contains(h.comments(present.Key)[0], "Already present") {
				t.Errorf("already present: status %q comments %q", s, h.comments(present.Key))
			}
			for name, key := range map[string]string{"unknown": unknown.Key, "invalid": invalid.Key, "missing field": missing.Key} {
				if s := h.status(key); s != "Rejected" {
					t.Errorf("%s: status %q, want Rejected", name, s)
				}
				if c := h.comments(key); len(c) != 1 {
					t.Errorf("%s: %d comments", name, len(c))
				}
			}
			if c := h.comments(unknown.Key); len(c) == 1 && !strings.Contains(c[0], "did you mean") {
				t.Errorf("unknown: no suggestion in %q", c[0])
			}
			if c := h.comments(missing.Key); len(c) == 1 && !strings.Contains(c[0], "Image name") {
				t.Errorf("missing field: comment does not name the field: %q", c[0])
			}
			for _, key := range []string{waiting.Key, other.Key} {
				for _, r := range h.jf.Requests() {
					if strings.Contains(r.Path, "/"+key) || r.Method != "GET" && strings.Contains(r.Path, issueIDOf(h.jf, key)) {
						t.Errorf("%s was touched: %s %s", key, r.Method, r.Path)
					}
				}
				if len(h.comments(key)) != 0 {
					t.Errorf("%s got a comment", key)
				}
			}
			if got := len(h.cg.OrgRepos()); got != 2 {
				t.Errorf("org repos = %d, want 2", got)
			}

			jiraW, cgW := h.jiraWrites(), h.cgWrites()
			h.pass(h.engine())
			if a, b := h.jiraWrites(), h.cgWrites(); a != jiraW || b != cgW {
				t.Errorf("second pass wrote: jira %d→%d, chainguard %d→%d", jiraW, a, cgW, b)
			}
		})
	}
}

func issueIDOf(f *jfake.Server, key string) string {
	i, _ := f.Issue(key)
	return "/issue/" + i.ID + "/"
}

func (h *harness) cgWrites() int {
	return h.cg.CountCalls("CreateRepo") + h.cg.CountCalls("AddEntitlementImages")
}

// 250 issues over pages of 20, leaving the JQL result as the bridge
// transitions them: each processed once; a second pass writes nothing.
func TestJiraPagingBacklog(t *testing.T) {
	t.Parallel()
	for _, dep := range deployments {
		t.Run(dep, func(t *testing.T) {
			t.Parallel()
			h := newJiraHarness(t, dep, harnessOpts{pageSize: 20, concurrency: 8})
			images := []string{"python", "node", "go", "nginx", "redis"}
			var keys []string
			for i := 0; i < 250; i++ {
				keys = append(keys, h.issue(images[i%len(images)], nil).Key)
			}
			st := h.pass(h.engine())
			if st.Listed != 250 {
				t.Errorf("listed %d, want 250", st.Listed)
			}
			for _, k := range keys {
				if c := h.comments(k); len(c) != 1 {
					t.Fatalf("%s: %d comments, want 1", k, len(c))
				}
				if s := h.status(k); s != "Done" {
					t.Fatalf("%s: status %q", k, s)
				}
			}
			// Transition lists are cached per workflow and status: one GET
			// per worker at most, not one per issue.
			gets := 0
			for _, r := range h.jf.Requests() {
				if r.Method == "GET" && strings.HasSuffix(r.Path, "/transitions") {
					gets++
				}
			}
			if gets > 8 {
				t.Errorf("%d transition lists read for 250 issues of one workflow", gets)
			}
			jiraW, cgW := h.jiraWrites(), h.cgWrites()
			h.pass(h.engine())
			if a, b := h.jiraWrites(), h.cgWrites(); a != jiraW || b != cgW {
				t.Errorf("second pass wrote: jira %d→%d, chainguard %d→%d", jiraW, a, cgW, b)
			}
		})
	}
}

func TestJiraPermissionDeniedCommentsOnce(t *testing.T) {
	t.Parallel()
	for _, dep := range deployments {
		t.Run(dep, func(t *testing.T) {
			t.Parallel()
			h := newJiraHarness(t, dep, harnessOpts{})
			h.cg.DenyCapability("CreateRepo", true)
			is := h.issue("python", nil)
			for i := 0; i < 4; i++ {
				h.pass(h.engine())
				h.clock.Add(time.Hour)
			}
			if s := h.status(is.Key); s != "Approved" {
				t.Fatalf("status %q, want Approved (open)", s)
			}
			if c := h.comments(is.Key); len(c) != 1 || !strings.Contains(c[0], "Blocked") {
				t.Fatalf("comments %q", c)
			}
			h.cg.DenyCapability("CreateRepo", false)
			h.clock.Add(time.Hour)
			h.pass(h.engine())
			if s := h.status(is.Key); s != "Done" || len(h.comments(is.Key)) != 2 {
				t.Fatalf("after fix: status %q, %d comments", s, len(h.comments(is.Key)))
			}
		})
	}
}

// Issues in a status whose transitions have other ids and no screen: the
// done transition is found by its target status, and the comment is posted
// separately, once, guarded by its marker.
func TestJiraNonDefaultWorkflow(t *testing.T) {
	t.Parallel()
	for _, dep := range deployments {
		t.Run(dep, func(t *testing.T) {
			t.Parallel()
			h := newJiraHarness(t, dep, harnessOpts{})
			h.jsrc = mustJira(t, h, `project = IMG AND status in (Approved, "In Progress")`)
			a := h.issue("python", func(i *jfake.Issue) { i.Status = "In Progress" })
			b := h.issue("node", nil)
			// The comment lands, the transition's answer is lost once.
			h.jf.InjectFault(jfake.Fault{Method: "POST", PathContains: "/" + a.ID + "/transitions", Status: 502})
			h.pass(h.engine())
			h.clock.Add(time.Hour)
			h.pass(h.engine())
			for _, k := range []string{a.Key, b.Key} {
				if s := h.status(k); s != "Done" {
					t.Errorf("%s: status %q, want Done", k, s)
				}
				if c := h.comments(k); len(c) != 1 {
					t.Errorf("%s: %d comments, want 1: %q", k, len(c), c)
				}
			}
		})
	}
}

func mustJira(t *testing.T, h *jiraHarness, jql string) *jira.Source {
	return mustJiraAwaiting(t, h, jql, "")
}

func mustJiraAwaiting(t *testing.T, h *jiraHarness, jql, awaiting string) *jira.Source {
	t.Helper()
	o := jira.Options{URL: h.jf.URL(), Deployment: h.jf.Deployment(), JQL: jql, ImageField: "Image name", JustificationField: "Justification",
		ExtraFields: []string{"Environment"}, AwaitingJQL: awaiting, ApproveTransition: "Approve", Timeout: 5 * time.Second, RetryWaitMax: 50 * time.Millisecond}
	if h.jf.Deployment() == jfake.Cloud {
		o.Email, o.APIToken = jfake.DefaultEmail, secret.New(jfake.DefaultAPIToken)
	} else {
		o.APIToken = secret.New(jfake.DefaultPAT)
	}
	s, err := jira.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A justification far over Jira's 32,767-character limit still gives one
// comment, within the limit, with the markup escaped.
func TestJiraLongAndHostileText(t *testing.T) {
	t.Parallel()
	h := newJiraHarness(t, jfake.Cloud, harnessOpts{})
	is := h.issue("python", func(i *jfake.Issue) {
		i.Fields[h.jf.FieldID("Justification")] = "{html}<script>alert(1)</script>{html} [click|javascript:alert(1)] [~accountid:123] " + strings.Repeat("x", 40000)
	})
	h.pass(h.engine())
	c := h.comments(is.Key)
	if len(c) != 1 {
		t.Fatalf("%d comments", len(c))
	}
	if len(c[0]) > 32767 {
		t.Errorf("comment has %d characters", len(c[0]))
	}
	for _, raw := range []string{"{html}", "[click|", "[~accountid"} {
		if strings.Contains(c[0], raw) {
			t.Errorf("comment carries raw markup %q", raw)
		}
	}
}

// Both sources in one engine: each ticket handled by its own source.
func TestBothSourcesOnePass(t *testing.T) {
	t.Parallel()
	h := newJiraHarness(t, jfake.Cloud, harnessOpts{})
	r := h.ritm("python", nil)
	is := h.issue("node", nil)
	h.pass(h.engine(h.src, h.jsrc))
	if h.state(r.SysID) != "3" || len(h.notes(r.SysID)) != 1 {
		t.Errorf("RITM: state %s notes %d", h.state(r.SysID), len(h.notes(r.SysID)))
	}
	if h.status(is.Key) != "Done" || len(h.comments(is.Key)) != 1 {
		t.Errorf("issue: status %s comments %d", h.status(is.Key), len(h.comments(is.Key)))
	}
}
