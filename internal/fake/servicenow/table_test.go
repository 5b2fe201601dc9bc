package servicenow

import (
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

const catItem = "3f1dd0320a0a0b99000a53f7604a2ef9"

func TestPagingLinkAndTotalCount(t *testing.T) {
	s := start(t)
	for range 5 {
		s.AddRITM(RITM{CatItem: catItem})
	}
	s.AddRITM(RITM{State: StateClosedComplete})

	query := "sysparm_query=" + url.QueryEscape("state=1^ORDERBYnumber") + "&sysparm_fields=number"
	linkRe := regexp.MustCompile(`<([^>]*)>;rel="(\w+)"`)
	links := func(h string) map[string]string {
		out := map[string]string{}
		for _, m := range linkRe.FindAllStringSubmatch(h, -1) {
			out[m[2]] = m[1]
		}
		return out
	}

	resp, body := do(t, s, req{path: "/api/now/table/sc_req_item?" + query + "&sysparm_limit=2"})
	wantStatus(t, resp, body, 200)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json;charset=UTF-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if got := resp.Header.Get("X-Total-Count"); got != "5" {
		t.Fatalf("X-Total-Count %q, want 5", got)
	}
	l := links(resp.Header.Get("Link"))
	base := s.URL() + "/api/now/table/sc_req_item?" + query
	want := map[string]string{
		"first": base + "&sysparm_offset=0&sysparm_limit=2",
		"next":  base + "&sysparm_offset=2&sysparm_limit=2",
		"last":  base + "&sysparm_offset=4&sysparm_limit=2",
	}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("page 1 links:\n%v\nwant\n%v", l, want)
	}
	if got := numbers(list(t, body)); !reflect.DeepEqual(got, []string{"RITM0010001", "RITM0010002"}) {
		t.Fatalf("page 1: %v", got)
	}

	var all []string
	next := want["first"]
	for page := 0; next != ""; page++ {
		if page > 5 {
			t.Fatal("paging does not end")
		}
		resp, body := do(t, s, req{path: strings.TrimPrefix(next, s.URL())})
		wantStatus(t, resp, body, 200)
		l := links(resp.Header.Get("Link"))
		if _, ok := l["prev"]; ok != (page > 0) {
			t.Errorf("page %d: prev present=%v", page, ok)
		}
		all = append(all, numbers(list(t, body))...)
		next = l["next"]
	}
	if want := []string{"RITM0010001", "RITM0010002", "RITM0010003", "RITM0010004", "RITM0010005"}; !reflect.DeepEqual(all, want) {
		t.Fatalf("all pages: %v", all)
	}

	// The whole result fits in one page: no Link header at all.
	resp, _ = do(t, s, req{path: "/api/now/table/sc_req_item?" + query + "&sysparm_limit=5"})
	if h := resp.Header.Get("Link"); h != "" {
		t.Errorf("single page has Link %q", h)
	}
	if got := resp.Header.Get("X-Total-Count"); got != "5" {
		t.Errorf("X-Total-Count %q", got)
	}

	// sysparm_no_count and sysparm_suppress_pagination_header.
	resp, _ = do(t, s, req{path: "/api/now/table/sc_req_item?" + query + "&sysparm_limit=2&sysparm_no_count=true&sysparm_suppress_pagination_header=true"})
	if _, ok := resp.Header["X-Total-Count"]; ok {
		t.Error("X-Total-Count despite sysparm_no_count")
	}
	if _, ok := resp.Header["Link"]; ok {
		t.Error("Link despite sysparm_suppress_pagination_header")
	}

	// Negative offset.
	resp, body = do(t, s, req{path: "/api/now/table/sc_req_item?sysparm_offset=-1"})
	wantStatus(t, resp, body, 400)
}

func TestEncodedQueryOperators(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	add := func(r RITM) {
		s.AddRITM(r)
		c.Advance(time.Minute)
	}
	add(RITM{State: "1", AssignmentGroup: "g1", ShortDescription: "python image"}) // 1
	add(RITM{State: "2", ShortDescription: "node image"})                          // 2
	add(RITM{State: "3", AssignmentGroup: "g2", ShortDescription: "go image"})     // 3
	add(RITM{State: "1", Approval: "requested", SysModCount: 10})                  // 4
	add(RITM{State: "7", AssignmentGroup: "g1", SysModCount: 9})                   // 5

	cases := []struct {
		query string
		want  []string
	}{
		{"state=1", []string{"1", "4"}},
		{"state!=1", []string{"2", "3", "5"}},
		{"stateIN1,2", []string{"1", "2", "4"}},
		{"stateNOT IN3,4,7", []string{"1", "2", "4"}},
		{"state=1^approval=approved", []string{"1"}},
		{"state=2^ORstate=3", []string{"2", "3"}},
		// ^OR binds tighter than ^: approved AND (state 2 OR state 7).
		{"approval=approved^state=2^ORstate=7", []string{"2", "5"}},
		{"state=1^NQstate=7", []string{"1", "4", "5"}},
		{"sys_created_on>2024-01-02 15:06:05", []string{"4", "5"}},
		{"sys_created_on>=2024-01-02 15:06:05", []string{"3", "4", "5"}},
		{"sys_created_on<2024-01-02 15:05:05", []string{"1"}},
		{"sys_created_on<=2024-01-02 15:05:05", []string{"1", "2"}},
		// sys_mod_count compares as a number: 10 > 9.
		{"sys_mod_count>9", []string{"4"}},
		{"short_descriptionLIKEimage", []string{"1", "2", "3"}},
		{"short_descriptionSTARTSWITHno", []string{"2"}},
		{"short_descriptionENDSWITHon image", []string{"1"}},
		{"short_descriptionLIKEIMAGE", nil}, // case-sensitive
		{"assignment_groupISEMPTY", []string{"2", "4"}},
		{"assignment_groupISNOTEMPTY", []string{"1", "3", "5"}},
		// An empty value is NULL: "!=" does not match it.
		{"assignment_group!=g1", []string{"3"}},
		{"state=1^ORDERBYDESCnumber", []string{"4", "1"}},
		{"ORDERBYDESCsys_mod_count^ORDERBYnumber", []string{"4", "5", "1", "2", "3"}},
		// Unknown field silently dropped: the typo returns every open item.
		{"state=1^stat=2", []string{"1", "4"}},
		{"cat_itm=nothing", []string{"1", "2", "3", "4", "5"}},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			path := "/api/now/table/sc_req_item?sysparm_fields=number&sysparm_query=" + url.QueryEscape(tc.query)
			resp, body := do(t, s, req{path: path})
			wantStatus(t, resp, body, 200)
			var got []string
			for _, n := range numbers(list(t, body)) {
				got = append(got, strings.TrimPrefix(n, "RITM001000"))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestInvalidQueryReturnsNoRows(t *testing.T) {
	s := start(t, WithInvalidQueryReturnsNoRows())
	s.AddRITM(RITM{})
	resp, body := do(t, s, req{path: "/api/now/table/sc_req_item?sysparm_query=cat_itm%3Dx"})
	wantStatus(t, resp, body, 200)
	if rows := list(t, body); len(rows) != 0 {
		t.Fatalf("rows %v", rows)
	}
	resp, body = do(t, s, req{path: "/api/now/table/sc_req_item?sysparm_query=state%3D1"})
	if rows := list(t, body); len(rows) != 1 {
		t.Fatalf("valid query rows %v", rows)
	}
}

func TestVariablesDotWalk(t *testing.T) {
	s := start(t)
	a := s.AddRITM(RITM{Variables: map[string]string{"image_name": "python:latest-dev", "team": "platform-eng", "empty": ""}})
	s.AddRITM(RITM{Variables: map[string]string{"image_name": "node:20"}})

	path := "/api/now/table/sc_req_item?sysparm_fields=sys_id,variables.image_name,variables.team,variables.empty,bogus&sysparm_query=" +
		url.QueryEscape("variables.image_name=python:latest-dev")
	resp, body := do(t, s, req{path: path})
	wantStatus(t, resp, body, 200)
	rows := list(t, body)
	want := []map[string]any{{
		"sys_id":               a.SysID,
		"variables.image_name": "python:latest-dev",
		"variables.team":       "platform-eng",
		"variables.empty":      "",
	}}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("got %v\nwant %v", rows, want)
	}

	// A variable the item does not carry is left out of the row.
	resp, body = do(t, s, req{path: "/api/now/table/sc_req_item?sysparm_fields=number,variables.team"})
	rows = list(t, body)
	if _, ok := rows[1]["variables.team"]; ok || rows[0]["variables.team"] != "platform-eng" {
		t.Fatalf("rows %v", rows)
	}

	// Without sysparm_fields no variables come back.
	_, body = do(t, s, req{path: "/api/now/table/sc_req_item/" + a.SysID})
	for k := range record(t, body) {
		if strings.HasPrefix(k, "variables.") {
			t.Errorf("unexpected %s", k)
		}
	}
}

func TestValueModeShapes(t *testing.T) {
	s := start(t)
	r := s.AddRITM(RITM{CatItem: catItem, RequestedFor: "62826bf03710200044e0bfc8bcbe5df1", SysModCount: 3})
	resp, body := do(t, s, req{path: "/api/now/table/sc_req_item/" + r.SysID})
	wantStatus(t, resp, body, 200)
	got := record(t, body)
	if got["sys_mod_count"] != "3" || got["active"] != "true" || got["state"] != "1" {
		t.Errorf("scalars not strings: %v", got)
	}
	wantRef := map[string]any{"link": s.URL() + "/api/now/table/sc_cat_item/" + catItem, "value": catItem}
	if !reflect.DeepEqual(got["cat_item"], wantRef) {
		t.Errorf("cat_item %v", got["cat_item"])
	}
	if got["assignment_group"] != "" || got["work_notes"] != "" || got["closed_at"] != "" {
		t.Errorf("empty fields: %v", got)
	}

	_, body = do(t, s, req{path: "/api/now/table/sc_req_item/" + r.SysID + "?sysparm_exclude_reference_link=true"})
	if got := record(t, body); got["cat_item"] != catItem {
		t.Errorf("excluded link: %v", got["cat_item"])
	}

	resp, body = do(t, s, req{path: "/api/now/table/sc_req_item/0123456789abcdef0123456789abcdef"})
	wantStatus(t, resp, body, 404)
	msg, detail, status := errorOf(t, body)
	if msg != "No Record found" || detail != "Record doesn't exist or ACL restricts the record retrieval" || status != "failure" {
		t.Errorf("404 body %s", body)
	}
}

func TestDisplayValueModes(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now), WithTimeZone(time.FixedZone("PST", -8*3600)))
	s.SetDisplayValue(catItem, "Request a Chainguard container image")
	r := s.AddRITM(RITM{CatItem: catItem, Variables: map[string]string{"image_name": "python:latest-dev"}})
	c.Advance(time.Minute)
	s.AddJournal(r.SysID, ElementWorkNotes, "first note", "svc.bridge")
	c.Advance(time.Minute)
	s.AddJournal(r.SysID, ElementWorkNotes, "second note", "svc.bridge")

	fields := "sysparm_fields=state,approval,stage,cat_item,assignment_group,sys_updated_on,work_notes,comments,variables.image_name"
	_, body := do(t, s, req{path: "/api/now/table/sc_req_item/" + r.SysID + "?sysparm_display_value=all&" + fields})
	got := record(t, body)
	want := map[string]any{
		"state":            map[string]any{"display_value": "Open", "value": "1"},
		"approval":         map[string]any{"display_value": "Approved", "value": "approved"},
		"stage":            map[string]any{"display_value": "Approved", "value": "request_approved"},
		"cat_item":         map[string]any{"display_value": "Request a Chainguard container image", "link": s.URL() + "/api/now/table/sc_cat_item/" + catItem, "value": catItem},
		"assignment_group": map[string]any{"display_value": "", "value": ""},
		"sys_updated_on":   map[string]any{"display_value": "2024-01-02 07:06:05", "value": "2024-01-02 15:06:05"},
		"work_notes": map[string]any{
			"display_value": "2024-01-02 07:06:05 - svc.bridge (Work notes)\nsecond note\n\n2024-01-02 07:05:05 - svc.bridge (Work notes)\nfirst note\n\n",
			"value":         "",
		},
		"comments":             map[string]any{"display_value": "", "value": ""},
		"variables.image_name": map[string]any{"display_value": "python:latest-dev", "value": "python:latest-dev"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("display_value=all:\n%v\nwant\n%v", got, want)
	}

	// display_value=true: labels, and references without a value key.
	_, body = do(t, s, req{path: "/api/now/table/sc_req_item/" + r.SysID + "?sysparm_display_value=true&" + fields})
	got = record(t, body)
	if got["state"] != "Open" || got["sys_updated_on"] != "2024-01-02 07:06:05" {
		t.Errorf("display true: %v", got)
	}
	if want := map[string]any{"display_value": "Request a Chainguard container image", "link": s.URL() + "/api/now/table/sc_cat_item/" + catItem}; !reflect.DeepEqual(got["cat_item"], want) {
		t.Errorf("display true cat_item %v", got["cat_item"])
	}
	_, body = do(t, s, req{path: "/api/now/table/sc_req_item/" + r.SysID + "?sysparm_display_value=true&sysparm_exclude_reference_link=true&" + fields})
	if got := record(t, body); got["cat_item"] != "Request a Chainguard container image" {
		t.Errorf("display true, no links: %v", got["cat_item"])
	}
}

func TestVersionedEmptyList(t *testing.T) {
	s := start(t)
	s.AddRITM(RITM{})
	q := "?sysparm_query=state%3D3"
	for _, tc := range []struct {
		prefix string
		status int
	}{{"/api/now/table", 200}, {"/api/now/v2/table", 200}, {"/api/now/v1/table", 404}} {
		resp, body := do(t, s, req{path: tc.prefix + "/sc_req_item" + q})
		wantStatus(t, resp, body, tc.status)
		if tc.status == 200 {
			if body != `{"result":[]}` {
				t.Errorf("%s: body %s", tc.prefix, body)
			}
			continue
		}
		if msg, _, _ := errorOf(t, body); msg != "No Record found" {
			t.Errorf("%s: body %s", tc.prefix, body)
		}
	}
	// v1 with rows answers normally.
	resp, body := do(t, s, req{path: "/api/now/v1/table/sc_req_item"})
	wantStatus(t, resp, body, 200)
}

func TestUnknownTable(t *testing.T) {
	s := start(t)
	resp, body := do(t, s, req{path: "/api/now/table/sc_req_itm"})
	wantStatus(t, resp, body, 400)
	if body != `{"error":{"message":"Invalid table sc_req_itm","detail":null},"status":"failure"}` {
		t.Errorf("body %s", body)
	}
}

func TestJournalTable(t *testing.T) {
	c := newClock()
	s := start(t, WithClock(c.Now))
	r := s.AddRITM(RITM{})
	other := s.AddRITM(RITM{})
	s.AddJournal(r.SysID, ElementWorkNotes, "one", "svc.bridge")
	c.Advance(time.Second)
	s.AddJournal(other.SysID, ElementWorkNotes, "elsewhere", "svc.bridge")
	s.AddJournal(r.SysID, ElementComments, "hello requester", "svc.bridge")
	c.Advance(time.Second)
	s.AddJournal(r.SysID, ElementWorkNotes, "two", "svc.bridge")

	q := url.QueryEscape("element_id=" + r.SysID + "^element=work_notes^ORDERBYDESCsys_created_on")
	_, body := do(t, s, req{path: "/api/now/table/sys_journal_field?sysparm_query=" + q})
	rows := list(t, body)
	if len(rows) != 2 || rows[0]["value"] != "two" || rows[1]["value"] != "one" {
		t.Fatalf("rows %v", rows)
	}
	j := s.Journal(r.SysID)
	want := map[string]any{
		"sys_id": j[2].SysID, "element": "work_notes", "element_id": r.SysID, "name": "sc_req_item",
		"value": "two", "sys_created_on": "2024-01-02 15:04:07", "sys_created_by": "svc.bridge",
	}
	if !reflect.DeepEqual(rows[0], want) {
		t.Errorf("row %v\nwant %v", rows[0], want)
	}

	// Without the read ACL: 200 and an empty result, not an error.
	s2 := start(t, WithJournalReadable(false))
	r2 := s2.AddRITM(RITM{})
	s2.AddJournal(r2.SysID, ElementWorkNotes, "hidden", "svc.bridge")
	resp, body := do(t, s2, req{path: "/api/now/table/sys_journal_field?sysparm_query=element_id%3D" + r2.SysID})
	wantStatus(t, resp, body, 200)
	if body != `{"result":[]}` {
		t.Errorf("unreadable journal: %s", body)
	}
}

func TestItemOptionMtom(t *testing.T) {
	s := start(t, WithVariable("image_name", "Image (name:tag)", "6"), WithVariable("justification", "Business justification", "2"))
	r := s.AddRITM(RITM{Variables: map[string]string{"team": "platform-eng", "justification": "Base image", "image_name": "python:latest-dev"}})
	s.AddRITM(RITM{Variables: map[string]string{"image_name": "node:20"}})

	fields := "sc_item_option,sc_item_option.item_option_new.name,sc_item_option.item_option_new.question_text,sc_item_option.item_option_new.type,sc_item_option.value"
	_, body := do(t, s, req{path: "/api/now/table/sc_item_option_mtom?sysparm_exclude_reference_link=true&sysparm_query=request_item%3D" + r.SysID + "&sysparm_fields=" + fields})
	rows := list(t, body)
	if len(rows) != 3 {
		t.Fatalf("rows %v", rows)
	}
	var names []string
	for _, row := range rows {
		names = append(names, row["sc_item_option.item_option_new.name"].(string))
		if id, _ := row["sc_item_option"].(string); len(id) != 32 {
			t.Errorf("sc_item_option %v", row["sc_item_option"])
		}
	}
	if !reflect.DeepEqual(names, []string{"image_name", "justification", "team"}) {
		t.Errorf("order %v", names)
	}
	want := map[string]any{
		"sc_item_option.item_option_new.name":          "image_name",
		"sc_item_option.item_option_new.question_text": "Image (name:tag)",
		"sc_item_option.item_option_new.type":          "6",
		"sc_item_option.value":                         "python:latest-dev",
		"sc_item_option":                               rows[0]["sc_item_option"],
	}
	if !reflect.DeepEqual(rows[0], want) {
		t.Errorf("row %v", rows[0])
	}
	if rows[2]["sc_item_option.item_option_new.question_text"] != "team" || rows[2]["sc_item_option.item_option_new.type"] != "6" {
		t.Errorf("undeclared variable %v", rows[2])
	}

	// Without the dot-walked fields the answers are not visible.
	_, body = do(t, s, req{path: "/api/now/table/sc_item_option_mtom?sysparm_query=request_item%3D" + r.SysID})
	rows = list(t, body)
	if _, ok := rows[0]["sc_item_option.value"]; ok {
		t.Errorf("default fields include the answer: %v", rows[0])
	}
	if ref, _ := rows[0]["request_item"].(map[string]any); ref["value"] != r.SysID {
		t.Errorf("request_item %v", rows[0]["request_item"])
	}
}

func TestWritesToOtherTablesDenied(t *testing.T) {
	s := start(t)
	resp, body := do(t, s, req{method: http.MethodPost, path: "/api/now/table/sc_req_item", body: `{"short_description":"x"}`})
	wantStatus(t, resp, body, 403)
	resp, body = do(t, s, req{method: http.MethodPatch, path: "/api/now/table/sys_journal_field/0123456789abcdef0123456789abcdef", body: `{"value":"x"}`})
	wantStatus(t, resp, body, 403)
}
