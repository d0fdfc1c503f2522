//! A slot as PostgreSQL sees it, and a verdict with what to do: what `outbox-tailer status`
//! prints and what the running tailer's slot watchdog acts on.
//!
//! Everything comes from one read of `pg_replication_slots` (as JSON, so the columns added by
//! later PostgreSQL versions are picked up when present), the server's current WAL position,
//! and the publication.
//!
//! ```text
//!   restart_lsn ──── confirmed_flush_lsn ──────────────── current WAL ─ ─ ─ ─▶ invalidated at
//!        └── WAL retained for the slot ──┴──── lag (bytes) ───┘   (safe_wal_size left)
//! ```

use serde::Serialize;
use tokio_postgres::{Client, Row};

use crate::config::{SlotThresholds, SourceConfig};
use crate::error::TailerError;

/// The four states an on-call engineer acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Lagging,
    AtRisk,
    Invalidated,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Healthy => "healthy",
            Health::Lagging => "lagging",
            Health::AtRisk => "at risk of invalidation",
            Health::Invalidated => "invalidated",
        })
    }
}

/// One line saying what is going on, and one saying what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub health: Health,
    pub summary: String,
    pub action: String,
}

/// The publication the tailer reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicationStatus {
    pub name: String,
    pub exists: bool,
    /// Operations it publishes (`insert`, `update`, …).
    pub publishes: Vec<String>,
    /// `schema.table` of every table in it.
    pub tables: Vec<String>,
    pub includes_outbox_table: bool,
}

/// Everything `status` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotStatus {
    pub slot: String,
    pub plugin: Option<String>,
    pub slot_type: String,
    pub database: Option<String>,
    pub active: bool,
    pub active_pid: Option<i64>,
    pub confirmed_flush_lsn: Option<String>,
    pub restart_lsn: Option<String>,
    /// `reserved`, `extended`, `unreserved` or `lost` (NULL on a slot never used).
    pub wal_status: Option<String>,
    /// Bytes that can still be written before the slot is invalidated; `None` when
    /// `max_slot_wal_keep_size = -1` (no limit).
    pub safe_wal_size: Option<i64>,
    /// PostgreSQL 17+: why the slot was invalidated.
    pub invalidation_reason: Option<String>,
    pub two_phase: bool,
    /// `pg_current_wal_lsn()` (on a standby: the last replayed position).
    pub current_wal_lsn: String,
    /// `current_wal_lsn - confirmed_flush_lsn`: WAL the tailer has not confirmed yet.
    pub lag_bytes: Option<i64>,
    /// `current_wal_lsn - restart_lsn`: WAL kept on disk for this slot.
    pub retained_bytes: Option<i64>,
    pub wal_level: String,
    pub max_slot_wal_keep_size: String,
    pub publication: PublicationStatus,
    pub thresholds: Thresholds,
    pub verdict: Verdict,
    /// The replay slot (`--replay-slot`), when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_window: Option<ReplayWindow>,
    /// Failover slots (PostgreSQL 17+); `None` before 17.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverStatus>,
}

/// Whether the slot would survive a promotion of a standby, and what to do if not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailoverStatus {
    /// A failover slot, synchronised to standbys with `sync_replication_slots`.
    pub failover: bool,
    /// Synchronised from a primary (a standby's copy, or left from a promotion).
    pub synced: bool,
    /// The primary's `synchronized_standby_slots` (empty: logical decoding does not wait for
    /// any standby).
    pub synchronized_standby_slots: String,
    pub in_recovery: bool,
    /// What a failover would do to the tailer now.
    pub verdict: String,
}

/// The replay slot: how far back `replay` reaches and what WAL it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayWindow {
    pub slot: String,
    pub exists: bool,
    /// The oldest commit LSN `replay` can start from.
    pub confirmed_flush_lsn: Option<String>,
    pub wal_status: Option<String>,
    /// `current_wal_lsn - restart_lsn`: WAL kept on disk for the window.
    pub retained_bytes: Option<i64>,
}

/// The thresholds the verdict used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Thresholds {
    pub lag_warn_bytes: u64,
    pub safe_wal_warn_bytes: u64,
}

impl From<SlotThresholds> for Thresholds {
    fn from(t: SlotThresholds) -> Self {
        Thresholds {
            lag_warn_bytes: t.lag_warn_bytes,
            safe_wal_warn_bytes: t.safe_wal_warn_bytes,
        }
    }
}

/// Read the slot's status on an open connection.
pub async fn read_status(
    client: &Client,
    config: &SourceConfig,
    thresholds: SlotThresholds,
) -> Result<SlotStatus, TailerError> {
    let row = read_slot_row(client, &config.slot).await?;
    let slot: serde_json::Value = serde_json::from_str(row.get::<_, &str>(0))
        .map_err(|e| TailerError::Bug(format!("unreadable pg_replication_slots row: {e}")))?;
    let publication = read_publication(client, config).await?;
    let mut status = unjudged_status(&config.slot, &slot, &row, publication, thresholds);
    status.verdict = judge(&status, thresholds);
    Ok(status)
}

/// The slot's row of `pg_replication_slots` as JSON, with the server's WAL position and settings.
async fn read_slot_row(client: &Client, slot: &str) -> Result<Row, TailerError> {
    let current =
        "CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
                   ELSE pg_catalog.pg_current_wal_lsn() END";
    let sql = format!(
        "SELECT pg_catalog.to_jsonb(s)::text, ({current})::text, \
                (({current}) - s.confirmed_flush_lsn)::bigint, \
                (({current}) - s.restart_lsn)::bigint, \
                pg_catalog.current_setting('wal_level'), \
                pg_catalog.current_setting('max_slot_wal_keep_size') \
         FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = $1"
    );
    let row = client
        .query_opt(&sql, &[&slot])
        .await
        .map_err(|e| TailerError::postgres("reading pg_replication_slots", e))?;
    row.ok_or_else(|| {
        TailerError::Database(format!(
            "replication slot {slot} does not exist in this cluster: run `outbox-tailer setup` \
             on a first start; if it existed before, it was dropped or this is a failed-over \
             or restored server (see \"Failover and upgrades\" in docs/operations.md)"
        ))
    })
}

/// The status read from `row` (see [`read_slot_row`]) and its parsed JSON `slot`, before a
/// verdict.
fn unjudged_status(
    name: &str,
    slot: &serde_json::Value,
    row: &Row,
    publication: PublicationStatus,
    thresholds: SlotThresholds,
) -> SlotStatus {
    let text = |k: &str| slot.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let flag = |k: &str| slot.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    SlotStatus {
        slot: name.to_owned(),
        plugin: text("plugin"),
        slot_type: text("slot_type").unwrap_or_default(),
        database: text("database"),
        active: flag("active"),
        active_pid: slot.get("active_pid").and_then(|v| v.as_i64()),
        confirmed_flush_lsn: text("confirmed_flush_lsn"),
        restart_lsn: text("restart_lsn"),
        wal_status: text("wal_status"),
        safe_wal_size: slot.get("safe_wal_size").and_then(|v| v.as_i64()),
        invalidation_reason: text("invalidation_reason"),
        two_phase: flag("two_phase"),
        current_wal_lsn: row.get(1),
        lag_bytes: row.get(2),
        retained_bytes: row.get(3),
        wal_level: row.get(4),
        max_slot_wal_keep_size: row.get(5),
        publication,
        thresholds: thresholds.into(),
        verdict: Verdict {
            health: Health::Healthy,
            summary: String::new(),
            action: String::new(),
        },
        replay_window: None,
        failover: None,
    }
}

async fn read_publication(
    client: &Client,
    config: &SourceConfig,
) -> Result<PublicationStatus, TailerError> {
    let name = config.publication.clone();
    let row = client
        .query_opt(
            "SELECT pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_catalog.pg_publication \
             WHERE pubname = $1",
            &[&name],
        )
        .await
        .map_err(|e| TailerError::postgres("reading pg_publication", e))?;
    let Some(row) = row else {
        return Ok(PublicationStatus {
            name,
            exists: false,
            publishes: Vec::new(),
            tables: Vec::new(),
            includes_outbox_table: false,
        });
    };
    let publishes = ["insert", "update", "delete", "truncate"]
        .iter()
        .enumerate()
        .filter(|(i, _)| row.get::<_, bool>(*i))
        .map(|(_, op)| (*op).to_owned())
        .collect();
    let tables: Vec<String> = client
        .query(
            "SELECT schemaname::text || '.' || tablename::text FROM pg_catalog.pg_publication_tables \
             WHERE pubname = $1 ORDER BY 1",
            &[&name],
        )
        .await
        .map_err(|e| TailerError::postgres("reading pg_publication_tables", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let outbox = config.table.to_string();
    Ok(PublicationStatus {
        includes_outbox_table: tables.contains(&outbox),
        name,
        exists: true,
        publishes,
        tables,
    })
}

mod verdict;
pub use verdict::{human_bytes, judge};

#[cfg(test)]
mod tests;
