//! The producing side of the outbox pattern: an example orders service, a writer library that
//! emits events inside the caller's own transaction, and a load generator.
//!
//! This crate never talks to Kafka.
