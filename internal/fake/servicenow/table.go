package servicenow

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// defaultLimit is the Table API's default sysparm_limit.
const defaultLimit = 10000

// tableSpec describes one table the fake serves.
type tableSpec struct {
	// columns are the fields returned when sysparm_fields is absent.
	columns []string
	// valid reports whether a field (possibly dot-walked) exists on the table,
	// for sysparm_query.
	valid func(field string) bool
	// rows returns every row, in insertion order. Called with s.mu held.
	rows func(s *Server) []row
	// readable is false when the API user lacks the table's read ACL.
	readable func(s *Server) bool
	// narrow, when set, returns the rows that can match q (in the order of
	// rows) without rendering the others, or false to render every row.
	narrow func(s *Server, q query) ([]row, bool)
}

// candidates returns the rows that may match q, in insertion order. Called
// with s.mu held.
func (t *tableSpec) candidates(s *Server, q query) []row {
	if t.narrow != nil {
		if rows, ok := t.narrow(s, q); ok {
			return rows
		}
	}
	return t.rows(s)
}

var tables = map[string]*tableSpec{
	"sc_req_item": {
		columns: ritmColumns,
		valid: func(f string) bool {
			if name, ok := strings.CutPrefix(f, "variables."); ok {
				return name != ""
			}
			return slices.Contains(ritmColumns, f)
		},
		rows: func(s *Server) []row {
			out := make([]row, 0, len(s.order))
			for _, id := range s.order {
				out = append(out, s.ritmRowLocked(s.ritms[id]))
			}
			return out
		},
	},
	"sys_journal_field": {
		columns: journalColumns,
		valid:   func(f string) bool { return slices.Contains(journalColumns, f) },
		rows: func(s *Server) []row {
			out := make([]row, 0, len(s.journal))
			for _, e := range s.journal {
				out = append(out, s.journalRow(e))
			}
			return out
		},
		readable: func(s *Server) bool { return s.journalReadable },
		narrow: func(s *Server, q query) ([]row, bool) {
			id, ok := q.singleEquals("element_id")
			if !ok {
				return nil, false
			}
			var out []row
			for _, i := range s.journalBy[id] {
				out = append(out, s.journalRow(s.journal[i]))
			}
			return out, true
		},
	},
	"sc_item_option_mtom": {
		columns: mtomColumns,
		valid: func(f string) bool {
			return slices.Contains(mtomColumns, f) || slices.Contains(mtomDotted, f)
		},
		rows: func(s *Server) []row {
			var out []row
			for _, id := range s.order {
				out = append(out, s.mtomRowsLocked(s.ritms[id])...)
			}
			return out
		},
		narrow: func(s *Server, q query) ([]row, bool) {
			id, ok := q.singleEquals("request_item")
			if !ok {
				return nil, false
			}
			if r := s.ritms[id]; r != nil {
				return s.mtomRowsLocked(r), true
			}
			return nil, true
		},
	},
}

// parseTablePath splits /api/now[/v1|/v2]/table/{table}[/{sys_id}].
func parseTablePath(path string) (version, table, sysID string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/api/now/")
	if !ok {
		return "", "", "", false
	}
	if v, r, found := strings.Cut(rest, "/"); found && (v == "v1" || v == "v2") {
		version, rest = v, r
	}
	rest, ok = strings.CutPrefix(rest, "table/")
	if !ok {
		return "", "", "", false
	}
	table, sysID, _ = strings.Cut(rest, "/")
	if table == "" || strings.Contains(sysID, "/") {
		return "", "", "", false
	}
	return version, table, sysID, true
}

// serveTable answers an authenticated Table API request.
func (s *Server) serveTable(w http.ResponseWriter, r *http.Request, user string) {
	version, name, sysID, ok := parseTablePath(r.URL.Path)
	if !ok {
		writeError(w, http.StatusBadRequest, "Requested URI does not represent any resource", nil)
		return
	}
	if !acceptsJSON(r.Header.Get("Accept")) {
		writeError(w, http.StatusNotAcceptable, "Not Acceptable", strPtr("Supported response types: application/json"))
		return
	}
	spec, ok := tables[name]
	if !ok {
		writeError(w, http.StatusBadRequest, "Invalid table "+name, nil)
		return
	}
	switch r.Method {
	case http.MethodGet:
		if sysID == "" {
			s.serveList(w, r, version, spec)
		} else {
			s.serveRecord(w, r, spec, sysID)
		}
	case http.MethodPatch, http.MethodPut:
		switch {
		case sysID == "":
			writeError(w, http.StatusMethodNotAllowed, "Method not Supported", strPtr("Method not Supported"))
		case name != "sc_req_item":
			writeACLDenied(w, "Update")
		default:
			s.servePatch(w, r, sysID, user)
		}
	case http.MethodPost:
		if sysID != "" {
			writeError(w, http.StatusMethodNotAllowed, "Method not Supported", strPtr("Method not Supported"))
			return
		}
		writeACLDenied(w, "Insert")
	case http.MethodDelete:
		writeACLDenied(w, "Delete")
	default:
		writeError(w, http.StatusMethodNotAllowed, "Method not Supported", strPtr("Method not Supported"))
	}
}

// writeACLDenied answers 403 as an ACL rejection of op (Insert, Update, Delete).
func writeACLDenied(w http.ResponseWriter, op string) {
	writeError(w, http.StatusForbidden, "Operation Failed", strPtr("ACL Exception "+op+" Failed due to security constraints"))
}

func writeNoRecord(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "No Record found", strPtr("Record doesn't exist or ACL restricts the record retrieval"))
}

// acceptsJSON reports whether an Accept header admits a JSON answer. A
// missing header gets JSON, the Table API default.
func acceptsJSON(accept string) bool {
	if strings.TrimSpace(accept) == "" {
		return true
	}
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, _ := strings.Cut(part, ";")
		switch strings.ToLower(strings.TrimSpace(mt)) {
		case "application/json", "application/*", "*/*":
			return true
		}
	}
	return false
}

// view holds the rendering parameters of a request.
type view struct {
	fields  []string // nil: the table's columns
	mode    string   // "false", "true" or "all"
	noLinks bool
	base    string // instance URL, for reference links
}

func (s *Server) viewOf(q url.Values) view {
	v := view{mode: "false", base: s.URL()}
	switch strings.ToLower(q.Get("sysparm_display_value")) {
	case "true":
		v.mode = "true"
	case "all":
		v.mode = "all"
	}
	v.noLinks = strings.EqualFold(q.Get("sysparm_exclude_reference_link"), "true")
	if f := q.Get("sysparm_fields"); f != "" {
		for name := range strings.SplitSeq(f, ",") {
			if name = strings.TrimSpace(name); name != "" && !slices.Contains(v.fields, name) {
				v.fields = append(v.fields, name)
			}
		}
	}
	return v
}

// render turns a row into its JSON object. Requested fields the row does not
// have (unknown names, variables the item does not carry) are left out.
func (v view) render(r row, columns []string) object {
	names := v.fields
	if names == nil {
		names = columns
	}
	out := make(object, 0, len(names))
	for _, name := range names {
		c, ok := r[name]
		if !ok {
			continue
		}
		out = append(out, member{name, v.renderCell(c)})
	}
	return out
}

// renderCell renders one field:
//
//	false: "value"; references {"link","value"} (or "value" without links);
//	       journal fields "".
//	true:  "display"; references {"display_value","link"} with no value key
//	       (or "display" without links); journal fields the log.
//	all:   {"display_value","value"}, plus "link" on non-empty references.
//
// An empty reference is "" in the first two modes.
func (v view) renderCell(c cell) any {
	link := ""
	if c.ref != "" && c.value != "" && !v.noLinks {
		link = v.base + "/api/now/table/" + c.ref + "/" + c.value
	}
	switch v.mode {
	case "true":
		if link != "" {
			return object{{"display_value", c.display}, {"link", link}}
		}
		return c.display
	case "all":
		if link != "" {
			return object{{"display_value", c.display}, {"link", link}, {"value", c.value}}
		}
		return object{{"display_value", c.display}, {"value", c.value}}
	default:
		if link != "" {
			return object{{"link", link}, {"value", c.value}}
		}
		return c.value
	}
}

// serveList answers GET on a table: filter, order, page, render.
func (s *Server) serveList(w http.ResponseWriter, r *http.Request, version string, spec *tableSpec) {
	params := r.URL.Query()
	offset := 0
	if o := params.Get("sysparm_offset"); o != "" {
		n, err := strconv.Atoi(o)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "Invalid value for sysparm_offset", strPtr("sysparm_offset must be a non-negative integer"))
			return
		}
		offset = n
	}
	limit := defaultLimit
	if l, err := strconv.Atoi(params.Get("sysparm_limit")); err == nil && l > 0 {
		limit = l
	}
	q := parseQuery(params.Get("sysparm_query"), spec.valid)
	v := s.viewOf(params)

	var page []row
	var total int
	s.mu.Lock()
	readable := spec.readable == nil || spec.readable(s)
	if spec == tables["sc_req_item"] {
		// Filtered and paged on the records; only the page is rendered.
		var recs []*RITM
		recs, total = s.listRITMsLocked(q, offset, limit)
		if readable {
			for _, r := range recs {
				page = append(page, s.ritmRowLocked(r))
			}
		}
		s.mu.Unlock()
	} else {
		all := spec.candidates(s, q)
		s.mu.Unlock()
		var matched []row
		if !(q.invalid && s.invalidNoRows) {
			for _, row := range all {
				if q.matches(row) {
					matched = append(matched, row)
				}
			}
		}
		q.sortRows(matched)
		total = len(matched)
		// The limit and offset apply before read ACLs, so an unreadable table
		// answers an empty page with the full count.
		page = matched[min(offset, total):min(offset+limit, total)]
		if !readable {
			page = nil
		}
	}
	if version == "v1" && len(page) == 0 {
		writeError(w, http.StatusNotFound, "No Record found", strPtr("Records not found"))
		return
	}
	if !strings.EqualFold(params.Get("sysparm_no_count"), "true") {
		w.Header().Set("X-Total-Count", strconv.Itoa(total))
	}
	if !strings.EqualFold(params.Get("sysparm_suppress_pagination_header"), "true") {
		if link := s.linkHeader(r, offset, limit, total); link != "" {
			w.Header().Set("Link", link)
		}
	}
	result := make([]object, 0, len(page))
	for _, row := range page {
		result = append(result, v.render(row, spec.columns))
	}
	writeJSON(w, http.StatusOK, object{{"result", result}})
}

// linkHeader builds the Link header: first, prev and next when they apply,
// and last. Each link is the request URL with its original query, minus
// sysparm_offset and sysparm_limit, plus the page's offset and limit. There is
// no header when everything fits in the first page.
func (s *Server) linkHeader(r *http.Request, offset, limit, total int) string {
	if offset == 0 && total <= limit {
		return ""
	}
	var kept []string
	for pair := range strings.SplitSeq(r.URL.RawQuery, "&") {
		key, _, _ := strings.Cut(pair, "=")
		if pair == "" || key == "sysparm_offset" || key == "sysparm_limit" {
			continue
		}
		kept = append(kept, pair)
	}
	prefix := s.URL() + r.URL.Path + "?"
	if len(kept) > 0 {
		prefix += strings.Join(kept, "&") + "&"
	}
	link := func(off int, rel string) string {
		return "<" + prefix + "sysparm_offset=" + strconv.Itoa(off) + "&sysparm_limit=" + strconv.Itoa(limit) + `>;rel="` + rel + `"`
	}
	last := 0
	if total > 0 {
		last = (total - 1) / limit * limit
	}
	links := []string{link(0, "first")}
	if offset > 0 {
		links = append(links, link(max(offset-limit, 0), "prev"))
	}
	if offset+limit < total {
		links = append(links, link(offset+limit, "next"))
	}
	links = append(links, link(last, "last"))
	return strings.Join(links, ",")
}

// serveRecord answers GET on one record by sys_id.
func (s *Server) serveRecord(w http.ResponseWriter, r *http.Request, spec *tableSpec, sysID string) {
	v := s.viewOf(r.URL.Query())
	s.mu.Lock()
	var all []row
	if spec == tables["sc_req_item"] {
		if rec := s.ritms[sysID]; rec != nil {
			all = []row{s.ritmRowLocked(rec)}
		}
	} else {
		all = spec.rows(s)
	}
	readable := spec.readable == nil || spec.readable(s)
	s.mu.Unlock()
	if readable {
		for _, row := range all {
			if row["sys_id"].value == sysID {
				writeJSON(w, http.StatusOK, object{{"result", v.render(row, spec.columns)}})
				return
			}
		}
	}
	writeNoRecord(w)
}

// servePatch answers PATCH and PUT on a requested item.
func (s *Server) servePatch(w http.ResponseWriter, r *http.Request, sysID, user string) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusBadRequest, "Exception while reading request", strPtr("Unsupported Content-Type: expected application/json"))
		return
	}
	var raw map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&raw); err != nil || raw == nil {
		writeError(w, http.StatusBadRequest, "Exception while reading request", strPtr("The payload is not valid JSON."))
		return
	}
	fields := make(map[string]string, len(raw))
	for k, v := range raw {
		if s, ok := scalarString(v); ok {
			fields[k] = s
		}
	}
	view := s.viewOf(r.URL.Query())

	s.mu.Lock()
	rec, ok := s.ritms[sysID]
	if !ok {
		s.mu.Unlock()
		writeNoRecord(w)
		return
	}
	s.patchLocked(rec, fields, user)
	row := s.ritmRowLocked(rec)
	s.runFlowLocked(rec)
	s.mu.Unlock()

	if strings.EqualFold(r.Header.Get("X-no-response-body"), "true") {
		w.WriteHeader(http.StatusOK)
		return
	}
	writeJSON(w, http.StatusOK, object{{"result", view.render(row, ritmColumns)}})
}

// scalarString converts a JSON scalar to the string the platform stores:
// strings as is, numbers and booleans by their text, null as "". Objects and
// arrays are not accepted.
func scalarString(m json.RawMessage) (string, bool) {
	var v any
	if json.Unmarshal(m, &v) != nil {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return v, true
	case nil:
		return "", true
	case bool, float64:
		return strings.TrimSpace(string(m)), true
	}
	return "", false
}
