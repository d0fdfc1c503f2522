//! An in-memory [`Sink`] for unit tests.

use tokio::sync::mpsc;

use crate::error::TailerError;
use crate::relay::progress::Ticket;
use crate::relay::route::Record;
use crate::relay::sink::{Ack, Sink};

/// An in-memory sink for unit tests: records are kept, acks sent at once or held back.
#[derive(Debug)]
pub struct MemorySink {
    pub records: Vec<(Record, Ticket)>,
    acks: mpsc::UnboundedSender<Ack>,
    pub auto_ack: bool,
    /// Transactional mode: records are visible only once committed.
    pub txn: Option<MemoryTxn>,
    /// `records.len()` each time the pipeline said the source was idle.
    pub idle_at: Vec<usize>,
}

/// What a transactional [`MemorySink`] committed and aborted.
#[derive(Debug, Default)]
pub struct MemoryTxn {
    /// Commit when this many records wait (between PostgreSQL transactions).
    pub max_events: usize,
    /// Records handed over since the last commit or abort.
    pub open: usize,
    /// `records.len()` at each commit.
    pub commits: Vec<usize>,
    pub aborts: usize,
    /// The next commit fails (abortably).
    pub fail_next_commit: bool,
    pub failed: bool,
}

impl MemorySink {
    pub fn new(acks: mpsc::UnboundedSender<Ack>, auto_ack: bool) -> Self {
        MemorySink {
            records: Vec::new(),
            acks,
            auto_ack,
            txn: None,
            idle_at: Vec::new(),
        }
    }

    /// A transactional sink that commits every `max_events` records.
    pub fn transactional(mut self, max_events: usize) -> Self {
        self.txn = Some(MemoryTxn {
            max_events,
            ..MemoryTxn::default()
        });
        self
    }

    /// Ack the record at `index` now.
    pub fn ack(&self, index: usize) {
        let _ = self.acks.send(Ack {
            ticket: self.records[index].1,
            result: Ok(()),
        });
    }
}

impl Sink for MemorySink {
    async fn send(&mut self, record: Record, ticket: Ticket) -> Result<(), TailerError> {
        if self.auto_ack {
            let _ = self.acks.send(Ack {
                ticket,
                result: Ok(()),
            });
        }
        self.records.push((record, ticket));
        if let Some(txn) = self.txn.as_mut() {
            txn.open += 1;
        }
        Ok(())
    }

    fn transactional(&self) -> bool {
        self.txn.is_some()
    }

    fn source_idle(&mut self) {
        self.idle_at.push(self.records.len());
    }

    async fn commit(&mut self, now: bool) -> Result<bool, TailerError> {
        let len = self.records.len();
        let Some(txn) = self.txn.as_mut() else {
            return Ok(true);
        };
        if txn.open == 0 || !(now || txn.open >= txn.max_events) {
            return Ok(txn.open == 0);
        }
        if std::mem::take(&mut txn.fail_next_commit) {
            txn.failed = true;
            return Err(TailerError::Transaction {
                message: "commit failed (scripted)".into(),
                action: crate::error::Action::Retry,
                retry_here: true,
            });
        }
        txn.commits.push(len);
        txn.open = 0;
        Ok(true)
    }

    fn all_committed(&self) -> bool {
        self.txn.as_ref().is_none_or(|t| t.open == 0)
    }

    fn needs_abort(&self) -> bool {
        self.txn.as_ref().is_some_and(|t| t.failed)
    }

    async fn abort(&mut self) -> Result<(), TailerError> {
        if let Some(txn) = self.txn.as_mut() {
            if txn.open > 0 {
                txn.aborts += 1;
            }
            txn.open = 0;
            txn.failed = false;
        }
        Ok(())
    }
}
