-- Marks the file as an Image Request Bridge store ("IBR1"), so the bridge
-- refuses to write into another application's SQLite database.
PRAGMA application_id = 1229083185;

-- Tickets: one row per source + ticket id, the engine's durable state.
-- Times are UTC text in a fixed-width RFC 3339 form
-- (2006-01-02T15:04:05.000000000Z) so that they read well and compare
-- correctly as text; '' is the zero time.
CREATE TABLE tickets (
    source          TEXT    NOT NULL,
    ticket_id       TEXT    NOT NULL,
    ticket_key      TEXT    NOT NULL DEFAULT '',
    request_id      TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('new', 'provisioning', 'provisioned', 'rejected', 'blocked', 'done')),
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
    PRIMARY KEY (source, ticket_id)
) WITHOUT ROWID;

CREATE INDEX tickets_key ON tickets (ticket_key);
CREATE INDEX tickets_state ON tickets (source, state);

-- Audit: one append-only row per decision. The triggers below make the log
-- tamper-evident from inside the bridge: no code path can rewrite history.
CREATE TABLE audit (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    time          TEXT NOT NULL,
    source        TEXT NOT NULL,
    ticket_id     TEXT NOT NULL,
    ticket_key    TEXT NOT NULL DEFAULT '',
    request_id    TEXT NOT NULL DEFAULT '',
    requester     TEXT NOT NULL DEFAULT '',
    approver      TEXT NOT NULL DEFAULT '',
    image         TEXT NOT NULL DEFAULT '',
    justification TEXT NOT NULL DEFAULT '',
    decision      TEXT NOT NULL,
    repo_id       TEXT NOT NULL DEFAULT '',
    detail        TEXT NOT NULL DEFAULT '',
    actor         TEXT NOT NULL DEFAULT ''
);

CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_ticket ON audit (source, ticket_id);
CREATE INDEX audit_key ON audit (ticket_key);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;
