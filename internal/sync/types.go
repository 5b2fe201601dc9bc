// Package sync is the bridge's engine: it finds approved image-request tickets in
// the configured sources, provisions the requested image through a Provisioner,
// and writes one result note back into each ticket, persisting every step in a
// Store so that a crash at any point neither provisions twice, nor notes twice,
// nor loses a ticket.
//
// A ticket's life in the store (one row per source + ticket id):
//
//	new ──claim──► provisioning ──ok / ALREADY_EXISTS──► provisioned ──write-back──► done
//	                  │  request rejected ─────────────► rejected ────write-back──► done
//	                  │  bridge blocked ──► blocked (one note per cause, then backoff)
//	                  └─ retryable: attempts+1, next_attempt_at = now + backoff
//
// A write-back that fails leaves the record provisioned or rejected, since
// what remains is the write, never the provisioning: attempts+1,
// next_attempt_at = now + backoff. When the source refuses the write as
// configured (class blocked), blocked_cause records why (one audit row per
// cause, counted by the blocked gauge) until a write-back lands.
//
// Each arrow is persisted before the next external call.
package sync

import (
	"time"
)

// Ticket is one image request as read from a source (a ServiceNow RITM, a Jira
// issue). Every field is already decoded into plain text; free text is exactly
// what the requester typed and must be escaped before it is echoed anywhere.
type Ticket struct {
	Source string // source name: "servicenow", "jira"
	ID     string // stable id: RITM sys_id (32 hex), Jira issue id
	Key    string // human key: "RITM0010001", "IMG-42"
	Open   bool   // awaiting the bridge: approved and not closed
	// AwaitingApproval: listed although not approved yet (a source asked to
	// list candidates for the auto policy tier); the engine acts on it only
	// when the policy says auto, and otherwise leaves it untouched.
	AwaitingApproval bool
	Closed           bool              // in a final state: nothing more will happen to it
	Image            string            // requested image reference, as typed
	Justification    string            // free text
	Requester        string            // requested_for / reporter, as the source names them
	Approver         string            // when the source reports one
	Fields           map[string]string // other request fields (team, environment, ...)
	Version          string            // source revision (sys_mod_count, updated time)
	// Invalid, when set, is why the source found the request unusable (the
	// image field is missing from the issue, say); the engine rejects the
	// ticket with it as the reason.
	Invalid string
}

// Outcome is what a write-back tells the ticket.
type Outcome string

const (
	// OutcomeProvisioned: the image is in the organization's registry (created now
	// or already present). Closes the ticket as complete.
	OutcomeProvisioned Outcome = "provisioned"
	// OutcomeRejected: the request cannot be served. Closes the ticket as incomplete.
	OutcomeRejected Outcome = "rejected"
	// OutcomeBlocked: the bridge cannot act (permissions, quota). The ticket stays
	// open; the note is written once per blocking cause.
	OutcomeBlocked Outcome = "blocked"
	// OutcomeSyncing: provisioned, the tag is not pullable yet (close_on:
	// ready). The ticket stays open; a second note closes it later.
	OutcomeSyncing Outcome = "syncing"
)

// Report is one write-back: a note and, for OutcomeProvisioned and
// OutcomeRejected, the move out of the approved queue, in ONE upstream call.
// OutcomeBlocked and OutcomeSyncing are a note alone, which a Source writes
// only if no note with the same Marker and Result/Cause lines is already there.
type Report struct {
	Outcome Outcome
	// Marker is the note's first line: it names the bridge and the request id and
	// is how a source recognises a note it already wrote.
	Marker string
	// Summary is one line for the ticket's resolution field (close_notes).
	Summary string
	// Fields are the note's "name: value" lines, in order. Values may hold user
	// text: sources escape them for their markup.
	Fields []Field
	// Retried: an earlier attempt at this write-back may have left part of
	// it on the ticket (a crash, a lost answer, a write refused after the
	// note landed: a Jira comment posted alone, a ServiceNow state dropped
	// by a write ACL). The source looks for its note by Marker before it
	// writes the note again. The engine sets it on every write-back it
	// drives from the store's record rather than from a provisioning just
	// made, so a restart between attempts loses nothing.
	Retried bool
}

// Field is one "name: value" line of a note.
type Field struct{ Name, Value string }

// ImageRef is a parsed, accepted image request.
type ImageRef struct {
	Name string // catalog repo name: "python"
	Tag  string // "latest-dev"; "latest" when none was given
}

func (r ImageRef) String() string { return r.Name + ":" + r.Tag }

// Result is what provisioning did.
type Result struct {
	RepoID         string `json:"repo_id"`         // Chainguard repo UIDP ("" while an entitlement sync is pending)
	PullRef        string `json:"pull_ref"`        // cgr.dev/<org_name>/<name>:<tag>
	Method         string `json:"method"`          // "CreateRepo" or "AddEntitlementImages"
	AlreadyPresent bool   `json:"already_present"` // the repo/entitlement existed before this ticket
}

// ImageOutcome is what happened to one image of a ticket naming several.
type ImageOutcome struct {
	Requested string `json:"requested"`        // as typed
	Done      bool   `json:"done"`             // provisioned or rejected; nothing more to do
	Reason    string `json:"reason,omitempty"` // rejection reason
	Result    Result `json:"result"`           // when provisioned
}

// Provisioned reports whether the image was provisioned (or already present).
func (o ImageOutcome) Provisioned() bool { return o.Done && o.Reason == "" }

// State is a ticket's position in its life cycle.
type State string

const (
	StateNew          State = "new"
	StateProvisioning State = "provisioning"
	StateProvisioned  State = "provisioned"
	StateSyncing      State = "syncing" // close_on ready: provisioned and noted, waiting for the tag to be pullable
	StateRejected     State = "rejected"
	StateBlocked      State = "blocked"
	StateDone         State = "done"
)

// Record is a ticket's durable state: one row per (Source, TicketID).
type Record struct {
	Source        string
	TicketID      string
	Key           string
	RequestID     string // the bridge's stable id for this request, in every note and log line
	State         State
	Attempts      int       // attempts so far: provisioning calls started, then write-backs failed; the backoff doubles with each
	NextAttemptAt time.Time // zero: now
	LastError     string
	BlockedCause  string // current blocking cause, before provisioning or at the write-back; "" if none
	NotedCause    string // blocking causes already noted on the ticket, comma-separated
	Image         string // requested reference, as typed
	Reason        string // rejection reason
	Result        Result
	LeaseOwner    string
	LeaseUntil    time.Time
	ReadyBy       time.Time // close_on ready: when waiting for the tag ends
	// Images holds each image's outcome when the ticket names several.
	Images    []ImageOutcome
	Version   int64 // incremented by every Save; Save fails on a stale version
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Decision names an audit row's decision.
type Decision string

const (
	DecisionProvisioned     Decision = "provisioned"
	DecisionAlreadyPresent  Decision = "already_present"
	DecisionRejected        Decision = "rejected"
	DecisionBlocked         Decision = "blocked"
	DecisionRetry           Decision = "retry"
	DecisionReported        Decision = "reported" // the result note landed and the ticket closed
	DecisionNoted           Decision = "noted"    // a blocked note landed, ticket left open
	DecisionClosedElsewhere Decision = "closed_elsewhere"
	DecisionSyncing         Decision = "syncing"       // close_on ready: the syncing note landed
	DecisionReady           Decision = "ready"         // close_on ready: the tag is pullable
	DecisionReadyTimeout    Decision = "ready_timeout" // close_on ready: gave up waiting
	DecisionReplay          Decision = "replay"        // an administrator re-drove the ticket
)

// AuditEntry is one append-only audit row.
type AuditEntry struct {
	Time          time.Time
	Source        string
	TicketID      string
	Key           string
	RequestID     string
	Requester     string
	Approver      string
	Image         string
	Justification string
	Decision      Decision
	RepoID        string
	Detail        string
	Actor         string // the bridge's identity (instance id)
}

// RepoEvent is what a Chainguard CloudEvent says about a repository of the
// organization: it was created or updated, a tag was created or updated, or an
// image was pushed. Any field may be empty when the event does not carry it.
type RepoEvent struct {
	Type   string // CloudEvent type, e.g. dev.chainguard.registry.push.v1
	RepoID string // repo UIDP (Ce-Subject of repo events, or the tag's parent)
	Repo   string // repo name, e.g. "python"
	Tag    string // tag name, e.g. "latest-dev"
}
