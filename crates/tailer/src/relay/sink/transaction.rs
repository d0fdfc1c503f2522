//! Kafka transactions for `--exactly-once`: one Kafka transaction holds whole PostgreSQL
//! transactions, and the pipeline confirms the slot only up to the last Kafka commit.
//!
//! ```text
//!   PG txns:    [T1][T2][T3]        [T4][T5 …
//!   Kafka txn:  begin ─────── commit begin ──── (events, bytes or time reached, between PG txns)
//!   confirm:                  ▲ T3.end_lsn (once T1–T3 are acked and committed)
//! ```
//!
//! A crash before the commit leaves an open transaction that the next producer with the same
//! `transactional.id` aborts at its start, so `read_committed` consumers never see it; the slot
//! was not confirmed past the last commit, so those events are sent again. A crash after the
//! commit but before the slot heard of it is covered by idempotent resume, which reads the
//! tails `read_committed` and skips what the commit made visible.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ThreadedProducer};

use crate::config::TransactionConfig;
use crate::error::{Action, TailerError};
use crate::shutdown::Shutdown;

/// How many times `--transaction-max-ms` a Kafka transaction may stay open while the tailer
/// catches up on a backlog.
pub const CATCHING_UP_WAIT: u32 = 50;

/// How long one call into the transaction coordinator may take before it is tried again.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The transactional.id of a source (`<system id>/<slot>`) when none is configured.
pub fn default_transactional_id(source_id: &str) -> String {
    format!("outbox-tailer.{}", source_id.replace('/', "."))
}

/// The open Kafka transaction's contents, and when it must be committed.
#[derive(Debug)]
pub struct Batch {
    limits: TransactionConfig,
    id: String,
    /// A Kafka transaction is open (begun and not yet committed or aborted).
    open: bool,
    events: u64,
    bytes: u64,
    opened_at: Option<Instant>,
    /// A commit failed: the open transaction can only be aborted.
    failed: bool,
}

impl Batch {
    pub fn new(limits: TransactionConfig, id: String) -> Self {
        Batch {
            limits,
            id,
            open: false,
            events: 0,
            bytes: 0,
            opened_at: None,
            failed: false,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Nothing was handed over since the last commit.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// When the open transaction must be committed at the latest: `max_wait` after its first
    /// event, or [`CATCHING_UP_WAIT`] times that while the tailer catches up on a backlog
    /// (then every commit, which waits for everything in flight, would stall the drain).
    pub fn deadline(&self, catching_up: bool) -> Option<Instant> {
        let wait = match catching_up {
            true => self.limits.max_wait * CATCHING_UP_WAIT,
            false => self.limits.max_wait,
        };
        self.opened_at.map(|t| t + wait)
    }

    /// The events or bytes limit is reached (checked between PostgreSQL transactions).
    pub fn full(&self) -> bool {
        self.events >= self.limits.max_events || self.bytes >= self.limits.max_bytes
    }

    /// Before a record is produced: begin a Kafka transaction if none is open.
    pub fn before_send<P: Producer<C>, C: rdkafka::producer::ProducerContext>(
        &mut self,
        producer: &P,
        bytes: usize,
    ) -> Result<(), TailerError> {
        if !self.open {
            producer
                .begin_transaction()
                .map_err(|e| self.failed_call("beginning a Kafka transaction", e))?;
            self.open = true;
            self.opened_at = Some(Instant::now());
        }
        self.events += 1;
        self.bytes += bytes as u64;
        Ok(())
    }

    /// A commit failed: only an abort can follow.
    pub fn needs_abort(&self) -> bool {
        self.failed
    }

    fn reset(&mut self) {
        self.failed = false;
        self.open = false;
        self.events = 0;
        self.bytes = 0;
        self.opened_at = None;
    }

    /// Commit the open transaction (if any). Blocks the calling task's thread, so call it
    /// through [`commit`].
    fn commit_blocking<C>(&mut self, producer: &ThreadedProducer<C>) -> Result<(), TailerError>
    where
        C: rdkafka::producer::ProducerContext + 'static,
    {
        let result = self.end(|| producer.commit_transaction(CALL_TIMEOUT), "committing");
        self.failed = result.is_err();
        result
    }

    /// Abort the open transaction (if any): nothing of it becomes visible to `read_committed`
    /// consumers.
    fn abort_blocking<C>(&mut self, producer: &ThreadedProducer<C>) -> Result<(), TailerError>
    where
        C: rdkafka::producer::ProducerContext + 'static,
    {
        self.end(|| producer.abort_transaction(CALL_TIMEOUT), "aborting")
    }

    /// End the open transaction with `call`, which may be repeated after a timeout.
    fn end(
        &mut self,
        call: impl Fn() -> Result<(), KafkaError>,
        doing: &str,
    ) -> Result<(), TailerError> {
        if !self.open {
            return Ok(());
        }
        loop {
            match call() {
                Ok(()) => {
                    self.reset();
                    return Ok(());
                }
                Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                    tracing::warn!(error = %e, "{doing} a Kafka transaction timed out, retrying");
                }
                Err(e) => return Err(self.failed_call(&format!("{doing} a Kafka transaction"), e)),
            }
        }
    }

    /// A transactional call failed: say what it means and what to do.
    fn failed_call(&self, doing: &str, error: KafkaError) -> TailerError {
        let id = &self.id;
        let (code, fatal, abortable) = match &error {
            KafkaError::Transaction(e) => (e.code(), e.is_fatal(), e.txn_requires_abort()),
            other => (
                other.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail),
                true,
                false,
            ),
        };
        let text = error.to_string();
        if matches!(
            code,
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::InvalidProducerIdMapping
        ) || text.contains("fenced")
        {
            return TailerError::Transaction {
                message: format!(
                    "another producer with transactional.id {id:?} fenced this tailer \
                     ({doing}: {text}). A second tailer runs with the same id: run one tailer \
                     per slot, or give each its own --transactional-id. This one stops \
                     without confirming anything past its last commit"
                ),
                action: Action::FixConfig,
                retry_here: false,
            };
        }
        if text.contains("not supported by broker") {
            return unsupported(&text);
        }
        TailerError::Transaction {
            message: format!("{doing} (transactional.id {id:?}): {text}"),
            // An abortable error: abort, and send again from the last commit. A fatal one:
            // this producer cannot go on, a new process can.
            action: Action::Retry,
            retry_here: abortable || !fatal,
        }
    }
}

/// The broker cannot do transactions.
pub fn unsupported(detail: &str) -> TailerError {
    TailerError::Transaction {
        message: format!(
            "the Kafka broker does not support transactions ({detail}), which --exactly-once \
             needs (Apache Kafka 0.11 or later, Redpanda, …; not tansu 0.6). Remove \
             --exactly-once to publish at least once with idempotent resume"
        ),
        action: Action::FixConfig,
        retry_here: false,
    }
}

/// Register the transactional.id with the coordinator (fencing an older producer with it and
/// aborting its open transaction). Waits for a broker that is away, until shutdown.
pub async fn init<C>(
    producer: &Arc<ThreadedProducer<C>>,
    batch: &Batch,
    stop: Option<&Shutdown>,
) -> Result<(), TailerError>
where
    C: rdkafka::producer::ProducerContext + 'static,
{
    loop {
        let p = Arc::clone(producer);
        let result = tokio::task::spawn_blocking(move || p.init_transactions(CALL_TIMEOUT))
            .await
            .map_err(|e| TailerError::Bug(format!("init_transactions task: {e}")))?;
        match result {
            Ok(()) => return Ok(()),
            Err(KafkaError::Transaction(e)) if e.is_retriable() => {
                tracing::warn!(error = %e, "Kafka transaction coordinator not reachable yet");
                if stop.is_some_and(Shutdown::is_requested) {
                    return Err(TailerError::Interrupted(
                        "while registering the transactional.id".into(),
                    ));
                }
            }
            Err(e) => return Err(batch.failed_call("registering the transactional.id", e)),
        }
    }
}

/// Commit the open Kafka transaction off the async threads.
pub async fn commit<C>(
    producer: &Arc<ThreadedProducer<C>>,
    batch: &mut Batch,
) -> Result<(), TailerError>
where
    C: rdkafka::producer::ProducerContext + 'static,
{
    run_blocking(producer, batch, Batch::commit_blocking).await
}

/// Abort the open Kafka transaction off the async threads.
pub async fn abort<C>(
    producer: &Arc<ThreadedProducer<C>>,
    batch: &mut Batch,
) -> Result<(), TailerError>
where
    C: rdkafka::producer::ProducerContext + 'static,
{
    run_blocking(producer, batch, Batch::abort_blocking).await
}

async fn run_blocking<C>(
    producer: &Arc<ThreadedProducer<C>>,
    batch: &mut Batch,
    call: fn(&mut Batch, &ThreadedProducer<C>) -> Result<(), TailerError>,
) -> Result<(), TailerError>
where
    C: rdkafka::producer::ProducerContext + 'static,
{
    if !batch.open {
        return Ok(());
    }
    let p = Arc::clone(producer);
    let mut owned = std::mem::replace(batch, Batch::new(batch.limits.clone(), batch.id.clone()));
    let (owned, result) = tokio::task::spawn_blocking(move || {
        let result = call(&mut owned, &p);
        (owned, result)
    })
    .await
    .map_err(|e| TailerError::Bug(format!("Kafka transaction task: {e}")))?;
    *batch = owned;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_id_names_the_cluster_and_the_slot() {
        assert_eq!(
            default_transactional_id("7301234567890/outbox_slot"),
            "outbox-tailer.7301234567890.outbox_slot"
        );
    }

    #[test]
    fn a_batch_is_due_by_events_or_bytes() {
        let limits = TransactionConfig {
            id: None,
            max_events: 2,
            max_bytes: 100,
            max_wait: Duration::from_millis(100),
        };
        let mut batch = Batch::new(limits, "t".into());
        assert!(batch.is_empty() && !batch.full() && batch.deadline(false).is_none());
        batch.events = 1;
        batch.bytes = 99;
        assert!(!batch.full());
        batch.bytes = 100;
        assert!(batch.full());
        batch.bytes = 0;
        batch.events = 2;
        assert!(batch.full());
    }
}
