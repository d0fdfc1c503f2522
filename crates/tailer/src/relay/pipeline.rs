//! The streaming loop: source → decode → route → sink, acks → progress → confirm.
//!
//! One `select!` with `biased` order: shutdown, then acks, then new input — so acks drain before
//! new input is read, and input is read only while the in-flight window (events and bytes) has
//! room. Memory is bounded by that window, never by transaction size.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgoutput::Lsn;
use tokio::sync::mpsc;

use crate::error::TailerError;
use crate::metrics::Metrics;
use crate::relay::decode::{Decoded, EventDecoder, OutboxRow};
use crate::relay::progress::AckTracker;
use crate::relay::route::{Router, TxnPosition};
use crate::relay::sink::{Ack, Sink};
use crate::relay::source::{Source, SourceEvent};
use crate::shutdown::Shutdown;

/// Counters of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub events_published: u64,
    pub events_acked: u64,
    pub dead_lettered: u64,
    pub transactions: u64,
    pub reconnects: u64,
    /// Highest number of events in flight at once.
    pub peak_in_flight: u64,
}

/// Why streaming stopped without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    Shutdown,
    /// The source ended (`replay` reached the end of its range) between transactions.
    Exhausted,
}

/// Limits of the in-flight window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub max_events: u64,
    pub max_bytes: u64,
}

#[derive(Debug)]
struct OpenTxn {
    position: TxnPosition,
    next_seq: u32,
}

/// State that survives reconnects: decoder caches are reset, acks and progress are kept.
#[derive(Debug)]
pub struct Pipeline<K: Sink> {
    decoder: EventDecoder,
    router: Router,
    tracker: AckTracker,
    sink: K,
    acks: mpsc::UnboundedReceiver<Ack>,
    window: Window,
    txn: Option<OpenTxn>,
    message_prefix: Option<String>,
    metrics: Arc<Metrics>,
    /// `(Commit.end_lsn, commit time in Unix µs)` of committed, not yet confirmed
    /// transactions: what the lag in seconds is measured from once they confirm.
    committed: VecDeque<(Lsn, i64)>,
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
        Pipeline {
            decoder,
            router,
            tracker: AckTracker::new(start),
            sink,
            acks,
            window,
            txn: None,
            message_prefix: None,
            metrics: Arc::new(Metrics::new()),
            committed: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Report into these metrics (each pipeline has its own otherwise).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Also publish logical decoding messages written with this prefix.
    pub fn with_message_prefix(mut self, prefix: Option<String>) -> Self {
        self.message_prefix = prefix;
        self
    }

    pub fn durable(&self) -> Lsn {
        self.tracker.durable()
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

    fn has_room(&self) -> bool {
        self.tracker.in_flight_events() < self.window.max_events
            && self.tracker.in_flight_bytes() < self.window.max_bytes
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
        loop {
            if stop_deadline.is_some() && self.txn.is_none() {
                return Ok(StreamEnd::Shutdown);
            }
            let room = self.has_room();
            tokio::select! {
                biased;
                _ = stop.requested(), if stop_deadline.is_none() => {
                    stop_deadline = Some(Instant::now() + shutdown_timeout);
                }
                _ = sleep_until(stop_deadline), if stop_deadline.is_some() => {
                    tracing::warn!("shutdown timeout inside a transaction: it will be re-sent on restart");
                    self.abandon_open();
                    return Ok(StreamEnd::Shutdown);
                }
                Some(ack) = self.acks.recv() => self.on_ack(ack, Some(&mut *source))?,
                event = source.next(), if room => match event? {
                    SourceEvent::End if self.txn.is_none() => return Ok(StreamEnd::Exhausted),
                    SourceEvent::End => return Err(TailerError::Bug(
                        "the source ended inside a transaction".into(),
                    )),
                    event => self.on_event(event, source).await?,
                },
            }
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
        self.metrics
            .publish_latency
            .observe(ack.ticket.handed_over.elapsed().as_secs_f64());
        let confirmed = self.tracker.acked(ack.ticket);
        self.update_in_flight();
        if let Some(lsn) = confirmed {
            self.confirm(source, lsn);
        }
        Ok(())
    }

    /// Pass a new durable LSN to the source and the metrics.
    fn confirm<S: Source>(&mut self, source: Option<&mut S>, lsn: Lsn) {
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

    fn update_in_flight(&self) {
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
        match event {
            SourceEvent::Begin {
                final_lsn,
                xid,
                commit_time,
            } => {
                self.tracker.begin();
                self.metrics.transaction_started();
                self.txn = Some(OpenTxn {
                    position: TxnPosition {
                        commit_lsn: final_lsn,
                        xid,
                        commit_time,
                    },
                    next_seq: 0,
                });
            }
            SourceEvent::Data(bytes) => {
                let message = pgoutput::decode(&bytes)?;
                if let Decoded::Row(row) = self.decoder.on_message(message)? {
                    self.publish(row, None).await?;
                }
            }
            SourceEvent::Commit { end_lsn, .. } => {
                if let Some(txn) = self.txn.take() {
                    let commit_us = txn.position.commit_time.unix_micros();
                    self.metrics.received_transaction(commit_us);
                    self.committed.push_back((end_lsn, commit_us));
                }
                self.stats.transactions += 1;
                self.metrics.transactions.inc();
                if let Some(lsn) = self.tracker.commit(end_lsn) {
                    self.confirm(Some(source), lsn);
                }
            }
            SourceEvent::Keepalive { wal_end } => {
                if let Some(lsn) = self.tracker.keepalive(wal_end) {
                    self.confirm(Some(&mut *source), lsn);
                }
                if self.tracker.is_idle() {
                    self.metrics.caught_up();
                }
            }
            // Handled by `stream`.
            SourceEvent::End => {}
            SourceEvent::Message {
                transactional,
                lsn,
                prefix,
                content,
            } => {
                if self.message_prefix.as_deref() != Some(prefix.as_str()) {
                    return Ok(());
                }
                // A non-transactional message is its own one-event unit: confirming its LSN
                // (the end of its record) once acked skips exactly it.
                let standalone = !transactional && self.txn.is_none();
                if standalone {
                    self.tracker.begin();
                    self.metrics.transaction_started();
                    self.txn = Some(OpenTxn {
                        position: TxnPosition {
                            commit_lsn: lsn,
                            xid: 0,
                            commit_time: pgoutput::PgTimestamp::from_system_time(
                                std::time::SystemTime::now(),
                            ),
                        },
                        next_seq: 0,
                    });
                }
                match self.decoder.on_logical_message(&content) {
                    Ok(row) => self.publish(row, None).await?,
                    Err((row, reason)) => self.publish(row, Some(reason)).await?,
                }
                if standalone {
                    if let Some(txn) = self.txn.take() {
                        self.committed
                            .push_back((lsn, txn.position.commit_time.unix_micros()));
                    }
                    if let Some(lsn) = self.tracker.commit(lsn) {
                        self.confirm(Some(source), lsn);
                    }
                }
            }
        }
        Ok(())
    }

    /// Route and hand over one event; `malformed` carries the reason when the event could not
    /// even be read (it then goes to the dead-letter topic or stops the tailer).
    async fn publish(
        &mut self,
        row: OutboxRow,
        malformed: Option<String>,
    ) -> Result<(), TailerError> {
        let Some(txn) = self.txn.as_mut() else {
            return Err(TailerError::Bug(
                "an outbox Insert arrived outside a transaction".into(),
            ));
        };
        let seq = txn.next_seq;
        txn.next_seq += 1;
        let position = txn.position;
        let routed = self.router.route_event(&row, &position, seq, malformed)?;
        if let Some(reason) = &routed.dead_letter_reason {
            let event_id = Router::event_id(&row);
            tracing::warn!(event_id = %event_id, lsn = %position.commit_lsn, reason = %reason, "unroutable outbox row sent to the dead-letter topic");
            self.stats.dead_lettered += 1;
            self.metrics.dead_lettered.inc();
        }
        let record = routed.record;
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
        self.metrics.bytes_published.inc_by(u64::from(size));
        self.update_in_flight();
        self.stats.peak_in_flight = self
            .stats
            .peak_in_flight
            .max(self.tracker.in_flight_events());
        Ok(())
    }

    /// The stream broke or stops mid-transaction: the open transaction will be re-sent whole.
    pub fn abandon_open(&mut self) {
        self.txn = None;
        self.tracker.abandon_open();
    }

    /// After a disconnect: forget relations and the partial transaction.
    pub fn reset_stream(&mut self) {
        self.abandon_open();
        self.decoder.reset();
    }

    /// Wait for acks until nothing is in flight, confirming as they come, or until `deadline`.
    /// Fails on a refused record. `source` is `None` when the connection is gone.
    pub async fn drain<S: Source>(
        &mut self,
        mut source: Option<&mut S>,
        deadline: Option<Instant>,
        stop: Option<&mut Shutdown>,
    ) -> Result<bool, TailerError> {
        let mut stop = stop;
        while self.tracker.in_flight_events() > 0 {
            let ack = tokio::select! {
                ack = self.acks.recv() => ack,
                _ = sleep_until(deadline) => return Ok(false),
                _ = stopped_or_pending(stop.as_deref_mut()) => return Ok(false),
            };
            let Some(ack) = ack else { return Ok(false) };
            self.on_ack(ack, source.as_deref_mut())?;
        }
        Ok(true)
    }
}

async fn stopped_or_pending(stop: Option<&mut Shutdown>) {
    match stop {
        Some(stop) => stop.requested().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteConfig;
    use crate::pg::names::TableName;
    use crate::relay::scripted_source::ScriptedSource;
    use crate::relay::sink::memory::MemorySink;
    use bytes::Bytes;
    use pgoutput::encode::encode;
    use pgoutput::{
        Column, Insert, Message, PgTimestamp, Relation, ReplicaIdentity, TupleData, TupleValue,
    };

    fn relation() -> SourceEvent {
        let col = |name: &str, type_oid: u32| Column {
            flags: 0,
            name: name.into(),
            type_oid,
            type_modifier: -1,
        };
        SourceEvent::Data(encode(&Message::Relation(Relation {
            stream_xid: None,
            oid: 16385,
            namespace: "public".into(),
            name: "outbox".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![
                col("id", 2950),
                col("aggregatetype", 25),
                col("aggregateid", 25),
                col("type", 25),
                col("payload", 3802),
            ],
        })))
    }

    fn insert(n: u32) -> SourceEvent {
        let t = |s: String| TupleValue::Text(Bytes::from(s));
        SourceEvent::Data(encode(&Message::Insert(Insert {
            stream_xid: None,
            relation_oid: 16385,
            new: TupleData::new(vec![
                t(format!("00000000-0000-0000-0000-{n:012}")),
                t("order".into()),
                t(format!("o-{n}")),
                t("Created".into()),
                t(format!("{{\"n\":{n}}}")),
            ]),
        })))
    }

    fn begin(lsn: u64) -> SourceEvent {
        SourceEvent::Begin {
            final_lsn: Lsn::from(lsn),
            xid: 7,
            commit_time: PgTimestamp::from_pg_micros(0),
        }
    }

    fn commit(end: u64) -> SourceEvent {
        SourceEvent::Commit {
            commit_lsn: Lsn::from(end - 8),
            end_lsn: Lsn::from(end),
        }
    }

    fn pipeline(max_events: u64) -> (Pipeline<MemorySink>, mpsc::UnboundedSender<Ack>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let route = RouteConfig::default();
        let decoder =
            EventDecoder::new(TableName::parse("public.outbox").unwrap(), route.clone()).unwrap();
        let sink = MemorySink::new(tx.clone(), false);
        let window = Window {
            max_events,
            max_bytes: u64::MAX,
        };
        (
            Pipeline::new(
                decoder,
                Router::new(route).unwrap(),
                sink,
                rx,
                window,
                Lsn::ZERO,
            ),
            tx,
        )
    }

    /// Runs the loop until the script ends. A loop blocked on a full window never ends: the
    /// timeout is how such a test observes "it stopped reading", not a synchronisation.
    async fn settle(p: &mut Pipeline<MemorySink>, source: &mut ScriptedSource) {
        let mut stop = Shutdown::default();
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            p.stream(source, &mut stop, Duration::from_secs(1)),
        )
        .await;
    }

    #[tokio::test]
    async fn publishes_before_commit_and_confirms_only_after_acks() {
        let (mut p, _tx) = pipeline(100);
        let mut source = ScriptedSource::default();
        source
            .events
            .extend([begin(100), relation(), insert(1), insert(2), commit(200)]);
        settle(&mut p, &mut source).await;
        assert_eq!(p.sink().records.len(), 2, "published as inserts arrived");
        assert!(source.confirmed.is_empty(), "nothing acked yet");
        let first = &p.sink().records[0].0;
        assert_eq!(first.topic, "outbox.event.order");
        assert_eq!(first.key.as_deref(), Some(&b"o-1"[..]));

        p.sink().ack(1);
        settle(&mut p, &mut source).await;
        assert!(source.confirmed.is_empty(), "one event still unacked");
        p.sink().ack(0);
        source.events.push_back(SourceEvent::Keepalive {
            wal_end: Lsn::from(300),
        });
        settle(&mut p, &mut source).await;
        assert_eq!(source.confirmed, vec![Lsn::from(200), Lsn::from(300)]);
    }

    #[tokio::test]
    async fn a_full_window_stops_reading() {
        let (mut p, _tx) = pipeline(2);
        let mut source = ScriptedSource::default();
        source.events.extend([
            begin(100),
            relation(),
            insert(1),
            insert(2),
            insert(3),
            commit(200),
        ]);
        settle(&mut p, &mut source).await;
        assert_eq!(p.sink().records.len(), 2, "window of 2 events");
        p.sink().ack(0);
        settle(&mut p, &mut source).await;
        assert_eq!(p.sink().records.len(), 3);
    }

    #[tokio::test]
    async fn keepalive_is_not_confirmed_while_a_transaction_is_unacked() {
        let (mut p, _tx) = pipeline(100);
        let mut source = ScriptedSource::default();
        source.events.extend([
            begin(100),
            relation(),
            insert(1),
            commit(200),
            SourceEvent::Keepalive {
                wal_end: Lsn::from(900),
            },
        ]);
        settle(&mut p, &mut source).await;
        assert!(source.confirmed.is_empty());
        assert_eq!(p.durable(), Lsn::ZERO);
    }
}
