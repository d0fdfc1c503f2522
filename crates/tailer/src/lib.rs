//! outbox-tailer: tails the PostgreSQL WAL through a logical replication slot (`pgoutput`),
//! turns outbox inserts into events, publishes them to Kafka and confirms each LSN only after
//! Kafka acknowledged everything up to it.
