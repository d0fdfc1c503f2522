-- The writer's trace context, under Debezium's column name and type, so both relays carry a
-- trace across: a Java properties text (`traceparent=…`, `tracestate=…`) that the tailer sends
-- as W3C `traceparent`/`tracestate` record headers. NULL for an event written without one.
ALTER TABLE outbox ADD COLUMN tracingspancontext varchar(256);
