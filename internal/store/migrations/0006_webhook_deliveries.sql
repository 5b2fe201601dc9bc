-- Webhook deliveries already acted on, so that a replayed delivery is refused
-- across a restart. key is a hash (of a signed body, or of a delivery id),
-- never the body itself; rows older than the dedupe window are pruned.
CREATE TABLE webhook_deliveries (
    endpoint TEXT NOT NULL,
    key      TEXT NOT NULL,
    seen_at  TEXT NOT NULL,
    PRIMARY KEY (endpoint, key)
) WITHOUT ROWID;

CREATE INDEX webhook_deliveries_seen ON webhook_deliveries (seen_at);
