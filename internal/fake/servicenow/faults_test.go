package servicenow

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFaultStatuses(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	s.AddRITM(RITM{})
	path := "/api/now/table/sc_req_item"
	cases := []struct {
		fault   Fault
		message string
		check   func(*testing.T, *http.Response)
	}{
		{Fault{Status: 400}, "Requested URI does not represent any resource", nil},
		{Fault{Status: 401}, "User Not Authenticated", func(t *testing.T, r *http.Response) {
			if h := r.Header.Get("WWW-Authenticate"); h != `Basic realm="Service-now"` {
				t.Errorf("WWW-Authenticate %q", h)
			}
		}},
		{Fault{Status: 403}, "Operation Failed", nil},
		{Fault{Status: 404}, "No Record found", nil},
		{Fault{Status: 429, RetryAfter: 1800}, "Rate limit exceeded", func(t *testing.T, r *http.Response) {
			if r.Header.Get("Retry-After") != "1800" || r.Header.Get("X-RateLimit-Limit") != "10" ||
				r.Header.Get("X-RateLimit-Rule") != RateLimitRuleSysID ||
				r.Header.Get("X-RateLimit-Reset") != strconv.FormatInt(c.Now().Unix()+1800, 10) {
				t.Errorf("headers %v", r.Header)
			}
		}},
		{Fault{Status: 429}, "Rate limit exceeded", func(t *testing.T, r *http.Response) {
			if r.Header.Get("Retry-After") != "1" {
				t.Errorf("Retry-After %q", r.Header.Get("Retry-After"))
			}
		}},
		{Fault{Status: 500}, "Transaction cancelled: maximum execution time exceeded", nil},
		{Fault{Status: 403, Body: BusinessRuleAbortBody("Require close code")}, "Operation Failed", nil},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.fault.Status), func(t *testing.T) {
			s.InjectFault(tc.fault)
			resp, body := do(t, s, req{path: path})
			wantStatus(t, resp, body, tc.fault.Status)
			if msg, _, status := errorOf(t, body); msg != tc.message || status != "failure" {
				t.Errorf("body %s", body)
			}
			if tc.check != nil {
				tc.check(t, resp)
			}
			// Consumed: the next request succeeds.
			resp, body = do(t, s, req{path: path})
			wantStatus(t, resp, body, 200)
		})
	}
}

func TestFaultMatchingOrderAndTimes(t *testing.T) {
	s := start(t)
	r := s.AddRITM(RITM{})
	s.InjectFault(Fault{Method: "PATCH", Status: 503, Times: 2})
	s.InjectFault(Fault{PathContains: "sysparm_offset=5", Status: 404})
	s.InjectFault(Fault{Status: 500})

	resp, body := do(t, s, req{path: "/api/now/table/sc_req_item?sysparm_offset=5"})
	wantStatus(t, resp, body, 404)
	resp, body = do(t, s, req{path: "/api/now/table/sc_req_item"})
	wantStatus(t, resp, body, 500)
	for range 2 {
		resp, body = do(t, s, req{method: http.MethodPatch, path: "/api/now/table/sc_req_item/" + r.SysID, body: `{"work_notes":"x"}`})
		wantStatus(t, resp, body, 503)
	}
	resp, body = do(t, s, req{method: http.MethodPatch, path: "/api/now/table/sc_req_item/" + r.SysID, body: `{"work_notes":"x"}`})
	wantStatus(t, resp, body, 200)
	if n := len(s.Journal(r.SysID)); n != 1 {
		t.Errorf("%d journal entries, want 1", n)
	}

	s.InjectFault(Fault{Status: 500, Times: 10})
	s.ClearFaults()
	resp, body = do(t, s, req{path: "/api/now/table/sc_req_item"})
	wantStatus(t, resp, body, 200)

	// A body-only fault answers 200 with a broken payload.
	s.InjectFault(Fault{Body: `{"result":[{"sys_id":"a"}`})
	resp, body = do(t, s, req{path: "/api/now/table/sc_req_item"})
	wantStatus(t, resp, body, 200)
	if body != `{"result":[{"sys_id":"a"}` {
		t.Errorf("body %s", body)
	}
}

func TestFaultHTML(t *testing.T) {
	s := start(t)
	s.InjectFault(Fault{HTML: true})
	resp, body := do(t, s, req{path: "/api/now/table/sc_req_item"})
	wantStatus(t, resp, body, 200)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.HasPrefix(body, "<html>") ||
		!strings.Contains(body, `class="instance-hibernating-page"`) {
		t.Errorf("%v %s", resp.Header, body)
	}
	s.InjectFault(Fault{HTML: true, Status: 503})
	resp, body = do(t, s, req{path: "/api/now/table/sc_req_item"})
	wantStatus(t, resp, body, 503)
}

func TestFaultDelay(t *testing.T) {
	s := start(t)
	s.AddRITM(RITM{})
	s.InjectFault(Fault{Delay: 150 * time.Millisecond})
	began := time.Now()
	resp, body := do(t, s, req{path: "/api/now/table/sc_req_item"})
	wantStatus(t, resp, body, 200)
	if d := time.Since(began); d < 150*time.Millisecond {
		t.Errorf("answered after %v", d)
	}

	// A client that gives up first sees a timeout; the write is not applied.
	r := s.AddRITM(RITM{})
	s.InjectFault(Fault{Delay: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	hr, _ := http.NewRequestWithContext(ctx, http.MethodPatch, s.URL()+"/api/now/table/sc_req_item/"+r.SysID, strings.NewReader(`{"work_notes":"x"}`))
	hr.SetBasicAuth(DefaultUser, DefaultPassword)
	hr.Header.Set("Content-Type", "application/json")
	if _, err := http.DefaultClient.Do(hr); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(s.Journal(r.SysID)); n != 0 {
		t.Errorf("%d journal entries", n)
	}
}

func TestFaultReset(t *testing.T) {
	s := start(t)
	r := s.AddRITM(RITM{})
	s.InjectFault(Fault{Reset: true})
	_, _, err := try(s, req{path: "/api/now/table/sc_req_item"})
	if err == nil {
		t.Fatal("no error from a reset connection")
	}

	// Reset after applying: the note is written, the client sees an error.
	s.InjectFault(Fault{Method: "PATCH", Reset: true, ApplyFirst: true})
	_, _, err = try(s, req{method: http.MethodPatch, path: "/api/now/table/sc_req_item/" + r.SysID, body: `{"work_notes":"x"}`})
	if err == nil {
		t.Fatal("no error from a reset connection")
	}
	if n := len(s.Journal(r.SysID)); n != 1 {
		t.Errorf("%d journal entries, want 1", n)
	}
	reqs := s.Requests()
	if reqs[len(reqs)-1].Status != 0 {
		t.Errorf("logged status %d", reqs[len(reqs)-1].Status)
	}
}

func TestFaultApplyFirst(t *testing.T) {
	s := start(t)
	r := s.AddRITM(RITM{})
	s.InjectFault(Fault{Method: "PATCH", PathContains: r.SysID, Status: 500, ApplyFirst: true})
	resp, body := do(t, s, req{method: http.MethodPatch, path: "/api/now/table/sc_req_item/" + r.SysID, body: `{"state":"3","work_notes":"done"}`})
	wantStatus(t, resp, body, 500)
	got, _ := s.RITM(r.SysID)
	if got.State != "3" || got.Active != "false" || got.SysModCount != 1 || len(s.Journal(r.SysID)) != 1 {
		t.Errorf("write not applied: %+v", got)
	}

	// ApplyFirst with only a delay: applied at once, answered late.
	r2 := s.AddRITM(RITM{})
	s.InjectFault(Fault{ApplyFirst: true, Delay: 5 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	hr, _ := http.NewRequestWithContext(ctx, http.MethodPatch, s.URL()+"/api/now/table/sc_req_item/"+r2.SysID, strings.NewReader(`{"work_notes":"late"}`))
	hr.SetBasicAuth(DefaultUser, DefaultPassword)
	hr.Header.Set("Content-Type", "application/json")
	if _, err := http.DefaultClient.Do(hr); err == nil {
		t.Fatal("expected a timeout")
	}
	if n := len(s.Journal(r2.SysID)); n != 1 {
		t.Errorf("%d journal entries, want 1", n)
	}

	s.InjectFault(Fault{ApplyFirst: true, Delay: 10 * time.Millisecond})
	resp, body = do(t, s, req{method: http.MethodPatch, path: "/api/now/table/sc_req_item/" + r2.SysID, body: `{"work_notes":"replayed"}`})
	wantStatus(t, resp, body, 200)
	if got := record(t, body); got["sys_mod_count"] != "2" {
		t.Errorf("replayed answer %v", got)
	}
}
