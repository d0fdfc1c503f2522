//! The polling relay (`outbox-tailer poll`): the classic publisher of the pattern literature,
//! sharing the tailer's routing and Kafka sink, as a baseline and as a fallback where logical
//! replication is not available.
//!
//! Each round, in one transaction: lock the oldest unpublished rows (`ORDER BY seq … FOR UPDATE
//! SKIP LOCKED`, so several pollers can share a table), publish them, wait until Kafka acked
//! every one, then mark them published (or delete them) and commit. A failure before the commit
//! leaves the rows unpublished: at-least-once, like the tailer.
//!
//! Order is insertion order (`seq`), not commit order: a transaction that commits late can have
//! its rows published after rows inserted later but committed earlier — one of the differences
//! docs/polling-vs-tailing.md measures.

use std::future::Future;
use std::time::Duration;

use pgoutput::{Lsn, PgTimestamp, TupleValue};
use tokio::sync::mpsc;
use tokio_postgres::{Client, Row};

use crate::shutdown::Shutdown;

use crate::config::{AfterPublish, PollConfig, TailerConfig};
use crate::error::TailerError;
use crate::pg::names::quote_ident;
use crate::relay::decode::EventDecoder;
use crate::relay::pipeline::Stats;
use crate::relay::progress::AckTracker;
use crate::relay::route::{Record, Router, TxnPosition};
use crate::relay::sink::{Ack, KafkaSink, Sink};

/// Poll until `shutdown`.
pub async fn poll(
    config: TailerConfig,
    poll: PollConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Stats, TailerError> {
    let (mut stop, _signal) = Shutdown::on(shutdown);
    poll_until(config, poll, &mut stop).await
}

async fn poll_until(
    config: TailerConfig,
    poll: PollConfig,
    stop: &mut Shutdown,
) -> Result<Stats, TailerError> {
    let mut client = crate::pg::connect::connect(&config.source).await?;
    crate::relay::sink::broker_check::check_broker(&config.sink, Duration::from_secs(10)).await?;
    let mut poller = Poller::new(&config, poll.after, stop)?;
    loop {
        if stop.is_requested() {
            return Ok(poller.stats);
        }
        let fetched = poller.round(&mut client, poll.batch).await?;
        if poll.drain && fetched as i64 == poll.batch {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(poll.interval) => {}
            _ = stop.requested() => return Ok(poller.stats),
        }
    }
}

/// The statements of one outbox table and the path from a fetched row to a Kafka ack.
struct Poller {
    decoder: EventDecoder,
    router: Router,
    sink: KafkaSink,
    acks: mpsc::UnboundedReceiver<Ack>,
    /// Locks the oldest unpublished rows.
    select: String,
    /// Marks published rows (or deletes them).
    finish: String,
    /// Rounds that published something: each one's commit position for the ack tracker.
    rounds: u64,
    stats: Stats,
}

impl Poller {
    fn new(
        config: &TailerConfig,
        after: AfterPublish,
        stop: &Shutdown,
    ) -> Result<Self, TailerError> {
        let decoder = EventDecoder::new(config.source.table.clone(), config.route.clone())?;
        let router = Router::new(config.route.clone())?;
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let sink = KafkaSink::for_tailer(config, ack_tx)?.with_stop(stop.clone());
        let table = config.source.table.quoted();
        Ok(Poller {
            select: select_unpublished(&decoder, &table),
            finish: finish_published(after, &table),
            decoder,
            router,
            sink,
            acks,
            rounds: 0,
            stats: Stats::default(),
        })
    }

    /// One transaction: lock a batch, publish it, mark it, commit. Returns the rows fetched.
    async fn round(&mut self, client: &mut Client, batch: i64) -> Result<usize, TailerError> {
        let tx = client
            .transaction()
            .await
            .map_err(|e| TailerError::postgres("starting a poll transaction", e))?;
        let rows = tx
            .query(&self.select, &[&batch])
            .await
            .map_err(|e| TailerError::postgres("fetching unpublished rows (does the table have `seq` and `published_at`? see migrations/)", e))?;
        if !rows.is_empty() {
            let ctids = self.publish(&rows).await?;
            tx.execute(&self.finish, &[&ctids])
                .await
                .map_err(|e| TailerError::postgres("marking rows published", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| TailerError::postgres("committing a poll round", e))?;
        self.stats.transactions += 1;
        Ok(rows.len())
    }

    /// Publish `rows` as one transaction and wait until Kafka acked every one; their ctids.
    async fn publish(&mut self, rows: &[Row]) -> Result<Vec<String>, TailerError> {
        self.rounds += 1;
        let mut tracker = AckTracker::new(Lsn::ZERO);
        tracker.begin();
        let mut ctids = Vec::with_capacity(rows.len());
        for (seq, row) in rows.iter().enumerate() {
            ctids.push(row.get::<_, String>(0));
            let record = self.record(row, seq)?;
            let size = u32::try_from(record.size()).unwrap_or(u32::MAX);
            let ticket = tracker
                .publish(size)
                .ok_or_else(|| TailerError::Bug("publish outside a transaction in poll".into()))?;
            self.sink.send(record, ticket).await?;
            self.stats.events_published += 1;
        }
        tracker.commit(Lsn::from(self.rounds));
        // Nothing more comes before these are acked: a light stream need not wait to batch.
        self.sink.source_idle();
        self.await_acks(&mut tracker).await?;
        Ok(ctids)
    }

    /// The record of a row fetched by `select`: ctid, `created_at` in µs, the envelope columns.
    fn record(&self, row: &Row, seq: usize) -> Result<Record, TailerError> {
        let created: i64 = row.get(1);
        let values = (2..row.len())
            .map(|i| match row.get::<_, Option<String>>(i) {
                Some(v) => TupleValue::Text(v.into()),
                None => TupleValue::Null,
            })
            .collect();
        let event = self.decoder.row_from_values(values);
        let position = TxnPosition {
            commit_lsn: Lsn::ZERO,
            xid: 0,
            commit_time: Some(PgTimestamp::from_unix_micros(created)),
        };
        Ok(self
            .router
            .route_event(&event, &position, seq as u32, None)?
            .record)
    }

    /// Wait until nothing `tracker` holds is in flight; a refused record fails the round.
    async fn await_acks(&mut self, tracker: &mut AckTracker) -> Result<(), TailerError> {
        while !tracker.is_idle() {
            let ack = self
                .acks
                .recv()
                .await
                .ok_or_else(|| TailerError::Delivery {
                    topic: String::new(),
                    reason: "the producer stopped".into(),
                })?;
            if let Err(f) = ack.result {
                return Err(TailerError::Delivery {
                    topic: f.topic,
                    reason: f.reason,
                });
            }
            tracker.acked(ack.ticket);
            self.stats.events_acked += 1;
        }
        Ok(())
    }
}

/// Lock the oldest unpublished rows, each envelope column as text.
fn select_unpublished(decoder: &EventDecoder, table: &str) -> String {
    let columns: Vec<String> = decoder
        .envelope_columns()
        .iter()
        .map(|c| format!("{}::text", quote_ident(c)))
        .collect();
    format!(
        "SELECT ctid::text, (extract(epoch FROM created_at) * 1000000)::bigint, {} FROM {table} \
         WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        columns.join(", ")
    )
}

fn finish_published(after: AfterPublish, table: &str) -> String {
    match after {
        AfterPublish::Mark => {
            format!("UPDATE {table} SET published_at = now() WHERE ctid = ANY($1::text[]::tid[])")
        }
        AfterPublish::Delete => format!("DELETE FROM {table} WHERE ctid = ANY($1::text[]::tid[])"),
    }
}
