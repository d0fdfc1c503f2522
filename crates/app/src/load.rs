//! The load generator: writes exactly the events asked for, at the rate asked for.
//!
//! ```text
//!   total = count, or rate × duration           transactions of K events (the last may be short)
//!   tx i starts no earlier than start + i·K/rate ┐
//!   C workers, one connection each, claim tx 0,1,2,… in order from a shared counter
//! ```
//!
//! The schedule is absolute (a token bucket refilled at `rate`), so a worker that falls behind
//! catches up in a burst and the average rate holds; without a rate, workers go as fast as
//! PostgreSQL lets them. Elapsed time runs from the first scheduled transaction (connections
//! are made before) to the last commit.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_postgres::Client;
use tracing::{debug, info};
use uuid::Uuid;

use crate::connect::PgTarget;
use crate::error::{AppError, Result};
use crate::writer::{emit_messages, NewEvent, OutboxWriter};

/// How many events to write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// Exactly this many.
    Count(u64),
    /// `rate × duration` (rounded); needs a rate.
    Duration(Duration),
}

/// Where events go.
#[derive(Debug, Clone)]
pub enum Via {
    /// Rows in an outbox table.
    Table(Box<OutboxWriter>),
    /// `pg_logical_emit_message` with this prefix (no table).
    Message { prefix: String },
}

/// Settings of one load run; [`LoadConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Where to connect (connection string, password, TLS as the tailer reads them).
    pub postgres: PgTarget,
    pub amount: Amount,
    /// Events per second; `None` (only with a count) means as fast as possible.
    pub rate: Option<f64>,
    pub events_per_tx: u32,
    /// Connections writing in parallel.
    pub concurrency: u32,
    pub via: Via,
    pub aggregate_type: String,
    /// Distinct aggregate ids (Kafka keys) the events cycle through.
    pub aggregates: u32,
    /// Filler bytes added to each payload.
    pub payload_bytes: usize,
}

impl LoadConfig {
    /// One event per transaction, one connection, table `outbox`, aggregate type `load`.
    pub fn new(postgres: impl Into<String>, amount: Amount) -> LoadConfig {
        LoadConfig {
            postgres: PgTarget::new(postgres),
            amount,
            rate: None,
            events_per_tx: 1,
            concurrency: 1,
            via: Via::Table(Box::default()),
            aggregate_type: "load".into(),
            aggregates: 16,
            payload_bytes: 0,
        }
    }

    /// The number of events this run writes, or why the settings cannot work.
    pub fn total_events(&self) -> Result<u64> {
        let invalid = |msg: &str| Err(AppError::InvalidConfig(msg.into()));
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return invalid("--rate must be a positive number of events per second");
            }
        }
        if self.events_per_tx == 0 {
            return invalid("--events-per-tx must be at least 1");
        }
        if self.concurrency == 0 {
            return invalid("--concurrency must be at least 1");
        }
        if self.aggregates == 0 {
            return invalid("--aggregates must be at least 1");
        }
        let total = match (self.amount, self.rate) {
            (Amount::Count(n), _) => n,
            (Amount::Duration(d), Some(rate)) => (rate * d.as_secs_f64()).round() as u64,
            (Amount::Duration(_), None) => {
                return invalid("--duration needs --rate (or use --count)");
            }
        };
        if total == 0 {
            return invalid("this run would write no events: raise --count, --rate or --duration");
        }
        Ok(total)
    }
}

/// What a run achieved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadSummary {
    /// Events committed.
    pub events: u64,
    /// Transactions committed.
    pub transactions: u64,
    /// First scheduled transaction to last commit.
    #[serde(rename = "elapsed_secs", serialize_with = "as_secs")]
    pub elapsed: Duration,
    /// `events / elapsed`.
    pub events_per_sec: f64,
    /// `transactions / elapsed`.
    pub transactions_per_sec: f64,
    /// The run was stopped before writing everything.
    pub interrupted: bool,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl LoadSummary {
    fn new(events: u64, transactions: u64, elapsed: Duration, interrupted: bool) -> LoadSummary {
        let secs = elapsed.as_secs_f64();
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        LoadSummary {
            events,
            transactions,
            elapsed,
            events_per_sec: per_sec(events),
            transactions_per_sec: per_sec(transactions),
            interrupted,
        }
    }
}

impl std::fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "events        {}", self.events)?;
        writeln!(f, "transactions  {}", self.transactions)?;
        writeln!(f, "elapsed       {:.3}s", self.elapsed.as_secs_f64())?;
        write!(
            f,
            "rate          {:.1} events/s ({:.1} transactions/s)",
            self.events_per_sec, self.transactions_per_sec
        )?;
        if self.interrupted {
            write!(
                f,
                "\ninterrupted   yes (stopped before the requested total)"
            )?;
        }
        Ok(())
    }
}

/// Runs to completion.
pub async fn run(config: &LoadConfig) -> Result<LoadSummary> {
    run_with(config, |_| {}, std::future::pending()).await
}

/// Runs until done or `shutdown` resolves (in-flight transactions still commit);
/// `on_commit(n)` is called after each commit of `n` events (e.g. to drive a progress bar).
pub async fn run_with(
    config: &LoadConfig,
    on_commit: impl Fn(u64) + Send + Sync + 'static,
    shutdown: impl Future<Output = ()>,
) -> Result<LoadSummary> {
    let plan = Plan::new(config)?;
    let mut clients = Vec::with_capacity(config.concurrency as usize);
    for _ in 0..config.concurrency {
        clients.push(config.postgres.connect().await?);
    }
    info!(
        events = plan.total,
        events_per_tx = plan.per_tx,
        concurrency = config.concurrency,
        rate = config.rate,
        "load starting"
    );

    let shared = Arc::new(Shared {
        plan,
        config: config.clone(),
        run_id: Uuid::now_v7(),
        start: Instant::now(),
        next_tx: AtomicU64::new(0),
        events: AtomicU64::new(0),
        transactions: AtomicU64::new(0),
        on_commit: Box::new(on_commit),
    });
    let (stop, stopped) = watch::channel(false);
    let mut workers = JoinSet::new();
    for client in clients {
        workers.spawn(worker(client, Arc::clone(&shared), stopped.clone()));
    }

    let mut interrupted = false;
    let mut first_error = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown, if !interrupted => {
                info!("load stopping early");
                interrupted = true;
                let _ = stop.send(true);
            }
            joined = workers.join_next() => match joined {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    let _ = stop.send(true);
                    first_error.get_or_insert(e);
                }
                Some(Err(e)) => {
                    let _ = stop.send(true);
                    first_error.get_or_insert(AppError::WorkerPanicked(e));
                }
            },
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let events = shared.events.load(Ordering::SeqCst);
    let summary = LoadSummary::new(
        events,
        shared.transactions.load(Ordering::SeqCst),
        shared.start.elapsed(),
        interrupted && events < shared.plan.total,
    );
    // debug: the caller prints the summary (after clearing any progress bar).
    debug!(
        events = summary.events,
        transactions = summary.transactions,
        elapsed_secs = summary.elapsed.as_secs_f64(),
        events_per_sec = summary.events_per_sec,
        "load finished"
    );
    Ok(summary)
}

/// The fixed schedule of a run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    total: u64,
    per_tx: u64,
    rate: Option<f64>,
}

impl Plan {
    fn new(config: &LoadConfig) -> Result<Plan> {
        Ok(Plan {
            total: config.total_events()?,
            per_tx: u64::from(config.events_per_tx),
            rate: config.rate,
        })
    }

    fn transactions(&self) -> u64 {
        self.total.div_ceil(self.per_tx)
    }

    /// Event sequence numbers of transaction `i`.
    fn events_of(&self, i: u64) -> std::ops::Range<u64> {
        let first = i * self.per_tx;
        first..(first + self.per_tx).min(self.total)
    }

    /// When transaction `i` may start, after the run's start; `None` when unpaced.
    fn offset_of(&self, i: u64) -> Option<Duration> {
        self.rate
            .map(|rate| Duration::from_secs_f64((i * self.per_tx) as f64 / rate))
    }
}

struct Shared {
    plan: Plan,
    config: LoadConfig,
    run_id: Uuid,
    start: Instant,
    next_tx: AtomicU64,
    events: AtomicU64,
    transactions: AtomicU64,
    on_commit: Box<dyn Fn(u64) + Send + Sync>,
}

impl Shared {
    fn event(&self, seq: u64) -> NewEvent {
        let c = &self.config;
        let mut payload = json!({"run": self.run_id, "seq": seq});
        if c.payload_bytes > 0 {
            payload["pad"] = json!("x".repeat(c.payload_bytes));
        }
        NewEvent::new(
            c.aggregate_type.clone(),
            format!("{}-{}", c.aggregate_type, seq % u64::from(c.aggregates)),
            "LoadGenerated",
            payload,
        )
    }
}

async fn worker(
    mut client: Client,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) -> Result<()> {
    let plan = shared.plan;
    loop {
        if *stopped.borrow() {
            return Ok(());
        }
        let i = shared.next_tx.fetch_add(1, Ordering::SeqCst);
        if i >= plan.transactions() {
            return Ok(());
        }
        if let Some(offset) = plan.offset_of(i) {
            tokio::select! {
                () = tokio::time::sleep_until(shared.start + offset) => {}
                _ = stopped.changed() => return Ok(()),
            }
        }
        let events: Vec<NewEvent> = plan.events_of(i).map(|seq| shared.event(seq)).collect();
        let tx = client
            .transaction()
            .await
            .map_err(AppError::pg("starting a load transaction"))?;
        match &shared.config.via {
            Via::Table(writer) => writer.emit_many(&tx, &events).await?,
            Via::Message { prefix } => emit_messages(&tx, prefix, &events).await?,
        };
        tx.commit()
            .await
            .map_err(AppError::pg("committing a load transaction"))?;
        let n = events.len() as u64;
        shared.events.fetch_add(n, Ordering::SeqCst);
        shared.transactions.fetch_add(1, Ordering::SeqCst);
        (shared.on_commit)(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(amount: Amount, rate: Option<f64>, per_tx: u32) -> LoadConfig {
        LoadConfig {
            rate,
            events_per_tx: per_tx,
            ..LoadConfig::new("", amount)
        }
    }

    #[test]
    fn total_is_count_or_rate_times_duration() {
        let c = config(Amount::Count(7), None, 1);
        assert_eq!(c.total_events().unwrap(), 7);
        let c = config(Amount::Duration(Duration::from_secs(2)), Some(25.0), 1);
        assert_eq!(c.total_events().unwrap(), 50);
        let c = config(Amount::Duration(Duration::from_millis(1500)), Some(3.0), 1);
        assert_eq!(c.total_events().unwrap(), 5, "4.5 rounds to 5");
    }

    #[test]
    fn settings_that_cannot_work_are_rejected() {
        let secs = Amount::Duration(Duration::from_secs(1));
        for bad in [
            config(secs, None, 1),
            config(secs, Some(0.0), 1),
            config(secs, Some(f64::NAN), 1),
            config(secs, Some(0.1), 1),
            config(Amount::Count(0), None, 1),
            config(Amount::Count(5), None, 0),
            LoadConfig {
                concurrency: 0,
                ..config(Amount::Count(5), None, 1)
            },
        ] {
            assert!(
                matches!(bad.total_events(), Err(AppError::InvalidConfig(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn plan_splits_events_into_transactions_with_a_short_last_one() {
        let plan = Plan::new(&config(Amount::Count(10), Some(100.0), 4)).unwrap();
        assert_eq!(plan.transactions(), 3);
        assert_eq!(plan.events_of(0), 0..4);
        assert_eq!(plan.events_of(2), 8..10);
        assert_eq!(plan.offset_of(0), Some(Duration::ZERO));
        assert_eq!(plan.offset_of(2), Some(Duration::from_millis(80)));
        let unpaced = Plan::new(&config(Amount::Count(10), None, 4)).unwrap();
        assert_eq!(unpaced.offset_of(2), None);
    }

    #[test]
    fn summary_rate_is_events_over_elapsed() {
        let s = LoadSummary::new(100, 10, Duration::from_secs(4), false);
        assert_eq!(s.events_per_sec, 25.0);
        assert_eq!(s.transactions_per_sec, 2.5);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["elapsed_secs"], 4.0);
        assert!(s.to_string().contains("25.0 events/s"));
    }
}
