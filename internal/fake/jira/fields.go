package jira

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Custom field kinds accepted by WithCustomField.
const (
	kindText   = "text"
	kindSelect = "select"
)

// customField is a custom field of the instance.
type customField struct {
	name, id, kind string
	num            int64
}

// defaultCustomFields are the custom fields of a fake without WithCustomField.
var defaultCustomFields = []customField{
	{name: "Image name", id: "customfield_10050", kind: kindText},
	{name: "Justification", id: "customfield_10051", kind: kindText},
	{name: "Environment", id: "customfield_10052", kind: kindSelect},
	{name: "Team", id: "customfield_10053", kind: kindText},
}

// buildCustomFields applies WithCustomField declarations to the defaults.
func buildCustomFields(overrides []customField) []*customField {
	var out []*customField
	add := func(f customField) {
		id := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(f.id)), "customfield_")
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n <= 0 {
			panic(fmt.Sprintf("jira fake: custom field %q: invalid id %q", f.name, f.id))
		}
		f.id, f.num = "customfield_"+id, n
		f.kind = strings.ToLower(f.kind)
		if f.kind != kindText && f.kind != kindSelect {
			panic(fmt.Sprintf("jira fake: custom field %q: unknown kind %q (want text or select)", f.name, f.kind))
		}
		if strings.TrimSpace(f.name) == "" {
			panic(fmt.Sprintf("jira fake: custom field %s has no name", f.id))
		}
		for i, have := range out {
			if strings.EqualFold(have.name, f.name) {
				out[i] = &f
				return
			}
		}
		out = append(out, &f)
	}
	for _, f := range defaultCustomFields {
		add(f)
	}
	for _, f := range overrides {
		add(f)
	}
	for i, a := range out {
		for _, b := range out[:i] {
			if a.id == b.id {
				panic(fmt.Sprintf("jira fake: custom fields %q and %q share the id %s", b.name, a.name, a.id))
			}
		}
	}
	return out
}

// customField returns the declared custom field with this id, or nil.
func (s *Server) customField(id string) *customField {
	for _, f := range s.fields {
		if f.id == id {
			return f
		}
	}
	return nil
}

// FieldID returns the id of the field with this name (case-insensitively):
// a custom field's customfield_NNNNN, or a system field's id ("Summary" →
// "summary"). It returns "" for an unknown name.
func (s *Server) FieldID(name string) string {
	for _, f := range s.fields {
		if strings.EqualFold(f.name, name) {
			return f.id
		}
	}
	for _, f := range systemFields {
		if strings.EqualFold(f.name, name) {
			return f.id
		}
	}
	return ""
}

// systemField describes a system field in GET /field.
type systemField struct {
	id, name                         string
	orderable, navigable, searchable bool
	clauseNames                      []string
	schema                           object
}

func sysSchema(typ, system string) object { return object{{"type", typ}, {"system", system}} }

var systemFields = []systemField{
	{"issuekey", "Key", false, true, false, []string{"id", "issue", "issuekey", "key"}, nil},
	{"summary", "Summary", true, true, true, []string{"summary"}, sysSchema("string", "summary")},
	{"description", "Description", true, true, true, []string{"description"}, sysSchema("string", "description")},
	{"issuetype", "Issue Type", true, true, true, []string{"issuetype", "type"}, sysSchema("issuetype", "issuetype")},
	{"project", "Project", false, true, true, []string{"project"}, sysSchema("project", "project")},
	{"status", "Status", false, true, true, []string{"status"}, sysSchema("status", "status")},
	{"resolution", "Resolution", true, true, true, []string{"resolution"}, sysSchema("resolution", "resolution")},
	{"resolutiondate", "Resolved", false, true, true, []string{"resolutiondate", "resolved"}, sysSchema("datetime", "resolutiondate")},
	{"reporter", "Reporter", true, true, true, []string{"reporter"}, sysSchema("user", "reporter")},
	{"assignee", "Assignee", true, true, true, []string{"assignee"}, sysSchema("user", "assignee")},
	{"labels", "Labels", true, true, true, []string{"labels"}, object{{"type", "array"}, {"items", "string"}, {"system", "labels"}}},
	{"created", "Created", false, true, true, []string{"created", "createdDate"}, sysSchema("datetime", "created")},
	{"updated", "Updated", false, true, true, []string{"updated", "updatedDate"}, sysSchema("datetime", "updated")},
	{"comment", "Comment", true, false, true, []string{"comment"}, sysSchema("comments-page", "comment")},
}

// serveFields answers GET /field: the system fields, then the custom fields
// with their clause names (cf[NNNNN] and the name) and schema.
func (s *Server) serveFields(w http.ResponseWriter, r *http.Request) {
	out := make([]object, 0, len(systemFields)+len(s.fields))
	for _, f := range systemFields {
		o := object{
			{"id", f.id},
			{"key", f.id},
			{"name", f.name},
			{"custom", false},
			{"orderable", f.orderable},
			{"navigable", f.navigable},
			{"searchable", f.searchable},
			{"clauseNames", f.clauseNames},
		}
		if f.schema != nil {
			o = append(o, member{"schema", f.schema})
		}
		out = append(out, o)
	}
	for _, f := range s.fields {
		typ, custom := "string", "com.atlassian.jira.plugin.system.customfieldtypes:textfield"
		if f.kind == kindSelect {
			typ, custom = "option", "com.atlassian.jira.plugin.system.customfieldtypes:select"
		}
		o := object{
			{"id", f.id},
			{"key", f.id},
			{"name", f.name},
		}
		if s.cloud() {
			o = append(o, member{"untranslatedName", f.name})
		}
		o = append(o,
			member{"custom", true},
			member{"orderable", true},
			member{"navigable", true},
			member{"searchable", true},
			member{"clauseNames", []string{"cf[" + strconv.FormatInt(f.num, 10) + "]", f.name}},
			member{"schema", object{{"type", typ}, {"custom", custom}, {"customId", f.num}}},
		)
		out = append(out, o)
	}
	writeJSON(w, http.StatusOK, out)
}
