//! The streaming loop: source → assemble (decode, place in transaction) → route → sink, acks →
//! progress → confirm.
//!
//! One `select!` with `biased` order: shutdown, then acks, then new input — so acks drain before
//! new input is read, and input is read only while the in-flight window (events and bytes) has
//! room. Memory is bounded by that window, never by transaction size.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use pgoutput::{Lsn, PgTimestamp};
use tokio::sync::mpsc;

use crate::background::publication_guard::Ceiling;
use crate::error::TailerError;
use crate::metrics::health::IDLE_TURN;
use crate::metrics::Metrics;
use crate::relay::assemble::{OutboxEvent, Step, TxnAssembler};
use crate::relay::decode::EventDecoder;
use crate::relay::progress::AckTracker;
use crate::relay::route::{Record, Router};
use crate::relay::sink::{Ack, Sink};
use crate::relay::source::{Source, SourceEvent};
use crate::shutdown::Shutdown;

mod kafka_txn;
mod limits;
mod waits;

pub use limits::{Stats, StreamEnd, Window};
use waits::{ceiling_rose, sleep_until};

/// Most source events (or acks) handled in one turn of the loop when they are already there.
const BURST: usize = 64;

/// How old the newest transaction received must be for the tailer to count as catching up.
const CATCHING_UP_AFTER: Duration = Duration::from_secs(1);

/// State that survives reconnects: decoder caches are reset, acks and progress are kept.
#[derive(Debug)]
pub struct Pipeline<K: Sink> {
    assembler: TxnAssembler,
    router: Router,
    tracker: AckTracker,
    sink: K,
    acks: mpsc::UnboundedReceiver<Ack>,
    window: Window,
    metrics: Arc<Metrics>,
    /// `(Commit.end_lsn, commit time in Unix µs)` of committed, not yet confirmed
    /// transactions: what the lag in seconds is measured from once they confirm.
    committed: VecDeque<(Lsn, i64)>,
    /// Transactional sink: nothing past this LSN is committed in Kafka, so nothing past it is
    /// confirmed. `None` for a plain sink (acks alone decide).
    gate: Option<Lsn>,
    /// `end_lsn` of the last transaction handed over whole.
    last_closed: Lsn,
    /// The last LSN passed to the source.
    sent: Lsn,
    /// The publication guard's bound on confirms (PostgreSQL 18+), if any, and its changes.
    ceiling: Option<(Ceiling, tokio::sync::watch::Receiver<u64>)>,
    /// Part of an abandoned transaction sits in the open Kafka transaction: it must be
    /// aborted, never committed.
    tainted: bool,
    /// Commit time (Unix µs) of the newest transaction received, or the time of the last
    /// keepalive between transactions: how far behind the stream is.
    newest_commit_us: i64,
    pub stats: Stats,
}

impl<K: Sink> Pipeline<K> {
    pub fn new(
        decoder: EventDecoder,
        router: Router,
        sink: K,
        acks: mpsc::UnboundedReceiver<Ack>,
        window: Window,
        start: Lsn,
    ) -> Self {
        let gate = sink.transactional().then_some(start);
        Pipeline {
            assembler: TxnAssembler::new(decoder, None),
            router,
            tracker: AckTracker::new(start),
            sink,
            acks,
            window,
            metrics: Arc::new(Metrics::new()),
            committed: VecDeque::new(),
            gate,
            last_closed: start,
            sent: start,
            ceiling: None,
            tainted: false,
            newest_commit_us: i64::MAX,
            stats: Stats::default(),
        }
    }

    /// Report into these metrics (each pipeline has its own otherwise).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Confirm no further than `ceiling` allows.
    pub fn with_ceiling(mut self, ceiling: &Ceiling) -> Self {
        self.ceiling = Some((ceiling.clone(), ceiling.watch()));
        self
    }

    /// Also publish logical decoding messages written with this prefix.
    pub fn with_message_prefix(mut self, prefix: Option<String>) -> Self {
        self.assembler.set_message_prefix(prefix);
        self
    }

    /// Everything up to here is in Kafka (and committed there, for a transactional sink).
    pub fn durable(&self) -> Lsn {
        self.gated(self.tracker.durable())
    }

    fn gated(&self, lsn: Lsn) -> Lsn {
        self.gate.map_or(lsn, |gate| lsn.min(gate))
    }

    pub fn in_flight(&self) -> u64 {
        self.tracker.in_flight_events()
    }

    pub fn sink(&self) -> &K {
        &self.sink
    }

    pub fn sink_mut(&mut self) -> &mut K {
        &mut self.sink
    }

    /// Read on while the window has room. Transactions waiting behind an unacked one count
    /// against the event limit too, so one stuck ack cannot grow the queue without bound.
    fn has_room(&self) -> bool {
        self.tracker.in_flight_events() < self.window.max_events
            && self.tracker.in_flight_bytes() < self.window.max_bytes
            && self.tracker.unconfirmed_transactions() < self.window.max_events
    }

    /// Stream until shutdown (after finishing the open transaction, so a clean stop leaves no
    /// partly published transaction) or an error.
    pub async fn stream<S: Source>(
        &mut self,
        source: &mut S,
        stop: &mut Shutdown,
        shutdown_timeout: Duration,
    ) -> Result<StreamEnd, TailerError> {
        let mut stop_deadline: Option<Instant> = None;
        // `/healthz`: the loop turns at least every IDLE_TURN, traffic or not, so a turn
        // that never ends shows as a stale heartbeat.
        let in_loop = self.metrics.heartbeat.enter();
        let mut idle = tokio::time::interval(IDLE_TURN);
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The source had nothing queued when last asked (or was not asked yet): the sink may
        // send without batching.
        let mut source_idle = true;
        loop {
            in_loop.turn();
            // The in-flight gauges, once per turn (a turn handles up to a burst of events).
            self.update_in_flight();
            if stop_deadline.is_some() && !self.assembler.in_transaction() {
                return Ok(StreamEnd::Shutdown);
            }
            let room = self.has_room();
            // A transactional sink commits between PostgreSQL transactions only.
            let commit_at = match self.assembler.in_transaction() {
                false => self.sink.commit_deadline(self.catching_up()),
                true => None,
            };
            tokio::select! {
                biased;
                _ = stop.requested(), if stop_deadline.is_none() => {
                    stop_deadline = stop.deadline(shutdown_timeout);
                }
                _ = sleep_until(stop_deadline), if stop_deadline.is_some() => {
                    tracing::warn!("shutdown timeout inside a transaction: it will be re-sent on restart");
                    self.abandon_open();
                    return Ok(StreamEnd::Shutdown);
                }
                Some(ack) = self.acks.recv() => {
                    self.on_ack(ack, Some(&mut *source))?;
                    self.take_queued_acks(source)?;
                    if source_idle {
                        // What queued up behind the last "send now" goes once it is acked.
                        self.sink.source_idle();
                    }
                }
                Ok(()) = ceiling_rose(self.ceiling.as_mut().map(|(_, rx)| rx)), if self.ceiling.is_some() => {
                    // What the ceiling held back (the tracker's durable position is kept).
                    let durable = self.tracker.durable();
                    self.confirm(Some(&mut *source), durable);
                }
                _ = sleep_until(commit_at), if commit_at.is_some() => {
                    self.commit(true, Some(&mut *source)).await?;
                }
                event = source.next(), if room => {
                    if let Some(end) = self.on_source(event?, source).await? {
                        return Ok(end);
                    }
                    // What the source already holds, while the window has room: one turn
                    // of the loop (and of every branch's future) per burst, not per event.
                    // A stop requested meanwhile waits for the burst (at most BURST events).
                    // Acks still go first, as in the loop's order.
                    source_idle = false;
                    for _ in 1..BURST {
                        self.take_queued_acks(source)?;
                        if !self.has_room() {
                            break;
                        }
                        let Some(event) = source.next().now_or_never() else {
                            source_idle = true;
                            self.sink.source_idle();
                            break;
                        };
                        if let Some(end) = self.on_source(event?, source).await? {
                            return Ok(end);
                        }
                    }
                }
                _ = idle.tick() => {}
            }
        }
    }

    /// The acks already queued (up to a burst), without a turn of the loop each.
    fn take_queued_acks<S: Source>(&mut self, source: &mut S) -> Result<(), TailerError> {
        for _ in 0..BURST {
            let Ok(ack) = self.acks.try_recv() else {
                break;
            };
            self.on_ack(ack, Some(&mut *source))?;
        }
        Ok(())
    }

    /// One event from the source; `Some` when the stream ended.
    async fn on_source<S: Source>(
        &mut self,
        event: SourceEvent,
        source: &mut S,
    ) -> Result<Option<StreamEnd>, TailerError> {
        match event {
            SourceEvent::End if !self.assembler.in_transaction() => Ok(Some(StreamEnd::Exhausted)),
            SourceEvent::End => Err(TailerError::Bug(
                "the source ended inside a transaction".into(),
            )),
            event => self.on_event(event, source).await.map(|()| None),
        }
    }

    /// `source` is `None` when the connection is gone (acks still move the durable LSN).
    fn on_ack<S: Source>(&mut self, ack: Ack, source: Option<&mut S>) -> Result<(), TailerError> {
        if let Err(failure) = ack.result {
            return Err(TailerError::Delivery {
                topic: failure.topic,
                reason: failure.reason,
            });
        }
        self.stats.events_acked += 1;
        self.metrics.events_acked.inc();
        if let Some(handed_over) = ack.ticket.handed_over {
            self.metrics
                .publish_latency
                .observe(handed_over.elapsed().as_secs_f64());
        }
        let confirmed = self.tracker.acked(ack.ticket);
        if let Some(lsn) = confirmed {
            self.confirm(source, lsn);
        }
        Ok(())
    }

    /// Pass a new durable LSN to the source and the metrics (no further than the last Kafka
    /// commit, for a transactional sink).
    fn confirm<S: Source>(&mut self, source: Option<&mut S>, lsn: Lsn) {
        let mut lsn = self.gated(lsn);
        if let Some((ceiling, _)) = &self.ceiling {
            lsn = lsn.min(ceiling.get());
        }
        if lsn <= self.sent {
            return;
        }
        self.sent = lsn;
        if let Some(source) = source {
            source.confirm(lsn);
        }
        let mut newest = None;
        while let Some(&(end, time)) = self.committed.front() {
            if end > lsn {
                break;
            }
            newest = Some(time);
            self.committed.pop_front();
        }
        self.metrics.confirmed(lsn, newest);
    }

    pub(super) fn update_in_flight(&self) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.metrics
            .in_flight_events
            .set(clamp(self.tracker.in_flight_events()));
        self.metrics
            .in_flight_bytes
            .set(clamp(self.tracker.in_flight_bytes()));
    }

    async fn on_event<S: Source>(
        &mut self,
        event: SourceEvent,
        source: &mut S,
    ) -> Result<(), TailerError> {
        tracing::trace!(event = event.kind(), "source event");
        if let SourceEvent::Keepalive { wal_end } = event {
            self.on_keepalive(wal_end, source);
            return Ok(());
        }
        match self.assembler.step(event)? {
            Step::Skip => {}
            Step::Begin => self.open_unit(),
            Step::Event(event) => self.publish(&event).await?,
            Step::Standalone { event, end_lsn } => {
                self.open_unit();
                self.publish(&event).await?;
                self.close_unit(end_lsn, source).await?;
            }
            Step::Commit {
                end_lsn,
                commit_time,
            } => self.on_commit(end_lsn, commit_time, source).await?,
        }
        Ok(())
    }

    fn on_keepalive<S: Source>(&mut self, wal_end: Lsn, source: &mut S) {
        // Between transactions a keepalive means the walsender has nothing more right now:
        // caught up, whatever the last commit's age.
        if !self.assembler.in_transaction() {
            self.newest_commit_us = now_us();
        }
        if let Some(lsn) = self.tracker.keepalive(wal_end) {
            if self.gate.is_some() && self.sink.all_committed() && !self.tainted {
                self.gate = Some(lsn);
            }
            self.confirm(Some(source), lsn);
        }
        if self.tracker.is_idle() {
            self.metrics.caught_up();
        }
    }

    /// A transaction, or a standalone message, starts: its events are acked as one unit.
    fn open_unit(&mut self) {
        self.tracker.begin();
        self.metrics.transaction_started();
    }

    /// The unit's events are all handed over: `end_lsn` is confirmed once they are acked (and,
    /// for a transactional sink, committed: the batch is committed here when it is full).
    async fn close_unit<S: Source>(
        &mut self,
        end_lsn: Lsn,
        source: &mut S,
    ) -> Result<(), TailerError> {
        self.last_closed = end_lsn;
        if self.gate.is_some() {
            self.commit(false, None::<&mut S>).await?;
        }
        if let Some(lsn) = self.tracker.commit(end_lsn) {
            self.confirm(Some(source), lsn);
        }
        Ok(())
    }

    async fn on_commit<S: Source>(
        &mut self,
        end_lsn: Lsn,
        commit_time: Option<PgTimestamp>,
        source: &mut S,
    ) -> Result<(), TailerError> {
        // Lag in seconds is measured from commit times: a unit without one leaves it alone.
        if let Some(time) = commit_time {
            let commit_us = time.unix_micros();
            self.newest_commit_us = commit_us;
            self.metrics.received_transaction(commit_us);
            // A transaction without events confirms together with the one before it, so it
            // replaces that one's entry instead of queueing behind it.
            let merges = !self.tracker.open_has_events() && !self.committed.is_empty();
            if merges {
                self.committed.pop_back();
            }
            self.committed.push_back((end_lsn, commit_us));
        }
        self.stats.transactions += 1;
        self.metrics.transactions.inc();
        self.close_unit(end_lsn, source).await
    }

    /// Route and hand over one event: its record, or its dead-letter record when it cannot be
    /// routed (an error without a dead-letter topic).
    async fn publish(&mut self, event: &OutboxEvent) -> Result<(), TailerError> {
        let routed = event.route(&self.router)?;
        if let Some(reason) = &routed.dead_letter_reason {
            let event_id = Router::event_id(&event.row);
            tracing::warn!(event_id = %event_id, lsn = %event.position.commit_lsn, reason = %reason, "unroutable outbox row sent to the dead-letter topic");
            self.stats.dead_lettered += 1;
            self.metrics.dead_lettered.inc();
        }
        self.hand_over(routed.record).await
    }

    async fn hand_over(&mut self, record: Record) -> Result<(), TailerError> {
        let size = u32::try_from(record.size()).unwrap_or(u32::MAX);
        let Some(ticket) = self.tracker.publish(size) else {
            return Err(TailerError::Bug("publish outside a transaction".into()));
        };
        if let Err(e) = self.sink.send(record, ticket).await {
            self.tracker.unpublish(ticket);
            return Err(e);
        }
        self.stats.events_published += 1;
        self.metrics.events_published.inc();
        self.metrics.published_bytes.inc_by(u64::from(size));
        self.stats.peak_in_flight = self
            .stats
            .peak_in_flight
            .max(self.tracker.in_flight_events());
        Ok(())
    }

    /// The stream broke or stops mid-transaction: the open transaction will be re-sent whole.
    pub fn abandon_open(&mut self) {
        self.assembler.abandon();
        self.abandon_tracked();
    }

    /// After a disconnect: forget relations and the partial transaction.
    pub fn reset_stream(&mut self) {
        self.assembler.reset();
        self.abandon_tracked();
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod heartbeat_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod transactional_tests;
