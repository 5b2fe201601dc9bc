-- close_on: ready. A provisioned ticket may wait, open, until its tag is
-- pullable: the new state "syncing", and ready_by, the time after which the
-- bridge stops waiting. SQLite cannot alter a CHECK constraint, so the table
-- is rebuilt (inside the migration's transaction).
CREATE TABLE tickets_new (
    source          TEXT    NOT NULL,
    ticket_id       TEXT    NOT NULL,
    ticket_key      TEXT    NOT NULL DEFAULT '',
    request_id      TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('new', 'provisioning', 'provisioned', 'syncing', 'rejected', 'blocked', 'done')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL DEFAULT '',
    last_error      TEXT    NOT NULL DEFAULT '',
    blocked_cause   TEXT    NOT NULL DEFAULT '',
    noted_cause     TEXT    NOT NULL DEFAULT '',
    image           TEXT    NOT NULL DEFAULT '',
    reason          TEXT    NOT NULL DEFAULT '',
    repo_id         TEXT    NOT NULL DEFAULT '',
    pull_ref        TEXT    NOT NULL DEFAULT '',
    method          TEXT    NOT NULL DEFAULT '',
    already_present INTEGER NOT NULL DEFAULT 0 CHECK (already_present IN (0, 1)),
    lease_owner     TEXT    NOT NULL DEFAULT '',
    lease_until     TEXT    NOT NULL DEFAULT '',
    version         INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    ready_by        TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (source, ticket_id)
) WITHOUT ROWID;

INSERT INTO tickets_new (source, ticket_id, ticket_key, request_id, state, attempts, next_attempt_at,
    last_error, blocked_cause, noted_cause, image, reason, repo_id, pull_ref, method, already_present,
    lease_owner, lease_until, version, created_at, updated_at)
SELECT source, ticket_id, ticket_key, request_id, state, attempts, next_attempt_at,
    last_error, blocked_cause, noted_cause, image, reason, repo_id, pull_ref, method, already_present,
    lease_owner, lease_until, version, created_at, updated_at
FROM tickets;

DROP TABLE tickets;
ALTER TABLE tickets_new RENAME TO tickets;

CREATE INDEX tickets_key ON tickets (ticket_key);
CREATE INDEX tickets_state ON tickets (source, state);
CREATE INDEX tickets_repo ON tickets (repo_id) WHERE state = 'syncing';
