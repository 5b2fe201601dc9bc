-- Tickets that name several images keep each image's outcome, as JSON
-- (a list of {requested, done, reason, result}); '' for one image.
ALTER TABLE tickets ADD COLUMN images TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_requester ON audit (requester, decision, time);
