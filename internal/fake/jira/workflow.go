package jira

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
)

// Workflow is the workflow every issue of the fake follows.
type Workflow struct {
	Statuses    []Status
	Transitions []Transition
}

// Status is a workflow status. Category is its status category: "new" (To
// Do), "indeterminate" (In Progress) or "done" (Done).
type Status struct{ ID, Name, Category string }

// Transition is a workflow transition. Its ID is only meaningful together
// with the status it starts from: as in real workflows, two transitions with
// the same name may have different ids from different statuses.
type Transition struct {
	// ID is the transition id sent in POST .../transitions.
	ID, Name string
	// From is the status (name or id) the transition starts from; "" makes it
	// global: available from every status except To.
	From string
	// To is the target status (name or id).
	To string
	// Screen says the transition has a screen: only then are update.comment
	// and fields.resolution accepted.
	Screen bool
	// RequireResolution makes fields.resolution required (only with Screen).
	RequireResolution bool
	// KeepResolution leaves the resolution as it is when the transition goes
	// to a status that is not done (a workflow without the "clear resolution"
	// post function). By default such a transition clears it.
	KeepResolution bool
}

// Status categories.
const (
	CategoryNew           = "new"
	CategoryIndeterminate = "indeterminate"
	CategoryDone          = "done"
)

// Status names of the default workflow.
const (
	StatusOpen               = "Open"
	StatusWaitingForApproval = "Waiting for approval"
	StatusApproved           = "Approved"
	StatusInProgress         = "In Progress"
	StatusDone               = "Done"
	StatusRejected           = "Rejected"
)

// DefaultWorkflow returns the workflow used unless WithWorkflow says
// otherwise:
//
//	Open (new) --11 Submit--> Waiting for approval (indeterminate)
//	Waiting for approval --21 Approve--> Approved (indeterminate)
//	Waiting for approval --31 Decline--> Rejected (done)
//	Approved --41 Done--> Done (done)           screen, resolution required
//	Approved --51 Reject--> Rejected (done)     screen, resolution required
//	In Progress (indeterminate) --71 Complete--> Done   no screen
//	In Progress --81 Reject--> Rejected         screen, resolution optional
//	any status --91 Reopen--> Open              global
func DefaultWorkflow() Workflow {
	return Workflow{
		Statuses: []Status{
			{ID: "1", Name: StatusOpen, Category: CategoryNew},
			{ID: "10103", Name: StatusWaitingForApproval, Category: CategoryIndeterminate},
			{ID: "10104", Name: StatusApproved, Category: CategoryIndeterminate},
			{ID: "3", Name: StatusInProgress, Category: CategoryIndeterminate},
			{ID: "10002", Name: StatusDone, Category: CategoryDone},
			{ID: "10105", Name: StatusRejected, Category: CategoryDone},
		},
		Transitions: []Transition{
			{ID: "11", Name: "Submit", From: StatusOpen, To: StatusWaitingForApproval},
			{ID: "21", Name: "Approve", From: StatusWaitingForApproval, To: StatusApproved},
			{ID: "31", Name: "Decline", From: StatusWaitingForApproval, To: StatusRejected},
			{ID: "41", Name: "Done", From: StatusApproved, To: StatusDone, Screen: true, RequireResolution: true},
			{ID: "51", Name: "Reject", From: StatusApproved, To: StatusRejected, Screen: true, RequireResolution: true},
			{ID: "71", Name: "Complete", From: StatusInProgress, To: StatusDone},
			{ID: "81", Name: "Reject", From: StatusInProgress, To: StatusRejected, Screen: true},
			{ID: "91", Name: "Reopen", From: "", To: StatusOpen},
		},
	}
}

func (w Workflow) clone() Workflow {
	return Workflow{Statuses: slices.Clone(w.Statuses), Transitions: slices.Clone(w.Transitions)}
}

// normalize checks the workflow, gives statuses without an id one, and
// rewrites transition ends to status names.
func (w *Workflow) normalize() error {
	if len(w.Statuses) == 0 {
		return fmt.Errorf("workflow has no statuses")
	}
	used := map[string]bool{}
	for _, st := range w.Statuses {
		if st.ID != "" {
			used[st.ID] = true
		}
	}
	next := 10300
	for i := range w.Statuses {
		st := &w.Statuses[i]
		if st.Name == "" {
			return fmt.Errorf("status %d has no name", i)
		}
		switch st.Category {
		case CategoryNew, CategoryIndeterminate, CategoryDone:
		default:
			return fmt.Errorf("status %q: unknown category %q", st.Name, st.Category)
		}
		for _, other := range w.Statuses[:i] {
			if strings.EqualFold(other.Name, st.Name) || (st.ID != "" && other.ID == st.ID) {
				return fmt.Errorf("status %q is declared twice", st.Name)
			}
		}
		if st.ID == "" {
			for used[strconv.Itoa(next)] {
				next++
			}
			st.ID = strconv.Itoa(next)
			used[st.ID] = true
		}
	}
	for i := range w.Transitions {
		t := &w.Transitions[i]
		if t.ID == "" || t.Name == "" {
			return fmt.Errorf("transition %d needs an id and a name", i)
		}
		to, ok := w.status(t.To)
		if !ok {
			return fmt.Errorf("transition %s: unknown target status %q", t.ID, t.To)
		}
		t.To = to.Name
		if t.From != "" {
			from, ok := w.status(t.From)
			if !ok {
				return fmt.Errorf("transition %s: unknown source status %q", t.ID, t.From)
			}
			t.From = from.Name
		}
		if t.RequireResolution && !t.Screen {
			return fmt.Errorf("transition %s: RequireResolution needs Screen", t.ID)
		}
	}
	for _, st := range w.Statuses {
		seen := map[string]bool{}
		for _, t := range w.available(st.Name) {
			if seen[t.ID] {
				return fmt.Errorf("two transitions with id %s from status %q", t.ID, st.Name)
			}
			seen[t.ID] = true
		}
	}
	return nil
}

// status finds a status by name (case-insensitively) or id.
func (w *Workflow) status(ref string) (Status, bool) {
	for _, st := range w.Statuses {
		if strings.EqualFold(st.Name, ref) || st.ID == ref {
			return st, true
		}
	}
	return Status{}, false
}

// statusIndex is the position of a status, used to sort by status.
func (w *Workflow) statusIndex(name string) int {
	for i, st := range w.Statuses {
		if st.Name == name {
			return i
		}
	}
	return len(w.Statuses)
}

// available returns the transitions an issue in status from can take, in
// declaration order.
func (w *Workflow) available(from string) []Transition {
	var out []Transition
	for _, t := range w.Transitions {
		if t.From == "" && !strings.EqualFold(t.To, from) || strings.EqualFold(t.From, from) {
			out = append(out, t)
		}
	}
	return out
}

// category describes a status category.
type category struct {
	id                   int
	key, name, colorName string
}

var categories = map[string]category{
	CategoryNew:           {2, CategoryNew, "To Do", "blue-gray"},
	CategoryIndeterminate: {4, CategoryIndeterminate, "In Progress", "yellow"},
	CategoryDone:          {3, CategoryDone, "Done", "green"},
}

func (s *Server) categoryJSON(key string) object {
	c := categories[key]
	return object{
		{"self", s.apiURL("statuscategory/" + strconv.Itoa(c.id))},
		{"id", c.id},
		{"key", c.key},
		{"colorName", c.colorName},
		{"name", c.name},
	}
}

func (s *Server) statusJSON(st Status) object {
	return object{
		{"self", s.apiURL("status/" + st.ID)},
		{"description", ""},
		{"iconUrl", s.baseURL() + "/"},
		{"name", st.Name},
		{"id", st.ID},
		{"statusCategory", s.categoryJSON(st.Category)},
	}
}

// serveStatuses answers GET /status.
func (s *Server) serveStatuses(w http.ResponseWriter, r *http.Request) {
	out := make([]object, 0, len(s.workflow.Statuses))
	for _, st := range s.workflow.Statuses {
		out = append(out, s.statusJSON(st))
	}
	writeJSON(w, http.StatusOK, out)
}

// resolution is one of the instance's resolutions.
type resolution struct{ id, name, description string }

// Resolutions of the fake, as on a Jira Service Management project.
var resolutions = []resolution{
	{"10000", "Done", "Work has been completed on this issue."},
	{"10001", "Won't Do", "This issue won't be actioned."},
	{"10002", "Declined", "This issue was not approved."},
	{"10003", "Duplicate", "The problem is a duplicate of an existing issue."},
}

// findResolution looks a resolution up by name (case-insensitively) or id.
func findResolution(ref string) (resolution, bool) {
	for _, r := range resolutions {
		if strings.EqualFold(r.name, ref) || r.id == ref {
			return r, true
		}
	}
	return resolution{}, false
}

func resolutionIndex(name string) int {
	for i, r := range resolutions {
		if r.name == name {
			return i
		}
	}
	return len(resolutions)
}

func (s *Server) resolutionJSON(r resolution) object {
	return object{
		{"self", s.apiURL("resolution/" + r.id)},
		{"id", r.id},
		{"description", r.description},
		{"name", r.name},
	}
}

// serveResolutions answers GET /resolution.
func (s *Server) serveResolutions(w http.ResponseWriter, r *http.Request) {
	out := make([]object, 0, len(resolutions))
	for _, res := range resolutions {
		out = append(out, s.resolutionJSON(res))
	}
	writeJSON(w, http.StatusOK, out)
}

// transitionJSON renders a transition as GET .../transitions does; withFields
// adds the screen's fields (expand=transitions.fields).
func (s *Server) transitionJSON(t Transition, from string, withFields bool) object {
	to, _ := s.workflow.status(t.To)
	o := object{
		{"id", t.ID},
		{"name", t.Name},
		{"to", s.statusJSON(to)},
		{"hasScreen", t.Screen},
		{"isGlobal", t.From == ""},
		{"isInitial", false},
		{"isAvailable", true},
		{"isConditional", false},
		{"isLooped", strings.EqualFold(t.To, from)},
	}
	if !withFields {
		return o
	}
	fields := object{}
	if t.Screen {
		allowed := make([]object, 0, len(resolutions))
		for _, r := range resolutions {
			allowed = append(allowed, s.resolutionJSON(r))
		}
		fields = object{
			{"resolution", object{
				{"required", t.RequireResolution},
				{"schema", object{{"type", "resolution"}, {"system", "resolution"}}},
				{"name", "Resolution"},
				{"key", "resolution"},
				{"hasDefaultValue", false},
				{"operations", []string{"set"}},
				{"allowedValues", allowed},
			}},
			{"comment", object{
				{"required", false},
				{"schema", object{{"type", "comment"}, {"system", "comment"}}},
				{"name", "Comment"},
				{"key", "comment"},
				{"hasDefaultValue", false},
				{"operations", []string{"add", "edit", "remove"}},
			}},
		}
	}
	return append(o, member{"fields", fields})
}

// transitionsJSONLocked lists the transitions available to rec.
func (s *Server) transitionsJSONLocked(rec *issueRecord, withFields bool, only string) []object {
	out := []object{}
	for _, t := range s.workflow.available(rec.issue.Status) {
		if only != "" && t.ID != only {
			continue
		}
		out = append(out, s.transitionJSON(t, rec.issue.Status, withFields))
	}
	return out
}

// serveGetTransitions answers GET /issue/{idOrKey}/transitions
// [?expand=transitions.fields][&transitionId=N].
func (s *Server) serveGetTransitions(w http.ResponseWriter, r *http.Request, idOrKey string) {
	q := r.URL.Query()
	withFields := slices.Contains(splitList(q["expand"]), "transitions.fields")
	s.mu.Lock()
	rec := s.lookupLocked(idOrKey)
	var body object
	if rec != nil {
		body = object{{"expand", "transitions"}, {"transitions", s.transitionsJSONLocked(rec, withFields, q.Get("transitionId"))}}
	}
	s.mu.Unlock()
	if rec == nil {
		writeRaw(w, http.StatusNotFound, []byte(IssueNotFoundBody))
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// transitionRequest is the body of POST .../transitions.
type transitionRequest struct {
	Transition *struct {
		ID json.RawMessage `json:"id"`
	} `json:"transition"`
	Fields map[string]json.RawMessage              `json:"fields"`
	Update map[string][]map[string]json.RawMessage `json:"update"`
}

// cannotBeSet is Jira's error for a field the transition's screen lacks.
func cannotBeSet(field string) string {
	return "Field '" + field + "' cannot be set. It is not on the appropriate screen, or unknown."
}

// servePostTransition answers POST /issue/{idOrKey}/transitions: 204 after
// moving the issue, setting or clearing its resolution and adding the
// comment, or 400 with Jira's messages.
func (s *Server) servePostTransition(w http.ResponseWriter, r *http.Request, idOrKey string) {
	var req transitionRequest
	if !readJSON(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.lookupLocked(idOrKey)
	if rec == nil {
		writeRaw(w, http.StatusNotFound, []byte(IssueNotFoundBody))
		return
	}
	if req.Transition == nil || len(req.Transition.ID) == 0 || string(req.Transition.ID) == "null" {
		writeError(w, http.StatusBadRequest, []string{"Missing 'transition' identifier"}, nil)
		return
	}
	id := rawString(req.Transition.ID)
	var t Transition
	var found bool
	for _, cand := range s.workflow.available(rec.issue.Status) {
		if cand.ID == id {
			t, found = cand, true
			break
		}
	}
	if !found {
		writeError(w, http.StatusBadRequest, []string{"Transition id '" + id + "' is not valid for this issue."}, nil)
		return
	}

	errs := object{}
	var res *resolution
	for _, k := range sortedKeys(req.Fields) {
		v := req.Fields[k]
		if k != "resolution" || !t.Screen {
			errs = append(errs, member{k, cannotBeSet(k)})
			continue
		}
		if string(v) == "null" {
			continue
		}
		found, ok := parseResolution(v)
		if !ok {
			errs = append(errs, member{"resolution", "Could not find valid 'id' or 'name' in resolution object."})
			continue
		}
		res = &found
	}
	type newComment struct {
		body  string
		props map[string]json.RawMessage
	}
	var comments []newComment
	for _, k := range sortedKeys(req.Update) {
		if k != "comment" || !t.Screen {
			errs = append(errs, member{k, cannotBeSet(k)})
			continue
		}
		for _, op := range req.Update[k] {
			add, ok := op["add"]
			if !ok {
				continue
			}
			var c struct {
				Body       json.RawMessage `json:"body"`
				Properties json.RawMessage `json:"properties"`
			}
			json.Unmarshal(add, &c)
			body, msg := s.checkCommentBody(c.Body)
			if msg != "" {
				errs = append(errs, member{"comment", msg})
				continue
			}
			props, msg := parseCommentProperties(c.Properties)
			if msg != "" {
				errs = append(errs, member{"comment", msg})
				continue
			}
			comments = append(comments, newComment{body, props})
		}
	}
	if t.RequireResolution && res == nil {
		if _, dup := errs.get("resolution"); !dup {
			errs = append(errs, member{"resolution", "Resolution is required."})
		}
	}
	if len(errs) > 0 {
		writeFieldErrors(w, errs)
		return
	}

	now := s.now()
	me := s.Myself()
	is := &rec.issue
	var items []changeItem
	if !strings.EqualFold(is.Status, t.To) {
		items = append(items, s.statusChange(is.Status, t.To))
	}
	newRes := is.Resolution
	switch {
	case res != nil:
		newRes = res.name
	case categoryOf(&s.workflow, t.To) != CategoryDone && !t.KeepResolution:
		newRes = ""
	}
	if newRes != is.Resolution {
		items = append(items, resolutionChange(is.Resolution, newRes))
		is.Resolution = newRes
		if newRes == "" {
			is.ResolutionDate = time.Time{}
		} else {
			is.ResolutionDate = now
		}
	}
	is.Status = t.To
	is.Updated = now
	s.changedLocked()
	s.recordHistoryLocked(rec, me, now, items)
	for _, c := range comments {
		s.appendCommentLocked(rec, c.body, c.props, me, now)
	}
	writeNoContent(w)
}

// parseResolution reads {"name":…} or {"id":…}. An empty id (as go-jira's
// jira.Resolution struct sends it, without omitempty) counts as absent.
func parseResolution(raw json.RawMessage) (resolution, bool) {
	var v struct {
		ID   json.RawMessage `json:"id"`
		Name *string         `json:"name"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return resolution{}, false
	}
	if id := rawString(v.ID); id != "" {
		for _, r := range resolutions {
			if r.id == id {
				return r, true
			}
		}
		return resolution{}, false
	}
	if v.Name != nil {
		for _, r := range resolutions {
			if strings.EqualFold(r.name, *v.Name) {
				return r, true
			}
		}
	}
	return resolution{}, false
}

// checkCommentBody validates a comment body: it must be a non-empty string
// within the comment limit. It returns the body or Jira's error message.
func (s *Server) checkCommentBody(raw json.RawMessage) (string, string) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", "Comment body can not be empty!"
	}
	var body string
	if err := json.Unmarshal(raw, &body); err != nil {
		return "", "Comment body is not valid!"
	}
	if strings.TrimSpace(body) == "" {
		return "", "Comment body can not be empty!"
	}
	if textLength(body) > s.commentLimit {
		return "", TooLongMessage(s.commentLimit)
	}
	return body, ""
}

// TooLongMessage is Jira's error for text over the limit of n characters.
func TooLongMessage(n int) string {
	return "The entered text is too long. It exceeds the allowed limit of " + groupThousands(n) + " characters."
}

// textLength counts characters as Jira (Java) does: UTF-16 code units.
func textLength(s string) int {
	n := 0
	for _, r := range s {
		if l := utf16.RuneLen(r); l > 0 {
			n += l
		} else {
			n++
		}
	}
	return n
}

func groupThousands(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + groupThousands(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// categoryOf returns the category of the named status.
func categoryOf(w *Workflow, name string) string {
	st, _ := w.status(name)
	return st.Category
}

// rawString reads a JSON string or number as a string.
func rawString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
