package jira

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Issue is one issue of the fake.
type Issue struct {
	ID, Key, Project, IssueType, Status, Summary string
	// Description is the plain (wiki markup) description; "" renders null.
	Description string
	Reporter    User
	// Resolution is the resolution name ("Done", "Won't Do", "Declined",
	// "Duplicate"); "" means unresolved.
	Resolution string
	// ResolutionDate is when the resolution was set; zero while unresolved.
	ResolutionDate time.Time
	// Fields holds custom field values by id (customfield_NNNNN): a string for
	// a text field, map[string]any{"value": "..."} (optionally with "id") or
	// a plain string for a select field, nil for unset. Keys of fields not
	// declared with WithCustomField are served as given (for example a JSM
	// Request Type object) but cannot be searched.
	Fields  map[string]any
	Labels  []string
	Created time.Time
	Updated time.Time
}

// User is a Jira user. Cloud identifies users by AccountID only (name, key
// and, usually, email are hidden); Data Center by Name and Key.
type User struct{ AccountID, Name, Key, DisplayName, Email string }

// Comment is a comment on an issue.
type Comment struct {
	ID, Body string
	Author   User
	Created  time.Time
	// Properties are the entity properties the comment was created with
	// ("properties": [{"key": …, "value": …}]), by key.
	Properties map[string]json.RawMessage
	// Internal: on a service-desk project, the comment was created with the
	// sd.public.comment property {"internal": true}, so only agents see it.
	// Any other comment there is public: the portal shows it to the
	// customers of the request and emails them. On other project types
	// there are no customers and the property changes nothing (false).
	Internal bool
}

// SDPublicCommentKey is the entity property that makes a Jira Service
// Management comment internal when its value is {"internal": true}.
const SDPublicCommentKey = "sd.public.comment"

// Project type keys (projectTypeKey).
const (
	ProjectTypeServiceDesk = "service_desk"
	ProjectTypeSoftware    = "software"
	ProjectTypeBusiness    = "business"
)

// Visibility returns "internal" or "public", as the Jira Service Management
// agent view labels the comment.
func (c Comment) Visibility() string {
	if c.Internal {
		return "internal"
	}
	return "public"
}

// DefaultReporter is the reporter of issues added without one.
var DefaultReporter = User{
	AccountID:   "712020:5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
	Name:        "ddeveloper",
	Key:         "JIRAUSER10100",
	DisplayName: "Dana Developer",
	Email:       "dana.developer@example.com",
}

// DefaultApprover is the person who changes issues in the user interface:
// the author of the changes Update records and the user of webhook
// deliveries that do not follow a recorded change.
var DefaultApprover = User{
	AccountID:   "712020:9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
	Name:        "aapprover",
	Key:         "JIRAUSER10200",
	DisplayName: "Alex Approver",
	Email:       "alex.approver@example.com",
}

// issueRecord is an issue with its comments, entity properties and history.
type issueRecord struct {
	issue     Issue
	comments  []Comment
	props     []property
	histories []history
}

type property struct {
	key   string
	value json.RawMessage
}

// history is one changelog entry.
type history struct {
	id      string
	author  User
	created time.Time
	items   []changeItem
}

type changeItem struct {
	field, fieldID                 string
	from, fromString, to, toString string
}

type project struct{ id, key, name string }

type issueType struct{ id, name, description string }

func (i Issue) clone() Issue {
	i.Fields = maps.Clone(i.Fields)
	for k, v := range i.Fields {
		if m, ok := v.(map[string]any); ok {
			i.Fields[k] = maps.Clone(m)
		}
	}
	i.Labels = slices.Clone(i.Labels)
	return i
}

var keyPattern = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9_]*)-([0-9]+)$`)

// AddIssue stores an issue and returns the stored copy. Zero fields get
// defaults: ID counting up from "10001", Project "IMG" (or the prefix of
// Key), Key "<Project>-<n>" with n counting up per project, IssueType "Image
// Request", Status "Approved", Summary "Image request", Reporter
// DefaultReporter, Created now and Updated = Created. Status and Resolution
// may be given by name or id. A resolved issue without ResolutionDate gets
// Updated. Missing parts of the reporter are derived from the others. Times
// are truncated to milliseconds in UTC. A duplicate id or key, or an unknown
// status or resolution, panics.
func (s *Server) AddIssue(i Issue) Issue {
	s.mu.Lock()
	defer s.mu.Unlock()
	i = i.clone()
	if i.Project == "" {
		if m := keyPattern.FindStringSubmatch(i.Key); m != nil {
			i.Project = m[1]
		} else {
			i.Project = "IMG"
		}
	}
	i.Project = strings.ToUpper(i.Project)
	s.projectLocked(i.Project)
	if i.ID == "" {
		for s.issues[strconv.Itoa(s.nextIssueID)] != nil {
			s.nextIssueID++
		}
		i.ID = strconv.Itoa(s.nextIssueID)
		s.nextIssueID++
	} else if s.issues[i.ID] != nil {
		panic(fmt.Sprintf("jira fake: issue id %s already exists", i.ID))
	} else if n, err := strconv.Atoi(i.ID); err == nil && n >= s.nextIssueID {
		s.nextIssueID = n + 1
	}
	if i.Key == "" {
		for {
			s.keySeq[i.Project]++
			i.Key = fmt.Sprintf("%s-%d", i.Project, s.keySeq[i.Project])
			if _, dup := s.keys[strings.ToUpper(i.Key)]; !dup {
				break
			}
		}
	} else {
		m := keyPattern.FindStringSubmatch(i.Key)
		if m == nil || !strings.EqualFold(m[1], i.Project) {
			panic(fmt.Sprintf("jira fake: key %q does not belong to project %s", i.Key, i.Project))
		}
		if _, dup := s.keys[strings.ToUpper(i.Key)]; dup {
			panic(fmt.Sprintf("jira fake: issue %s already exists", i.Key))
		}
		i.Key = strings.ToUpper(i.Key)
		if n, _ := strconv.Atoi(m[2]); n > s.keySeq[i.Project] {
			s.keySeq[i.Project] = n
		}
	}
	if i.IssueType == "" {
		i.IssueType = "Image Request"
	}
	i.IssueType = s.issueTypeLocked(i.IssueType).name
	if i.Status == "" {
		i.Status = StatusApproved
	}
	if i.Summary == "" {
		i.Summary = "Image request"
	}
	if i.Reporter == (User{}) {
		i.Reporter = DefaultReporter
	}
	if i.Created.IsZero() {
		i.Created = s.now()
	}
	i.Created = jiraTime(i.Created)
	if i.Updated.IsZero() {
		i.Updated = i.Created
	}
	s.normalizeLocked(&i)
	if i.Resolution != "" && i.ResolutionDate.IsZero() {
		i.ResolutionDate = i.Updated
	}
	rec := &issueRecord{issue: i}
	s.issues[i.ID] = rec
	s.changedLocked()
	s.keys[i.Key] = i.ID
	s.order = append(s.order, i.ID)
	return i.clone()
}

// normalizeLocked makes status and resolution canonical names, fills the
// reporter, and truncates times.
func (s *Server) normalizeLocked(i *Issue) {
	st, ok := s.workflow.status(i.Status)
	if !ok {
		panic(fmt.Sprintf("jira fake: %s: unknown status %q", i.Key, i.Status))
	}
	i.Status = st.Name
	if i.Resolution != "" {
		r, ok := findResolution(i.Resolution)
		if !ok {
			panic(fmt.Sprintf("jira fake: %s: unknown resolution %q", i.Key, i.Resolution))
		}
		i.Resolution = r.name
	} else {
		i.ResolutionDate = time.Time{}
	}
	if i.Fields == nil {
		i.Fields = map[string]any{}
	}
	if i.Labels == nil {
		i.Labels = []string{}
	}
	i.Reporter = completeUser(i.Reporter)
	i.Updated = jiraTime(i.Updated)
	if !i.ResolutionDate.IsZero() {
		i.ResolutionDate = jiraTime(i.ResolutionDate)
	}
}

// completeUser derives the missing identifiers of a user from the others.
func completeUser(u User) User {
	if u == (User{}) {
		return u
	}
	seed := u.AccountID + "\x00" + u.Name + "\x00" + u.Email + "\x00" + u.DisplayName
	sum := sha1.Sum([]byte(seed))
	h := hex.EncodeToString(sum[:])
	if u.Name == "" {
		switch {
		case u.Email != "":
			u.Name, _, _ = strings.Cut(u.Email, "@")
		case u.DisplayName != "":
			u.Name = strings.ToLower(strings.Join(strings.Fields(u.DisplayName), "."))
		default:
			u.Name = "user-" + h[:8]
		}
	}
	if u.AccountID == "" {
		u.AccountID = "712020:" + h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-8" + h[17:20] + "-" + h[20:32]
	}
	if u.Key == "" {
		n, _ := strconv.ParseUint(h[:6], 16, 32)
		u.Key = fmt.Sprintf("JIRAUSER%d", 20000+n%80000)
	}
	if u.DisplayName == "" {
		u.DisplayName = u.Name
	}
	return u
}

// projectLocked returns the project with key, registering it if new.
func (s *Server) projectLocked(key string) *project {
	for _, p := range s.projects {
		if strings.EqualFold(p.key, key) {
			return p
		}
	}
	p := &project{id: strconv.Itoa(10007 + len(s.projects)), key: strings.ToUpper(key), name: strings.ToUpper(key)}
	s.projects = append(s.projects, p)
	return p
}

// projectTypeLocked returns the projectTypeKey of the project with key
// (WithProjectType; default service_desk).
func (s *Server) projectTypeLocked(key string) string {
	if t, ok := s.projectTypes[strings.ToUpper(key)]; ok {
		return t
	}
	return ProjectTypeServiceDesk
}

// sdInternal reads an sd.public.comment value: {"internal": true} makes a
// comment internal; anything else leaves it public.
func sdInternal(v json.RawMessage) bool {
	var p struct {
		Internal bool `json:"internal"`
	}
	return json.Unmarshal(v, &p) == nil && p.Internal
}

// parseCommentProperties reads a comment's "properties" member:
// [{"key": "…", "value": <JSON>}, …]. It returns nil for an absent or null
// member, or Jira's error message.
func parseCommentProperties(raw json.RawMessage) (map[string]json.RawMessage, string) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, ""
	}
	var list []struct {
		Key   *string         `json:"key"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, "Comment properties are not valid: expected an array of {key, value}."
	}
	out := make(map[string]json.RawMessage, len(list))
	for _, p := range list {
		switch {
		case p.Key == nil || strings.TrimSpace(*p.Key) == "":
			return nil, "The property key cannot be null or empty."
		case len(*p.Key) > 255:
			return nil, "The property key cannot be longer than 255 characters."
		case len(p.Value) == 0 || string(p.Value) == "null":
			return nil, "The property value cannot be null."
		case len(p.Value) > maxPropertyValue:
			return nil, "The property value cannot be longer than 32768 bytes."
		}
		out[*p.Key] = slices.Clone(p.Value)
	}
	return out, ""
}

// issueTypeLocked returns the issue type with name or id, registering a new
// name.
func (s *Server) issueTypeLocked(ref string) *issueType {
	for _, t := range s.issueTypes {
		if strings.EqualFold(t.name, ref) || t.id == ref {
			return t
		}
	}
	t := &issueType{id: strconv.Itoa(10021 + len(s.issueTypes)), name: ref}
	s.issueTypes = append(s.issueTypes, t)
	return t
}

// lookupLocked finds an issue by id or key (keys compare case-insensitively).
func (s *Server) lookupLocked(idOrKey string) *issueRecord {
	if rec := s.issues[idOrKey]; rec != nil {
		return rec
	}
	if id, ok := s.keys[strings.ToUpper(idOrKey)]; ok {
		return s.issues[id]
	}
	return nil
}

// Issue returns a copy of the issue with this key or id.
func (s *Server) Issue(key string) (Issue, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.lookupLocked(key)
	if rec == nil {
		return Issue{}, false
	}
	return rec.issue.clone(), true
}

// Issues returns copies of every issue, in insertion order.
func (s *Server) Issues() []Issue {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Issue, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.issues[id].issue.clone())
	}
	return out
}

// Comments returns the comments of the issue, oldest first.
func (s *Server) Comments(key string) []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.lookupLocked(key)
	if rec == nil {
		return nil
	}
	return slices.Clone(rec.comments)
}

// AddComment appends a comment to the issue as author would from the user
// interface (a zero author is the API user, see Myself). It bumps updated and
// is not subject to the comment limit. It reports false if the issue does
// not exist.
func (s *Server) AddComment(key, body string, author User) (Comment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.lookupLocked(key)
	if rec == nil {
		return Comment{}, false
	}
	if author == (User{}) {
		author = s.Myself()
	} else {
		author = completeUser(author)
	}
	now := s.now()
	rec.issue.Updated = now
	s.changedLocked()
	return s.appendCommentLocked(rec, body, nil, author, now), true
}

// appendCommentLocked adds a comment with its entity properties (nil: none).
func (s *Server) appendCommentLocked(rec *issueRecord, body string, props map[string]json.RawMessage, author User, at time.Time) Comment {
	c := Comment{ID: strconv.Itoa(s.nextComment), Body: body, Author: author, Created: at, Properties: props}
	c.Internal = s.projectTypeLocked(rec.issue.Project) == ProjectTypeServiceDesk && sdInternal(props[SDPublicCommentKey])
	s.nextComment++
	rec.comments = append(rec.comments, c)
	s.changedLocked()
	return c
}

// Update changes an issue as a person (DefaultApprover) would in the user
// interface: fn edits a copy, then updated is set to now (unless fn set it).
// Status and resolution may be set by name or id; a status or resolution
// change is recorded in the changelog, setting a resolution stamps
// ResolutionDate. ID, Key and Project cannot be changed. Unknown keys are
// ignored; an unknown status or resolution panics.
func (s *Server) Update(key string, fn func(*Issue)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.lookupLocked(key)
	if rec == nil {
		return
	}
	before := rec.issue.clone()
	next := rec.issue.clone()
	fn(&next)
	next.ID, next.Key, next.Project = before.ID, before.Key, before.Project
	if next.IssueType == "" {
		next.IssueType = before.IssueType
	}
	next.IssueType = s.issueTypeLocked(next.IssueType).name
	if next.Reporter == (User{}) {
		next.Reporter = before.Reporter
	}
	now := s.now()
	if next.Updated.Equal(before.Updated) {
		next.Updated = now
	}
	s.normalizeLocked(&next)
	var items []changeItem
	if next.Status != before.Status {
		items = append(items, s.statusChange(before.Status, next.Status))
	}
	if next.Resolution != before.Resolution {
		items = append(items, resolutionChange(before.Resolution, next.Resolution))
		if next.Resolution != "" && next.ResolutionDate.Equal(before.ResolutionDate) {
			next.ResolutionDate = now
		}
	}
	rec.issue = next
	s.changedLocked()
	s.recordHistoryLocked(rec, DefaultApprover, now, items)
}

func (s *Server) statusChange(from, to string) changeItem {
	f, _ := s.workflow.status(from)
	t, _ := s.workflow.status(to)
	return changeItem{field: "status", fieldID: "status", from: f.ID, fromString: f.Name, to: t.ID, toString: t.Name}
}

func resolutionChange(from, to string) changeItem {
	c := changeItem{field: "resolution", fieldID: "resolution"}
	if r, ok := findResolution(from); ok && from != "" {
		c.from, c.fromString = r.id, r.name
	}
	if r, ok := findResolution(to); ok && to != "" {
		c.to, c.toString = r.id, r.name
	}
	return c
}

func (s *Server) recordHistoryLocked(rec *issueRecord, author User, at time.Time, items []changeItem) {
	if len(items) == 0 {
		return
	}
	s.changelogID++
	rec.histories = append(rec.histories, history{id: strconv.Itoa(s.changelogID), author: author, created: at, items: items})
	s.changedLocked()
}

// Property returns the value of an issue entity property.
func (s *Server) Property(key, propertyKey string) (json.RawMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.lookupLocked(key)
	if rec == nil {
		return nil, false
	}
	for _, p := range rec.props {
		if p.key == propertyKey {
			return slices.Clone(p.value), true
		}
	}
	return nil, false
}

// fieldSelection is the parsed "fields" parameter.
type fieldSelection struct {
	all, navigable bool
	include        map[string]bool
	exclude        map[string]bool
	idOnly         bool
}

// parseFieldSelection reads "fields" values (comma lists, possibly
// repeated): field ids, *all, *navigable, and -id to exclude. Without values
// def applies. Unknown ids are ignored, as Jira does. Only excluded fields
// means *navigable minus those.
func parseFieldSelection(values []string, def string) fieldSelection {
	tokens := splitList(values)
	if len(tokens) == 0 {
		tokens = []string{def}
	}
	sel := fieldSelection{include: map[string]bool{}, exclude: map[string]bool{}, idOnly: true}
	positive := false
	for _, t := range tokens {
		t = strings.ToLower(t)
		switch {
		case t == "*all":
			sel.all, positive = true, true
		case t == "*navigable":
			sel.navigable, positive = true, true
		case strings.HasPrefix(t, "-"):
			sel.exclude[t[1:]] = true
		case t == "id":
			continue
		default:
			sel.include[t] = true
			positive = true
		}
		sel.idOnly = false
	}
	if !positive && len(sel.exclude) > 0 {
		sel.navigable = true
	}
	return sel
}

func (f fieldSelection) has(id string, navigable bool) bool {
	id = strings.ToLower(id)
	if f.exclude[id] {
		return false
	}
	return f.all || (f.navigable && navigable) || f.include[id]
}

// splitList splits comma-separated, possibly repeated, parameter values.
func splitList(values []string) []string {
	var out []string
	for _, v := range values {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// issueOptions says what to add to an issue's JSON.
type issueOptions struct {
	names, transitions, transitionFields, changelog bool
	properties                                      []string
	// commentCap limits the comments rendered in fields.comment (0: all).
	commentCap int
}

func expandOptions(expand []string) issueOptions {
	var o issueOptions
	for _, e := range expand {
		switch strings.ToLower(e) {
		case "names":
			o.names = true
		case "transitions":
			o.transitions = true
		case "transitions.fields":
			o.transitions, o.transitionFields = true, true
		case "changelog":
			o.changelog = true
		}
	}
	return o
}

const issueExpand = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"

// issueJSONLocked renders an issue as GET /issue and search results do.
func (s *Server) issueJSONLocked(rec *issueRecord, sel fieldSelection, opts issueOptions) object {
	is := &rec.issue
	if sel.idOnly {
		return object{{"id", is.ID}}
	}
	o := object{
		{"expand", issueExpand},
		{"id", is.ID},
		{"self", s.apiURL("issue/" + is.ID)},
		{"key", is.Key},
	}
	if props := s.propertiesJSON(rec, opts.properties); props != nil {
		o = append(o, member{"properties", props})
	}
	fields := object{}
	names := object{}
	for _, f := range s.fieldValuesLocked(rec, opts.commentCap) {
		if sel.has(f.id, f.navigable) {
			fields = append(fields, member{f.id, f.value})
			names = append(names, member{f.id, f.name})
		}
	}
	o = append(o, member{"fields", fields})
	if opts.names {
		o = append(o, member{"names", names})
	}
	if opts.transitions {
		o = append(o, member{"transitions", s.transitionsJSONLocked(rec, opts.transitionFields, "")})
	}
	if opts.changelog {
		o = append(o, member{"changelog", s.changelogJSON(rec)})
	}
	return o
}

// fieldValue is one rendered field of an issue.
type fieldValue struct {
	id, name  string
	navigable bool
	value     any
}

// fieldValuesLocked renders every field of the issue.
func (s *Server) fieldValuesLocked(rec *issueRecord, commentCap int) []fieldValue {
	is := &rec.issue
	st, _ := s.workflow.status(is.Status)
	var res any
	if r, ok := findResolution(is.Resolution); ok && is.Resolution != "" {
		res = s.resolutionJSON(r)
	}
	var desc any
	if is.Description != "" {
		desc = is.Description
	}
	out := []fieldValue{
		{"issuetype", "Issue Type", true, s.issueTypeJSON(s.issueTypeLocked(is.IssueType))},
		{"project", "Project", true, s.projectJSON(s.projectLocked(is.Project))},
		{"summary", "Summary", true, is.Summary},
		{"description", "Description", true, desc},
		{"labels", "Labels", true, slices.Clone(is.Labels)},
		{"created", "Created", true, formatTime(is.Created)},
		{"updated", "Updated", true, formatTime(is.Updated)},
		{"resolution", "Resolution", true, res},
		{"resolutiondate", "Resolved", true, formatTime(is.ResolutionDate)},
		{"status", "Status", true, s.statusJSON(st)},
		{"reporter", "Reporter", true, s.userJSON(is.Reporter)},
		{"assignee", "Assignee", true, nil},
	}
	for _, f := range s.fields {
		out = append(out, fieldValue{f.id, f.name, true, s.customValueLocked(f, is.Fields[f.id])})
	}
	for _, k := range sortedKeys(is.Fields) {
		if s.customField(k) == nil {
			out = append(out, fieldValue{k, k, true, is.Fields[k]})
		}
	}
	return append(out, fieldValue{"comment", "Comment", false, s.commentsPageJSON(rec, commentCap)})
}

func (s *Server) issueTypeJSON(t *issueType) object {
	o := object{
		{"self", s.apiURL("issuetype/" + t.id)},
		{"id", t.id},
		{"description", t.description},
		{"iconUrl", s.baseURL() + "/secure/viewavatar?size=medium&avatarId=10300&avatarType=issuetype"},
		{"name", t.name},
		{"subtask", false},
	}
	if s.cloud() {
		o = append(o, member{"hierarchyLevel", 0})
	}
	return o
}

func (s *Server) projectJSON(p *project) object {
	o := object{
		{"self", s.apiURL("project/" + p.id)},
		{"id", p.id},
		{"key", p.key},
		{"name", p.name},
		{"projectTypeKey", s.projectTypeLocked(p.key)},
	}
	if s.cloud() {
		o = append(o, member{"simplified", false})
	}
	return o
}

// serveProject answers GET /project/{idOrKey}.
func (s *Server) serveProject(w http.ResponseWriter, ref string) {
	s.mu.Lock()
	var body object
	for _, p := range s.projects {
		if strings.EqualFold(p.key, ref) || p.id == ref {
			body = s.projectJSON(p)
		}
	}
	s.mu.Unlock()
	if body == nil {
		writeError(w, http.StatusNotFound, []string{"No project could be found with key '" + ref + "'."}, nil)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// customValueLocked renders a custom field value: text as a string, select
// as {"self","value","id"}, unset as null.
func (s *Server) customValueLocked(f *customField, v any) any {
	if v == nil {
		return nil
	}
	if f.kind != kindSelect {
		return v
	}
	value, ok := selectValue(v)
	if !ok {
		return v
	}
	id := ""
	if m, ok := v.(map[string]any); ok {
		id, _ = m["id"].(string)
	}
	if id == "" {
		key := f.id + "\x00" + strings.ToLower(value)
		if id = s.options[key]; id == "" {
			id = strconv.Itoa(s.nextOption)
			s.nextOption++
			s.options[key] = id
		}
	}
	return object{{"self", s.apiURL("customFieldOption/" + id)}, {"value", value}, {"id", id}}
}

// selectValue reads the option value of a select field.
func selectValue(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case map[string]any:
		s, ok := v["value"].(string)
		return s, ok
	case map[string]string:
		s, ok := v["value"]
		return s, ok
	}
	return "", false
}

// textValue reads the value of a text field.
func textValue(v any) (string, bool) {
	s, ok := v.(string)
	return s, ok && s != ""
}

func (s *Server) commentJSON(rec *issueRecord, c Comment) object {
	o := object{
		{"self", s.apiURL("issue/" + rec.issue.ID + "/comment/" + c.ID)},
		{"id", c.ID},
		{"author", s.userJSON(c.Author)},
		{"body", c.Body},
		{"updateAuthor", s.userJSON(c.Author)},
		{"created", formatTime(c.Created)},
		{"updated", formatTime(c.Created)},
	}
	if s.cloud() {
		o = append(o, member{"jsdPublic", !c.Internal})
	}
	return o
}

// commentWithPropertiesJSON renders a comment with its entity properties,
// as ?expand=properties does.
func (s *Server) commentWithPropertiesJSON(rec *issueRecord, c Comment) object {
	o := s.commentJSON(rec, c)
	props := make([]object, 0, len(c.Properties))
	for _, k := range slices.Sorted(maps.Keys(c.Properties)) {
		props = append(props, object{{"key", k}, {"value", c.Properties[k]}})
	}
	return append(o, member{"properties", props})
}

// commentRenderer picks the comment rendering ?expand= asks for.
func (s *Server) commentRenderer(r *http.Request) func(*issueRecord, Comment) object {
	if slices.Contains(splitList(r.URL.Query()["expand"]), "properties") {
		return s.commentWithPropertiesJSON
	}
	return s.commentJSON
}

// commentsPageJSON renders fields.comment; capped (as in search results) it
// holds the first n comments and the real total.
func (s *Server) commentsPageJSON(rec *issueRecord, n int) object {
	cs := rec.comments
	if n > 0 && len(cs) > n {
		cs = cs[:n]
	}
	list := make([]object, 0, len(cs))
	for _, c := range cs {
		list = append(list, s.commentJSON(rec, c))
	}
	return object{
		{"comments", list},
		{"self", s.apiURL("issue/" + rec.issue.ID + "/comment")},
		{"maxResults", len(list)},
		{"total", len(rec.comments)},
		{"startAt", 0},
	}
}

func (s *Server) changelogJSON(rec *issueRecord) object {
	hs := make([]object, 0, len(rec.histories))
	for _, h := range rec.histories {
		hs = append(hs, object{
			{"id", h.id},
			{"author", s.userJSON(h.author)},
			{"created", formatTime(h.created)},
			{"items", changeItemsJSON(h.items)},
		})
	}
	return object{{"startAt", 0}, {"maxResults", len(hs)}, {"total", len(hs)}, {"histories", hs}}
}

func changeItemsJSON(items []changeItem) []object {
	out := make([]object, 0, len(items))
	for _, it := range items {
		out = append(out, object{
			{"field", it.field},
			{"fieldtype", "jira"},
			{"fieldId", it.fieldID},
			{"from", nullable(it.from)},
			{"fromString", nullable(it.fromString)},
			{"to", nullable(it.to)},
			{"toString", nullable(it.toString)},
		})
	}
	return out
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// propertiesJSON renders the requested entity properties ("*all" for all);
// nil when none were asked for.
func (s *Server) propertiesJSON(rec *issueRecord, keys []string) object {
	if len(keys) == 0 {
		return nil
	}
	all := slices.Contains(keys, "*all")
	o := object{}
	for _, p := range rec.props {
		if all || slices.Contains(keys, p.key) {
			o = append(o, member{p.key, p.value})
		}
	}
	return o
}

// serveIssueRoutes dispatches /issue/{idOrKey}/...
func (s *Server) serveIssueRoutes(w http.ResponseWriter, r *http.Request, idOrKey string, rest []string) {
	switch {
	case len(rest) == 0:
		s.only(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { s.serveGetIssue(w, r, idOrKey) })
	case len(rest) == 1 && rest[0] == "transitions":
		switch r.Method {
		case http.MethodGet:
			s.serveGetTransitions(w, r, idOrKey)
		case http.MethodPost:
			s.servePostTransition(w, r, idOrKey)
		default:
			writeMethodNotAllowed(w, http.MethodGet, http.MethodPost)
		}
	case len(rest) == 1 && rest[0] == "comment":
		switch r.Method {
		case http.MethodGet:
			s.serveGetComments(w, r, idOrKey)
		case http.MethodPost:
			s.servePostComment(w, r, idOrKey)
		default:
			writeMethodNotAllowed(w, http.MethodGet, http.MethodPost)
		}
	case len(rest) == 2 && rest[0] == "comment":
		s.only(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { s.serveGetComment(w, r, idOrKey, rest[1]) })
	case len(rest) == 1 && rest[0] == "properties":
		s.only(w, r, http.MethodGet, func(w http.ResponseWriter, r *http.Request) { s.servePropertyKeys(w, idOrKey) })
	case len(rest) == 2 && rest[0] == "properties" && rest[1] != "":
		s.serveProperty(w, r, idOrKey, rest[1])
	default:
		s.writeNotFound(w, r)
	}
}

// serveGetIssue answers GET /issue/{idOrKey}[?fields=…][&expand=…][&properties=…].
// Fields default to *all.
func (s *Server) serveGetIssue(w http.ResponseWriter, r *http.Request, idOrKey string) {
	q := r.URL.Query()
	sel := parseFieldSelection(q["fields"], "*all")
	sel.idOnly = false
	opts := expandOptions(splitList(q["expand"]))
	opts.properties = splitList(q["properties"])
	s.mu.Lock()
	rec := s.lookupLocked(idOrKey)
	var body object
	if rec != nil {
		body = s.issueJSONLocked(rec, sel, opts)
	}
	s.mu.Unlock()
	if rec == nil {
		writeRaw(w, http.StatusNotFound, []byte(IssueNotFoundBody))
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// serveGetComments answers GET /issue/{idOrKey}/comment with startAt,
// maxResults (default 5000) and orderBy (created or -created).
func (s *Server) serveGetComments(w http.ResponseWriter, r *http.Request, idOrKey string) {
	q := r.URL.Query()
	startAt, err1 := intParam(q.Get("startAt"), 0)
	maxResults, err2 := intParam(q.Get("maxResults"), 5000)
	if err1 != nil || err2 != nil || startAt < 0 || maxResults < 0 {
		writeError(w, http.StatusBadRequest, []string{"Invalid paging parameters."}, nil)
		return
	}
	s.mu.Lock()
	rec := s.lookupLocked(idOrKey)
	var body object
	if rec != nil {
		cs := slices.Clone(rec.comments)
		if strings.HasPrefix(q.Get("orderBy"), "-") {
			slices.Reverse(cs)
		}
		page := []object{}
		render := s.commentRenderer(r)
		for i := startAt; i < len(cs) && len(page) < maxResults; i++ {
			page = append(page, render(rec, cs[i]))
		}
		body = object{{"startAt", startAt}, {"maxResults", maxResults}, {"total", len(cs)}, {"comments", page}}
	}
	s.mu.Unlock()
	if rec == nil {
		writeRaw(w, http.StatusNotFound, []byte(IssueNotFoundBody))
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// serveGetComment answers GET /issue/{idOrKey}/comment/{id}[?expand=properties].
func (s *Server) serveGetComment(w http.ResponseWriter, r *http.Request, idOrKey, id string) {
	render := s.commentRenderer(r)
	s.mu.Lock()
	rec := s.lookupLocked(idOrKey)
	var body object
	if rec != nil {
		for _, c := range rec.comments {
			if c.ID == id {
				body = render(rec, c)
			}
		}
	}
	s.mu.Unlock()
	switch {
	case rec == nil:
		writeRaw(w, http.StatusNotFound, []byte(IssueNotFoundBody))
	case body == nil:
		writeError(w, http.StatusNotFound, []string{"Can not find a comment for the id: " + id + "."}, nil)
	default:
		writeJSON(w, http.StatusOK, body)
	}
}

// servePostComment answers POST /issue/{idOrKey}/comment {"body": "...",
// "properties": [{"key": …, "value": …}]}: 201 with the comment, or 400 for
// an empty, non-string or too long body or malformed properties. Other
// members (go-jira's empty author, updateAuthor and visibility) are accepted
// and ignored. On a service-desk project a comment is public (customers see
// it and are emailed) unless its sd.public.comment property says
// {"internal": true}.
func (s *Server) servePostComment(w http.ResponseWriter, r *http.Request, idOrKey string) {
	var req struct {
		Body       json.RawMessage `json:"body"`
		Properties json.RawMessage `json:"properties"`
	}
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
	body, msg := s.checkCommentBody(req.Body)
	if msg != "" {
		writeFieldErrors(w, object{{"comment", msg}})
		return
	}
	props, msg := parseCommentProperties(req.Properties)
	if msg != "" {
		writeError(w, http.StatusBadRequest, []string{msg}, nil)
		return
	}
	now := s.now()
	rec.issue.Updated = now
	s.changedLocked()
	c := s.appendCommentLocked(rec, body, props, s.Myself(), now)
	writeJSON(w, http.StatusCreated, s.commentJSON(rec, c))
}

// servePropertyKeys answers GET /issue/{idOrKey}/properties.
func (s *Server) servePropertyKeys(w http.ResponseWriter, idOrKey string) {
	s.mu.Lock()
	rec := s.lookupLocked(idOrKey)
	var keys []object
	if rec != nil {
		keys = []object{}
		for _, p := range rec.props {
			keys = append(keys, object{{"self", s.apiURL("issue/" + rec.issue.ID + "/properties/" + p.key)}, {"key", p.key}})
		}
	}
	s.mu.Unlock()
	if rec == nil {
		writeRaw(w, http.StatusNotFound, []byte(IssueNotFoundBody))
		return
	}
	writeJSON(w, http.StatusOK, object{{"keys", keys}})
}

// maxPropertyValue is Jira's limit on an entity property value.
const maxPropertyValue = 32768

// serveProperty answers GET, PUT (201 created, 200 replaced) and DELETE (204)
// on /issue/{idOrKey}/properties/{propertyKey}. Entity properties are not
// issue fields: writing them does not change updated.
func (s *Server) serveProperty(w http.ResponseWriter, r *http.Request, idOrKey, key string) {
	var value json.RawMessage
	if r.Method == http.MethodPut {
		body, _ := readAll(r)
		if !json.Valid(body) {
			writeError(w, http.StatusBadRequest, []string{"The property value must be a valid JSON."}, nil)
			return
		}
		if len(body) > maxPropertyValue {
			writeError(w, http.StatusBadRequest, []string{"The property value cannot be longer than 32768 bytes."}, nil)
			return
		}
		if len(key) > 255 {
			writeError(w, http.StatusBadRequest, []string{"The property key cannot be longer than 255 characters."}, nil)
			return
		}
		value = body
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.lookupLocked(idOrKey)
	if rec == nil {
		writeRaw(w, http.StatusNotFound, []byte(IssueNotFoundBody))
		return
	}
	idx := slices.IndexFunc(rec.props, func(p property) bool { return p.key == key })
	notFound := func() {
		writeError(w, http.StatusNotFound, []string{"The property with key '" + key + "' does not exist."}, nil)
	}
	switch r.Method {
	case http.MethodGet:
		if idx < 0 {
			notFound()
			return
		}
		writeJSON(w, http.StatusOK, object{{"key", key}, {"value", rec.props[idx].value}})
	case http.MethodPut:
		if idx < 0 {
			rec.props = append(rec.props, property{key, value})
			s.changedLocked()
			writeRaw(w, http.StatusCreated, nil)
			return
		}
		rec.props[idx].value = value
		s.changedLocked()
		writeRaw(w, http.StatusOK, nil)
	case http.MethodDelete:
		if idx < 0 {
			notFound()
			return
		}
		rec.props = slices.Delete(rec.props, idx, idx+1)
		s.changedLocked()
		writeNoContent(w)
	default:
		writeMethodNotAllowed(w, http.MethodGet, http.MethodPut, http.MethodDelete)
	}
}

// intParam parses an optional integer parameter.
func intParam(v string, def int) (int, error) {
	if v == "" {
		return def, nil
	}
	return strconv.Atoi(v)
}
