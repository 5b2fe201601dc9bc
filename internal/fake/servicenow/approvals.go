package servicenow

import (
	"slices"
)

// Approval is one sysapproval_approver record: an approver's decision on a
// RITM (the approval engine creates one per approver).
type Approval struct {
	SysID    string
	RITM     string // sysapproval: the RITM's sys_id
	Approver string // sys_user sys_id
	State    string // "requested", "approved", "rejected", "not_required"
}

// GroupMember is one sys_user_grmember record.
type GroupMember struct {
	SysID     string
	Group     string // sys_user_group sys_id
	GroupName string // the group's name (group.name)
	User      string // sys_user sys_id
}

// AddApproval records an approver's decision on a RITM. Use UserSysID and
// SetDisplayValue to name approvers.
func (s *Server) AddApproval(ritmSysID, approver, state string) Approval {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := Approval{SysID: newSysID(), RITM: ritmSysID, Approver: approver, State: state}
	s.approvals = append(s.approvals, a)
	return a
}

// AddGroupMember adds a user to a group (sys_user_grmember); the group's
// sys_id is derived from its name.
func (s *Server) AddGroupMember(groupName, user string) GroupMember {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := GroupMember{SysID: newSysID(), Group: derivedSysID("sys_user_group", groupName), GroupName: groupName, User: user}
	s.display[m.Group] = groupName
	s.members = append(s.members, m)
	return m
}

var (
	approvalColumns = []string{"sys_id", "sysapproval", "approver", "state"}
	memberColumns   = []string{"sys_id", "group", "group.name", "user"}
)

func init() {
	tables["sysapproval_approver"] = &tableSpec{
		columns: approvalColumns,
		valid:   func(f string) bool { return slices.Contains(approvalColumns, f) },
		rows: func(s *Server) []row {
			out := make([]row, 0, len(s.approvals))
			for _, a := range s.approvals {
				out = append(out, row{"sys_id": plain(a.SysID), "sysapproval": s.refCell("sc_req_item", a.RITM),
					"approver": s.refCell("sys_user", a.Approver), "state": plain(a.State)})
			}
			return out
		},
	}
	tables["sys_user_grmember"] = &tableSpec{
		columns: memberColumns,
		valid:   func(f string) bool { return slices.Contains(memberColumns, f) },
		rows: func(s *Server) []row {
			out := make([]row, 0, len(s.members))
			for _, m := range s.members {
				out = append(out, row{"sys_id": plain(m.SysID), "group": s.refCell("sys_user_group", m.Group),
					"group.name": plain(m.GroupName), "user": s.refCell("sys_user", m.User)})
			}
			return out
		},
	}
}
