//! The pipeline's side of a transactional sink (`--exactly-once`): commit only between
//! PostgreSQL transactions, let confirms through up to the last commit (the gate), and abort
//! and rewind when a batch holds part of an abandoned transaction or its commit failed.

use super::{now_us, Pipeline, CATCHING_UP_AFTER};
use crate::error::TailerError;
use crate::relay::progress::AckTracker;
use crate::relay::sink::Sink;
use crate::relay::source::Source;

impl<K: Sink> Pipeline<K> {
    /// The newest transaction received committed more than [`CATCHING_UP_AFTER`] ago: the
    /// tailer is draining a backlog.
    pub(super) fn catching_up(&self) -> bool {
        now_us().saturating_sub(self.newest_commit_us) > CATCHING_UP_AFTER.as_micros() as i64
    }

    /// Transactional sink, between PostgreSQL transactions: commit the batch (when full, or
    /// whenever `now`), then let confirms through up to the last transaction handed over.
    pub(super) async fn commit<S: Source>(
        &mut self,
        now: bool,
        source: Option<&mut S>,
    ) -> Result<(), TailerError> {
        if self.gate.is_none() || self.tainted {
            return Ok(());
        }
        if self.sink.commit(now).await? {
            self.gate = Some(self.last_closed);
            let durable = self.tracker.durable();
            self.confirm(source, durable);
        }
        Ok(())
    }

    /// Transactional sink, nothing in flight: commit what was handed over whole, or abort the
    /// batch when it holds part of an abandoned transaction or a commit failed (then
    /// everything after the last commit is streamed and sent again).
    pub async fn settle<S: Source>(&mut self, source: Option<&mut S>) -> Result<(), TailerError> {
        if self.gate.is_none() {
            return Ok(());
        }
        if !self.tainted && !self.sink.needs_abort() {
            match self.commit(true, source).await {
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "Kafka commit failed: aborting, sending again");
                }
                other => return other,
            }
        }
        self.sink.abort().await?;
        self.rewind();
        Ok(())
    }

    /// After an abort: everything past the last commit counts as never sent.
    fn rewind(&mut self) {
        let gate = self.gate.unwrap_or(self.sent);
        self.tracker = AckTracker::new(gate);
        self.committed.clear();
        self.last_closed = gate;
        self.tainted = false;
        self.update_in_flight();
    }

    pub(super) fn abandon_tracked(&mut self) {
        if self.gate.is_some() && self.tracker.open_has_events() {
            self.tainted = true;
        }
        self.tracker.abandon_open();
    }
}
