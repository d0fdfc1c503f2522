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
use crate::pg::slot_status::{read_status, Health};

const REPEAT_AT_RISK: Duration = Duration::from_secs(60);

/// Check the slot until it is invalidated; returns the message to stop with.
pub async fn watch(
    config: SourceConfig,
    thresholds: SlotThresholds,
    interval: Duration,
    metrics: Arc<Metrics>,
) -> String {
    let mut client: Option<Client> = None;
    let mut last: Option<Health> = None;
    let mut last_warned = Instant::now();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if client.as_ref().is_none_or(Client::is_closed) {
            client = match crate::pg::connect::connect(&config).await {
                Ok(c) => Some(c),
                Err(e) => {
                    metrics.error("slot_check");
                    tracing::debug!(error = %e, "slot check: cannot connect");
                    continue;
                }
            };
        }
        let Some(c) = client.as_ref() else { continue };
        let status = match read_status(c, &config, thresholds).await {
            Ok(s) => s,
            Err(e) => {
                metrics.error("slot_check");
                tracing::warn!(error = %e, "slot check failed");
                client = None;
                continue;
            }
        };
        metrics.slot_checks.inc();
        metrics.slot_lag_bytes.set(status.lag_bytes.unwrap_or(0));
        metrics
            .slot_retained_bytes
            .set(status.retained_bytes.unwrap_or(0));
        metrics
            .slot_safe_wal_bytes
            .set(status.safe_wal_size.unwrap_or(-1));
        let health = status.verdict.health;
        let changed = last != Some(health);
        match health {
            Health::Invalidated => {
                return format!("{}. {}", status.verdict.summary, status.verdict.action);
            }
            Health::AtRisk if changed || last_warned.elapsed() >= REPEAT_AT_RISK => {
                tracing::warn!(
                    slot = %status.slot,
                    wal_status = status.wal_status.as_deref().unwrap_or("?"),
                    safe_wal_size = status.safe_wal_size.unwrap_or(-1),
                    lag_bytes = status.lag_bytes.unwrap_or(0),
                    action = %status.verdict.action,
                    "slot at risk of invalidation"
                );
                last_warned = Instant::now();
            }
            Health::Lagging if changed => {
                tracing::warn!(
                    slot = %status.slot,
                    lag_bytes = status.lag_bytes.unwrap_or(0),
                    "slot lagging"
                );
            }
            Health::Healthy if changed && last.is_some() => {
                tracing::info!(slot = %status.slot, lag_bytes = status.lag_bytes.unwrap_or(0), "slot healthy again");
            }
            _ => {}
        }
        last = Some(health);
    }
}
