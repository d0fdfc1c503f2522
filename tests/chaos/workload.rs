//! The chaos workload: writers that commit outbox events continuously, some transactions rolled
//! back on purpose, surviving PostgreSQL restarts.
//!
//! Each writer owns its aggregates, and every event carries its aggregate's sequence number
//! (`payload.seq`, 0, 1, 2, … in commit order). So the commit order of an aggregate is known
//! from the database alone: the verifier needs nothing from the tailer to judge it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outbox_app::NewEvent;
use outbox_testkit::TestDb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

/// Aggregate types; each is its own topic (`outbox.event.<type>`).
pub const AGGREGATE_TYPES: &[&str] = &["order", "invoice", "shipment"];
const WRITERS: usize = 2;
const AGGREGATES_PER_WRITER: usize = 9;
/// One transaction in this many is rolled back on purpose.
const ROLLBACK_ONE_IN: u32 = 8;

/// The aggregate type of an aggregate id (`w<writer>-<type>-<n>`).
pub fn aggregate_type_of(aggregate_id: &str) -> &str {
    aggregate_id.split('-').nth(1).unwrap_or_default()
}

/// What the writers did, for the report; the database is the record of what committed.
#[derive(Debug, Default)]
pub struct Written {
    /// Ids of events whose transaction was rolled back on purpose (COMMIT never sent).
    pub rolled_back: Vec<String>,
    pub committed_txns: u64,
    pub rolled_back_txns: u64,
    /// Transactions cut by a fault (connection lost): committed or not, the database says.
    pub interrupted_txns: u64,
}

#[derive(Debug)]
pub struct Workload {
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<anyhow::Result<Written>>>,
}

impl Workload {
    pub fn start(db: &TestDb, seed: u64, pace: Duration) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let writers = (0..WRITERS)
            .map(|w| {
                let writer = Writer {
                    db: db.clone(),
                    index: w,
                    rng: StdRng::seed_from_u64(seed.wrapping_add(1 + w as u64)),
                    stop: stop.clone(),
                    pace,
                };
                tokio::spawn(writer.run())
            })
            .collect();
        Workload { stop, writers }
    }

    /// Stop writing and collect what the writers did.
    pub async fn finish(self) -> anyhow::Result<Written> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Written::default();
        for w in self.writers {
            let written = w.await??;
            all.rolled_back.extend(written.rolled_back);
            all.committed_txns += written.committed_txns;
            all.rolled_back_txns += written.rolled_back_txns;
            all.interrupted_txns += written.interrupted_txns;
        }
        Ok(all)
    }
}

struct Writer {
    db: TestDb,
    index: usize,
    rng: StdRng,
    stop: Arc<AtomicBool>,
    pace: Duration,
}

enum Outcome {
    Committed,
    RolledBack(Vec<String>),
}

impl Writer {
    async fn run(mut self) -> anyhow::Result<Written> {
        let aggregates: Vec<String> = (0..AGGREGATES_PER_WRITER)
            .map(|k| {
                let ty = AGGREGATE_TYPES[k % AGGREGATE_TYPES.len()];
                format!("w{}-{ty}-{k}", self.index)
            })
            .collect();
        let mut written = Written::default();
        let (mut client, mut next_seq) = self.reconnect().await?;
        // Paces the load: continuous, but leaves CPU to the services under test.
        let mut pace = tokio::time::interval(self.pace);
        while !self.stop.load(Ordering::SeqCst) {
            pace.tick().await;
            let events = self.rng.random_range(1..=4);
            let rollback = self.rng.random_ratio(1, ROLLBACK_ONE_IN);
            let mut seqs = next_seq.clone();
            let batch: Vec<NewEvent> = (0..events)
                .map(|_| {
                    let agg = &aggregates[self.rng.random_range(0..aggregates.len())];
                    let seq = seqs.entry(agg.clone()).or_insert(0);
                    let event = NewEvent::new(
                        aggregate_type_of(agg),
                        agg.clone(),
                        "Changed",
                        json!({"seq": *seq, "writer": self.index}),
                    );
                    *seq += 1;
                    event
                })
                .collect();
            match transact(&mut client, &batch, rollback).await {
                Ok(Outcome::Committed) => {
                    next_seq = seqs;
                    written.committed_txns += 1;
                }
                Ok(Outcome::RolledBack(ids)) => {
                    written.rolled_back.extend(ids);
                    written.rolled_back_txns += 1;
                }
                Err(_) => {
                    // A fault cut the transaction: reconnect, and ask the database whether it
                    // committed (its sequence numbers are then taken).
                    written.interrupted_txns += 1;
                    (client, next_seq) = self.reconnect().await?;
                }
            }
        }
        Ok(written)
    }

    /// Connect and read the sequence numbers, waiting out a PostgreSQL restart (the
    /// controller always starts it again).
    async fn reconnect(&self) -> anyhow::Result<(Client, HashMap<String, i64>)> {
        let mut retry = tokio::time::interval(Duration::from_millis(100));
        let mut last = None;
        for _ in 0..1200 {
            retry.tick().await;
            match self.try_connect().await {
                Ok(ok) => return Ok(ok),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no connection")))
            .map_err(|e| e.context(format!("writer {} reconnecting for 2 minutes", self.index)))
    }

    /// A connection and the next sequence number of each of this writer's aggregates, from
    /// what committed.
    async fn try_connect(&self) -> anyhow::Result<(Client, HashMap<String, i64>)> {
        let client = self.db.connect().await?;
        let rows = client
            .query(
                "SELECT aggregateid, max((payload->>'seq')::bigint) + 1 FROM outbox \
                 WHERE aggregateid LIKE $1 GROUP BY aggregateid",
                &[&format!("w{}-%", self.index)],
            )
            .await?;
        let next = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok((client, next))
    }
}

async fn transact(
    client: &mut Client,
    batch: &[NewEvent],
    rollback: bool,
) -> anyhow::Result<Outcome> {
    let tx = client.transaction().await?;
    let ids = outbox_app::emit_many(&tx, batch).await?;
    if rollback {
        // Whether or not ROLLBACK reaches the server, COMMIT never did.
        let _ = tx.rollback().await;
        return Ok(Outcome::RolledBack(
            ids.iter().map(ToString::to_string).collect(),
        ));
    }
    tx.commit().await?;
    Ok(Outcome::Committed)
}
