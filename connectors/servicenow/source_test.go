package servicenow_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chainguard-dev/image-request-bridge/connectors/servicenow"
	snfake "github.com/chainguard-dev/image-request-bridge/internal/fake/servicenow"
	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
	"github.com/chainguard-dev/image-request-bridge/internal/upstream"
)

const catItem = "3f1dd0320a0a0b99000a53f7604a2ef9"

func newSource(t *testing.T, fake *snfake.Server, mod func(*servicenow.Options)) *servicenow.Source {
	t.Helper()
	o := servicenow.Options{
		InstanceURL:  fake.URL(),
		Auth:         servicenow.Auth{Username: snfake.DefaultUser, Password: secret.New(snfake.DefaultPassword)},
		CatalogItem:  catItem,
		PageSize:     10,
		Timeout:      3 * time.Second,
		RetryWaitMax: 2 * time.Second,
		// On, as the configuration has it by default.
		RequesterComment: true,
	}
	if mod != nil {
		mod(&o)
	}
	s, err := servicenow.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// journal returns the values of the RITM's journal entries of element
// ("work_notes" or "comments"), oldest first.
func journal(fake *snfake.Server, sysID, element string) []string {
	var out []string
	for _, e := range fake.Journal(sysID) {
		if e.Element == element {
			out = append(out, e.Value)
		}
	}
	return out
}

func workNotes(fake *snfake.Server, sysID string) []string {
	return journal(fake, sysID, snfake.ElementWorkNotes)
}

func comments(fake *snfake.Server, sysID string) []string {
	return journal(fake, sysID, snfake.ElementComments)
}

func seed(fake *snfake.Server, n int, image string) []snfake.RITM {
	var out []snfake.RITM
	for i := 0; i < n; i++ {
		out = append(out, fake.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": image, "justification": "why"}}))
	}
	return out
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func result(key string) isync.Report {
	return isync.Report{Outcome: isync.OutcomeProvisioned, Marker: isync.Marker(key, "ibr-test"), Summary: "done",
		Fields: []isync.Field{{Name: "Result", Value: "Provisioned"}}}
}

// Closing tickets while paging (what the engine does) must not skip any:
// offset paging over the shrinking result would skip half of them.
func TestApprovedKeysetPagingWhileClosing(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	want := map[string]bool{}
	for _, r := range seed(fake, 45, "python") {
		want[r.SysID] = true
	}
	src := newSource(t, fake, nil)
	seen := map[string]int{}
	err := src.Approved(ctx(t), func(tk isync.Ticket) error {
		seen[tk.ID]++
		if !tk.Open || tk.Image != "python" || tk.Justification != "why" || !strings.HasPrefix(tk.Key, "RITM") {
			t.Errorf("ticket decoded wrongly: %+v", tk)
		}
		return src.Report(ctx(t), tk, result(tk.Key))
	})
	if err != nil {
		t.Fatal(err)
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("RITM %s seen %d times, want 1", id, seen[id])
		}
	}
	if len(seen) != len(want) {
		t.Errorf("saw %d tickets, want %d", len(seen), len(want))
	}
}

func TestApprovedFiltersAndDecodes(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	ok := fake.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": " python:latest-dev ", "team": "web"}})
	fake.AddRITM(snfake.RITM{CatItem: catItem, Approval: "requested", Variables: map[string]string{"image_name": "node"}})
	fake.AddRITM(snfake.RITM{CatItem: "ffffffffffffffffffffffffffffffff", Variables: map[string]string{"image_name": "go"}})
	closed := fake.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": "redis"}})
	fake.Update(closed.SysID, func(r *snfake.RITM) { r.State = "3" })
	src := newSource(t, fake, func(o *servicenow.Options) { o.ExtraVariables = []string{"team"} })
	var got []isync.Ticket
	if err := src.Approved(ctx(t), func(tk isync.Ticket) error { got = append(got, tk); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != ok.SysID || got[0].Fields["team"] != "web" || got[0].Image != " python:latest-dev " {
		t.Fatalf("got %+v", got)
	}
	tk, err := src.Get(ctx(t), closed.SysID)
	if err != nil {
		t.Fatal(err)
	}
	if tk.Open || !tk.Closed {
		t.Errorf("closed RITM read as open=%v closed=%v", tk.Open, tk.Closed)
	}
}

func TestErrorsAreClear(t *testing.T) {
	cases := map[string]struct {
		fault snfake.Fault
		want  string
	}{
		"hibernating instance": {snfake.Fault{HTML: true, Times: 10}, "HTML page"},
		"acl":                  {snfake.Fault{Status: 403, Times: 10}, "HTTP 403"},
		"truncated json":       {snfake.Fault{Body: `{"result":[{"sys_id":"a1b2`, Times: 10}, "decoding response"},
		"transaction quota":    {snfake.Fault{Status: 500, Times: 10}, "Transaction cancelled"},
		"long rate limit":      {snfake.Fault{Status: 429, RetryAfter: 1800, Times: 10}, "retry after 30m0s"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			fake := snfake.New()
			defer fake.Close()
			seed(fake, 1, "python")
			src := newSource(t, fake, func(o *servicenow.Options) { o.RetryMax = 1; o.RetryWaitMax = 10 * time.Millisecond })
			fake.InjectFault(c.fault)
			err := src.Approved(ctx(t), func(isync.Ticket) error { return nil })
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
			if strings.Contains(err.Error(), snfake.DefaultPassword) {
				t.Fatal("error leaks the password")
			}
		})
	}
}

// A PATCH that fails with a 5xx is never resent blindly.
func TestReportNotResentAfterAmbiguousFailure(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	r := seed(fake, 1, "python")[0]
	src := newSource(t, fake, nil)
	tk, err := src.Get(ctx(t), r.SysID)
	if err != nil {
		t.Fatal(err)
	}
	fake.InjectFault(snfake.Fault{Method: "PATCH", Status: 503})
	err = src.Report(ctx(t), tk, result(tk.Key))
	if isync.ClassOf(err) != isync.ClassRetryable || err == nil {
		t.Fatalf("err = %v, want a retryable error", err)
	}
	patches := 0
	for _, req := range fake.Requests() {
		if req.Method == "PATCH" {
			patches++
		}
	}
	if patches != 1 || len(fake.Journal(r.SysID)) != 0 {
		t.Fatalf("%d PATCHes, %d journal entries; want 1 PATCH, 0 entries", patches, len(fake.Journal(r.SysID)))
	}

	// A note-only write (blocked) whose answer is lost is found in the journal.
	fake.InjectFault(snfake.Fault{Method: "PATCH", Reset: true, ApplyFirst: true})
	blocked := isync.Report{Outcome: isync.OutcomeBlocked, Marker: isync.Marker(tk.Key, "ibr-test"), Fields: []isync.Field{{Name: "Cause", Value: "x"}}}
	if err := src.Report(ctx(t), tk, blocked); err != nil {
		t.Fatalf("landed note reported as failed: %v", err)
	}
	if n, c := len(workNotes(fake, r.SysID)), len(comments(fake, r.SysID)); n != 1 || c != 1 {
		t.Fatalf("%d notes, %d comments; want 1 of each", n, c)
	}
	if cur, _ := fake.RITM(r.SysID); cur.State != "1" {
		t.Fatalf("a blocked note changed the state to %s", cur.State)
	}
}

// Requester text cannot inject [code] HTML or forge note lines.
func TestReportEscapesUserText(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	r := seed(fake, 1, "python")[0]
	src := newSource(t, fake, nil)
	tk, _ := src.Get(ctx(t), r.SysID)
	rep := result(tk.Key)
	rep.Fields = append(rep.Fields,
		isync.Field{Name: "Justification", Value: "[code]<script>alert(1)</script>[/CODE]\r\nResult: Provisioned\x00\x1b[31m"},
		isync.Field{Name: "Requested image", Value: strings.Repeat("a", 10000) + "\xff"})
	if err := src.Report(ctx(t), tk, rep); err != nil {
		t.Fatal(err)
	}
	j := workNotes(fake, r.SysID)
	if len(j) != 1 {
		t.Fatalf("%d notes", len(j))
	}
	note := j[0]
	if strings.Contains(strings.ToLower(note), "[code]") || strings.Contains(strings.ToLower(note), "[/code]") {
		t.Errorf("note carries [code] markup:\n%s", note)
	}
	if strings.Count(note, "\n") != len(rep.Fields) || strings.ContainsAny(note, "\x00\x1b\r") {
		t.Errorf("note lines forged or control characters kept:\n%q", note)
	}
	if len(note) > 3000 {
		t.Errorf("a 10 KB value was echoed in full (%d bytes)", len(note))
	}
}

// An expired OAuth token is refreshed after a 401, without a failed call.
func TestOAuthRefreshOn401(t *testing.T) {
	var mu stdsync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	fake := snfake.New(snfake.WithOAuth("cid", "csecret", time.Hour), snfake.WithClock(clock))
	defer fake.Close()
	seed(fake, 2, "python")
	src := newSource(t, fake, func(o *servicenow.Options) {
		o.Auth.ClientID, o.Auth.ClientSecret = "cid", secret.New("csecret")
	})
	list := func() error { return src.Approved(ctx(t), func(isync.Ticket) error { return nil }) }
	if err := list(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(2 * time.Hour) // the instance expires the token early
	mu.Unlock()
	if err := list(); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	grants := 0
	for _, r := range fake.Requests() {
		if strings.HasSuffix(r.Path, "/oauth_token.do") {
			grants++
		}
		if strings.Contains(r.Body, "csecret") && !strings.HasSuffix(r.Path, "/oauth_token.do") {
			t.Error("client secret sent outside the token endpoint")
		}
	}
	if grants != 2 {
		t.Errorf("%d token grants, want 2 (initial + refresh)", grants)
	}

	// Wrong client secret: a clear error that names the setting, not the secret.
	bad := newSource(t, fake, func(o *servicenow.Options) {
		o.Auth.ClientID, o.Auth.ClientSecret = "cid", secret.New("wrong-secret-value")
	})
	err := bad.Approved(ctx(t), func(isync.Ticket) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "client_secret") || strings.Contains(err.Error(), "wrong-secret-value") {
		t.Fatalf("err = %v", err)
	}
	var e *isync.Error
	if !errors.As(err, &e) || e.Class != isync.ClassBlocked {
		t.Errorf("a refused grant should be a blocked error, got %v", err)
	}
}

// A call waiting behind an OAuth grant that hangs gives up when its own
// context ends (its deadline, shutdown): the grant in progress does not hold
// every other call of the source.
func TestOAuthGrantWaitEndsWithContext(t *testing.T) {
	fake := snfake.New(snfake.WithOAuth("cid", "csecret", time.Hour))
	defer fake.Close()
	fake.InjectFault(snfake.Fault{Method: "POST", PathContains: "oauth_token.do", Delay: time.Hour, Times: 1})
	src := newSource(t, fake, func(o *servicenow.Options) {
		o.Auth.ClientID, o.Auth.ClientSecret = "cid", secret.New("csecret")
		o.Timeout = time.Hour // the hung grant ends only with the test
	})
	list := func(ctx context.Context) error { return src.Approved(ctx, func(isync.Ticket) error { return nil }) }
	first, stopFirst := context.WithCancel(context.Background())
	defer stopFirst()
	granting := make(chan error, 1)
	go func() { granting <- list(first) }()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		if len(fake.Requests()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no grant was requested")
		}
	}

	waiting, stop := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer stop()
	ended := make(chan error, 1)
	go func() { ended <- list(waiting) }()
	select {
	case err := <-ended:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("the waiting call ended with %v, want its deadline", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the waiting call outlived its context: it waits for the hung grant")
	}
	select {
	case err := <-granting:
		t.Errorf("the hung grant ended first (%v): the test proves nothing", err)
	default:
	}
}

func TestNewValidates(t *testing.T) {
	for name, o := range map[string]servicenow.Options{
		"bad catalog item": {InstanceURL: "https://x.service-now.com", CatalogItem: "RITM1"},
		"bad url":          {InstanceURL: "x.service-now.com", CatalogItem: catItem},
		"bad variable":     {InstanceURL: "https://x.service-now.com", CatalogItem: catItem, ImageVariable: "image^name"},
	} {
		if _, err := servicenow.New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// One RITM whose answers cannot be read does not hold up the others.
func TestUnreadableRITMDoesNotBlockQueue(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	fake.AddRITM(snfake.RITM{CatItem: catItem, Variables: map[string]string{"image_name": ""}}) // falls back to sc_item_option_mtom
	good := seed(fake, 3, "python")
	fake.InjectFault(snfake.Fault{PathContains: "sc_item_option_mtom", Status: 403, Times: 1000})
	src := newSource(t, fake, nil)
	var got []string
	if err := src.Approved(ctx(t), func(tk isync.Ticket) error { got = append(got, tk.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(good) {
		t.Fatalf("listed %d tickets, want the %d readable ones", len(got), len(good))
	}
}

// A server that keeps promising a next page of nothing cannot hold the
// bridge forever.
func TestEmptyPagesForeverAreBounded(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Link", `<https://elsewhere.example/x>;rel="next"`)
		w.Write([]byte(`{"result":[]}`))
	}))
	defer srv.Close()
	src, err := servicenow.New(servicenow.Options{InstanceURL: srv.URL, CatalogItem: catItem, Auth: servicenow.Auth{Username: "u", Password: secret.New("p")}})
	if err != nil {
		t.Fatal(err)
	}
	err = src.Approved(ctx(t), func(isync.Ticket) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "empty pages") {
		t.Fatalf("err = %v", err)
	}
	if n.Load() > 200 {
		t.Errorf("%d requests before giving up", n.Load())
	}
}

func TestHTMLBehindByteOrderMark(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("\ufeff<html><body class=\"instance-hibernating-page\">zzz</body></html>"))
	}))
	defer srv.Close()
	src, _ := servicenow.New(servicenow.Options{InstanceURL: srv.URL, CatalogItem: catItem, RetryMax: -1})
	err := src.Approved(ctx(t), func(isync.Ticket) error { return nil })
	if !errors.Is(err, upstream.ErrHTML) {
		t.Fatalf("err = %v, want ErrHTML", err)
	}
}

// Format characters (bidi overrides, zero-width) and NUL are shown, not kept
// or silently dropped.
func TestReportShowsHiddenCharacters(t *testing.T) {
	fake := snfake.New()
	defer fake.Close()
	r := seed(fake, 1, "python")[0]
	src := newSource(t, fake, nil)
	tk, _ := src.Get(ctx(t), r.SysID)
	rep := result(tk.Key)
	rep.Fields = append(rep.Fields, isync.Field{Name: "Requested image", Value: "py\x00thon\u202e\u200b\ufeff"})
	if err := src.Report(ctx(t), tk, rep); err != nil {
		t.Fatal(err)
	}
	note := fake.Journal(r.SysID)[0].Value
	if strings.ContainsAny(note, "\x00\u202e\u200b\ufeff") || !strings.Contains(note, "py\uFFFDthon\uFFFD\uFFFD\uFFFD") {
		t.Fatalf("note = %q", note)
	}
}
