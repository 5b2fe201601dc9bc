package jira

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
	"github.com/chainguard-dev/image-request-bridge/internal/upstream"
)

// transition is one entry of GET /rest/api/2/issue/{id}/transitions
// ?expand=transitions.fields, decoded here because go-jira's Transition drops
// hasScreen and the resolution's allowedValues.
type transition struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	HasScreen bool   `json:"hasScreen"`
	To        struct {
		Name           string `json:"name"`
		StatusCategory struct {
			Key string `json:"key"`
		} `json:"statusCategory"`
	} `json:"to"`
	Fields map[string]struct {
		Required      bool `json:"required"`
		AllowedValues []struct {
			Name string `json:"name"`
		} `json:"allowedValues"`
	} `json:"fields"`
}

// pickTransition finds the transition named want, or else the one leading to a
// status named want (transition ids differ per workflow and per status).
func pickTransition(ts []transition, want string) (transition, bool) {
	for _, t := range ts {
		if strings.EqualFold(t.Name, want) {
			return t, true
		}
	}
	for _, t := range ts {
		if strings.EqualFold(t.To.Name, want) {
			return t, true
		}
	}
	return transition{}, false
}

// resolutionFor picks the resolution to set: the first preferred name the
// transition allows, else its first allowed value.
func resolutionFor(t transition, outcome isync.Outcome) string {
	prefer := []string{"Done", "Fixed", "Resolved", "Complete"}
	if outcome == isync.OutcomeRejected {
		prefer = []string{"Won't Do", "Declined", "Rejected", "Won't Fix"}
	}
	allowed := t.Fields["resolution"].AllowedValues
	for _, p := range prefer {
		for _, a := range allowed {
			if strings.EqualFold(a.Name, p) {
				return a.Name
			}
		}
	}
	if len(allowed) > 0 {
		return allowed[0].Name
	}
	return prefer[0]
}

// Report implements isync.Source. A result is ONE transition call carrying the
// comment in update.comment when the transition's screen takes a comment;
// otherwise the comment is posted first, unless a comment with this report's
// signature is already there, and the transition follows. A blocked report is
// a comment alone. A write whose outcome is unknown is checked, never resent
// blindly.
func (s *Source) Report(ctx context.Context, t isync.Ticket, r isync.Report) error {
	if !issueIDRe.MatchString(t.ID) {
		return fmt.Errorf("jira: %q is not an issue id", t.ID)
	}
	body := renderComment(r)
	if r.Outcome == isync.OutcomeBlocked || r.Outcome == isync.OutcomeSyncing {
		return s.comment(ctx, t, r, body)
	}
	name := s.o.DoneTransition
	if r.Outcome == isync.OutcomeRejected {
		name = s.o.RejectedTransition
	}
	var list struct {
		Transitions []transition `json:"transitions"`
	}
	path := "rest/api/2/issue/" + t.ID + "/transitions"
	cached := s.cachedTransitions(t)
	if cached != nil {
		list.Transitions = cached
	} else if err := s.listTransitions(ctx, t, &list.Transitions); err != nil {
		return err
	}
	tr, ok := pickTransition(list.Transitions, name)
	if !ok && t.AwaitingApproval && s.o.ApproveTransition != "" {
		// Served by the auto policy tier while still awaiting approval: take
		// the workflow's approval step first (it carries no comment).
		if err := s.approve(ctx, t, list.Transitions); err != nil {
			if strings.HasPrefix(isync.CauseOf(err), "jira:transition_") {
				return s.blockedWithComment(ctx, t, r, body, err)
			}
			return err
		}
		// The issue is in another status now, which t.Fields[workflowField]
		// does not name: its list is read alone, neither cached nor shared
		// under the old status's key.
		var err error
		if list.Transitions, err = s.transitionsOf(ctx, t.ID, t.Key, ""); err != nil {
			return err
		}
		cached = nil // read just now: a 400 below is not a stale cache
		tr, ok = pickTransition(list.Transitions, name)
	}
	if !ok {
		var names []string
		for _, x := range list.Transitions {
			names = append(names, fmt.Sprintf("%q → %s", x.Name, x.To.Name))
		}
		return s.blockedWithComment(ctx, t, r, body, isync.Blocked("jira:transition_missing",
			fmt.Sprintf("no transition named %q, nor one to a status of that name, is available from %s's status %q (available: %s); fix jira.transitions or the workflow; the result was posted as a comment",
				name, t.Key, t.Fields["status"], strings.Join(names, ", ")), nil))
	}
	payload := map[string]any{"transition": map[string]string{"id": tr.ID}}
	if _, onScreen := tr.Fields["resolution"]; onScreen {
		payload["fields"] = map[string]any{"resolution": map[string]string{"name": resolutionFor(tr, r.Outcome)}}
	}
	// A retried report may have had its comment posted alone by an earlier
	// attempt whose transition was refused: then the comment goes through
	// the marker check, not along with the transition.
	if _, takesComment := tr.Fields["comment"]; (takesComment || (tr.HasScreen && tr.Fields == nil)) && !r.Retried {
		payload["update"] = map[string]any{"comment": []any{map[string]any{"add": s.newComment(body)}}}
	} else if err := s.comment(ctx, t, r, body); err != nil {
		return err
	}
	err := s.doJSON(ctx, http.MethodPost, path, payload, nil)
	if err == nil {
		return nil
	}
	var ae *upstream.APIError
	if cached != nil && upstream.StatusOf(err) == http.StatusBadRequest && !(errors.As(err, &ae) && len(ae.Fields) > 0) {
		// A cached list that no longer fits this issue (a workflow change, a
		// condition): nothing was done; read the issue's own list and retry
		// once. A field error is the screen's, not a stale list's: reading
		// the list again would only send the same refused transition twice.
		s.forgetTransitions(t)
		return s.Report(ctx, t, r)
	}
	if upstream.StatusOf(err) == http.StatusBadRequest {
		// Nothing was done, and a resend will not do better: a field the
		// screen requires, or a transition the workflow refuses.
		return s.blockedWithComment(ctx, t, r, body, transitionRefused(t, tr, err))
	}
	if !upstream.Ambiguous(err) {
		return s.classify(fmt.Errorf("transitioning %s with %q: %w", t.Key, tr.Name, err))
	}
	rctx, cancel := s.up.Recheck(ctx)
	cur, gerr := s.Get(rctx, t.ID)
	cancel()
	if gerr != nil {
		return fmt.Errorf("transitioning %s: %w (and re-reading it failed: %v)", t.Key, err, gerr)
	}
	if cur.Closed || cur.Fields["status"] != t.Fields["status"] {
		s.o.Logger.Info().Str("source", Name).Str("ticket", t.Key).Err(err).Msg("transition answer was lost but the issue moved; not resending")
		return nil
	}
	return isync.Retryable(fmt.Errorf("transitioning %s: %w", t.Key, err))
}

// sdPublicComment is the entity property by which Jira Service Management
// tells internal comments (agents only) from public ones (shown on the
// portal and emailed to the request's customers). A comment added through
// the platform REST API without it is public.
const sdPublicComment = "sd.public.comment"

// newComment is the comment object of a POST /comment or a transition's
// update.comment add: the body and, unless jira.comment_visibility is
// public, the property that makes it internal on a service-desk project
// (elsewhere the property is stored and changes nothing). Notes carry the
// blocked detail, the approval tier and the bridge's instance name, which
// are for agents, not for customers' inboxes.
func (s *Source) newComment(body string) map[string]any {
	c := map[string]any{"body": body}
	if s.o.CommentVisibility != VisibilityPublic {
		c["properties"] = []any{map[string]any{"key": sdPublicComment, "value": map[string]bool{"internal": true}}}
	}
	return c
}

// comment posts body unless a comment with r's signature is already on the
// issue (a crash between comment and transition, or a lost answer).
func (s *Source) comment(ctx context.Context, t isync.Ticket, r isync.Report, body string) error {
	if found, err := s.hasComment(ctx, t, r); err != nil {
		return err
	} else if found {
		return nil
	}
	path := "rest/api/2/issue/" + t.ID + "/comment"
	// A minimal body: go-jira's Comment type would also send empty author and
	// visibility objects.
	err := s.doJSON(ctx, http.MethodPost, path, s.newComment(body), nil)
	if err == nil || !upstream.Ambiguous(err) {
		if err != nil {
			return s.classify(fmt.Errorf("commenting on %s: %w", t.Key, err))
		}
		return nil
	}
	rctx, cancel := s.up.Recheck(ctx)
	found, cerr := s.hasComment(rctx, t, r)
	cancel()
	if cerr == nil && found {
		return nil
	}
	return isync.Retryable(fmt.Errorf("commenting on %s: %w", t.Key, err))
}

// hasComment looks for a comment carrying r's signature among the issue's
// newest comments.
func (s *Source) hasComment(ctx context.Context, t isync.Ticket, r isync.Report) (bool, error) {
	var page struct {
		Comments []struct {
			Body string `json:"body"`
		} `json:"comments"`
	}
	q := url.Values{"orderBy": {"-created"}, "maxResults": {"100"}}
	if err := s.doJSON(ctx, http.MethodGet, "rest/api/2/issue/"+t.ID+"/comment?"+q.Encode(), nil, &page); err != nil {
		return false, s.classify(fmt.Errorf("reading comments of %s: %w", t.Key, err))
	}
	sig := signature(r)
	for _, c := range page.Comments {
		if hasAll(c.Body, sig) {
			return true, nil
		}
	}
	return false, nil
}

func hasAll(body string, lines []string) bool {
	if !strings.HasPrefix(body, lines[0]) {
		return false
	}
	for _, l := range lines[1:] {
		if !strings.Contains(body, l) {
			return false
		}
	}
	return true
}

// approve takes the configured approval transition (jira.transitions.approve).
func (s *Source) approve(ctx context.Context, t isync.Ticket, ts []transition) error {
	tr, ok := pickTransition(ts, s.o.ApproveTransition)
	if !ok {
		return isync.Blocked("jira:transition_missing", fmt.Sprintf("the policy lets the bridge serve %s without approval, but no transition named %q is available from its status %q; fix jira.transitions.approve; the result was posted as a comment",
			t.Key, s.o.ApproveTransition, t.Fields["status"]), nil)
	}
	payload := map[string]any{"transition": map[string]string{"id": tr.ID}}
	if err := s.doJSON(ctx, http.MethodPost, "rest/api/2/issue/"+t.ID+"/transitions", payload, nil); err != nil {
		if upstream.StatusOf(err) == http.StatusBadRequest {
			return transitionRefused(t, tr, err)
		}
		return s.classify(fmt.Errorf("approving %s with %q: %w", t.Key, tr.Name, err))
	}
	return nil
}

// workflowField is the Ticket.Fields key holding an issue's workflow and
// status ("IMG/Image Request/10003"); its leading underscore keeps it out of
// notes.
const workflowField = "_workflow"

// transitionsTTL bounds how long a workflow's transition list is reused.
const transitionsTTL = 10 * time.Minute

type cachedTransitions struct {
	list []transition
	at   time.Time
}

// cachedTransitions returns the transitions of t's workflow and status when a
// fresh list is cached, or nil.
func (s *Source) cachedTransitions(t isync.Ticket) []transition {
	return s.cachedFor(t.Fields[workflowField])
}

// cachedFor returns the cached transitions of workflow and status key, or
// nil when none are cached or they are older than transitionsTTL.
func (s *Source) cachedFor(key string) []transition {
	if key == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.trCache[key]; ok && time.Since(c.at) < transitionsTTL {
		return c.list
	}
	return nil
}

func (s *Source) forgetTransitions(t isync.Ticket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.trCache, t.Fields[workflowField])
}

// listTransitions reads the transitions available from t's status
// (GET /rest/api/2/issue/{id}/transitions?expand=transitions.fields) and
// caches them for its workflow and status. Callers asking for the same
// workflow and status at once share one read: a backlog's first 32 issues
// make one call, not 32.
func (s *Source) listTransitions(ctx context.Context, t isync.Ticket, out *[]transition) error {
	list, err := s.transitionsOf(ctx, t.ID, t.Key, t.Fields[workflowField])
	*out = list
	return err
}

// transitionsOf reads the transitions of issue id (key, for errors), shared
// with concurrent reads of the same workflow and status (wf; "" shares
// nothing). It takes plain values, not the Ticket, so that a prefetch never
// shares the ticket's Fields map with the worker that owns it.
func (s *Source) transitionsOf(ctx context.Context, id, key, wf string) ([]transition, error) {
	if wf == "" {
		return s.readTransitions(ctx, id, key, "")
	}
	// DoChan, not Do: a read joined from another caller (a prefetch bounded
	// by its own 30 s) must not hold this one past its own context.
	ch := s.trFetch.DoChan(wf, func() (any, error) {
		// A read that ended between this caller's cache miss and now
		// (singleflight forgets a key once its read is done) has filled
		// the cache: no second read.
		if list := s.cachedFor(wf); list != nil {
			return list, nil
		}
		return s.readTransitions(ctx, id, key, wf)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]transition), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("listing transitions of %s: %w", key, ctx.Err())
	}
}

// readTransitions is the one call of transitionsOf; it caches the list
// under wf.
func (s *Source) readTransitions(ctx context.Context, id, key, wf string) ([]transition, error) {
	var list struct {
		Transitions []transition `json:"transitions"`
	}
	if err := s.doJSON(ctx, http.MethodGet, "rest/api/2/issue/"+id+"/transitions?expand=transitions.fields", nil, &list); err != nil {
		return nil, s.classify(fmt.Errorf("listing transitions of %s: %w", key, err))
	}
	if wf != "" {
		s.mu.Lock()
		if s.trCache == nil {
			s.trCache = map[string]cachedTransitions{}
		}
		s.trCache[wf] = cachedTransitions{list: list.Transitions, at: time.Now()}
		s.mu.Unlock()
	}
	return list.Transitions, nil
}

// prefetchTimeout bounds a prefetch of transitions.
const prefetchTimeout = 30 * time.Second

// prefetchTransitions starts reading the transitions of an approved issue's
// workflow and status, unless they are cached or being read: the read then
// overlaps with the issue's provisioning instead of following it. It does
// not wait; a failed read is read again by Report.
func (s *Source) prefetchTransitions(ctx context.Context, t isync.Ticket) {
	wf := t.Fields[workflowField]
	if wf == "" || s.cachedTransitions(t) != nil {
		return
	}
	id, key := t.ID, t.Key
	// DoChan joins a read already under way instead of starting another;
	// its answer, nobody's to wait for, goes to a buffered channel.
	s.trFetch.DoChan(wf, func() (any, error) {
		// Reports may join this read: it must not end with the listing's
		// context, only by its own bound.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), prefetchTimeout)
		defer cancel()
		return s.readTransitions(ctx, id, key, wf)
	})
}

// transitionRefused is the Blocked error of a transition Jira answered 400:
// a field the transition's screen requires (cause
// "jira:transition_field:<field id>"), or else a transition it refuses
// ("jira:transition_refused"). Nothing was done; no resend will succeed
// until the workflow or the configuration changes.
func transitionRefused(t isync.Ticket, tr transition, err error) error {
	err = fmt.Errorf("transitioning %s with %q: %w", t.Key, tr.Name, err)
	var ae *upstream.APIError
	if errors.As(err, &ae) && len(ae.Fields) > 0 {
		fields := make([]string, 0, len(ae.Fields))
		for f := range ae.Fields {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		f := fields[0]
		return isync.Blocked("jira:transition_field:"+f, fmt.Sprintf("Jira refused the transition %q of %s because of the field %s: %s; give the field a default on the transition's screen, make it optional, or pick another transition in jira.transitions; the result was posted as a comment",
			tr.Name, t.Key, f, ae.Fields[f]), err)
	}
	msg := "HTTP 400"
	if ae != nil && len(ae.Messages) > 0 {
		msg = strings.Join(ae.Messages, "; ")
	}
	return isync.Blocked("jira:transition_refused", fmt.Sprintf("Jira refused the transition %q of %s: %s; fix the workflow or jira.transitions; the result was posted as a comment",
		tr.Name, t.Key, msg), err)
}

// blockedWithComment posts the result comment alone (unless an earlier
// attempt did: the marker check), so that the requester learns the image
// exists while the transition cannot be made, then returns blocked. A
// failure to comment is returned instead.
func (s *Source) blockedWithComment(ctx context.Context, t isync.Ticket, r isync.Report, body string, blocked error) error {
	if err := s.comment(ctx, t, r, body); err != nil {
		return err
	}
	return blocked
}
