//! outbox-tailer: tails the PostgreSQL WAL through a logical replication slot (`pgoutput`),
//! turns outbox inserts into events, publishes them to Kafka and confirms each LSN only after
//! Kafka acknowledged everything up to it.
//!
//! ```text
//!   source ──▶ decode (events) ──▶ route ──▶ sink (Kafka) ──acks──▶ progress
//!     ▲                                                                │
//!     └──────────── standby status update: confirmed LSN ◀─────────────┘
//! ```
//!
//! The correctness argument is in `docs/architecture.md`; [`progress`] holds its core.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod error;
pub mod events;
pub mod kafka_check;
pub mod metrics;
pub mod names;
pub mod ops;
pub mod pipeline;
pub mod poll;
pub mod progress;
pub mod retention;
pub mod route;
pub mod setup;
pub mod sink;
pub mod source;
pub mod tls;
pub mod watchdog;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

pub use config::TailerConfig;
pub use error::TailerError;
pub use pipeline::Stats;

use crate::backoff::Backoff;
use crate::events::EventDecoder;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, StreamEnd, Window};
use crate::route::Router;
use crate::sink::KafkaSink;
use crate::source::{PgSource, Source};

/// Stream until `shutdown` completes (then finish the open transaction, wait for acks, confirm,
/// and return) or a fatal error. Transient errors reconnect with backoff and jitter.
///
/// With `metrics_addr` set, `/metrics`, `/healthz` and `/readyz` are served for as long as
/// this runs. The slot watchdog checks the slot every `slot_check_interval`; when it finds
/// the slot invalidated, the tailer stops like on shutdown and returns
/// [`TailerError::SlotInvalidated`] with the recovery steps.
pub async fn run(
    config: TailerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Stats, TailerError> {
    let metrics = Arc::new(Metrics::new());
    let _server = match config.metrics_addr {
        Some(addr) => {
            Some(metrics::serve(addr, Arc::clone(&metrics), config.ready_max_stall).await?)
        }
        None => None,
    };
    let (stop_tx, mut stop) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let stopper = {
        let stop_tx = Arc::clone(&stop_tx);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
    };
    let watchdog = {
        let (source, thresholds, interval) = (
            config.source.clone(),
            config.thresholds,
            config.slot_check_interval,
        );
        let metrics = Arc::clone(&metrics);
        let stop_tx = Arc::clone(&stop_tx);
        tokio::spawn(async move {
            let reason = watchdog::watch(source, thresholds, interval, metrics).await;
            tracing::error!(reason = %reason, "slot invalidated, stopping");
            let _ = stop_tx.send(true);
            reason
        })
    };
    let trailing = tokio::spawn(retention::keep_trailing(
        config.source.clone(),
        config.replay_retention,
        config.slot_check_interval,
        Arc::clone(&metrics),
    ));
    let result = run_until(config, &mut stop, &metrics).await;
    stopper.abort();
    trailing.abort();
    metrics.streaming.set(0);
    let invalidated = if watchdog.is_finished() {
        watchdog.await.ok()
    } else {
        watchdog.abort();
        None
    };
    if let Err(e) = &result {
        metrics.error(e.kind());
    }
    // The watchdog's reason explains a stop it caused; an error of the tailer's own (preflight
    // refusing the lost slot before the watchdog's first check completed, say) speaks for itself.
    match (invalidated, result) {
        (Some(reason), Ok(_)) => Err(TailerError::SlotInvalidated(reason)),
        (_, result) => result,
    }
}

async fn run_until(
    config: TailerConfig,
    stop: &mut watch::Receiver<bool>,
    metrics: &Arc<Metrics>,
) -> Result<Stats, TailerError> {
    // A server that is down or starting is waited for; a misconfiguration stops at once.
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let slot = loop {
        match setup::preflight(&config.source, config.create_slot).await {
            Ok(slot) => break slot,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "PostgreSQL unreachable, retrying");
                metrics.error(e.kind());
                if wait_or_stop(backoff.next_delay(), stop).await {
                    return Ok(Stats::default());
                }
            }
            Err(e) => return Err(e),
        }
    };
    tracing::info!(
        slot = %config.source.slot,
        publication = %config.source.publication,
        table = %config.source.table,
        confirmed_flush_lsn = %slot.confirmed_flush_lsn,
        "preflight passed"
    );
    kafka_check::check_broker(&config.sink, Duration::from_secs(10)).await?;
    if let Some(done) = retention::ensure_replay_slot(&config.source).await? {
        tracing::info!("{done}");
    }
    let start_at = match config.start_lsn {
        Some(to) => skip_ahead(&config, slot.confirmed_flush_lsn, to).await?,
        None => slot.confirmed_flush_lsn,
    };
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let sink = KafkaSink::for_tailer(&config, ack_tx)?.with_stop(stop.clone());
    let router = Router::new(config.route.clone())?;
    let decoder = EventDecoder::new(config.source.table.clone(), config.route.clone())?;
    let window = Window {
        max_events: config.max_in_flight_events,
        max_bytes: config.max_in_flight_bytes,
    };
    let mut pipeline = Pipeline::new(decoder, router, sink, ack_rx, window, start_at)
        .with_message_prefix(config.message_prefix.clone())
        .with_metrics(Arc::clone(metrics));
    backoff.reset();
    let mut first = true;

    loop {
        // The first connection starts at the slot's own position (0/0); later ones at our
        // durable LSN, which is never behind what the slot confirmed.
        let start = if first {
            pgoutput::Lsn::ZERO
        } else {
            pipeline.durable()
        };
        first = false;
        let connected = tokio::select! {
            c = PgSource::connect(&config.source, start, config.status_interval) => c,
            _ = crate::stopped(stop) => return Ok(pipeline.stats),
        };
        let mut source = match connected {
            Ok(source) => source,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "cannot start replication, retrying");
                metrics.error(e.kind());
                if wait_or_stop(backoff.next_delay(), stop).await {
                    return Ok(pipeline.stats);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        tracing::info!(start = %start, "streaming");
        metrics.streaming.set(1);
        backoff.reset();
        let streamed = match pipeline
            .stream(&mut source, stop, config.shutdown_timeout)
            .await
        {
            // Shutdown while waiting for the broker: stop like any shutdown, the open
            // transaction is re-sent on the next start.
            Err(TailerError::Interrupted) => {
                pipeline.abandon_open();
                Ok(StreamEnd::Shutdown)
            }
            other => other,
        };
        match streamed {
            // A replication stream never ends on its own; treat it like a shutdown if it does.
            Ok(StreamEnd::Shutdown | StreamEnd::Exhausted) => {
                let deadline = Instant::now() + config.shutdown_timeout;
                let drained = pipeline
                    .drain(Some(&mut source), Some(deadline), None)
                    .await?;
                if !drained {
                    tracing::warn!(
                        in_flight = pipeline.in_flight(),
                        "shutdown timeout with events in flight: they are re-sent on restart"
                    );
                }
                source.close().await;
                tracing::info!(confirmed = %pipeline.durable(), published = pipeline.stats.events_published, "stopped");
                return Ok(pipeline.stats);
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "replication stream lost, reconnecting");
                metrics.streaming.set(0);
                metrics.error(e.kind());
                metrics.reconnects.inc();
                pipeline.stats.reconnects += 1;
                pipeline.reset_stream();
                // Acks of what was already handed to Kafka still count: wait for them so the
                // next stream starts from an LSN that covers them.
                // A shutdown meanwhile (e.g. the broker is down too) stops waiting: what is
                // unacked is re-sent on the next start.
                if !pipeline.drain(Some(&mut source), None, Some(stop)).await? {
                    source.close().await;
                    return Ok(pipeline.stats);
                }
                drop(source);
                if wait_or_stop(backoff.next_delay(), stop).await {
                    return Ok(pipeline.stats);
                }
            }
            Err(e) => {
                pipeline.reset_stream();
                let deadline = Instant::now() + config.shutdown_timeout;
                let _ = pipeline
                    .drain(Some(&mut source), Some(deadline), None)
                    .await;
                source.close().await;
                return Err(e);
            }
        }
    }
}

/// `run --start-lsn`: move the slot forward to `to` before streaming, so the skip survives a
/// restart; what lies between is never published, and the log says so loudly.
async fn skip_ahead(
    config: &TailerConfig,
    slot_at: pgoutput::Lsn,
    to: pgoutput::Lsn,
) -> Result<pgoutput::Lsn, TailerError> {
    let slot = &config.source.slot;
    if to <= slot_at {
        tracing::warn!(start_lsn = %to, slot_at = %slot_at, "--start-lsn is not ahead of the slot: nothing is skipped, streaming from the slot's position");
        return Ok(slot_at);
    }
    let client = setup::connect(&config.source).await?;
    let current = ops::slots::current_wal_lsn(&client).await?;
    if to > current {
        return Err(TailerError::Config(format!(
            "--start-lsn {to} is ahead of the server's current WAL position {current}"
        )));
    }
    tracing::warn!(
        slot = %slot,
        from = %slot_at,
        to = %to,
        skipped_wal_bytes = to.as_u64() - slot_at.as_u64(),
        "SKIPPING EVENTS: --start-lsn moves the slot forward; outbox events of transactions \
         committed at or after `from` and before `to` are NEVER published by this tailer. To \
         see them first: `outbox-tailer peek` (before starting). To publish them later: \
         `outbox-tailer replay --from-lsn <from> --to-lsn <to>` while a replay slot still holds them"
    );
    let at = ops::slots::advance(&client, slot, to).await?;
    tracing::info!(slot = %slot, at = %at, "slot advanced");
    Ok(at)
}

/// Sleep for `delay`; true when shutdown was requested meanwhile.
async fn wait_or_stop(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(delay) => None,
        _ = crate::stopped(stop) => Some(true),
    };
    stopped.unwrap_or_else(|| *stop.borrow())
}

/// Completes once shutdown was requested (the watch guard never lives across an await).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}
