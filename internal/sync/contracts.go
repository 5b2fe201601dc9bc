package sync

import (
	"context"
	"time"
)

// The engine's contracts: the three interfaces it needs (Source,
// Provisioner, Store) and every optional one it looks for with a type
// assertion. An implementation declares each optional interface it means to
// provide with a compile-time check (var _ sync.X = (*T)(nil)), so that a
// renamed method fails the build instead of silently turning a feature off.
//
//	interface         asked of      implemented by                        used for
//	Source            source        connectors/servicenow, connectors/jira  listing, re-reading, write-back
//	Relister          source        connectors/jira                         listing again after offset paging
//	ApprovalChecker   source        connectors/servicenow, connectors/jira  the security policy tier
//	Provisioner       provisioner   internal/chainguard                     provisioning
//	Warmer            provisioner   internal/chainguard                     reading catalog and plan as a pass starts
//	Readiness         provisioner   internal/chainguard                     close_on: ready
//	TierReader        provisioner   internal/chainguard                     policy rules on catalog tiers
//	Planner           provisioner   internal/chainguard                     sync --dry-run
//	Circuit           provisioner   internal/chainguard                     not starting calls while the upstream is down
//	Store             store         internal/store                          records, leases, audit
//	ProvisionCounter  store         internal/store                          the daily limit
//	RecordReader      store         internal/store                          sync --dry-run

// Source is an ITSM the engine reads tickets from and reports into.
type Source interface {
	// Name is the source's stable name, used in the store and logs.
	Name() string
	// Approved calls fn for every approved, open ticket, paging internally in a
	// way that never skips tickets that leave the result while it pages, or
	// else the source is a Relister. An error from fn stops the listing and is
	// returned.
	Approved(ctx context.Context, fn func(Ticket) error) error
	// Get re-reads one ticket by ID. A ticket that no longer exists is an error.
	Get(ctx context.Context, id string) (Ticket, error)
	// Report writes r into t in one call. It never blindly resends a write whose
	// outcome is unknown: it re-reads first, and returns nil if r already landed.
	//
	// Its errors carry a Class. ClassBlocked, with a stable Cause naming the
	// field, ACL or transition, says the write can never succeed as configured
	// (permission refused, transition missing, a field the screen requires):
	// the engine records the ticket as blocked on that cause, counts it, and
	// backs off exponentially; it does not try another write. A source that
	// can still tell the requester (a comment alone, when only the transition
	// is refused) does so itself, once. Any other error is retryable.
	Report(ctx context.Context, t Ticket, r Report) error
}

// Relister is implemented by sources whose paging may skip tickets that
// leave the listing while it pages (offset or token paging, as Jira's: the
// bridge moves issues out of the JQL result as it closes them). PagingMaySkip
// reports whether the last listing may have skipped any; while it does, a
// pass that handed on tickets lists again once they are done, handing on only
// tickets it has not seen, until a listing finds none (at most maxListings
// listings). Keyset paging (ServiceNow's, on sys_id) skips nothing and needs
// no second listing.
type Relister interface {
	PagingMaySkip() bool
}

// maxListings bounds the listings of one pass of a Relister source; a ticket
// approved after the last is listed by the next pass.
const maxListings = 16

// ApprovalChecker is implemented by sources that can tell whether a ticket
// was approved by a member of a group (the security policy tier).
type ApprovalChecker interface {
	// ApprovedBy returns the name of an approver of t who belongs to group,
	// or "" when none does.
	ApprovedBy(ctx context.Context, t Ticket, group string) (string, error)
}

// Provisioner makes a catalog image available in the organization's registry.
type Provisioner interface {
	// ParseImage accepts or rejects a requested reference (a Rejected error that
	// a requester understands).
	ParseImage(raw string) (ImageRef, error)
	// Provision is idempotent: an image already present is a success with
	// AlreadyPresent set. Errors carry a Class.
	Provision(ctx context.Context, img ImageRef) (Result, error)
}

// Warmer is implemented by provisioners that cache what they read from
// their API (a catalog, a plan): Warm loads it unless cached. The engine
// calls it as a pass starts, alongside the listing, so the first ticket does
// not wait for those reads in turn. Its error is logged; a ticket that needs
// the answer reads it again.
type Warmer interface {
	Warm(ctx context.Context) error
}

// Readiness tells whether a provisioned image's tag can be pulled yet
// (close_on: ready). Provisioners that cannot tell do not implement it.
type Readiness interface {
	TagReady(ctx context.Context, res Result, img ImageRef) (bool, error)
}

// TierReader is implemented by provisioners that know an image's catalog
// tier (BASE, APPLICATION, FIPS, AI, …), for policy rules on tiers.
type TierReader interface {
	CatalogTier(ctx context.Context, name string) (string, error)
}

// Planner is implemented by provisioners that can say, with reads only, what
// Provision would do (for `sync --dry-run`).
type Planner interface {
	PlanProvision(ctx context.Context, img ImageRef) (string, error)
}

// Circuit is implemented by a Provisioner that knows its upstream is down.
// Unavailable returns nil while calls may go through, or an error (class
// Retryable, with a stable Cause such as "chainguard:unavailable") saying
// why the upstream is considered down and until when.
//
// The engine asks before every provisioning call. While it returns an error
// no call is started: the ticket is put back for BackoffMin without counting
// an attempt (nothing was tried), and the outage is logged once, at warn,
// when it starts or its cause changes, and once at info when it ends.
type Circuit interface{ Unavailable() error }

// Store persists records and the audit log. Implementations must make Claim and
// Save atomic with respect to each other (SQLite: one transaction each).
type Store interface {
	// Claim returns the ticket's record, creating it in StateNew if absent, and
	// takes its lease for owner until the given time. ok is false, with the
	// current record, when another owner holds an unexpired lease.
	Claim(ctx context.Context, source, ticketID, key, owner string, now, until time.Time) (rec Record, ok bool, err error)
	// ClaimStart is Claim for a ticket the engine has already decided to act
	// on: a record that does not exist yet is created in start's State, with
	// its Attempts and Image (and Version 1), in the same write. An existing
	// record is claimed as by Claim, start ignored.
	ClaimStart(ctx context.Context, source, ticketID, key, owner string, now, until time.Time, start Record) (rec Record, ok bool, err error)
	// Save writes rec if its Version matches the stored one, then increments
	// rec.Version, and appends the audit rows, all in one transaction: a
	// decision and the state it records land together or not at all.
	// ErrConflict, with nothing written, when the version is stale.
	//
	// Save leaves the lease alone, except that a record whose LeaseOwner is
	// "" is saved released: a worker's last save ends its lease in the same
	// commit. The version check is what makes this safe: a record still at the
	// caller's version has not been claimed by anyone else since the caller's
	// own Claim.
	Save(ctx context.Context, rec *Record, audit ...AuditEntry) error
	// Release clears the lease if owner holds it.
	Release(ctx context.Context, source, ticketID, owner string) error
	// Unfinished calls fn for every record of source not in StateDone.
	Unfinished(ctx context.Context, source string, fn func(Record) error) error
	// Append adds one audit row.
	Append(ctx context.Context, e AuditEntry) error
}

// ProvisionCounter is implemented by stores that can count a requester's
// provisioned images (the daily limit).
type ProvisionCounter interface {
	CountProvisioned(ctx context.Context, requester string, since time.Time) (int, error)
}

// RecordReader is implemented by stores that can read one record without
// claiming it (for `sync --dry-run`).
type RecordReader interface {
	Get(ctx context.Context, source, ticketID string) (Record, error)
}
