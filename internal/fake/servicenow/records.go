package servicenow

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// dateLayout is the layout of every date-time value on the Table API:
// UTC in value mode, the API user's time zone in display mode.
const dateLayout = "2006-01-02 15:04:05"

// Task states, as stored in the choice field "state".
const (
	StatePending          = "-5"
	StateOpen             = "1"
	StateWorkInProgress   = "2"
	StateClosedComplete   = "3"
	StateClosedIncomplete = "4"
	StateClosedSkipped    = "7"
)

// Journal element names.
const (
	ElementWorkNotes = "work_notes"
	ElementComments  = "comments"
)

var stateLabels = map[string]string{
	StatePending:          "Pending",
	StateOpen:             "Open",
	StateWorkInProgress:   "Work in Progress",
	StateClosedComplete:   "Closed Complete",
	StateClosedIncomplete: "Closed Incomplete",
	StateClosedSkipped:    "Closed Skipped",
}

var approvalLabels = map[string]string{
	"not requested": "Not Yet Requested",
	"requested":     "Requested",
	"approved":      "Approved",
	"rejected":      "Rejected",
	"cancelled":     "Cancelled",
	"not_required":  "No Longer Required",
	"duplicate":     "Duplicate",
}

var stageLabels = map[string]string{
	"waiting_for_approval": "Waiting for Approval",
	"request_approved":     "Approved",
	"fulfillment":          "Fulfillment",
	"delivery":             "Delivery",
	"complete":             "Completed",
	"Request Cancelled":    "Request Cancelled",
}

// isClosedState reports whether state is one of the closed task states; moving
// a RITM into one of them fires the close business rule.
func isClosedState(state string) bool {
	return state == StateClosedComplete || state == StateClosedIncomplete || state == StateClosedSkipped
}

// RITM is one requested item (a row of sc_req_item). Reference fields
// (CatItem, Request, RequestedFor, AssignmentGroup, ClosedBy) hold the
// referenced record's sys_id; their display values come from SetDisplayValue.
type RITM struct {
	SysID, Number, State, Approval, Active, Stage, CatItem, Request, RequestedFor, AssignmentGroup, ShortDescription string

	// Variables holds the catalog variable answers by variable name. They are
	// readable as "variables.<name>" in sysparm_fields and sysparm_query, and
	// as rows of sc_item_option_mtom.
	Variables map[string]string

	SysModCount                int
	SysCreatedOn, SysUpdatedOn time.Time
	CloseNotes                 string
	ClosedAt                   time.Time

	// ClosedBy is the sys_user sys_id of the user whose write closed the
	// record (see UserSysID); set by the close business rule.
	ClosedBy string
	// SysCreatedBy and SysUpdatedBy are user names (plain strings, not
	// references), as on a real instance. AddRITM defaults both to "admin".
	SysCreatedBy, SysUpdatedBy string
}

func (r RITM) clone() RITM {
	r.Variables = maps.Clone(r.Variables)
	return r
}

// JournalEntry is one row of sys_journal_field: a work note or an additional
// comment appended to a record. ElementID is the RITM's sys_id.
type JournalEntry struct {
	SysID, Element, ElementID, Value, CreatedBy string
	CreatedOn                                   time.Time
}

// variableDef describes a catalog variable (item_option_new).
type variableDef struct {
	name, question, typ string
}

// newSysID returns a random sys_id: 32 lowercase hex characters.
func newSysID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// derivedSysID returns a stable sys_id derived from parts, for records the
// fake synthesises (variable answers, users).
func derivedSysID(parts ...string) string {
	h := sha1.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// UserSysID returns the sys_user sys_id the fake uses for the user with the
// given user name (for example in closed_by). Its display value is the name.
func UserSysID(userName string) string {
	return derivedSysID("sys_user", userName)
}

// AddRITM stores a requested item and returns the stored copy. Zero fields get
// defaults: a random sys_id, Number "RITM" + 7 digits counting up from
// RITM0010001, State "1", Approval "approved", Active "true", Stage
// "request_approved", SysCreatedOn now and SysUpdatedOn = SysCreatedOn,
// SysCreatedBy and SysUpdatedBy "admin". Times are truncated to whole seconds
// in UTC, the resolution of the platform. Adding a sys_id that already exists
// panics.
func (s *Server) AddRITM(r RITM) RITM {
	s.mu.Lock()
	defer s.mu.Unlock()
	r = r.clone()
	if r.SysID == "" {
		r.SysID = newSysID()
	}
	if _, dup := s.ritms[r.SysID]; dup {
		panic(fmt.Sprintf("servicenow fake: RITM %s already exists", r.SysID))
	}
	if r.Number == "" {
		s.seq++
		r.Number = fmt.Sprintf("RITM%07d", 10000+s.seq)
	}
	if r.State == "" {
		r.State = StateOpen
	}
	if r.Approval == "" {
		r.Approval = "approved"
	}
	if r.Active == "" {
		r.Active = "true"
	}
	if r.Stage == "" {
		r.Stage = "request_approved"
	}
	if r.SysCreatedOn.IsZero() {
		r.SysCreatedOn = s.now()
	}
	r.SysCreatedOn = platformTime(r.SysCreatedOn)
	if r.SysUpdatedOn.IsZero() {
		r.SysUpdatedOn = r.SysCreatedOn
	}
	r.SysUpdatedOn = platformTime(r.SysUpdatedOn)
	if !r.ClosedAt.IsZero() {
		r.ClosedAt = platformTime(r.ClosedAt)
	}
	if r.SysCreatedBy == "" {
		r.SysCreatedBy = "admin"
	}
	if r.SysUpdatedBy == "" {
		r.SysUpdatedBy = r.SysCreatedBy
	}
	if r.Variables == nil {
		r.Variables = map[string]string{}
	}
	s.ritms[r.SysID] = &r
	s.order = append(s.order, r.SysID)
	s.index.added()
	return r.clone()
}

// RITM returns a copy of the stored record.
func (s *Server) RITM(sysID string) (RITM, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.ritms[sysID]
	if !ok {
		return RITM{}, false
	}
	return r.clone(), true
}

// RITMs returns a copy of every stored record, in insertion order.
func (s *Server) RITMs() []RITM {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RITM, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.ritms[id].clone())
	}
	return out
}

// Journal returns the work_notes and comments entries of the RITM, oldest first.
func (s *Server) Journal(sysID string) []JournalEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []JournalEntry
	for _, i := range s.journalBy[sysID] {
		out = append(out, s.journal[i])
	}
	return out
}

// WorkNotes returns the RITM's work notes (internal: fulfillers see them,
// the requester does not), oldest first.
func (s *Server) WorkNotes(sysID string) []JournalEntry { return s.journalOf(sysID, ElementWorkNotes) }

// Comments returns the RITM's additional comments (customer visible: the
// requester sees them and is notified), oldest first.
func (s *Server) Comments(sysID string) []JournalEntry { return s.journalOf(sysID, ElementComments) }

func (s *Server) journalOf(sysID, element string) []JournalEntry {
	var out []JournalEntry
	for _, e := range s.Journal(sysID) {
		if e.Element == element {
			out = append(out, e)
		}
	}
	return out
}

// AddJournal appends a journal entry to the RITM as user would from the UI
// (element is "work_notes" or "comments"). Like any journal write it bumps
// sys_mod_count and sys_updated_on. It reports false if the RITM does not exist.
func (s *Server) AddJournal(sysID, element, value, user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.ritms[sysID]
	if !ok {
		return false
	}
	s.appendJournal(r, element, value, user)
	r.SysModCount++
	r.SysUpdatedOn = s.now()
	r.SysUpdatedBy = user
	s.index.changed(s, r)
	return true
}

// Update changes a record as a person would in the UI: fn edits a copy, then
// sys_mod_count is incremented and sys_updated_on set to now (unless fn set
// them itself), and the close business rule runs if the state moved to 3, 4
// or 7. The sys_id cannot be changed. Unknown sys_ids are ignored.
func (s *Server) Update(sysID string, fn func(*RITM)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.ritms[sysID]
	if !ok {
		return
	}
	s.updateLocked(r, fn, "")
}

// updateLocked applies fn to r as a committed update by user ("" keeps
// sys_updated_by as fn leaves it).
func (s *Server) updateLocked(r *RITM, fn func(*RITM), user string) {
	before := r.clone()
	next := r.clone()
	fn(&next)
	next.SysID = before.SysID
	if next.SysModCount == before.SysModCount {
		next.SysModCount++
	}
	if next.SysUpdatedOn.Equal(before.SysUpdatedOn) {
		next.SysUpdatedOn = s.now()
	}
	next.SysUpdatedOn = platformTime(next.SysUpdatedOn)
	if user != "" {
		next.SysUpdatedBy = user
	}
	if next.Variables == nil {
		next.Variables = map[string]string{}
	}
	s.closeRule(before, &next, user)
	*r = next
	s.index.changed(s, r)
}

// closeRule emulates the task business rule: when state moves into a closed
// state, active becomes "false" and closed_at/closed_by are stamped.
func (s *Server) closeRule(before RITM, after *RITM, user string) {
	if !isClosedState(after.State) || isClosedState(before.State) {
		return
	}
	after.Active = "false"
	if after.ClosedAt.Equal(before.ClosedAt) {
		after.ClosedAt = s.now()
	}
	if user == "" {
		user = after.SysUpdatedBy
	}
	if user != "" && after.ClosedBy == before.ClosedBy {
		after.ClosedBy = s.userRef(user)
	}
}

// userRef returns the sys_user sys_id for user and registers the user name as
// its display value.
func (s *Server) userRef(user string) string {
	id := UserSysID(user)
	if _, ok := s.display[id]; !ok {
		s.display[id] = user
	}
	return id
}

// SetDisplayValue registers the display value shown for references to the
// record with this sys_id: a catalog item's name, a request's number, a
// user's or group's name. Unregistered references display their sys_id.
func (s *Server) SetDisplayValue(sysID, display string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.display[sysID] = display
}

// SetFlow installs fn as the catalog flow of every RITM: it runs after each
// write through the Table API, like an asynchronous flow or after business
// rule, and may change the record (for example set the stage, or move a
// closed item back to another state). Its changes are committed as a
// separate update (sys_mod_count is bumped again); the PATCH response does not
// show them, later reads do. A nil fn removes the flow.
func (s *Server) SetFlow(fn func(*RITM)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flow = fn
}

// runFlowLocked runs the flow on r and commits its changes, if any.
func (s *Server) runFlowLocked(r *RITM) {
	if s.flow == nil {
		return
	}
	probe := r.clone()
	s.flow(&probe)
	if equalRITM(probe, *r) {
		return
	}
	s.updateLocked(r, func(x *RITM) {
		sysMod, updated := x.SysModCount, x.SysUpdatedOn
		*x = probe
		x.SysModCount, x.SysUpdatedOn = sysMod, updated
	}, "system")
}

func equalRITM(a, b RITM) bool {
	if !maps.Equal(a.Variables, b.Variables) {
		return false
	}
	a.Variables, b.Variables = nil, nil
	return reflect.DeepEqual(a, b)
}

// appendJournal adds a journal entry for r; empty values are ignored, as on
// the platform.
func (s *Server) appendJournal(r *RITM, element, value, user string) {
	if value == "" {
		return
	}
	s.journalBy[r.SysID] = append(s.journalBy[r.SysID], len(s.journal))
	s.journal = append(s.journal, JournalEntry{
		SysID:     newSysID(),
		Element:   element,
		ElementID: r.SysID,
		Value:     value,
		CreatedBy: user,
		CreatedOn: s.now(),
	})
}

// writableFields are the sc_req_item fields a PATCH may change. Everything
// else (sys_* fields, dot-walked keys such as variables.x, unknown names) is
// silently ignored.
var writableFields = map[string]func(*RITM, string){
	"state":             func(r *RITM, v string) { r.State = v },
	"approval":          func(r *RITM, v string) { r.Approval = v },
	"stage":             func(r *RITM, v string) { r.Stage = v },
	"close_notes":       func(r *RITM, v string) { r.CloseNotes = v },
	"assignment_group":  func(r *RITM, v string) { r.AssignmentGroup = v },
	"short_description": func(r *RITM, v string) { r.ShortDescription = v },
}

// DenyFieldWrite models a field-level write ACL on sc_req_item: a Table API
// write by the API user still answers 200 but silently leaves field as it
// was (the platform drops fields the user may not write). field is a column
// such as "state", "close_notes" or "work_notes". AllowFieldWrite undoes it.
func (s *Server) DenyFieldWrite(field string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeDenied == nil {
		s.writeDenied = map[string]bool{}
	}
	s.writeDenied[field] = true
}

// AllowFieldWrite lifts a DenyFieldWrite.
func (s *Server) AllowFieldWrite(field string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.writeDenied, field)
}

// patchLocked applies a Table API write of fields by user to r, dropping
// the fields a field-level write ACL denies (DenyFieldWrite).
func (s *Server) patchLocked(r *RITM, fields map[string]string, user string) {
	if len(s.writeDenied) > 0 {
		allowed := make(map[string]string, len(fields))
		for k, v := range fields {
			if !s.writeDenied[k] {
				allowed[k] = v
			}
		}
		fields = allowed
	}
	s.updateLocked(r, func(x *RITM) {
		for k, v := range fields {
			if set, ok := writableFields[k]; ok {
				set(x, v)
			}
		}
	}, user)
	// Journal entries are stamped after the update so that they carry the
	// same time as sys_updated_on.
	for _, element := range []string{ElementWorkNotes, ElementComments} {
		if v, ok := fields[element]; ok {
			s.appendJournal(r, element, v, user)
		}
	}
}

// platformTime truncates t to the platform's one-second resolution, in UTC.
func platformTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Second)
}

// cell is one field of a row, with everything needed to render it in the
// three display modes.
type cell struct {
	value   string
	display string
	ref     string // referenced table, for reference fields
	journal bool   // journal field: value is always "", display holds the log
	numeric bool   // compare as integers in queries and ordering
}

// row is one record as the Table API sees it: field name to cell.
type row map[string]cell

func plain(v string) cell { return cell{value: v, display: v} }

func choice(v string, labels map[string]string) cell {
	d, ok := labels[v]
	if !ok {
		d = v
	}
	return cell{value: v, display: d}
}

func (s *Server) dateCell(t time.Time) cell {
	if t.IsZero() {
		return cell{}
	}
	return cell{value: t.UTC().Format(dateLayout), display: t.In(s.loc).Format(dateLayout)}
}

func (s *Server) refCell(table, id string) cell {
	c := cell{value: id, ref: table}
	if id != "" {
		c.display = id
		if d, ok := s.display[id]; ok {
			c.display = d
		}
	}
	return c
}

func intCell(n int) cell {
	v := strconv.Itoa(n)
	return cell{value: v, display: v, numeric: true}
}

// ritmColumns are the sc_req_item fields returned when sysparm_fields is absent.
var ritmColumns = []string{
	"sys_id", "number", "state", "approval", "active", "stage", "cat_item", "request",
	"requested_for", "assignment_group", "short_description", "close_notes", "closed_at",
	"closed_by", "work_notes", "comments", "sys_created_on", "sys_created_by",
	"sys_updated_on", "sys_updated_by", "sys_mod_count",
}

// ritmRowLocked renders r as a Table API row.
func (s *Server) ritmRowLocked(r *RITM) row {
	out := make(row, len(ritmColumns)+len(r.Variables))
	for _, name := range ritmColumns {
		out[name], _ = s.ritmCellLocked(r, name, true)
	}
	for name, v := range r.Variables {
		out["variables."+name] = plain(v)
	}
	return out
}

// ritmCellLocked renders one field of r, as ritmRowLocked would; ok is false
// for a field the record does not have. Without full, only what queries
// compare is filled in (value and numeric): no display values, no journal log.
func (s *Server) ritmCellLocked(r *RITM, field string, full bool) (cell, bool) {
	ref := func(table, id string) cell {
		if full {
			return s.refCell(table, id)
		}
		return cell{value: id, ref: table}
	}
	date := func(t time.Time) cell {
		if full {
			return s.dateCell(t)
		}
		if t.IsZero() {
			return cell{}
		}
		return cell{value: t.UTC().Format(dateLayout)}
	}
	switch field {
	case "sys_id":
		return plain(r.SysID), true
	case "number":
		return plain(r.Number), true
	case "state":
		return choice(r.State, stateLabels), true
	case "approval":
		return choice(r.Approval, approvalLabels), true
	case "active":
		return plain(r.Active), true
	case "stage":
		return choice(r.Stage, stageLabels), true
	case "cat_item":
		return ref("sc_cat_item", r.CatItem), true
	case "request":
		return ref("sc_request", r.Request), true
	case "requested_for":
		return ref("sys_user", r.RequestedFor), true
	case "assignment_group":
		return ref("sys_user_group", r.AssignmentGroup), true
	case "short_description":
		return plain(r.ShortDescription), true
	case "close_notes":
		return plain(r.CloseNotes), true
	case "closed_at":
		return date(r.ClosedAt), true
	case "closed_by":
		return ref("sys_user", r.ClosedBy), true
	case ElementWorkNotes, ElementComments:
		c := cell{journal: true}
		if full {
			c.display = s.journalLogLocked(r.SysID, field)
		}
		return c, true
	case "sys_created_on":
		return date(r.SysCreatedOn), true
	case "sys_created_by":
		return plain(r.SysCreatedBy), true
	case "sys_updated_on":
		return date(r.SysUpdatedOn), true
	case "sys_updated_by":
		return plain(r.SysUpdatedBy), true
	case "sys_mod_count":
		return intCell(r.SysModCount), true
	}
	if name, ok := strings.CutPrefix(field, "variables."); ok {
		if v, ok := r.Variables[name]; ok {
			return plain(v), true
		}
	}
	return cell{}, false
}

// journalLogLocked renders the display value of a journal field: every entry,
// newest first, as "<date> - <user> (<label>)\n<text>\n\n".
func (s *Server) journalLogLocked(sysID, element string) string {
	label := "Work notes"
	if element == ElementComments {
		label = "Additional comments"
	}
	var b []byte
	for _, i := range slices.Backward(s.journalBy[sysID]) {
		e := &s.journal[i]
		if e.Element != element {
			continue
		}
		b = fmt.Appendf(b, "%s - %s (%s)\n%s\n\n", e.CreatedOn.In(s.loc).Format(dateLayout), e.CreatedBy, label, e.Value)
	}
	return string(b)
}

// journalColumns are the sys_journal_field fields.
var journalColumns = []string{"sys_id", "element", "element_id", "name", "value", "sys_created_on", "sys_created_by"}

func (s *Server) journalRow(e JournalEntry) row {
	return row{
		"sys_id":         plain(e.SysID),
		"element":        plain(e.Element),
		"element_id":     plain(e.ElementID),
		"name":           plain("sc_req_item"),
		"value":          plain(e.Value),
		"sys_created_on": s.dateCell(e.CreatedOn),
		"sys_created_by": plain(e.CreatedBy),
	}
}

// mtomColumns are the sc_item_option_mtom fields returned when sysparm_fields
// is absent: only references, so the answers themselves are visible only when
// the dot-walked fields are requested, as on a real instance.
var mtomColumns = []string{
	"sys_id", "request_item", "sc_item_option", "sys_created_on", "sys_created_by",
	"sys_updated_on", "sys_updated_by", "sys_mod_count",
}

// mtomDotted are the dot-walked sc_item_option_mtom fields the fake serves.
var mtomDotted = []string{
	"sc_item_option.value",
	"sc_item_option.item_option_new",
	"sc_item_option.item_option_new.name",
	"sc_item_option.item_option_new.question_text",
	"sc_item_option.item_option_new.type",
}

// variableNamesLocked orders r's variables: those declared with WithVariable
// in declaration order, then the others by name.
func (s *Server) variableNamesLocked(r *RITM) []string {
	var names []string
	for _, d := range s.vars {
		if _, ok := r.Variables[d.name]; ok {
			names = append(names, d.name)
		}
	}
	var rest []string
	for name := range r.Variables {
		if !slices.Contains(names, name) {
			rest = append(rest, name)
		}
	}
	slices.Sort(rest)
	return append(names, rest...)
}

func (s *Server) variableDef(name string) variableDef {
	for _, d := range s.vars {
		if d.name == name {
			return d
		}
	}
	return variableDef{name: name, question: name, typ: "6"}
}

// mtomRowsLocked derives the sc_item_option_mtom rows of r, one per variable
// answer.
func (s *Server) mtomRowsLocked(r *RITM) []row {
	var out []row
	for _, name := range s.variableNamesLocked(r) {
		def := s.variableDef(name)
		optID := derivedSysID("sc_item_option", r.SysID, name)
		defID := derivedSysID("item_option_new", name)
		opt := s.refCell("sc_item_option", optID)
		opt.display = r.Variables[name]
		question := s.refCell("item_option_new", defID)
		question.display = def.question
		out = append(out, row{
			"sys_id":                              plain(derivedSysID("sc_item_option_mtom", r.SysID, name)),
			"request_item":                        cell{value: r.SysID, display: r.Number, ref: "sc_req_item"},
			"sc_item_option":                      opt,
			"sys_created_on":                      s.dateCell(r.SysCreatedOn),
			"sys_created_by":                      plain(r.SysCreatedBy),
			"sys_updated_on":                      s.dateCell(r.SysCreatedOn),
			"sys_updated_by":                      plain(r.SysCreatedBy),
			"sys_mod_count":                       intCell(0),
			"sc_item_option.value":                plain(r.Variables[name]),
			"sc_item_option.item_option_new":      question,
			"sc_item_option.item_option_new.name": plain(def.name),
			"sc_item_option.item_option_new.question_text": plain(def.question),
			"sc_item_option.item_option_new.type":          plain(def.typ),
		})
	}
	return out
}
