-- The outbox, with Debezium Outbox Event Router column names so teams can switch relays
-- without touching their tables. Rows are written in the same transaction as the business
-- change; the tailer reads them from the WAL, so the table may be emptied at any time.
CREATE TABLE outbox (
    id            uuid        PRIMARY KEY,
    aggregatetype text        NOT NULL,
    aggregateid   text        NOT NULL,
    type          text        NOT NULL,
    payload       jsonb,
    headers       jsonb,
    created_at    timestamptz NOT NULL DEFAULT now()
);
