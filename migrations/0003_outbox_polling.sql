-- What the polling relay (`outbox-tailer poll`) needs: an insertion order to fetch by and a
-- published marker. Tailing ignores both columns, so one table serves either relay, and a team
-- can move from polling to tailing (or fall back) without a schema change.
ALTER TABLE outbox ADD COLUMN seq bigserial;
ALTER TABLE outbox ADD COLUMN published_at timestamptz;
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
