package jira_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chainguard-dev/image-request-bridge/connectors/jira"
	jfake "github.com/chainguard-dev/image-request-bridge/internal/fake/jira"
	"github.com/chainguard-dev/image-request-bridge/internal/ratelimit"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

func newSource(t *testing.T, f *jfake.Server, deployment string, mod func(*jira.Options)) *jira.Source {
	t.Helper()
	o := jira.Options{URL: f.URL(), Deployment: deployment, JQL: "project = IMG AND status = Approved",
		ImageField: "Image name", JustificationField: "Justification", PageSize: 10,
		Timeout: 3 * time.Second, RetryWaitMax: 2 * time.Second}
	if f.Deployment() == jfake.Cloud {
		o.Email, o.APIToken = jfake.DefaultEmail, secret.New(jfake.DefaultAPIToken)
	} else {
		o.APIToken = secret.New(jfake.DefaultPAT)
	}
	if mod != nil {
		mod(&o)
	}
	s, err := jira.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func list(s *jira.Source, c context.Context) ([]isync.Ticket, error) {
	var out []isync.Ticket
	err := s.Approved(c, func(t isync.Ticket) error { out = append(out, t); return nil })
	return out, err
}

// The wrong deployment is a clear configuration error, not a retry loop.
func TestWrongDeploymentIsAClearError(t *testing.T) {
	cloud := jfake.New(jfake.WithDeployment(jfake.Cloud))
	defer cloud.Close()
	// Basic auth, so that the credentials pass and the search is Cloud's
	// 410 (TestUnauthenticatedNamesTheFix: with the Data Center default,
	// a PAT, the 401 names the deployment).
	src := newSource(t, cloud, jira.DataCenter, func(o *jira.Options) {
		o.Email, o.APIToken, o.Auth = jfake.DefaultEmail, secret.New(jfake.DefaultAPIToken), jira.AuthBasic
	})
	_, err := list(src, ctx(t))
	if err == nil || !strings.Contains(err.Error(), "deployment: cloud") || isync.ClassOf(err) != isync.ClassBlocked {
		t.Fatalf("datacenter mode on Cloud: err = %v", err)
	}
	gets := 0
	for _, r := range cloud.Requests() {
		if strings.HasSuffix(r.Path, "/search") {
			gets++
		}
	}
	if gets != 1 {
		t.Errorf("410 was retried: %d searches", gets)
	}

	dc := jfake.New(jfake.WithDeployment(jfake.DataCenter))
	defer dc.Close()
	src = newSource(t, dc, jira.Cloud, func(o *jira.Options) { o.Email = "" })
	if _, err := list(src, ctx(t)); err == nil || !strings.Contains(err.Error(), "deployment: datacenter") {
		t.Fatalf("cloud mode on Data Center: err = %v", err)
	}
}

func TestAutoDeployment(t *testing.T) {
	for _, dep := range []string{jfake.Cloud, jfake.DataCenter} {
		f := jfake.New(jfake.WithDeployment(dep))
		f.AddIssue(jfake.Issue{Fields: map[string]any{f.FieldID("Image name"): "python"}})
		src := newSource(t, f, jira.Auto, nil)
		got, err := list(src, ctx(t))
		if err != nil || len(got) != 1 || got[0].Image != "python" {
			t.Errorf("%s: %v %+v", dep, err, got)
		}
		f.Close()
	}
}

// Fields by name or by id; select and unset values read correctly; an
// ambiguous or unknown name is a clear error.
func TestFieldsByNameOrID(t *testing.T) {
	f := jfake.New(jfake.WithCustomField("Owner team", "customfield_10060", "select"))
	defer f.Close()
	f.AddIssue(jfake.Issue{Fields: map[string]any{
		"customfield_10050": "node:20", "customfield_10060": map[string]any{"value": "web"}, "customfield_10051": nil}})
	src := newSource(t, f, jira.Cloud, func(o *jira.Options) {
		o.ImageField, o.JustificationField, o.ExtraFields = "customfield_10050", "justification", []string{"Owner team"}
	})
	got, err := list(src, ctx(t))
	if err != nil || len(got) != 1 {
		t.Fatalf("%v %+v", err, got)
	}
	if got[0].Image != "node:20" || got[0].Justification != "" || got[0].Fields["Owner team"] != "web" {
		t.Errorf("decoded %+v", got[0])
	}
	bad := newSource(t, f, jira.Cloud, func(o *jira.Options) { o.ImageField = "Imagename" })
	if _, err := list(bad, ctx(t)); err == nil || !strings.Contains(err.Error(), "Imagename") {
		t.Errorf("unknown field: err = %v", err)
	}
}

// Get re-reads an issue by id or key; the JQL decides whether it is open; a
// value that could inject JQL is refused before any request.
func TestGet(t *testing.T) {
	f := jfake.New()
	defer f.Close()
	a := f.AddIssue(jfake.Issue{Fields: map[string]any{f.FieldID("Image name"): "python"}})
	w := f.AddIssue(jfake.Issue{Status: "Waiting for approval", Fields: map[string]any{f.FieldID("Image name"): "python"}})
	d := f.AddIssue(jfake.Issue{Status: "Done", Fields: map[string]any{f.FieldID("Image name"): "python"}})
	src := newSource(t, f, jira.Cloud, nil)
	for _, c := range []struct {
		id           string
		open, closed bool
	}{{a.ID, true, false}, {a.Key, true, false}, {w.ID, false, false}, {d.Key, false, true}} {
		tk, err := src.Get(ctx(t), c.id)
		if err != nil || tk.Open != c.open || tk.Closed != c.closed {
			t.Errorf("Get(%s) = open %v closed %v err %v", c.id, tk.Open, tk.Closed, err)
		}
	}
	f.ResetRequests()
	for _, id := range []string{`IMG-1" OR project = X`, "1 OR 1=1", "", "img-1"} {
		if _, err := src.Get(ctx(t), id); err == nil {
			t.Errorf("Get(%q) accepted", id)
		}
	}
	if n := len(f.Requests()); n != 0 {
		t.Errorf("%d requests for refused ids", n)
	}
}

// A transition that does not exist from the issue's status blocks with the
// stable cause jira:transition_missing naming what is available; the result
// comment is posted alone, once however often the report is retried, so that
// the requester learns the image exists.
func TestMissingTransitionIsBlocked(t *testing.T) {
	f := jfake.New()
	defer f.Close()
	is := f.AddIssue(jfake.Issue{Fields: map[string]any{f.FieldID("Image name"): "python"}})
	src := newSource(t, f, jira.Cloud, func(o *jira.Options) { o.DoneTransition = "Ship it" })
	tk, err := src.Get(ctx(t), is.ID)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		err = src.Report(ctx(t), tk, isync.Report{Outcome: isync.OutcomeProvisioned, Marker: "m", Fields: []isync.Field{{Name: "Result", Value: "ok"}}})
		if isync.ClassOf(err) != isync.ClassBlocked || isync.CauseOf(err) != "jira:transition_missing" ||
			!strings.Contains(err.Error(), "Ship it") || !strings.Contains(err.Error(), "Done") {
			t.Fatalf("err = %v (cause %q)", err, isync.CauseOf(err))
		}
	}
	if n := len(f.Comments(is.Key)); n != 1 {
		t.Errorf("%d comments, want the result comment once", n)
	}
}

// A transition refused with 400 because of a field its screen requires
// blocks with a cause naming the field and a reason naming the field and the
// transition; the comment is posted alone, once; once the workflow is fixed
// the retried transition goes through without a second comment, also from a
// new process (nothing of the first attempt is kept in memory).
func TestRequiredFieldOnTransitionIsBlocked(t *testing.T) {
	f := jfake.New()
	defer f.Close()
	is := f.AddIssue(jfake.Issue{Fields: map[string]any{f.FieldID("Image name"): "python"}})
	src := newSource(t, f, jira.Cloud, nil)
	tk, err := src.Get(ctx(t), is.ID)
	if err != nil {
		t.Fatal(err)
	}
	rep := isync.Report{Outcome: isync.OutcomeProvisioned, Marker: "m", Fields: []isync.Field{{Name: "Result", Value: "ok"}}}
	f.InjectFault(jfake.Fault{Method: "POST", PathContains: "/transitions", Status: 400,
		Body: `{"errorMessages":[],"errors":{"customfield_10070":"Team is required."}}`, Times: 100})
	for i := range 2 {
		rep.Retried = i > 0
		err = src.Report(ctx(t), tk, rep)
		if isync.ClassOf(err) != isync.ClassBlocked || isync.CauseOf(err) != "jira:transition_field:customfield_10070" {
			t.Fatalf("err = %v (cause %q), want blocked jira:transition_field:customfield_10070", err, isync.CauseOf(err))
		}
		if reason := isync.ReasonOf(err); !strings.Contains(reason, "Team is required.") || !strings.Contains(reason, `"Done"`) {
			t.Errorf("reason %q does not name the field and the transition", reason)
		}
	}
	if n := len(f.Comments(is.Key)); n != 1 {
		t.Fatalf("%d comments, want the result comment once", n)
	}
	posts := 0
	for _, q := range f.Requests() {
		if q.Method == "POST" && strings.HasSuffix(q.Path, "/transitions") {
			posts++
		}
	}
	if posts != 2 {
		t.Errorf("%d transition POSTs for 2 attempts: a field error is not a stale transition list, send it once per attempt", posts)
	}
	f.ClearFaults()
	// The engine retries a write-back it drives from its record, after a
	// restart too: a new Source, with Retried set.
	restarted := newSource(t, f, jira.Cloud, nil)
	rep.Retried = true
	if err := restarted.Report(ctx(t), tk, rep); err != nil {
		t.Fatalf("after the fix: %v", err)
	}
	if cur, _ := f.Issue(is.Key); cur.Status != "Done" || len(f.Comments(is.Key)) != 1 {
		t.Fatalf("status %s, %d comments; want Done and 1", cur.Status, len(f.Comments(is.Key)))
	}
}

// 401 means the same on every connector: blocked, cause
// "<source>:unauthenticated".
func TestUnauthenticatedIsBlocked(t *testing.T) {
	f := jfake.New()
	defer f.Close()
	src := newSource(t, f, jira.Cloud, nil)
	f.InjectFault(jfake.Fault{Status: 401, Times: 100})
	_, err := list(src, ctx(t))
	if isync.ClassOf(err) != isync.ClassBlocked || isync.CauseOf(err) != "jira:unauthenticated" {
		t.Fatalf("err = %v (cause %q), want blocked jira:unauthenticated", err, isync.CauseOf(err))
	}
}

// A 429 with a short Retry-After is waited in place and the listing goes
// through; a long one is never slept in place: it pauses Jira and ends the
// call at once, and later calls fail at once until the pause is over.
func TestRateLimit(t *testing.T) {
	f := jfake.New()
	defer f.Close()
	f.AddIssue(jfake.Issue{Fields: map[string]any{f.FieldID("Image name"): "python"}})
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	clk := ratelimit.NewVirtualClock(t0)
	lim := ratelimit.New(0, 1, 0, ratelimit.WithClock(clk), ratelimit.WithName(jira.Name))
	src := newSource(t, f, jira.Cloud, func(o *jira.Options) { o.RetryWaitMax = 0; o.Limiter = lim })
	// An hour's deadline, longer than any Retry-After here: only the retry
	// policy, not the deadline, may keep a call from sleeping one out.
	long, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	f.InjectFault(jfake.Fault{PathContains: "/search/jql", Status: 429, RetryAfter: 1})
	if got, err := list(src, long); err != nil || len(got) != 1 {
		t.Fatalf("%v %d", err, len(got))
	}
	if clk.Now().Sub(t0) < time.Second {
		t.Error("Retry-After not honoured")
	}
	f.InjectFault(jfake.Fault{PathContains: "/search/jql", Status: 503, RetryAfter: 600, Times: 10})
	before := clk.Now()
	if _, err := list(src, long); err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "paused until") {
		t.Fatalf("long Retry-After: err = %v", err)
	}
	if clk.Now() != before || !lim.PausedUntil().After(before.Add(time.Minute)) {
		t.Fatalf("waited %s in place; paused until %s", clk.Now().Sub(before), lim.PausedUntil())
	}
	var pe *ratelimit.PausedError
	if _, err := list(src, long); !errors.As(err, &pe) {
		t.Fatalf("during the pause: err = %v", err)
	}
	clk.Advance(lim.PausedUntil().Sub(clk.Now()))
	f.ClearFaults()
	if got, err := list(src, long); err != nil || len(got) != 1 {
		t.Fatalf("after the pause: %v %d", err, len(got))
	}
}

func TestHTMLAnswer(t *testing.T) {
	f := jfake.New()
	defer f.Close()
	src := newSource(t, f, jira.Cloud, func(o *jira.Options) { o.RetryMax = -1 })
	f.InjectFault(jfake.Fault{HTML: true, Times: 10})
	_, err := list(src, ctx(t))
	if err == nil || !strings.Contains(err.Error(), "HTML") {
		t.Fatalf("err = %v", err)
	}
}

// An HTML page with status 200 in answer to a write (a proxy, a maintenance
// page) is not a success: the write did not reach Jira.
func TestHTMLAnswerToAWriteIsNotSuccess(t *testing.T) {
	f := jfake.New()
	defer f.Close()
	is := f.AddIssue(jfake.Issue{Fields: map[string]any{f.FieldID("Image name"): "python"}})
	src := newSource(t, f, jira.Cloud, nil)
	tk, err := src.Get(ctx(t), is.ID)
	if err != nil {
		t.Fatal(err)
	}
	f.InjectFault(jfake.Fault{Method: "POST", PathContains: "/transitions", HTML: true})
	err = src.Report(ctx(t), tk, isync.Report{Outcome: isync.OutcomeProvisioned, Marker: "m", Fields: []isync.Field{{Name: "Result", Value: "ok"}}})
	if err == nil {
		t.Fatal("an HTML answer to the transition was taken for success")
	}
	if cur, _ := f.Issue(is.Key); cur.Status != "Approved" || len(f.Comments(is.Key)) != 0 {
		t.Fatalf("status %s, %d comments", cur.Status, len(f.Comments(is.Key)))
	}
}

// transitionReads counts the GETs of transition lists.
func transitionReads(f *jfake.Server) int {
	n := 0
	for _, r := range f.Requests() {
		if r.Method == "GET" && strings.HasSuffix(r.Path, "/transitions") {
			n++
		}
	}
	return n
}

// A backlog's first issues of one workflow and status share one read of its
// transitions: the listing starts it (prefetch) and the reports wait for it,
// instead of each report reading the list.
func TestTransitionListReadOncePerWorkflow(t *testing.T) {
	for _, deployment := range []string{jira.Cloud, jira.DataCenter} {
		t.Run(deployment, func(t *testing.T) {
			f := jfake.New(jfake.WithDeployment(deployment), jfake.WithLatency(20*time.Millisecond))
			defer f.Close()
			for range 16 {
				f.AddIssue(jfake.Issue{Status: "Approved", Fields: map[string]any{f.FieldID("Image name"): "python"}})
			}
			src := newSource(t, f, deployment, func(o *jira.Options) { o.PageSize = 50 })
			tickets, err := list(src, ctx(t))
			if err != nil || len(tickets) != 16 {
				t.Fatalf("listed %d, %v", len(tickets), err)
			}
			errs := make(chan error, len(tickets))
			for _, tk := range tickets {
				go func() {
					errs <- src.Report(ctx(t), tk, isync.Report{Outcome: isync.OutcomeProvisioned, Marker: "m-" + tk.ID,
						Fields: []isync.Field{{Name: "Result", Value: "ok"}}})
				}()
			}
			for range tickets {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			if n := transitionReads(f); n != 1 {
				t.Errorf("%d reads of the transition list for 16 issues of one workflow and status, want 1", n)
			}
		})
	}
}

// A report joining a read of the transitions started by the listing (a
// prefetch, bounded by its own 30 s) gives up when its own context ends: a
// hung read does not hold the write-back past its deadline or shutdown.
func TestReportJoiningHungTransitionReadEndsWithContext(t *testing.T) {
	f := jfake.New(jfake.WithDeployment(jfake.Cloud))
	defer f.Close()
	f.AddIssue(jfake.Issue{Status: "Approved", Fields: map[string]any{f.FieldID("Image name"): "python"}})
	f.InjectFault(jfake.Fault{Method: "GET", PathContains: "/transitions", Delay: time.Hour, Times: 1})
	src := newSource(t, f, jira.Cloud, func(o *jira.Options) { o.Timeout = time.Hour })
	tickets, err := list(src, ctx(t))
	if err != nil || len(tickets) != 1 {
		t.Fatalf("listed %d, %v", len(tickets), err)
	}
	rctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- src.Report(rctx, tickets[0], isync.Report{Outcome: isync.OutcomeProvisioned, Marker: "m-1",
			Fields: []isync.Field{{Name: "Result", Value: "ok"}}})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("the report ended with %v, want its deadline", err)
		}
	case <-time.After(20 * time.Second): // below the prefetch's own 30 s bound
		t.Fatal("the report waited for the hung prefetch past its own deadline")
	}
}

// Issues served while still awaiting approval are approved, then closed; the
// list read after an approval belongs to the new status and is not cached or
// shared under the old one, so the next awaiting issue of the workflow uses
// the right list: no transition is refused.
func TestApprovalDoesNotPoisonTheTransitionCache(t *testing.T) {
	f := jfake.New(jfake.WithDeployment(jfake.Cloud))
	defer f.Close()
	var waiting []jfake.Issue
	for range 3 {
		waiting = append(waiting, f.AddIssue(jfake.Issue{Status: "Waiting for approval", Fields: map[string]any{f.FieldID("Image name"): "python"}}))
	}
	src := newSource(t, f, jira.Cloud, func(o *jira.Options) {
		o.AwaitingJQL = `project = IMG AND status = "Waiting for approval"`
		o.ApproveTransition = "Approve"
	})
	for _, w := range waiting {
		tk, err := src.Get(ctx(t), w.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !tk.AwaitingApproval {
			t.Fatalf("%s is not listed as awaiting approval", w.Key)
		}
		if err := src.Report(ctx(t), tk, isync.Report{Outcome: isync.OutcomeProvisioned, Marker: "m-" + w.ID,
			Fields: []isync.Field{{Name: "Result", Value: "ok"}}}); err != nil {
			t.Fatalf("%s: %v", w.Key, err)
		}
	}
	for _, r := range f.Requests() {
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/transitions") && r.Status != 204 {
			t.Errorf("POST %s answered %d", r.Path, r.Status)
		}
	}
}
