package servicenow_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	"github.com/chainguard-dev/image-request-bridge/internal/source"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// patches counts the PATCHes the fake received.
func patches(fake *snfake.Server) int {
	n := 0
	for _, q := range fake.Requests() {
		if q.Method == http.MethodPatch {
			n++
		}
	}
	return n
}

// reports as the engine writes them (internal/sync/note.go), with the audit
// detail requesters must not be sent.
func provisioned(key string) isync.Report {
	return isync.Report{Outcome: isync.OutcomeProvisioned, Marker: isync.Marker(key, "ibr-1"), Summary: "Provisioned cgr.dev/example.com/python:latest",
		Fields: []isync.Field{{Name: "Result", Value: "Provisioned: the image was added to the organization's registry."},
			{Name: "Pull reference", Value: "cgr.dev/example.com/python:latest"}, {Name: "Approval tier", Value: "auto"},
			{Name: "Decided by", Value: "image-request-bridge v1 (instance prod-bridge-1)"}}}
}

func rejected(key string) isync.Report {
	return isync.Report{Outcome: isync.OutcomeRejected, Marker: isync.Marker(key, "ibr-1"), Summary: "Not provisioned",
		Fields: []isync.Field{{Name: "Result", Value: "Rejected: the image was not provisioned."},
			{Name: "Reason", Value: `"pyhton" is not in the catalog [code]<b>x</b>[/code]`},
			{Name: "What to do", Value: "Open a new request with a corrected image reference."},
			{Name: "Decided by", Value: "image-request-bridge v1 (instance prod-bridge-1)"}}}
}

func blockedBy(key, cause string) isync.Report {
	return isync.Report{Outcome: isync.OutcomeBlocked, Marker: isync.Marker(key, "ibr-1"), Summary: "Blocked: " + cause,
		Fields: []isync.Field{{Name: "Result", Value: "Blocked"}, {Name: "Cause", Value: cause},
			{Name: "Detail", Value: "HTTP 403 from console-api.enforce.dev"}, {Name: "Decided by", Value: "image-request-bridge v1 (instance prod-bridge-1)"}}}
}

// Each write-back is ONE PATCH carrying the work note (audit detail) and a
// short comment the requester can see: the pull reference, or what to do;
// requester text in it is escaped like the note's. A blocked request gets one
// such comment however often its cause changes.
func TestRequesterComment(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	rs := seed(fake, 2, "python")
	src := newSource(t, fake, nil)
	a, _ := src.Get(ctx(t), rs[0].SysID)
	b, _ := src.Get(ctx(t), rs[1].SysID)

	fake.ResetRequests()
	for _, c := range []string{"chainguard:forbidden", "chainguard:quota"} {
		if err := src.Report(ctx(t), a, blockedBy(a.Key, c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.Report(ctx(t), a, provisioned(a.Key)); err != nil {
		t.Fatal(err)
	}
	if err := src.Report(ctx(t), b, rejected(b.Key)); err != nil {
		t.Fatal(err)
	}
	if n := patches(fake); n != 4 {
		t.Errorf("%d PATCHes for 4 write-backs", n)
	}
	if n := len(workNotes(fake, a.ID)); n != 3 {
		t.Errorf("%d work notes, want 3 (two causes, the result)", n)
	}
	ca := comments(fake, a.ID)
	if len(ca) != 2 {
		t.Fatalf("requester comments %q, want one for the delay and one for the result", ca)
	}
	if !strings.HasPrefix(ca[0], "Your request is delayed") || !strings.Contains(ca[1], "Pull reference: cgr.dev/example.com/python:latest") {
		t.Errorf("comments %q", ca)
	}
	cb := comments(fake, b.ID)
	if len(cb) != 1 || !strings.Contains(cb[0], "could not be fulfilled") || !strings.Contains(cb[0], "What to do: Open a new request") {
		t.Fatalf("rejected: comments %q", cb)
	}
	for _, c := range append(ca, cb...) {
		for _, leak := range []string{"prod-bridge-1", "chainguard:", "Approval tier", "HTTP 403"} {
			if strings.Contains(c, leak) {
				t.Errorf("the requester comment carries audit detail %q:\n%s", leak, c)
			}
		}
		if strings.Contains(strings.ToLower(c), "[code]") {
			t.Errorf("the requester comment carries [code] markup:\n%s", c)
		}
		if !strings.HasSuffix(c, isync.Marker(a.Key, "ibr-1")) && !strings.HasSuffix(c, isync.Marker(b.Key, "ibr-1")) {
			t.Errorf("the requester comment does not end with its reference:\n%s", c)
		}
	}
	if st, _ := fake.RITM(a.ID); st.State != "3" {
		t.Errorf("state %s", st.State)
	}
}

// A retried write-back never doubles the comment: after a write ACL dropped
// the state (note and comment landed) it closes the RITM with neither; after
// one dropped the work note (the comment landed) it sends the note alone.
func TestRequesterCommentNotDoubled(t *testing.T) {
	for _, denied := range []string{"state", "work_notes"} {
		t.Run(denied, func(t *testing.T) {
			fake := snfake.New()
			defer fake.Close()
			r := seed(fake, 1, "python")[0]
			src := newSource(t, fake, nil)
			tk, _ := src.Get(ctx(t), r.SysID)
			fake.DenyFieldWrite(denied)
			err := src.Report(ctx(t), tk, provisioned(tk.Key))
			if isync.ClassOf(err) != isync.ClassBlocked {
				t.Fatalf("err = %v, want blocked", err)
			}
			fake.AllowFieldWrite(denied)
			rep := provisioned(tk.Key)
			rep.Retried = true
			for range 2 { // a new process, and once more
				if err := newSource(t, fake, nil).Report(ctx(t), tk, rep); err != nil {
					t.Fatalf("retried: %v", err)
				}
			}
			if n, c := len(workNotes(fake, r.SysID)), len(comments(fake, r.SysID)); n != 1 || c != 1 {
				t.Errorf("%d work notes, %d comments; want 1 of each", n, c)
			}
			if st, _ := fake.RITM(r.SysID); st.State != "3" {
				t.Errorf("state %s", st.State)
			}
		})
	}
}

// servicenow.requester_comment defaults to true; false writes the work
// note alone.
func TestRequesterCommentSetting(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	rs := seed(fake, 2, "python")
	for i, setting := range []string{"", "false"} {
		c := &servicenow.Config{Enabled: true, InstanceURL: fake.URL(), Username: snfake.DefaultUser,
			Password: secret.New(snfake.DefaultPassword), CatalogItem: catItem, RequesterComment: setting}
		c.Defaults()
		var p source.Problems
		c.Validate(&p)
		if len(p.List()) > 0 {
			t.Fatalf("%+v", p.List())
		}
		src, err := servicenow.Connector.Build(c, source.Deps{WrapTransport: func(rt http.RoundTripper) http.RoundTripper { return rt }})
		if err != nil {
			t.Fatal(err)
		}
		tk, err := src.Get(ctx(t), rs[i].SysID)
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Report(ctx(t), tk, provisioned(tk.Key)); err != nil {
			t.Fatal(err)
		}
		want := map[string]int{"": 1, "false": 0}[setting]
		if n := len(comments(fake, tk.ID)); n != want || len(workNotes(fake, tk.ID)) != 1 {
			t.Errorf("requester_comment %q: %d comments, want %d", setting, n, want)
		}
	}
	c := &servicenow.Config{RequesterComment: "yes"}
	var p source.Problems
	c.Validate(&p)
	found := false
	for _, pr := range p.List() {
		found = found || strings.Contains(pr.Path, "requester_comment")
	}
	if !found {
		t.Errorf("requester_comment: yes accepted: %+v", p.List())
	}
}
