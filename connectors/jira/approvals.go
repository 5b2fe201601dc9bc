package jira

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

var _ isync.ApprovalChecker = (*Source)(nil)

// ApprovedBy implements isync.ApprovalChecker with Jira Service Management
// approvals (GET /rest/servicedeskapi/request/{key}/approval): an approver
// whose decision is "approved", who is a member of group
// (GET /rest/api/2/group/member?groupname=…). It returns that approver's
// display name, or "" when none is in the group.
func (s *Source) ApprovedBy(ctx context.Context, t isync.Ticket, group string) (string, error) {
	if !issueKeyRe.MatchString(t.Key) {
		return "", fmt.Errorf("jira: %q is not an issue key", t.Key)
	}
	var page struct {
		Values []struct {
			FinalDecision string `json:"finalDecision"`
			Approvers     []struct {
				Approver struct {
					AccountID   string `json:"accountId"`
					Name        string `json:"name"`
					Key         string `json:"key"`
					DisplayName string `json:"displayName"`
				} `json:"approver"`
				ApproverDecision string `json:"approverDecision"`
			} `json:"approvers"`
		} `json:"values"`
	}
	if err := s.doJSON(ctx, http.MethodGet, "rest/servicedeskapi/request/"+t.Key+"/approval", nil, &page); err != nil {
		return "", s.classify(fmt.Errorf("reading approvals of %s: %w", t.Key, err))
	}
	approvers := map[string]string{} // account id or user name → display name
	for _, v := range page.Values {
		for _, a := range v.Approvers {
			if !strings.EqualFold(a.ApproverDecision, "approved") {
				continue
			}
			for _, id := range []string{a.Approver.AccountID, a.Approver.Name, a.Approver.Key} {
				if id != "" {
					approvers[id] = a.Approver.DisplayName
				}
			}
		}
	}
	if len(approvers) == 0 {
		return "", nil
	}
	for start := 0; ; {
		var members struct {
			Values []struct {
				AccountID string `json:"accountId"`
				Name      string `json:"name"`
				Key       string `json:"key"`
			} `json:"values"`
			IsLast     bool `json:"isLast"`
			MaxResults int  `json:"maxResults"`
		}
		q := url.Values{"groupname": {group}, "startAt": {fmt.Sprint(start)}, "maxResults": {"50"}}
		if err := s.doJSON(ctx, http.MethodGet, "rest/api/2/group/member?"+q.Encode(), nil, &members); err != nil {
			return "", s.classify(fmt.Errorf("reading members of group %q: %w", group, err))
		}
		for _, m := range members.Values {
			for _, id := range []string{m.AccountID, m.Name, m.Key} {
				if name, ok := approvers[id]; ok && id != "" {
					return name, nil
				}
			}
		}
		if members.IsLast || len(members.Values) == 0 {
			return "", nil
		}
		start += len(members.Values)
	}
}
