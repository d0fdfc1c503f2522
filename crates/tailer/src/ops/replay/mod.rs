//! `outbox-tailer replay`: re-publish the outbox events committed between two LSNs, without
//! moving the live slot.
//!
//! ```text
//!   replay slot (or live slot) ──copy, temporary──▶ tmp ──advance to --from-lsn──▶ tmp
//!   tmp ──pg_logical_slot_get_binary_changes, chunk by chunk──▶ ChangesSource
//!   ChangesSource ──▶ the tailer's own Pipeline (decode, route, window, acks) ──▶ Kafka | stdout
//! ```
//!
//! Logical decoding never sends a transaction that committed before the slot's
//! `confirmed_flush_lsn`, so a range can only be replayed from a slot that has not confirmed
//! past its start: the replay slot, which trails the live one by `--replay-retention-secs`
//! (see [`crate::background::retention`]), or the live slot for events not yet confirmed. Transactions are
//! selected by their commit LSN, the `outbox-lsn` header of every record: `from ≤ commit ≤ to`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use indicatif::ProgressBar;
use pgoutput::Lsn;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use crate::config::{ReplayTarget, SourceConfig, TailerConfig};
use crate::error::TailerError;
use crate::pg::slots::{self, SlotInfo, TempCopy};
use crate::relay::decode::EventDecoder;
use crate::relay::pipeline::{Pipeline, StreamEnd, Window};
use crate::relay::route::Router;
use crate::relay::sink::KafkaSink;
use crate::shutdown::Shutdown;

mod changes;
mod output;

use changes::ChangesSource;
pub use output::render;
use output::{progress_bar, CountingSink, Target};

/// What to replay and where.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub from: Lsn,
    /// `None`: the server's current WAL position when the replay starts.
    pub to: Option<Lsn>,
    pub target: ReplayTarget,
    pub dry_run: bool,
    /// Draw a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Changes fetched per SQL call ([`DEFAULT_CHUNK_CHANGES`]). Every call decodes again from
    /// the copy's `restart_lsn` (which moves only at `xl_running_xacts` records), so few large
    /// chunks beat many small ones; the server spills a chunk's rows to disk past `work_mem`
    /// and they are streamed from there.
    pub chunk_changes: i32,
}

pub const DEFAULT_CHUNK_CHANGES: i32 = 100_000;

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    pub from_lsn: String,
    pub to_lsn: String,
    /// The slot whose temporary copy was read.
    pub read_from_slot: String,
    pub transactions: u64,
    pub events: u64,
    pub dead_lettered: u64,
    pub events_by_topic: BTreeMap<String, u64>,
    pub target: String,
    pub dry_run: bool,
    /// False when interrupted before every event was acked; `resume_from_lsn` then says where
    /// to start again.
    pub complete: bool,
    pub resume_from_lsn: String,
    pub elapsed_ms: u64,
}

/// Which slot still holds `[from, to]`, and the resolved `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPlan {
    pub slot: String,
    pub from: Lsn,
    pub to: Lsn,
    /// The live slot's `outbox-source`: replayed records are signed like the originals.
    pub source: String,
}

/// Check the range and pick the slot to copy: among the live and the replay slot, the one
/// with the highest `confirmed_flush_lsn` not past `from` (least WAL to skip over).
pub async fn plan(
    client: &Client,
    config: &SourceConfig,
    from: Lsn,
    to: Option<Lsn>,
) -> Result<ReplayPlan, TailerError> {
    let current = slots::current_wal_lsn(client).await?;
    if let Some(to) = to.filter(|to| *to > current) {
        // Commits after `current` are not written yet: a replay "complete" up to `to` would
        // claim a range it never read.
        return Err(TailerError::Config(format!(
            "--to-lsn {to} is ahead of the server's current WAL position {current}: replay up \
             to {current} (leave --to-lsn out) and run again from there later"
        )));
    }
    let to = to.unwrap_or(current);
    if from > current {
        return Err(TailerError::Config(format!(
            "--from-lsn {from} is ahead of the server's current WAL position {current}: nothing \
             was committed there yet"
        )));
    }
    if from > to {
        return Err(TailerError::Config(format!(
            "--from-lsn {from} is after --to-lsn {to}: nothing to replay"
        )));
    }
    let mut known = Vec::new();
    for name in std::iter::once(&config.slot).chain(config.replay_slot.as_ref()) {
        match slots::slot_info(client, name).await? {
            Some(info) => known.push(info),
            None if *name == config.slot => {
                return Err(TailerError::Database(format!(
                    "replication slot {name} does not exist: run `outbox-tailer setup` first"
                )))
            }
            None => {
                tracing::warn!(slot = %name, "the replay slot does not exist; `run` creates it")
            }
        }
    }
    let usable = known
        .iter()
        .filter(|s| !s.lost && s.confirmed_flush_lsn <= from)
        .max_by_key(|s| s.confirmed_flush_lsn);
    match usable {
        Some(slot) => Ok(ReplayPlan {
            slot: slot.name.clone(),
            from,
            to,
            source: slots::source_id(client, &config.slot).await?,
        }),
        None => Err(not_retained(config, from, &known)),
    }
}

fn not_retained(config: &SourceConfig, from: Lsn, known: &[SlotInfo]) -> TailerError {
    let oldest = known
        .iter()
        .filter(|s| !s.lost)
        .min_by_key(|s| s.confirmed_flush_lsn);
    let mut message = format!("LSN {from} is no longer retained: ");
    match oldest {
        Some(s) => message.push_str(&format!(
            "the oldest commit that can still be replayed is at {} (slot {}'s \
             confirmed_flush_lsn); PostgreSQL never decodes a transaction that committed before \
             a slot's confirmed position, and the WAL before it may already be recycled.",
            s.confirmed_flush_lsn, s.name
        )),
        None => {
            message.push_str("every slot that could hold it is invalidated (wal_status = lost).")
        }
    }
    message.push_str(" Options: (1) replay what is retained, with --from-lsn ");
    message.push_str(&oldest.map_or("<a later LSN>".into(), |s| {
        s.confirmed_flush_lsn.to_string()
    }));
    message.push_str(
        "; (2) if your outbox rows are kept in the table, re-publish them from there (for \
         example re-insert the rows you need in a new transaction: consumers dedupe by `id`); ",
    );
    if config.replay_slot.is_none() {
        message.push_str(
            "(3) to be able to replay confirmed events in future, keep a replay window: run with \
             --replay-slot and --replay-retention-secs (docs/operations.md, \"Replay\").",
        );
    } else {
        message.push_str(
            "(3) keep a longer replay window: raise --replay-retention-secs (docs/operations.md, \
             \"Replay\").",
        );
    }
    TailerError::NotRetained(message)
}

/// Replay `opts.from..=opts.to` through the tailer's pipeline; `stop` interrupts it (what is
/// acked so far stays published, the summary says where to resume).
pub async fn replay(
    config: &TailerConfig,
    opts: &ReplayOptions,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<ReplaySummary, TailerError> {
    let started = Instant::now();
    let client = Arc::new(crate::pg::connect::connect(&config.source).await?);
    let plan = plan(&client, &config.source, opts.from, opts.to).await?;
    let copy = TempCopy::create(&client, &plan.slot, "replay").await?;
    let result = replay_copy(config, opts, &plan, &client, &copy.name, stop).await;
    copy.drop(&client).await;
    let (stats, durable, by_topic, complete) = result?;
    Ok(ReplaySummary {
        from_lsn: plan.from.to_string(),
        to_lsn: plan.to.to_string(),
        read_from_slot: plan.slot,
        transactions: stats.transactions,
        events: stats.events_published,
        dead_lettered: stats.dead_lettered,
        events_by_topic: by_topic,
        target: match opts.target {
            ReplayTarget::Kafka => "kafka".into(),
            ReplayTarget::Stdout => "stdout".into(),
        },
        dry_run: opts.dry_run,
        complete,
        resume_from_lsn: durable.to_string(),
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

type Outcome = (
    crate::relay::pipeline::Stats,
    Lsn,
    BTreeMap<String, u64>,
    bool,
);

async fn replay_copy(
    config: &TailerConfig,
    opts: &ReplayOptions,
    plan: &ReplayPlan,
    client: &Arc<Client>,
    copy: &str,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<Outcome, TailerError> {
    position_copy(client, copy, plan).await?;
    let (mut stop_rx, signal) = Shutdown::on(stop);
    let mut pipeline = replay_pipeline(config, opts, plan, &stop_rx)?;
    let progress = if opts.progress {
        progress_bar(plan)
    } else {
        ProgressBar::hidden()
    };
    let mut source = ChangesSource::new(
        Arc::clone(client),
        copy,
        &config.source,
        plan,
        opts.chunk_changes,
        progress,
    );
    let complete = stream_copy(&mut pipeline, &mut source, &mut stop_rx, config).await?;
    drop(signal);
    source.progress.finish_and_clear();
    let durable = if complete {
        plan.to
    } else {
        pipeline.durable()
    };
    let by_topic = std::mem::take(&mut pipeline.sink_mut().by_topic);
    Ok((pipeline.stats, durable, by_topic, complete))
}

/// Advance the copy to `plan.from`, which the server must have flushed.
async fn position_copy(client: &Client, copy: &str, plan: &ReplayPlan) -> Result<(), TailerError> {
    let at = slots::advance(client, copy, plan.from).await?;
    if at < plan.from {
        return Err(TailerError::Config(format!(
            "cannot position a copy of slot {} at {}: the server has only flushed WAL up to {at}",
            plan.slot, plan.from
        )));
    }
    Ok(())
}

/// The tailer's own pipeline, into the target `opts` names, counting records per topic.
fn replay_pipeline(
    config: &TailerConfig,
    opts: &ReplayOptions,
    plan: &ReplayPlan,
    stop: &Shutdown,
) -> Result<Pipeline<CountingSink>, TailerError> {
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let target = match (opts.dry_run, opts.target) {
        (true, _) => Target::Discard(ack_tx),
        (false, ReplayTarget::Stdout) => Target::Stdout(ack_tx),
        (false, ReplayTarget::Kafka) => Target::Kafka(Box::new(
            KafkaSink::for_tailer(config, ack_tx)?.with_stop(stop.clone()),
        )),
    };
    let sink = CountingSink {
        inner: target,
        by_topic: BTreeMap::new(),
    };
    let window = Window {
        max_events: config.max_in_flight_events,
        max_bytes: config.max_in_flight_bytes,
    };
    Ok(Pipeline::new(
        EventDecoder::new(config.source.table.clone(), config.route.clone())?,
        Router::new(config.route.clone())?.with_source(&plan.source),
        sink,
        ack_rx,
        window,
        plan.from,
    )
    .with_message_prefix(config.message_prefix.clone()))
}

/// Stream the copy until its range is read or `stop`, then wait for the acks; true when
/// every event was acked.
async fn stream_copy(
    pipeline: &mut Pipeline<CountingSink>,
    source: &mut ChangesSource,
    stop: &mut Shutdown,
    config: &TailerConfig,
) -> Result<bool, TailerError> {
    let ended = match pipeline.stream(source, stop, config.shutdown_timeout).await {
        Err(TailerError::Interrupted(_)) => {
            pipeline.abandon_open();
            Ok(StreamEnd::Shutdown)
        }
        other => other,
    };
    match ended? {
        StreamEnd::Exhausted => pipeline.drain(Some(source), None, Some(stop)).await,
        StreamEnd::Shutdown => {
            let deadline = stop
                .deadline(config.shutdown_timeout)
                .unwrap_or_else(|| Instant::now() + config.shutdown_timeout);
            pipeline.drain(Some(source), Some(deadline), None).await?;
            Ok(false)
        }
    }
}
