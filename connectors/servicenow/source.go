package servicenow

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/chainguard-dev/image-request-bridge/internal/ratelimit"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
	"github.com/chainguard-dev/image-request-bridge/internal/upstream"
)

// Name is the source's name in the store, logs and notes.
const Name = "servicenow"

const table = "/api/now/table/sc_req_item"

// Options configure the source; zero values take the defaults shown.
type Options struct {
	InstanceURL string // https://<instance>.service-now.com
	Auth        Auth
	CatalogItem string // sys_id of the "Chainguard image" catalog item (32 hex)
	// Variables: catalog variable names read through variables.<name>.
	ImageVariable         string        // default "image_name"
	JustificationVariable string        // default "justification"
	ExtraVariables        []string      // copied into Ticket.Fields (team, environment, ...)
	ClosedComplete        string        // state value written on success (default "3")
	ClosedIncomplete      string        // state value written on rejection (default "4")
	PageSize              int           // rows per page (default 100)
	Timeout               time.Duration // per HTTP request (default 30s)
	RetryMax              int           // retries of a read in place (default 4; negative: none)
	RetryWaitMax          time.Duration // longest wait between retries, and longest Retry-After honoured in place (default 30s)
	RecheckTimeout        time.Duration // bound of the read after a write whose answer was lost, retries included (default 15s)
	Logger                zerolog.Logger
	// WrapTransport, when set, wraps the HTTP transport each attempt goes
	// through (metrics).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Limiter paces the calls to the instance and holds its pause when it
	// asks for a long rest (nil: pauses only). Use it rather than a limiter
	// in WrapTransport.
	Limiter *ratelimit.Limiter
	// ListAwaiting also lists RITMs still awaiting approval
	// (approval=requested), marked AwaitingApproval, for the auto policy tier.
	ListAwaiting bool
	// RequesterComment adds to each write-back a short entry in the RITM's
	// comments (Additional comments, customer visible) for the requester,
	// who cannot see work notes: the pull reference, or what to do. The
	// configuration turns it on unless servicenow.requester_comment is
	// false; without it only the work note is written.
	RequesterComment bool
}

// Source reads and reports RITMs of one catalog item.
type Source struct {
	o  Options
	c  *client
	fl string // sysparm_fields
	// notesSeen: a result note was seen in a RITM's journal after its PATCH
	// (checkNoteLanded), so work_notes are writable.
	notesSeen atomic.Bool
}

var sysIDRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

// New validates o and builds the source. It makes no request.
func New(o Options) (*Source, error) {
	if !sysIDRe.MatchString(o.CatalogItem) {
		return nil, fmt.Errorf("servicenow: catalog_item %q is not a sys_id (32 lowercase hex characters)", o.CatalogItem)
	}
	if o.ImageVariable == "" {
		o.ImageVariable = DefaultImageVariable
	}
	if o.JustificationVariable == "" {
		o.JustificationVariable = DefaultJustificationVar
	}
	if o.ClosedComplete == "" {
		o.ClosedComplete = DefaultClosedComplete
	}
	if o.ClosedIncomplete == "" {
		o.ClosedIncomplete = DefaultClosedIncomplete
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryWaitMax <= 0 {
		o.RetryWaitMax = upstream.DefaultRetryWaitMax
	}
	for _, v := range append([]string{o.ImageVariable, o.JustificationVariable}, o.ExtraVariables...) {
		if !varNameRe.MatchString(v) {
			return nil, fmt.Errorf("servicenow: variable name %q is not a catalog variable name (letters, digits, underscore)", v)
		}
	}
	c, err := newClient(o.InstanceURL, o.Auth, upstream.Options{
		Timeout:        o.Timeout,
		RetryMax:       o.RetryMax,
		RetryWaitMax:   o.RetryWaitMax,
		RecheckTimeout: o.RecheckTimeout,
		Limiter:        o.Limiter,
		WrapTransport:  o.WrapTransport,
	}, o.Logger)
	if err != nil {
		return nil, err
	}
	fields := []string{"sys_id", "number", "state", "approval", "active", "cat_item", "requested_for", "sys_mod_count", "sys_updated_on",
		"variables." + o.ImageVariable, "variables." + o.JustificationVariable}
	for _, v := range o.ExtraVariables {
		fields = append(fields, "variables."+v)
	}
	return &Source{o: o, c: c, fl: strings.Join(fields, ",")}, nil
}

var varNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,79}$`)

// Name implements isync.Source.
func (s *Source) Name() string { return Name }

// approvedQuery is the encoded query of approved, open RITMs of the catalog
// item, ordered by sys_id and starting after cursor. Keyset paging on sys_id
// (which never changes) cannot skip rows while the bridge closes earlier ones,
// which offset paging over a shrinking result does.
func (s *Source) approvedQuery(cursor string) string {
	q := "active=true^approval=approved^cat_item=" + s.o.CatalogItem
	if s.o.ListAwaiting {
		q = "active=true^approvalINapproved,requested^cat_item=" + s.o.CatalogItem
	}
	if cursor != "" {
		q += "^sys_id>" + cursor
	}
	return q + "^ORDERBYsys_id"
}

func (s *Source) listParams(query string, offset int) url.Values {
	p := url.Values{
		"sysparm_query":                  {query},
		"sysparm_fields":                 {s.fl},
		"sysparm_display_value":          {"all"},
		"sysparm_exclude_reference_link": {"true"},
		"sysparm_limit":                  {strconv.Itoa(s.o.PageSize)},
	}
	if offset > 0 {
		p.Set("sysparm_offset", strconv.Itoa(offset))
	}
	return p
}

// Approved implements isync.Source: it pages through approved, open RITMs of
// the catalog item with a sys_id cursor. sysparm_limit applies before ACLs, so a
// page may come back short or empty while more rows exist; the Link header's
// rel="next" (or a full page when Link is absent) says whether to go on, and an
// empty page steps over with sysparm_offset.
func (s *Source) Approved(ctx context.Context, fn func(isync.Ticket) error) error {
	cursor, offset, empty := "", 0, 0
	for {
		var page listResponse
		hdr, err := s.c.list(ctx, table, s.listParams(s.approvedQuery(cursor), offset), &page)
		if err != nil {
			return s.c.api.Classify(fmt.Errorf("listing approved RITMs: %w", err))
		}
		for _, r := range page.Result {
			t, err := s.ticket(ctx, r)
			if err != nil {
				// One unreadable RITM must not hold up the queue: it is
				// listed again, and retried, on the next pass.
				s.o.Logger.Warn().Str("source", Name).Str("ticket", r.get("number")).Err(err).Msg("skipping a RITM that could not be read; retried next pass")
				continue
			}
			if err := fn(t); err != nil {
				return err
			}
		}
		if !hasNext(hdr, len(page.Result) == s.o.PageSize) {
			return nil
		}
		if n := len(page.Result); n > 0 {
			last := page.Result[n-1].get("sys_id")
			if last <= cursor {
				return fmt.Errorf("listing approved RITMs: the instance ignored the sys_id paging condition (cursor %s did not advance)", cursor)
			}
			cursor, offset, empty = last, 0, 0
			continue
		}
		// A page emptied by ACLs: step over it, but never past the reported
		// total nor forever.
		offset += s.o.PageSize
		empty++
		if total, err := strconv.Atoi(hdr.Get("X-Total-Count")); err == nil && offset >= total {
			return nil
		}
		if empty > maxEmptyPages {
			return fmt.Errorf("listing approved RITMs: %d empty pages in a row although the instance says more follow; stopping", empty)
		}
	}
}

// maxEmptyPages bounds how many ACL-emptied pages are stepped over in a row.
const maxEmptyPages = 100

// hasNext reads the Link header; without one, a full page means "maybe more".
func hasNext(h http.Header, full bool) bool {
	link := h.Get("Link")
	if link == "" {
		return full
	}
	return strings.Contains(link, `rel="next"`)
}

// Get implements isync.Source.
func (s *Source) Get(ctx context.Context, id string) (isync.Ticket, error) {
	if !sysIDRe.MatchString(id) {
		return isync.Ticket{}, fmt.Errorf("servicenow: %q is not a RITM sys_id", id)
	}
	p := url.Values{"sysparm_fields": {s.fl}, "sysparm_display_value": {"all"}, "sysparm_exclude_reference_link": {"true"}}
	var one oneResponse
	if _, err := s.c.do(ctx, http.MethodGet, table+"/"+id, p, nil, &one); err != nil {
		return isync.Ticket{}, s.c.api.Classify(fmt.Errorf("reading RITM %s: %w", id, err))
	}
	return s.ticket(ctx, one.Result)
}

// ticket maps a RITM onto the engine's Ticket. When the image variable comes
// back empty (a variable the dot-walk cannot read, e.g. in a variable set), the
// answers are read through sc_item_option_mtom instead.
func (s *Source) ticket(ctx context.Context, r record) (isync.Ticket, error) {
	id := r.get("sys_id")
	if !sysIDRe.MatchString(id) {
		return isync.Ticket{}, fmt.Errorf("servicenow: record without a valid sys_id (%q)", id)
	}
	state := r.get("state")
	t := isync.Ticket{
		Source:        Name,
		ID:            id,
		Key:           r.get("number"),
		Image:         r.get("variables." + s.o.ImageVariable),
		Justification: r.get("variables." + s.o.JustificationVariable),
		Requester:     r["requested_for"].Display,
		Version:       r.get("sys_mod_count"),
		Open:          r.get("active") == "true" && r.get("approval") == "approved" && r.get("cat_item") == s.o.CatalogItem,
		Fields:        map[string]string{"state": state},
	}
	t.Closed = r.get("active") == "false" || state == s.o.ClosedComplete || state == s.o.ClosedIncomplete || state == "3" || state == "4" || state == "7"
	t.Open = t.Open && !t.Closed
	t.AwaitingApproval = s.o.ListAwaiting && !t.Closed && r.get("active") == "true" && r.get("approval") == "requested" && r.get("cat_item") == s.o.CatalogItem
	if t.Key == "" {
		t.Key = id
	}
	for _, v := range s.o.ExtraVariables {
		t.Fields[v] = r.get("variables." + v)
	}
	if strings.TrimSpace(t.Image) == "" && (t.Open || t.AwaitingApproval) {
		vars, err := s.variables(ctx, id)
		if err != nil {
			return isync.Ticket{}, err
		}
		t.Image = vars[s.o.ImageVariable]
		if t.Justification == "" {
			t.Justification = vars[s.o.JustificationVariable]
		}
		for _, v := range s.o.ExtraVariables {
			if t.Fields[v] == "" {
				t.Fields[v] = vars[v]
			}
		}
	}
	return t, nil
}

// variables reads a RITM's catalog answers through sc_item_option_mtom.
func (s *Source) variables(ctx context.Context, id string) (map[string]string, error) {
	p := url.Values{
		"sysparm_query":                  {"request_item=" + id},
		"sysparm_fields":                 {"sc_item_option.item_option_new.name,sc_item_option.value"},
		"sysparm_exclude_reference_link": {"true"},
	}
	var page listResponse
	if _, err := s.c.list(ctx, "/api/now/table/sc_item_option_mtom", p, &page); err != nil {
		return nil, s.c.api.Classify(fmt.Errorf("reading catalog variables of RITM %s: %w", id, err))
	}
	out := map[string]string{}
	for _, r := range page.Result {
		out[r.get("sc_item_option.item_option_new.name")] = r.get("sc_item_option.value")
	}
	return out, nil
}

// Report implements isync.Source with ONE PATCH carrying work_notes (the
// audit detail, for fulfillers), with RequesterComment a short comments
// entry for the requester (who cannot see work notes), and for a result also
// state and close_notes. A note alone (blocked, syncing) is skipped when the
// journal already holds it. When the PATCH's outcome is unknown (a timeout,
// a reset connection, a 5xx), it re-reads instead of resending: the RITM's
// state for a result, the journal for a note alone. Neither the note nor the
// comment is ever written twice: a retried write-back drops from its PATCH
// each one the journal already holds.
func (s *Source) Report(ctx context.Context, t isync.Ticket, r isync.Report) error {
	if !sysIDRe.MatchString(t.ID) {
		return fmt.Errorf("servicenow: %q is not a RITM sys_id", t.ID)
	}
	note := renderNote(r)
	body := map[string]string{"work_notes": note}
	var comment string
	if s.o.RequesterComment {
		comment = renderComment(r)
	}
	if comment != "" {
		body["comments"] = comment
	}
	target := ""
	switch r.Outcome {
	case isync.OutcomeProvisioned:
		target = s.o.ClosedComplete
	case isync.OutcomeRejected:
		target = s.o.ClosedIncomplete
	}
	if target != "" {
		body["state"] = target
		body["close_notes"] = clean(r.Summary, maxCloseNotes)
	}
	if target == "" || r.Retried {
		// A note alone leaves the RITM open, so the RITM cannot tell whether
		// an earlier attempt landed (a crash right after it): the journal can.
		// So for a retried result: a write ACL may have dropped the state of
		// an earlier PATCH whose work note landed.
		seen, err := s.journalHas(ctx, t, r, comment)
		if err != nil {
			return s.c.api.Classify(fmt.Errorf("checking the work notes of RITM %s: %w", t.Key, err))
		}
		switch {
		case seen.note && target == "":
			// The comment went in the same PATCH as the note: if it is not
			// there, a write ACL dropped it, and would again.
			return nil
		case seen.note:
			// Close it without a second note or comment.
			delete(body, "work_notes")
			delete(body, "comments")
		case seen.comment:
			// The note was dropped (a write ACL on work_notes) but the
			// comment landed: send the note alone.
			delete(body, "comments")
		}
	}
	// The answer carries the record as written: a field the integration
	// user may not write (a field-level write ACL) is dropped silently, with
	// a 200, and only the answer shows it.
	p := url.Values{"sysparm_fields": {"sys_id,state,active,close_notes,sys_mod_count"}}
	var answer oneResponse
	_, err := s.c.do(ctx, http.MethodPatch, table+"/"+t.ID, p, body, &answer)
	if err == nil {
		if err := s.checkWritten(t, target, body, answer.Result); err != nil {
			return err
		}
		return s.checkNoteLanded(ctx, t, r, body)
	}
	if upstream.StatusOf(err) == http.StatusForbidden {
		return isync.Blocked(Name+":write_acl", fmt.Sprintf("ServiceNow refused the update of %s: the integration user cannot write sc_req_item (a write ACL or a business rule: %s); grant it write on work_notes, comments, state and close_notes",
			t.Key, refusal(err)), fmt.Errorf("updating RITM %s: %w", t.Key, err))
	}
	if !upstream.Ambiguous(err) {
		return s.c.api.Classify(fmt.Errorf("updating RITM %s: %w", t.Key, err))
	}
	// The PATCH may have landed: look before doing anything else.
	rctx, cancel := s.c.api.Recheck(ctx)
	landed, verr := s.landed(rctx, t, r, target)
	cancel()
	if verr != nil {
		return fmt.Errorf("updating RITM %s: %w (and checking whether it landed failed: %v)", t.Key, err, verr)
	}
	if landed {
		s.o.Logger.Info().Str("source", Name).Str("ticket", t.Key).Err(err).Msg("write-back answer was lost but the update landed; not resending")
		return nil
	}
	return isync.Retryable(fmt.Errorf("updating RITM %s: %w", t.Key, err))
}

// checkWritten compares a PATCH's answer with what was sent: a state that did
// not become target (nor any closed state) was dropped by a field-level write
// ACL, which no retry fixes. A dropped close_notes is only logged: the RITM
// did close.
func (s *Source) checkWritten(t isync.Ticket, target string, body map[string]string, got record) error {
	if target == "" {
		return nil
	}
	if st, ok := got["state"]; ok && st.Value != target && got.get("active") != "false" && !closedState(st.Value) {
		return isync.Blocked(Name+":write_acl:state", "the integration user cannot write sc_req_item.state (write ACL)",
			fmt.Errorf("updating RITM %s: ServiceNow answered 200 but the state is %q, not %q", t.Key, st.Value, target))
	}
	if cn, ok := got["close_notes"]; ok && cn.Value == "" && body["close_notes"] != "" {
		s.o.Logger.Warn().Str("source", Name).Str("ticket", t.Key).Msg("the integration user cannot write sc_req_item.close_notes (write ACL); the RITM closed without them")
	}
	return nil
}

// checkNoteLanded looks, once per process, for the result note of a PATCH
// that closed a RITM: a field-level write ACL on work_notes drops the note
// silently, with a 200, and the answer cannot show it (work_notes reads back
// empty). Then the RITM is closed and the requester never learns the result,
// which no retry fixes: blocked, so the administrator hears of it at the
// first ticket. Once a note has been read back, no more reads: the ACL is
// the instance's, the same for every RITM.
func (s *Source) checkNoteLanded(ctx context.Context, t isync.Ticket, r isync.Report, body map[string]string) error {
	if _, sent := body["work_notes"]; !sent || s.notesSeen.Load() {
		return nil
	}
	seen, err := s.journalHas(ctx, t, r, "")
	found, readable := seen.note, seen.readable
	switch {
	case err != nil:
		s.o.Logger.Debug().Err(err).Str("source", Name).Str("ticket", t.Key).Msg("could not read the work notes back after a write-back; checked with the next one")
		return nil
	case found:
		s.notesSeen.Store(true)
		return nil
	case !readable:
		// No note at all on the RITM: the note was dropped, or the journal
		// cannot be read (which the bridge needs, to never double a note).
		return isync.Blocked(Name+":work_notes_unverified", fmt.Sprintf("ServiceNow closed %s but its work note cannot be read back: the integration user lacks write on sc_req_item.work_notes (requesters never see the result) or read on sys_journal_field (needed to never write a note twice); grant both", t.Key),
			fmt.Errorf("updating RITM %s: ServiceNow answered 200 and no work note of the RITM is readable", t.Key))
	}
	return isync.Blocked(Name+":write_acl:work_notes", fmt.Sprintf("ServiceNow closed %s but dropped its work note: the integration user cannot write sc_req_item.work_notes (a field write ACL), so requesters never see the result; grant it write on work_notes", t.Key),
		fmt.Errorf("updating RITM %s: ServiceNow answered 200 and the journal has no note %q", t.Key, r.Marker))
}

// closedState reports whether a RITM state value is one of the platform's
// closed states (closed complete, closed incomplete, closed skipped).
func closedState(v string) bool { return v == "3" || v == "4" || v == "7" }

// refusal is what the instance said when it refused a call.
func refusal(err error) string {
	var ae *upstream.APIError
	if errors.As(err, &ae) {
		msg := strings.Join(ae.Messages, "; ")
		if ae.Detail != "" {
			msg += " (" + ae.Detail + ")"
		}
		if msg != "" {
			return msg
		}
	}
	return "HTTP 403"
}

func (s *Source) landed(ctx context.Context, t isync.Ticket, r isync.Report, target string) (bool, error) {
	if target != "" {
		cur, err := s.Get(ctx, t.ID)
		if err != nil {
			return false, err
		}
		return cur.Closed, nil
	}
	seen, err := s.journalHas(ctx, t, r, "")
	if err != nil {
		return false, err
	}
	found, readable := seen.note, seen.readable
	if !found && !readable {
		// Neither journal is readable (missing ACLs): the note may well be
		// there. A note is better missed than doubled; say so.
		s.o.Logger.Warn().Str("source", Name).Str("ticket", t.Key).Msg("cannot read work notes to check whether a note landed; assuming it did (grant read on sys_journal_field)")
		return true, nil
	}
	return found, nil
}

// journalSeen is what a RITM's journal holds of a write-back.
type journalSeen struct {
	note    bool // r's work note
	comment bool // the requester comment (when one was asked for)
	// readable is false when neither journal shows any entry at all, which
	// is what missing read ACLs look like.
	readable bool
}

// journalHas looks for r's signature in the RITM's work notes, and for
// comment's ("": none) in its comments: first in the journal fields'
// display values (which hold the whole journal), then in sys_journal_field.
func (s *Source) journalHas(ctx context.Context, t isync.Ticket, r isync.Report, comment string) (journalSeen, error) {
	sig := signature(r)
	var csig []string
	if comment != "" {
		csig = commentSignature(comment)
	}
	var seen journalSeen
	look := func(element, text string) {
		switch {
		case element == "work_notes" && hasAll(text, sig):
			seen.note = true
		case element == "comments" && csig != nil && hasAll(text, csig):
			seen.comment = true
		}
	}
	p := url.Values{"sysparm_fields": {"work_notes,comments"}, "sysparm_display_value": {"true"}}
	var one oneResponse
	if _, err := s.c.do(ctx, http.MethodGet, table+"/"+t.ID, p, nil, &one); err != nil {
		return journalSeen{}, err
	}
	notes, comments := one.Result["work_notes"].Display, one.Result["comments"].Display
	look("work_notes", notes)
	look("comments", comments)
	if seen.note && (seen.comment || csig == nil) {
		seen.readable = true
		return seen, nil
	}
	q := url.Values{
		"sysparm_query":  {"element_id=" + t.ID + "^elementINwork_notes,comments^ORDERBYDESCsys_created_on"},
		"sysparm_fields": {"element,value"},
		"sysparm_limit":  {"50"},
	}
	var page listResponse
	if _, err := s.c.list(ctx, "/api/now/table/sys_journal_field", q, &page); err != nil {
		return journalSeen{}, err
	}
	for _, e := range page.Result {
		look(e.get("element"), e.get("value"))
	}
	seen.readable = strings.TrimSpace(notes) != "" || strings.TrimSpace(comments) != "" || len(page.Result) > 0
	return seen, nil
}

// signature identifies a note across attempts: its marker line and its Result
// and Cause lines, which do not depend on when it was written.
func signature(r isync.Report) []string {
	sig := []string{clean(r.Marker, maxFieldLen)}
	for _, f := range r.Fields {
		if f.Name == "Result" || f.Name == "Cause" {
			sig = append(sig, f.Name+": "+clean(f.Value, maxFieldLen))
		}
	}
	return sig
}

func hasAll(text string, lines []string) bool {
	for _, l := range lines {
		if !strings.Contains(text, l) {
			return false
		}
	}
	return true
}

// Check makes one authenticated read, for `validate --online` and readiness.
func (s *Source) Check(ctx context.Context) error {
	p := url.Values{"sysparm_query": {"cat_item=" + s.o.CatalogItem}, "sysparm_fields": {"sys_id"}, "sysparm_limit": {"1"}}
	var page listResponse
	if _, err := s.c.list(ctx, table, p, &page); err != nil {
		return s.c.api.Classify(fmt.Errorf("servicenow: %w", err))
	}
	return nil
}

var _ isync.ApprovalChecker = (*Source)(nil)

// ApprovedBy implements isync.ApprovalChecker: the RITM's approvals
// (sysapproval_approver, state=approved) whose approver is a member of group
// (sys_user_grmember; group given by name or sys_id). It returns that
// approver's name, or "" when none is in the group.
func (s *Source) ApprovedBy(ctx context.Context, t isync.Ticket, group string) (string, error) {
	if !sysIDRe.MatchString(t.ID) {
		return "", fmt.Errorf("servicenow: %q is not a RITM sys_id", t.ID)
	}
	if strings.ContainsAny(group, "^\n\r") {
		return "", fmt.Errorf("servicenow: security group %q cannot be used in an encoded query", group)
	}
	var approvals listResponse
	p := url.Values{
		"sysparm_query":                  {"sysapproval=" + t.ID + "^state=approved"},
		"sysparm_fields":                 {"approver"},
		"sysparm_display_value":          {"all"},
		"sysparm_exclude_reference_link": {"true"},
	}
	if _, err := s.c.list(ctx, "/api/now/table/sysapproval_approver", p, &approvals); err != nil {
		return "", s.c.api.Classify(fmt.Errorf("reading approvals of RITM %s: %w", t.Key, err))
	}
	names := map[string]string{}
	var ids []string
	for _, a := range approvals.Result {
		if id := a["approver"].Value; sysIDRe.MatchString(id) {
			names[id] = a["approver"].Display
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return "", nil
	}
	field := "group.name"
	if sysIDRe.MatchString(group) {
		field = "group"
	}
	var members listResponse
	q := url.Values{
		"sysparm_query":                  {field + "=" + group + "^userIN" + strings.Join(ids, ",")},
		"sysparm_fields":                 {"user"},
		"sysparm_exclude_reference_link": {"true"},
	}
	if _, err := s.c.list(ctx, "/api/now/table/sys_user_grmember", q, &members); err != nil {
		return "", s.c.api.Classify(fmt.Errorf("reading members of group %q: %w", group, err))
	}
	for _, m := range members.Result {
		if n, ok := names[m.get("user")]; ok {
			return n, nil
		}
	}
	return "", nil
}
