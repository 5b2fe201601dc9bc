package jira

import (
	"net/http"
	"strconv"
	"strings"
)

// Approval is one Jira Service Management approval on a request
// (GET /rest/servicedeskapi/request/{issueIdOrKey}/approval).
type Approval struct {
	ID, Name      string
	FinalDecision string // "pending", "approved" or "declined"
	Approvers     []ApproverDecision
}

// ApproverDecision is one approver of an approval and their decision.
type ApproverDecision struct {
	User     User
	Decision string // "pending", "approved" or "declined"
}

// SetApprovals replaces the JSM approvals of the issue with key.
func (s *Server) SetApprovals(key string, approvals ...Approval) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.approvals == nil {
		s.approvals = map[string][]Approval{}
	}
	s.approvals[strings.ToUpper(key)] = approvals
}

// AddGroupMember adds u to the Jira group named group
// (GET /rest/api/2/group/member).
func (s *Server) AddGroupMember(group string, u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups == nil {
		s.groups = map[string][]User{}
	}
	s.groups[group] = append(s.groups[group], u)
}

// serveApprovals answers GET /rest/servicedeskapi/request/{key}/approval with
// the paged shape of the JSM API.
func (s *Server) serveApprovals(w http.ResponseWriter, r *http.Request, key string) {
	s.mu.Lock()
	_, known := s.keys[strings.ToUpper(key)]
	approvals := s.approvals[strings.ToUpper(key)]
	var values []any
	for _, a := range approvals {
		var approvers []any
		for _, ad := range a.Approvers {
			approvers = append(approvers, map[string]any{"approver": s.userJSON(ad.User), "approverDecision": ad.Decision})
		}
		values = append(values, map[string]any{"id": a.ID, "name": a.Name, "finalDecision": a.FinalDecision,
			"canAnswerApproval": false, "approvers": approvers})
	}
	s.mu.Unlock()
	if !known {
		writeError(w, http.StatusNotFound, []string{"The request could not be found."}, nil)
		return
	}
	if values == nil {
		values = []any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"size": len(values), "start": 0, "limit": 50, "isLastPage": true, "values": values})
}

// serveGroupMembers answers GET /rest/api/2/group/member?groupname=…
func (s *Server) serveGroupMembers(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("groupname")
	start, _ := strconv.Atoi(r.URL.Query().Get("startAt"))
	max, _ := strconv.Atoi(r.URL.Query().Get("maxResults"))
	if max <= 0 || max > 50 {
		max = 50
	}
	s.mu.Lock()
	members, ok := s.groups[name]
	var values []any
	for i := start; i < len(members) && i < start+max; i++ {
		values = append(values, s.userJSON(members[i]))
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, []string{"Specified group does not exist."}, nil)
		return
	}
	if values == nil {
		values = []any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"startAt": start, "maxResults": max, "total": len(members),
		"isLast": start+max >= len(members), "values": values})
}
