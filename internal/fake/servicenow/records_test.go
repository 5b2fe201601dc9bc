package servicenow

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAddRITMDefaults(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	a := s.AddRITM(RITM{})
	b := s.AddRITM(RITM{Number: "RITM0099999"})
	d := s.AddRITM(RITM{})
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(a.SysID) {
		t.Errorf("sys_id %q", a.SysID)
	}
	if a.Number != "RITM0010001" || b.Number != "RITM0099999" || d.Number != "RITM0010002" {
		t.Errorf("numbers %s %s %s", a.Number, b.Number, d.Number)
	}
	if a.State != "1" || a.Approval != "approved" || a.Active != "true" || a.Stage != "request_approved" {
		t.Errorf("defaults %+v", a)
	}
	if !a.SysCreatedOn.Equal(c.Now()) || !a.SysUpdatedOn.Equal(c.Now()) {
		t.Errorf("times %v %v", a.SysCreatedOn, a.SysUpdatedOn)
	}
	got, ok := s.RITM(a.SysID)
	if !ok || got.Number != a.Number {
		t.Errorf("RITM() = %+v, %v", got, ok)
	}
	if _, ok := s.RITM("nope"); ok {
		t.Error("unknown sys_id found")
	}
}

func TestPatchClosesAndAppendsJournal(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	r := s.AddRITM(RITM{CatItem: catItem, SysModCount: 3, Variables: map[string]string{"image_name": "python:latest-dev"}})
	path := "/api/now/table/sc_req_item/" + r.SysID

	c.Advance(time.Minute)
	resp, body := do(t, s, req{method: http.MethodPatch, path: path, body: `{"state":"2","work_notes":"claimed by bridge"}`})
	wantStatus(t, resp, body, 200)
	got := record(t, body)
	if got["state"] != "2" || got["work_notes"] != "" || got["sys_mod_count"] != "4" || got["active"] != "true" {
		t.Errorf("claim response %v", got)
	}

	c.Advance(time.Minute)
	patch := `{"state":"3","close_notes":"Provisioned","work_notes":"provisioning succeeded",` +
		`"sys_mod_count":"99","sys_updated_on":"2000-01-01 00:00:00","variables.image_name":"evil","number":"X","bogus":"y"}`
	resp, body = do(t, s, req{method: http.MethodPatch, path: path + "?sysparm_fields=state,active,closed_at,closed_by,close_notes,work_notes,sys_mod_count,sys_updated_on,sys_updated_by,number,variables.image_name&sysparm_exclude_reference_link=true", body: patch,
		header: map[string]string{"Content-Type": "application/json; charset=utf-8"}})
	wantStatus(t, resp, body, 200)
	got = record(t, body)
	want := map[string]any{
		"state":                "3",
		"active":               "false",
		"closed_at":            "2024-01-02 15:06:05",
		"closed_by":            UserSysID(DefaultUser),
		"close_notes":          "Provisioned",
		"work_notes":           "",
		"sys_mod_count":        "5",
		"sys_updated_on":       "2024-01-02 15:06:05",
		"sys_updated_by":       DefaultUser,
		"number":               r.Number,
		"variables.image_name": "python:latest-dev",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("close response\n%v\nwant\n%v", got, want)
	}

	j := s.Journal(r.SysID)
	if len(j) != 2 || j[0].Value != "claimed by bridge" || j[1].Value != "provisioning succeeded" ||
		j[1].CreatedBy != DefaultUser || j[1].Element != ElementWorkNotes || !j[1].CreatedOn.Equal(c.Now()) {
		t.Fatalf("journal %+v", j)
	}

	// A comment appends to the other journal; a PATCH with no journal adds none.
	do(t, s, req{method: http.MethodPut, path: path, body: `{"comments":"Your image is ready"}`})
	do(t, s, req{method: http.MethodPatch, path: path, body: `{"close_notes":"Provisioned again","work_notes":""}`})
	j = s.Journal(r.SysID)
	if len(j) != 3 || j[2].Element != ElementComments {
		t.Fatalf("journal %+v", j)
	}
	if wn, cs := s.WorkNotes(r.SysID), s.Comments(r.SysID); len(wn) != 2 || len(cs) != 1 || cs[0].Value != "Your image is ready" {
		t.Errorf("work notes %+v, comments %+v", wn, cs)
	}
	// The display value of each journal field holds its own entries only.
	_, shown := do(t, s, req{path: path + "?sysparm_fields=work_notes,comments&sysparm_display_value=true"})
	if strings.Count(shown, "Your image is ready") != 1 || strings.Count(shown, "provisioning succeeded") != 1 {
		t.Errorf("display values %s", shown)
	}
	stored, _ := s.RITM(r.SysID)
	if stored.SysModCount != 7 || stored.CloseNotes != "Provisioned again" {
		t.Errorf("stored %+v", stored)
	}
}

func TestPatchNoResponseBodyAndErrors(t *testing.T) {
	s := start(t)
	r := s.AddRITM(RITM{})
	path := "/api/now/table/sc_req_item/" + r.SysID

	resp, body := do(t, s, req{method: http.MethodPatch, path: path, body: `{"work_notes":"x"}`, header: map[string]string{"X-no-response-body": "true"}})
	wantStatus(t, resp, body, 200)
	if body != "" {
		t.Errorf("body %q", body)
	}
	if len(s.Journal(r.SysID)) != 1 {
		t.Error("write not applied")
	}

	resp, body = do(t, s, req{method: http.MethodPatch, path: path, body: `{"state":"3"}`, header: map[string]string{"Content-Type": "text/plain"}})
	wantStatus(t, resp, body, 400)
	resp, body = do(t, s, req{method: http.MethodPatch, path: path, body: `{"state":`})
	wantStatus(t, resp, body, 400)
	resp, body = do(t, s, req{method: http.MethodPatch, path: "/api/now/table/sc_req_item/0123456789abcdef0123456789abcdef", body: `{"state":"3"}`})
	wantStatus(t, resp, body, 404)
	if got, _ := s.RITM(r.SysID); got.State != "1" || got.SysModCount != 1 {
		t.Errorf("rejected writes changed the record: %+v", got)
	}
}

func TestUpdateAndFlow(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	r := s.AddRITM(RITM{})
	c.Advance(time.Second)
	s.Update(r.SysID, func(x *RITM) { x.State = StateClosedSkipped })
	got, _ := s.RITM(r.SysID)
	if got.SysModCount != 1 || !got.SysUpdatedOn.Equal(c.Now()) || got.Active != "false" || !got.ClosedAt.Equal(c.Now()) {
		t.Errorf("after Update: %+v", got)
	}

	// A flow that reopens the item after the bridge closes it.
	r2 := s.AddRITM(RITM{})
	s.SetFlow(func(x *RITM) {
		if x.State == StateClosedComplete {
			x.Stage = "Request Cancelled"
			x.State = StateWorkInProgress
		}
	})
	resp, body := do(t, s, req{method: http.MethodPatch, path: "/api/now/table/sc_req_item/" + r2.SysID, body: `{"state":"3"}`})
	wantStatus(t, resp, body, 200)
	if got := record(t, body); got["state"] != "3" || got["sys_mod_count"] != "1" {
		t.Errorf("PATCH response shows the flow: %v", got)
	}
	got, _ = s.RITM(r2.SysID)
	if got.State != "2" || got.Stage != "Request Cancelled" || got.SysModCount != 2 || got.Active != "false" {
		t.Errorf("after flow: %+v", got)
	}
}

func TestConcurrentPatches(t *testing.T) {
	s := start(t)
	r := s.AddRITM(RITM{})
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			resp, body, err := try(s, req{client: client, method: http.MethodPatch, path: "/api/now/table/sc_req_item/" + r.SysID, body: fmt.Sprintf(`{"work_notes":"note %d"}`, i)})
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("patch %d: %v %s", i, err, body)
			}
		})
		wg.Go(func() {
			try(s, req{client: client, path: "/api/now/table/sc_req_item?sysparm_display_value=all"})
			s.Requests()
		})
	}
	wg.Wait()
	got, _ := s.RITM(r.SysID)
	if got.SysModCount != 20 || len(s.Journal(r.SysID)) != 20 {
		t.Errorf("mod count %d, journal %d", got.SysModCount, len(s.Journal(r.SysID)))
	}
	if n := len(s.Requests()); n != 40 {
		t.Errorf("%d requests logged", n)
	}
}
