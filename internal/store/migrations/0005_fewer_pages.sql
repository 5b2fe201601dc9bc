-- Fewer pages written per ticket. Every index a row is in is one more page
-- written to the WAL at each commit that changes it, and a ticket's four
-- commits were writing about 30 pages (BenchmarkTicketLifecycle reports
-- wal-frames/ticket); these changes bring it to about 19.
--
-- tickets_state changed with every state change; its one reader, the
-- counts by state behind `bridge status` and the blocked gauge, is an
-- occasional scan.
DROP INDEX IF EXISTS tickets_state;

-- The audit log is rebuilt without AUTOINCREMENT, which wrote the
-- sqlite_sequence page on every row. Rows are never deleted (the triggers
-- below), so a plain INTEGER PRIMARY KEY still grows by one per row and ids
-- are never reused. Its indexes become:
--   audit_time      for --since;
--   audit_ticket    one per ticket id; a ticket's key is resolved to its id
--                   through the tickets table (replaces audit_ticket on
--                   (source, ticket_id), which a lookup by id alone could not
--                   use, and audit_key);
--   audit_provisioned  the daily limit's count, holding only the rows it
--                   counts.
CREATE TABLE audit_new (
    id            INTEGER PRIMARY KEY,
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

INSERT INTO audit_new (id, time, source, ticket_id, ticket_key, request_id, requester, approver, image,
    justification, decision, repo_id, detail, actor)
SELECT id, time, source, ticket_id, ticket_key, request_id, requester, approver, image,
    justification, decision, repo_id, detail, actor
FROM audit ORDER BY id;

-- DROP TABLE fires no trigger; the triggers go with the table and are
-- created again below.
DROP TABLE audit;
ALTER TABLE audit_new RENAME TO audit;

CREATE INDEX audit_time ON audit (time);
CREATE INDEX audit_ticket ON audit (ticket_id);
CREATE INDEX audit_provisioned ON audit (requester, time) WHERE decision = 'provisioned';

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;
