// Package sourcetest is the Source conformance suite: one table of behaviours
// every sync.Source must show, run by each connector against its in-process
// fake over real HTTP with the connector's real client (in the spirit of
// River's riverdrivertest.Exercise).
//
// A new intake passes it before anything else. Its package adds one test
// file that implements Harness over its fake and calls Run:
//
//	// connectors/acme/conformance_test.go
//	package acme_test
//
//	func TestConformance(t *testing.T) { sourcetest.Run(t, harness{}) }
//
//	type harness struct{}
//
//	func (harness) Start(t *testing.T, cfg sourcetest.Config) sourcetest.Upstream {
//		f := acmefake.New()
//		t.Cleanup(f.Close)
//		return &upstream{f: f, pageSize: cfg.PageSize}
//	}
//
// and an upstream type with the methods of Upstream: build the Source
// against the fake (and with bad credentials), seed tickets, close one as a
// person would, inject the faults the fake's fault queue offers, and read a
// ticket's notes and state back from the fake. connectors/servicenow and
// connectors/jira hold two complete harnesses.
//
// The behaviours (one subtest each):
//
//   - listing: every approved, open ticket is listed exactly once, open;
//     tickets awaiting approval are not listed, or listed AwaitingApproval;
//     closed ones are not listed; many tickets over several small pages;
//     tickets leaving the result while the source pages (each listed ticket
//     is closed as soon as it is handed on, by a person or through Report,
//     so the result shrinks between pages) never make it skip another,
//     unless it is a sync.Relister whose PagingMaySkip then reports true
//     (the suite then lists again, as the engine does, and every ticket must
//     turn up).
//   - re-read: Get returns the ticket as listed (ID, Key, Image,
//     Justification, Requester, Open); an unknown id is an error; a ticket
//     closed by a person reads Closed.
//   - write-back in one call: OutcomeProvisioned adds one note and closes
//     the ticket complete, OutcomeRejected closes it incomplete;
//     OutcomeBlocked adds one note per cause and leaves the ticket open; a
//     report made twice leaves one note.
//   - lost answers: a write applied upstream whose answer is lost returns nil
//     (having re-read that it landed) or an error, and reporting again still
//     leaves exactly one note; a 5xx before anything was applied is a
//     retryable error, and the next report lands once.
//   - permanent write failures (an ACL, a required field, a missing
//     transition): a ClassBlocked error with a stable, non-empty Cause, the
//     same on every attempt, the ticket left open and noted at most once.
//   - credentials refused: a 401 (a source built with a wrong credential)
//     is ClassBlocked with the Cause "<name>:unauthenticated" for listing
//     and Report alike; a 403 on every request is ClassBlocked with
//     "<name>:forbidden" for listing and a stable "<name>:…" cause of the
//     source's choosing for Report (a write ACL may deserve its own); no
//     error text holds a credential.
//
// A subtest that closes a ticket "between pages" does it from the listing's
// callback, which a Source calls before it asks for the next page; no hook
// in the fake is needed.
//
// Every call has a deadline; nothing sleeps: faults are queued on the fake
// and take effect on the next matching request.
package sourcetest

import (
	"testing"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// Harness is what a connector's test supplies: a way to start its fake.
type Harness interface {
	// Start starts a fresh fake upstream, stopped by t.Cleanup, and returns
	// it. Subtests run in parallel: Start must be safe for concurrent use.
	Start(t *testing.T, cfg Config) Upstream
}

// Config is what a subtest asks of the fake and the sources built over it.
type Config struct {
	// PageSize is the number of tickets per listing page the sources use;
	// 0 leaves the connector's default.
	PageSize int
}

// Upstream is one running fake and the sources built against it. Every
// method fails t on an error of the fake; ids are sync.Ticket IDs.
type Upstream interface {
	// Source builds a new Source against the fake, with working credentials
	// and the connector's default settings except Config's.
	Source(t *testing.T) isync.Source
	// SourceWithCredential builds a new Source whose secret credential
	// (password, API token) is cred, which the fake refuses with a 401.
	SourceWithCredential(t *testing.T, cred string) isync.Source
	// Secrets returns the working credentials; no error may contain them.
	Secrets() []string
	// UnknownID returns a well-formed ticket id that names no ticket.
	UnknownID() string

	// SeedApproved adds an approved, open ticket requesting image, with
	// justification and a requester, and returns its id.
	SeedApproved(t *testing.T, image, justification string) string
	// SeedAwaiting adds a ticket still awaiting approval and returns its id.
	SeedAwaiting(t *testing.T, image, justification string) string
	// Close closes the ticket as a person would in the upstream's user
	// interface (complete).
	Close(t *testing.T, id string)

	// Inject queues f on the fake's fault queue.
	Inject(t *testing.T, f Fault)
	// WriteRefusals returns the ways this upstream refuses a write-back for
	// good (at least one).
	WriteRefusals() []WriteRefusal

	// Notes returns the ticket's notes or comments, oldest first.
	Notes(t *testing.T, id string) []string
	// State returns the ticket's state as the fake holds it.
	State(t *testing.T, id string) State
}

// Fault is a failure the suite asks the fake to inject.
type Fault int

const (
	// WriteAnswerLost: the next write (the call that adds a note or moves
	// the ticket) is applied, then its connection is reset before an answer.
	WriteAnswerLost Fault = iota + 1
	// WriteServerError: the next write is answered with a 5xx (503) and is
	// not applied.
	WriteServerError
	// Forbidden: every further request is answered 403, as for an
	// integration account stripped of its permissions.
	Forbidden
)

func (f Fault) String() string {
	switch f {
	case WriteAnswerLost:
		return "write answer lost"
	case WriteServerError:
		return "write server error"
	case Forbidden:
		return "forbidden"
	}
	return "unknown fault"
}

// WriteRefusal is one way an upstream refuses a write-back for good: a write
// ACL, a field the transition's screen requires, a missing transition.
type WriteRefusal struct {
	Name string // subtest name, e.g. "write ACL"
	// Arrange makes every further write-back on the fake fail this way and
	// returns the Source to report with (a new one when the refusal comes
	// from the source's configuration, such as a transition name).
	Arrange func(t *testing.T) isync.Source
}

// State is a ticket's state as the upstream holds it.
type State int

const (
	// Open: not in a final state (whether approved or not).
	Open State = iota + 1
	// ClosedComplete: closed as done (ServiceNow Closed Complete, Jira's
	// done transition).
	ClosedComplete
	// ClosedIncomplete: closed as not done (Closed Incomplete, rejected).
	ClosedIncomplete
)

func (s State) String() string {
	switch s {
	case Open:
		return "open"
	case ClosedComplete:
		return "closed complete"
	case ClosedIncomplete:
		return "closed incomplete"
	}
	return "unknown"
}

// Run runs every behaviour of the suite against h, each as a parallel
// subtest on a fresh fake.
func Run(t *testing.T, h Harness) {
	t.Helper()
	for _, b := range behaviours {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			b.run(t, h)
		})
	}
}
