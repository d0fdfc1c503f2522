//! The slot watchdog: while `run` streams, look at the slot every `--slot-check-interval-ms`
//! on a separate connection.
//!
//! - feeds the slot gauges (lag bytes, retained WAL, `safe_wal_size`);
//! - warns when the slot is lagging or at risk of invalidation (once per change of verdict, and
//!   again every minute while at risk);
//! - when the slot is invalidated, returns the reason with the recovery steps, and `run` stops
//!   with it instead of retrying a slot that can never stream again.
//!
//! A failed check (server restarting, connection lost) is counted and retried at the next tick:
//! the stream itself decides what a lost server means.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::config::{SlotThresholds, SourceConfig};
use crate::metrics::Metrics;
use crate::pg::slot_status::{read_status, Health, SlotStatus};

const REPEAT_AT_RISK: Duration = Duration::from_secs(60);

/// Check the slot until it is invalidated; returns the message to stop with.
pub async fn watch(
    config: SourceConfig,
    thresholds: SlotThresholds,
    interval: Duration,
    metrics: Arc<Metrics>,
) -> String {
    let mut client: Option<Client> = None;
    let mut reported = Reported {
        health: None,
        warned_at: Instant::now(),
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(status) = check(&mut client, &config, thresholds, &metrics).await else {
            continue;
        };
        record_gauges(&metrics, &status);
        if let Some(stop) = reported.report(&status) {
            return stop;
        }
    }
}

/// One slot check, reconnecting first when the connection is gone. A failure is counted and
/// logged, and `None` waits for the next tick.
async fn check(
    client: &mut Option<Client>,
    config: &SourceConfig,
    thresholds: SlotThresholds,
    metrics: &Metrics,
) -> Option<SlotStatus> {
    if client.as_ref().is_none_or(Client::is_closed) {
        match crate::pg::connect::connect(config).await {
            Ok(c) => *client = Some(c),
            Err(e) => {
                metrics.error("slot_check");
                tracing::debug!(error = %e, "slot check: cannot connect");
                return None;
            }
        }
    }
    let c = client.as_ref()?;
    match read_status(c, config, thresholds).await {
        Ok(s) => Some(s),
        Err(e) => {
            metrics.error("slot_check");
            tracing::warn!(error = %e, "slot check failed");
            *client = None;
            None
        }
    }
}

fn record_gauges(metrics: &Metrics, status: &SlotStatus) {
    metrics.slot_checks.inc();
    metrics.slot_lag_bytes.set(status.lag_bytes.unwrap_or(0));
    metrics
        .slot_retained_bytes
        .set(status.retained_bytes.unwrap_or(0));
    metrics
        .slot_safe_wal_bytes
        .set(status.safe_wal_size.unwrap_or(-1));
}

/// What the watchdog last logged: it warns once per change of verdict, and again every
/// [`REPEAT_AT_RISK`] while at risk.
struct Reported {
    health: Option<Health>,
    warned_at: Instant,
}

impl Reported {
    /// Log the verdict of `status` if it is news; the message to stop with once invalidated.
    fn report(&mut self, status: &SlotStatus) -> Option<String> {
        let health = status.verdict.health;
        let changed = self.health != Some(health);
        match health {
            Health::Invalidated => {
                return Some(format!(
                    "{}. {}",
                    status.verdict.summary, status.verdict.action
                ));
            }
            Health::AtRisk if changed || self.warned_at.elapsed() >= REPEAT_AT_RISK => {
                warn_at_risk(status);
                self.warned_at = Instant::now();
            }
            Health::Lagging if changed => {
                tracing::warn!(
                    slot = %status.slot,
                    lag_bytes = status.lag_bytes.unwrap_or(0),
                    "slot lagging"
                );
            }
            Health::Healthy if changed && self.health.is_some() => {
                tracing::info!(slot = %status.slot, lag_bytes = status.lag_bytes.unwrap_or(0), "slot healthy again");
            }
            _ => {}
        }
        self.health = Some(health);
        None
    }
}

fn warn_at_risk(status: &SlotStatus) {
    tracing::warn!(
        slot = %status.slot,
        wal_status = status.wal_status.as_deref().unwrap_or("?"),
        safe_wal_size = status.safe_wal_size.unwrap_or(-1),
        lag_bytes = status.lag_bytes.unwrap_or(0),
        action = %status.verdict.action,
        "slot at risk of invalidation"
    );
}
