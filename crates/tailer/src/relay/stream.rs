//! `run`'s stream: preflight, then the pipeline over a replication connection, reconnecting
//! with backoff after transient errors, until shutdown or a fatal error.
//!
//! Every reconnect starts at the durable LSN (everything below it is acked), so the pipeline's
//! acks and progress survive a reconnect and only the open transaction is re-sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgoutput::Lsn;
use tokio::sync::mpsc;

use crate::background::publication_guard::Ceiling;
use crate::backoff::Backoff;
use crate::config::TailerConfig;
use crate::error::TailerError;
use crate::metrics::Metrics;
use crate::pg::failover;
use crate::pg::setup::SlotState;
use crate::pg::slots;
use crate::relay::decode::EventDecoder;
use crate::relay::pipeline::{Pipeline, Stats, StreamEnd, Window};
use crate::relay::read_pacing::ReadPacing;
use crate::relay::route::Router;
use crate::relay::sink::broker_check::check_broker;
use crate::relay::sink::transaction::default_transactional_id;
use crate::relay::sink::{KafkaSink, Sink};
use crate::relay::source::{PgSource, Source};
use crate::shutdown::{sleep_or_stop, Shutdown};

/// `object_in_use`: START_REPLICATION on a slot another walsender holds.
const SLOT_ACTIVE: &str = "55006";
/// How often a standby tries to take the slot over.
const STANDBY_POLL: Duration = Duration::from_millis(200);

/// Stream until `stop` is requested (then finish the open transaction, wait for acks, confirm,
/// and return) or a fatal error.
pub async fn stream_until(
    config: &TailerConfig,
    stop: &mut Shutdown,
    metrics: &Arc<Metrics>,
    ceiling: &Ceiling,
) -> Result<Stats, TailerError> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let Some(slot) = preflight(config, stop, metrics, &mut backoff).await? else {
        return Ok(Stats::default());
    };
    let slot_at = slot.confirmed_flush_lsn;
    check_broker(&config.sink, Duration::from_secs(10)).await?;
    if let Some(done) = crate::pg::setup::ensure_replay_slot(&config.source).await? {
        tracing::info!("{done}");
    }
    let start_at = match config.start_lsn {
        Some(to) => skip_ahead(config, slot_at, to).await?,
        None => slot_at,
    };
    let mut pipeline =
        pipeline(config, stop, metrics, start_at, &slot.source_id)?.with_ceiling(ceiling);
    backoff.reset();
    let mut first = true;
    let mut transactions_started = false;
    let mut standing_by = false;
    // The server streamed from last, and whether its slot would survive a failover.
    let mut identity: Option<failover::Identity> = None;
    let mut guarded: Option<bool> = None;
    loop {
        // The first connection starts at the slot's own position (0/0); later ones at our
        // durable LSN, which is never behind what the slot confirmed.
        let mut start = if first { Lsn::ZERO } else { pipeline.durable() };
        let located = tokio::select! {
            l = failover::locate(&config.source) => l,
            _ = stop.requested() => return Ok(pipeline.stats),
        };
        let located = match located {
            Ok(located) => located,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "cannot reach the primary, retrying");
                metrics.error(e.kind());
                if sleep_or_stop(backoff.next_delay(), Some(&mut *stop)).await {
                    return Ok(pipeline.stats);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(previous) = &identity {
            if *previous != located.identity && !standing_by {
                // Another server: a promoted standby, or another host. Stream only from a
                // slot that was synchronised under synchronized_standby_slots, and from the
                // slot's own position, never ahead of it.
                failover::check_followed(&located, previous, guarded).await?;
                tracing::warn!(
                    from = %previous.host,
                    to = %located.identity.host,
                    timeline = located.identity.timeline,
                    "following a failover: streaming from the promoted server's slot"
                );
                start = Lsn::ZERO;
            }
        }
        identity = Some(located.identity.clone());
        first = false;
        let connected = tokio::select! {
            c = PgSource::connect(
                &located.source,
                start,
                config.status_interval,
                ReadPacing::new(config.catch_up_pause, Some(metrics.catch_up_pauses.clone())),
            ) => c,
            _ = stop.requested() => return Ok(pipeline.stats),
        };
        let mut source = match connected {
            Ok(source) => source,
            // Another tailer streams from the slot: stand by, and take over as soon as the
            // walsender lets go of it (at once when that process dies, after
            // wal_sender_timeout when its connection is cut). Polled at a fixed, short interval:
            // the takeover time is the point.
            Err(e) if e.sqlstate() == Some(SLOT_ACTIVE) => {
                if !standing_by {
                    tracing::info!(
                        slot = %config.source.slot,
                        "standing by: the slot is active in another process; taking over when it \
                         is released"
                    );
                    standing_by = true;
                    metrics.standby.set(1);
                }
                if sleep_or_stop(STANDBY_POLL, Some(&mut *stop)).await {
                    return Ok(pipeline.stats);
                }
                continue;
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "cannot start replication, retrying");
                metrics.error(e.kind());
                if sleep_or_stop(backoff.next_delay(), Some(&mut *stop)).await {
                    return Ok(pipeline.stats);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if standing_by {
            tracing::info!(slot = %config.source.slot, "the slot was released: taking over");
            standing_by = false;
            metrics.standby.set(0);
        }
        // Whether this server's slot would survive a failover: read once the slot is ours (a
        // standby polling every 200 ms does not read it on every try).
        if let Ok(client) =
            crate::pg::connect::connect_to(&located.source.pg, &located.source.tls).await
        {
            if let Ok(settings) = failover::settings(&client, &config.source.slot).await {
                guarded = settings.map(|s| s.guarded());
            }
        }
        // Kafka transactions start once the slot is ours: a standby's producer would fence
        // the active tailer's.
        if !transactions_started {
            pipeline.sink_mut().start_transactions().await?;
            transactions_started = true;
        }
        tracing::info!(start = %start, "streaming");
        metrics.streaming.set(1);
        backoff.reset();
        let streamed = match pipeline
            .stream(&mut source, stop, config.shutdown_timeout)
            .await
        {
            // Shutdown while waiting for the broker: stop like any shutdown, the open
            // transaction is re-sent on the next start.
            Err(TailerError::Interrupted(_)) => {
                pipeline.abandon_open();
                Ok(StreamEnd::Shutdown)
            }
            other => other,
        };
        match streamed {
            // A replication stream never ends on its own; treat it like a shutdown if it does.
            Ok(StreamEnd::Shutdown | StreamEnd::Exhausted) => {
                let deadline = stop_deadline(stop, config.shutdown_timeout);
                finish(&mut pipeline, source, deadline).await?;
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
                // next stream starts from an LSN that covers them. A shutdown meanwhile (the
                // broker is down too, say) stops waiting: what is unacked is re-sent on the
                // next start.
                if !pipeline.drain(Some(&mut source), None, Some(stop)).await? {
                    let deadline = stop_deadline(stop, config.shutdown_timeout);
                    close_by(source, deadline).await;
                    return Ok(pipeline.stats);
                }
                // A transactional sink commits what arrived whole, or aborts and streams
                // again from its last commit.
                pipeline.settle(Some(&mut source)).await?;
                drop(source);
                if sleep_or_stop(backoff.next_delay(), Some(&mut *stop)).await {
                    return Ok(pipeline.stats);
                }
            }
            Err(e) => {
                pipeline.reset_stream();
                // The error is what the operator must see; a refused record while draining is
                // logged by the sink and changes nothing about what to do.
                let deadline = stop_deadline(stop, config.shutdown_timeout);
                let _ = finish(&mut pipeline, source, deadline).await;
                return Err(e);
            }
        }
    }
}

/// Wait out a server that is down or starting; a misconfiguration stops at once. `None` when
/// shutdown was requested meanwhile.
async fn preflight(
    config: &TailerConfig,
    stop: &mut Shutdown,
    metrics: &Metrics,
    backoff: &mut Backoff,
) -> Result<Option<SlotState>, TailerError> {
    let slot = loop {
        match checks(config).await {
            Ok(slot) => break slot,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "PostgreSQL unreachable, retrying");
                metrics.error(e.kind());
                if sleep_or_stop(backoff.next_delay(), Some(&mut *stop)).await {
                    return Ok(None);
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
    Ok(Some(slot))
}

/// The slot and publication checks, then the outbox columns the routing reads.
async fn checks(config: &TailerConfig) -> Result<SlotState, TailerError> {
    let slot = crate::pg::setup::preflight(&config.source, config.create_slot).await?;
    let client = crate::pg::connect::connect(&config.source).await?;
    crate::pg::server::check_generated_columns(&client, &config.source, &config.route).await?;
    Ok(slot)
}

fn pipeline(
    config: &TailerConfig,
    stop: &Shutdown,
    metrics: &Arc<Metrics>,
    start: Lsn,
    source_id: &str,
) -> Result<Pipeline<KafkaSink>, TailerError> {
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let mut config = config.clone();
    if let Some(t) = config.sink.transactions.as_mut() {
        t.id.get_or_insert_with(|| default_transactional_id(source_id));
    }
    let config = &config;
    let sink = KafkaSink::for_tailer(config, ack_tx)?
        .with_stop(stop.clone())
        .with_resume(&config.sink, source_id)
        .with_metrics(Arc::clone(metrics));
    let router = Router::new(config.route.clone())?.with_source(source_id);
    let decoder = EventDecoder::new(config.source.table.clone(), config.route.clone())?;
    let window = Window {
        max_events: config.max_in_flight_events,
        max_bytes: config.max_in_flight_bytes,
    };
    Ok(Pipeline::new(decoder, router, sink, ack_rx, window, start)
        .with_message_prefix(config.message_prefix.clone())
        .with_metrics(Arc::clone(metrics)))
}

/// The end of a stream: wait for the acks of what is in flight (confirming as they come), then
/// close the connection, which sends the last confirmed LSN; all of it by `deadline`.
async fn finish<K: Sink, S: Source>(
    pipeline: &mut Pipeline<K>,
    mut source: S,
    deadline: Instant,
) -> Result<(), TailerError> {
    // The last status update is what makes acked events count: keep time for it.
    let reserve = CLOSE_RESERVE.min(deadline.saturating_duration_since(Instant::now()) / 5);
    let drained = pipeline
        .drain(Some(&mut source), Some(deadline - reserve), None)
        .await;
    // Commit what was handed over whole (a transactional sink), and confirm it, within the
    // same deadline.
    let drained = match drained {
        Ok(true) => {
            match tokio::time::timeout_at(
                (deadline - reserve).into(),
                pipeline.settle(Some(&mut source)),
            )
            .await
            {
                Ok(Ok(())) => {
                    pipeline.confirm_all(&mut source, deadline - reserve).await;
                    Ok(true)
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Ok(false),
            }
        }
        other => other,
    };
    if matches!(drained, Ok(false)) {
        tracing::warn!(
            in_flight = pipeline.in_flight(),
            "shutdown timeout with events in flight: they are re-sent on restart"
        );
    }
    close_by(source, deadline).await;
    drained.map(|_| ())
}

/// Time kept for the last status update at the end of a stop.
const CLOSE_RESERVE: Duration = Duration::from_secs(1);

/// The one deadline of a stop: `timeout` after it was requested (after now when the stream
/// ends for another reason).
fn stop_deadline(stop: &Shutdown, timeout: Duration) -> Instant {
    stop.deadline(timeout)
        .unwrap_or_else(|| Instant::now() + timeout)
}

/// Close the connection, but not past `deadline` (dropping it closes it too).
async fn close_by<S: Source>(source: S, deadline: Instant) {
    if tokio::time::timeout_at(deadline.into(), source.close())
        .await
        .is_err()
    {
        tracing::warn!("shutdown timeout while closing the replication connection");
    }
}

/// `run --start-lsn`: move the slot forward to `to` before streaming, so the skip survives a
/// restart; what lies between is never published, and the log says so loudly.
async fn skip_ahead(config: &TailerConfig, slot_at: Lsn, to: Lsn) -> Result<Lsn, TailerError> {
    let slot = &config.source.slot;
    if to <= slot_at {
        tracing::warn!(start_lsn = %to, slot_at = %slot_at, "--start-lsn is not ahead of the slot: nothing is skipped, streaming from the slot's position");
        return Ok(slot_at);
    }
    let client = crate::pg::connect::connect(&config.source).await?;
    let current = slots::current_wal_lsn(&client).await?;
    if to > current {
        return Err(TailerError::Config(format!(
            "--start-lsn {to} is ahead of the server's current WAL position {current}"
        )));
    }
    if !config.force_skip && !replay_slot_holds(config, &client, slot_at).await? {
        return Err(TailerError::Config(format!(
            "--start-lsn {to} would skip the events committed from {slot_at} on for good, and no \
             replay slot holds them (see `--replay-slot`): check what is skipped with \
             `outbox-tailer peek`, then add --force to skip anyway"
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
    let at = slots::advance(&client, slot, to).await?;
    tracing::info!(slot = %slot, at = %at, "slot advanced");
    Ok(at)
}

/// The replay slot exists, is usable, and has not confirmed past `from`: `replay` can still
/// publish what a skip from `from` leaves out.
async fn replay_slot_holds(
    config: &TailerConfig,
    client: &tokio_postgres::Client,
    from: Lsn,
) -> Result<bool, TailerError> {
    let Some(replay) = &config.source.replay_slot else {
        return Ok(false);
    };
    Ok(slots::slot_info(client, replay)
        .await?
        .is_some_and(|info| !info.lost && info.confirmed_flush_lsn <= from))
}
