package jira_test

import (
	"strings"
	"testing"

	"github.com/chainguard-dev/image-request-bridge/connectors/jira"
	jfake "github.com/chainguard-dev/image-request-bridge/internal/fake/jira"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// visibilities reports each comment of the issue as body's first line and
// its visibility.
func visibilities(f *jfake.Server, key string) []string {
	var out []string
	for _, c := range f.Comments(key) {
		first, _, _ := strings.Cut(c.Body, "\n")
		out = append(out, first+"="+c.Visibility())
	}
	return out
}

// reportAll writes a blocked note, then the result, as the engine does for
// a ticket blocked once and then served.
func reportAll(t *testing.T, src *jira.Source, f *jfake.Server, key string) {
	t.Helper()
	tk, err := src.Get(ctx(t), key)
	if err != nil {
		t.Fatal(err)
	}
	blocked := isync.Report{Outcome: isync.OutcomeBlocked, Marker: "bridge " + key + " blocked",
		Fields: []isync.Field{{Name: "Cause", Value: "chainguard:forbidden"}, {Name: "Detail", Value: "instance prod-bridge-1, tier auto"}}}
	if err := src.Report(ctx(t), tk, blocked); err != nil {
		t.Fatalf("blocked note: %v", err)
	}
	done := isync.Report{Outcome: isync.OutcomeProvisioned, Marker: "bridge " + key + " done",
		Fields: []isync.Field{{Name: "Result", Value: "Provisioned"}}}
	if err := src.Report(ctx(t), tk, done); err != nil {
		t.Fatalf("result: %v", err)
	}
	if cur, _ := f.Issue(key); cur.Status != "Done" {
		t.Fatalf("status %s", cur.Status)
	}
}

// On a Jira Service Management project, comments added over REST are public
// (shown on the portal and emailed to customers) unless marked internal: at
// the defaults the bridge's blocked note (posted alone) and result (carried
// by the transition) are internal; jira.comment_visibility: public makes
// them public; on a software project the property is harmless.
func TestCommentVisibility(t *testing.T) {
	for _, dep := range []string{jfake.Cloud, jfake.DataCenter} {
		t.Run(dep, func(t *testing.T) {
			f := jfake.New(jfake.WithDeployment(dep), jfake.WithProjectType("DEV", jfake.ProjectTypeSoftware))
			defer f.Close()
			img := map[string]any{f.FieldID("Image name"): "python"}
			a := f.AddIssue(jfake.Issue{Fields: img})
			b := f.AddIssue(jfake.Issue{Fields: img})
			dev := f.AddIssue(jfake.Issue{Project: "DEV", Fields: img})

			src := newSource(t, f, dep, func(o *jira.Options) { o.JQL = "project in (IMG, DEV) AND status = Approved" })
			reportAll(t, src, f, a.Key)
			if got, want := strings.Join(visibilities(f, a.Key), ","), "bridge "+a.Key+" blocked=internal,bridge "+a.Key+" done=internal"; got != want {
				t.Errorf("defaults: %s, want %s", got, want)
			}
			reportAll(t, src, f, dev.Key)
			if n := len(f.Comments(dev.Key)); n != 2 {
				t.Errorf("software project: %d comments", n)
			}

			public := newSource(t, f, dep, func(o *jira.Options) { o.CommentVisibility = jira.VisibilityPublic })
			reportAll(t, public, f, b.Key)
			if got, want := strings.Join(visibilities(f, b.Key), ","), "bridge "+b.Key+" blocked=public,bridge "+b.Key+" done=public"; got != want {
				t.Errorf("public: %s, want %s", got, want)
			}
		})
	}
}

// A result whose transition has no screen is a comment posted alone, also
// internal.
func TestCommentAloneIsInternal(t *testing.T) {
	w := jfake.DefaultWorkflow()
	for i := range w.Transitions {
		w.Transitions[i].Screen, w.Transitions[i].RequireResolution = false, false
	}
	f := jfake.New(jfake.WithWorkflow(w))
	defer f.Close()
	is := f.AddIssue(jfake.Issue{Fields: map[string]any{f.FieldID("Image name"): "python"}})
	src := newSource(t, f, jira.Cloud, nil)
	tk, err := src.Get(ctx(t), is.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Report(ctx(t), tk, isync.Report{Outcome: isync.OutcomeRejected, Marker: "m", Fields: []isync.Field{{Name: "Result", Value: "Rejected"}}}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(visibilities(f, is.Key), ","); got != "m=internal" {
		t.Errorf("comments %s", got)
	}
}

// authOf names the credentials a request carried.
func authOf(r jfake.Request) string {
	h := r.Header.Get("Authorization")
	scheme, _, _ := strings.Cut(h, " ")
	if h == "" {
		return "none"
	}
	return strings.ToLower(scheme)
}

// The credentials follow the deployment: on Data Center the token is a
// personal access token sent as Bearer even with an email filled in (as
// the example configuration has it); on Cloud, email + API token with basic
// auth; with deployment auto, serverInfo (asked without credentials)
// decides. jira.auth overrides it.
func TestAuthFollowsDeployment(t *testing.T) {
	for _, c := range []struct {
		name, fake, deployment, auth, token string
		fakeOpts                            []jfake.Option
		want                                string // schemes of the requests after serverInfo
	}{
		{"datacenter with email", jfake.DataCenter, jira.DataCenter, "", jfake.DefaultPAT, nil, "bearer"},
		{"auto on datacenter with email", jfake.DataCenter, jira.Auto, "", jfake.DefaultPAT, nil, "bearer"},
		{"cloud", jfake.Cloud, jira.Cloud, "", jfake.DefaultAPIToken, nil, "basic"},
		{"auto on cloud", jfake.Cloud, jira.Auto, "", jfake.DefaultAPIToken, nil, "basic"},
		{"datacenter taking basic auth", jfake.DataCenter, jira.DataCenter, jira.AuthBasic, "s3cret",
			[]jfake.Option{jfake.WithBasicAuth(jfake.DefaultEmail, "s3cret")}, "basic"},
		// serverInfo refused without credentials: not an Atlassian host, so
		// Data Center.
		{"auto on datacenter without anonymous access", jfake.DataCenter, jira.Auto, "", jfake.DefaultPAT,
			[]jfake.Option{jfake.WithoutAnonymousAccess()}, "bearer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := jfake.New(append([]jfake.Option{jfake.WithDeployment(c.fake)}, c.fakeOpts...)...)
			defer f.Close()
			f.AddIssue(jfake.Issue{Fields: map[string]any{f.FieldID("Image name"): "python"}})
			src := newSource(t, f, c.deployment, func(o *jira.Options) {
				o.Email, o.APIToken, o.Auth = jfake.DefaultEmail, secret.New(c.token), c.auth
			})
			if err := src.Check(ctx(t)); err != nil {
				t.Fatalf("Check: %v", err)
			}
			got, err := list(src, ctx(t))
			if err != nil || len(got) != 1 {
				t.Fatalf("%v %+v", err, got)
			}
			for i, r := range f.Requests() {
				want := c.want
				status := 200
				if i == 0 && c.deployment == jira.Auto {
					want = "none" // serverInfo, anonymously
					if len(c.fakeOpts) > 0 {
						status = 401
					}
				}
				if a := authOf(r); a != want || r.Status != status {
					t.Errorf("%s %s: %s credentials, status %d; want %s, 200", r.Method, r.Path, a, r.Status, want)
				}
			}
		})
	}
}

// A refused token is blocked with a reason naming the credentials sent and
// the fix; a deployment that is not the instance's is named as the fix.
func TestUnauthenticatedNamesTheFix(t *testing.T) {
	for _, c := range []struct {
		name, fake, deployment, auth string
		want                         []string
		cause                        string
	}{
		{"datacenter, wrong PAT", jfake.DataCenter, jira.DataCenter, "",
			[]string{"Jira Data Center refused the personal access token sent as Bearer", "jira.api_token", "jira.auth: basic with jira.email"}, "jira:unauthenticated"},
		{"auto on datacenter, wrong PAT", jfake.DataCenter, jira.Auto, "",
			[]string{"personal access token sent as Bearer", "jira.auth: basic"}, "jira:unauthenticated"},
		{"cloud, wrong token", jfake.Cloud, jira.Cloud, "",
			[]string{"Jira Cloud refused the email and API token sent as basic auth", "jira.email", "jira.api_token"}, "jira:unauthenticated"},
		{"datacenter basic, refused", jfake.DataCenter, jira.DataCenter, jira.AuthBasic,
			[]string{"basic auth (jira.auth: basic)", "remove jira.auth"}, "jira:unauthenticated"},
		{"datacenter configured on cloud", jfake.Cloud, jira.DataCenter, "",
			[]string{"is Jira Cloud, but jira.deployment is datacenter", "Bearer", "set jira.deployment: cloud"}, "jira:config"},
		{"cloud configured on datacenter", jfake.DataCenter, jira.Cloud, "",
			[]string{"is Jira Data Center, but jira.deployment is cloud", "basic auth", "set jira.deployment: datacenter"}, "jira:config"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := jfake.New(jfake.WithDeployment(c.fake))
			defer f.Close()
			src := newSource(t, f, c.deployment, func(o *jira.Options) {
				o.Email, o.APIToken, o.Auth = jfake.DefaultEmail, secret.New("wrong"), c.auth
			})
			for _, call := range []func() error{
				func() error { return src.Check(ctx(t)) },
				func() error { _, err := list(src, ctx(t)); return err },
			} {
				err := call()
				if isync.ClassOf(err) != isync.ClassBlocked || isync.CauseOf(err) != c.cause {
					t.Fatalf("err = %v (cause %q), want blocked %s", err, isync.CauseOf(err), c.cause)
				}
				for _, w := range c.want {
					if !strings.Contains(isync.ReasonOf(err), w) {
						t.Errorf("reason %q does not say %q", isync.ReasonOf(err), w)
					}
				}
				if strings.Contains(err.Error(), "wrong") {
					t.Errorf("the token is printed: %v", err)
				}
			}
		})
	}
}

// The section's new keys: defaults, allowed values, and email required
// only when basic auth is sent.
func TestConfigAuthAndVisibility(t *testing.T) {
	problems := func(mod func(*jira.Config)) string {
		c := &jira.Config{Enabled: true, URL: "https://jira.example.com", JQL: "project = IMG",
			APIToken: secret.New("tok"), Fields: jira.Fields{Image: "Image name", Justification: "Justification"}}
		mod(c)
		c.Defaults()
		var p source.Problems
		c.Validate(&p)
		var out []string
		for _, pr := range p.List() {
			out = append(out, pr.Path+": "+pr.Msg)
		}
		return strings.Join(out, "; ")
	}
	for _, c := range []struct {
		name string
		mod  func(*jira.Config)
		want string // "" = valid
	}{
		{"datacenter with the example's email", func(c *jira.Config) { c.Deployment, c.Email = jira.DataCenter, "image-bridge@example.com" }, ""},
		{"datacenter without email", func(c *jira.Config) { c.Deployment = jira.DataCenter }, ""},
		{"basic without email", func(c *jira.Config) { c.Deployment, c.Auth = jira.DataCenter, jira.AuthBasic }, "email: required with auth: basic"},
		{"cloud without email", func(c *jira.Config) { c.Deployment = jira.Cloud }, "email: required on Jira Cloud"},
		{"unknown auth", func(c *jira.Config) { c.Auth = "token" }, "auth:"},
		{"unknown visibility", func(c *jira.Config) { c.CommentVisibility = "private" }, "comment_visibility:"},
	} {
		got := problems(c.mod)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: problems %q, want %q", c.name, got, c.want)
		}
	}
	c := &jira.Config{}
	c.Defaults()
	if c.Auth != jira.Auto || c.CommentVisibility != jira.VisibilityInternal {
		t.Errorf("defaults: auth %q, comment_visibility %q", c.Auth, c.CommentVisibility)
	}
}
