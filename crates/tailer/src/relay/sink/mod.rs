//! Sink stage: records to Kafka, acks back to the pipeline.
//!
//! The producer is idempotent with `acks=all`, which keeps per-partition order across retries;
//! the key (aggregate id) keeps each aggregate on one partition. `message.timeout.ms` defaults
//! to 0 (retry forever): while the broker is away, records wait in librdkafka, the in-flight
//! window fills, the pipeline stops reading, and nothing past the last ack is confirmed.
//! Permanent refusals (record too large, unknown topic, authorization) come back as failed
//! acks and stop the tailer.

use std::future::Future;
use std::time::Instant;

use rdkafka::config::RDKafkaLogLevel;

use crate::error::TailerError;
use crate::relay::progress::Ticket;
use crate::relay::route::Record;

pub mod broker_check;
pub mod kafka;
#[cfg(test)]
pub mod memory;
pub mod partitioner;
pub mod resume;
pub mod send_now;
pub mod topics;
pub mod transaction;

pub use kafka::KafkaSink;

/// The outcome of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub ticket: Ticket,
    pub result: Result<(), DeliveryFailure>,
}

/// Kafka refused a record for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    pub topic: String,
    pub reason: String,
}

/// The IO seam in front of Kafka. Acks arrive on the channel given at construction.
pub trait Sink: Send {
    /// Hand a record over (it is acked later, possibly out of order across partitions).
    fn send(
        &mut self,
        record: Record,
        ticket: Ticket,
    ) -> impl Future<Output = Result<(), TailerError>> + Send;

    /// Records become visible only when the sink commits them (`--exactly-once`): the
    /// pipeline then confirms no further than the last commit.
    fn transactional(&self) -> bool {
        false
    }

    /// Between PostgreSQL transactions: commit what was handed over if the batch is full, or
    /// whenever `now`. True when nothing handed over waits for a commit any more.
    fn commit(&mut self, now: bool) -> impl Future<Output = Result<bool, TailerError>> + Send {
        let _ = now;
        std::future::ready(Ok(true))
    }

    /// When the open batch must be committed at the latest; later while `catching_up` on a
    /// backlog, where fewer, larger commits keep the drain rate.
    fn commit_deadline(&self, catching_up: bool) -> Option<Instant> {
        let _ = catching_up;
        None
    }

    /// The source has nothing more queued right now: what was handed over may go out without
    /// waiting to batch with records that are not coming (a hint; the sink decides).
    fn source_idle(&mut self) {}

    /// Nothing handed over waits for a commit.
    fn all_committed(&self) -> bool {
        true
    }

    /// The open batch cannot be committed (a commit failed): it must be aborted.
    fn needs_abort(&self) -> bool {
        false
    }

    /// Discard everything handed over since the last commit; it will be sent again.
    fn abort(&mut self) -> impl Future<Output = Result<(), TailerError>> + Send {
        std::future::ready(Ok(()))
    }
}

/// librdkafka's log lines as tracing events at their level. The tailer sets the experimental
/// `enable.gapless.guarantee` on purpose, so librdkafka's note that it is experimental (at
/// every start) is kept at debug level.
pub(crate) fn log_librdkafka(level: RDKafkaLogLevel, fac: &str, message: &str) {
    use RDKafkaLogLevel as L;
    let expected = fac == "CONFWARN" && message.contains("enable.gapless.guarantee");
    match level {
        _ if expected => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}"),
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}")
        }
        L::Warning => tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}"),
        L::Notice | L::Info => tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}"),
        L::Debug => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}"),
    }
}
