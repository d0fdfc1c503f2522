//! `outbox-tailer status`: the slot's health and verdict ([`crate::pg::slot_status`]), the
//! replay window, printed for people or as JSON.

use tokio_postgres::Client;

use crate::config::{SlotThresholds, SourceConfig};
use crate::error::TailerError;
use crate::pg::slot_status::human_bytes;
use crate::pg::slot_status::{read_status, ReplayWindow, SlotStatus};

/// Connect and read the slot's status.
pub async fn status(
    config: &SourceConfig,
    thresholds: SlotThresholds,
) -> Result<SlotStatus, TailerError> {
    let client = crate::pg::connect::connect(config).await?;
    let mut status = read_status(&client, config, thresholds).await?;
    if let Some(replay) = &config.replay_slot {
        status.replay_window = Some(read_replay_window(&client, replay).await?);
    }
    Ok(status)
}

async fn read_replay_window(client: &Client, slot: &str) -> Result<ReplayWindow, TailerError> {
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text, wal_status, \
                    (pg_catalog.pg_current_wal_lsn() - restart_lsn)::bigint \
             FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| TailerError::postgres("reading pg_replication_slots", e))?;
    Ok(ReplayWindow {
        slot: slot.to_owned(),
        exists: row.is_some(),
        confirmed_flush_lsn: row.as_ref().and_then(|r| r.get(0)),
        wal_status: row.as_ref().and_then(|r| r.get(1)),
        retained_bytes: row.as_ref().and_then(|r| r.get(2)),
    })
}

/// The table `status` prints.
pub fn render(s: &SlotStatus) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut lines = vec![
        (
            "slot",
            format!(
                "{} ({} {}, database {})",
                s.slot,
                opt(&s.plugin),
                s.slot_type,
                opt(&s.database)
            ),
        ),
        (
            "active",
            match (s.active, s.active_pid) {
                (true, Some(pid)) => format!("yes, pid {pid}"),
                (true, None) => "yes".into(),
                (false, _) => "no (no tailer connected)".into(),
            },
        ),
        ("confirmed_flush_lsn", opt(&s.confirmed_flush_lsn)),
        ("restart_lsn", opt(&s.restart_lsn)),
        ("current_wal_lsn", s.current_wal_lsn.clone()),
        (
            "lag",
            s.lag_bytes.map(human_bytes).unwrap_or_else(|| "-".into()),
        ),
        (
            "retained WAL",
            s.retained_bytes
                .map(human_bytes)
                .unwrap_or_else(|| "-".into()),
        ),
        ("wal_status", opt(&s.wal_status)),
        (
            "safe_wal_size",
            match s.safe_wal_size {
                Some(b) => human_bytes(b),
                None => format!(
                    "unlimited (max_slot_wal_keep_size = {})",
                    s.max_slot_wal_keep_size
                ),
            },
        ),
        (
            "publication",
            if s.publication.exists {
                format!(
                    "{} (publishes {}; tables: {})",
                    s.publication.name,
                    s.publication.publishes.join(", "),
                    if s.publication.tables.is_empty() {
                        "none".into()
                    } else {
                        s.publication.tables.join(", ")
                    }
                )
            } else {
                format!("{} (does not exist)", s.publication.name)
            },
        ),
        ("wal_level", s.wal_level.clone()),
    ];
    if let Some(reason) = &s.invalidation_reason {
        lines.push(("invalidation_reason", reason.clone()));
    }
    if let Some(w) = &s.replay_window {
        let shown = if !w.exists {
            format!("slot {} does not exist yet (`run` creates it)", w.slot)
        } else if w.wal_status.as_deref() == Some("lost") {
            format!(
                "slot {} is INVALIDATED: nothing can be replayed from it; drop it and `run` \
                 recreates it",
                w.slot
            )
        } else {
            format!(
                "slot {}: replay reaches back to {}, holding {} of WAL",
                w.slot,
                opt(&w.confirmed_flush_lsn),
                w.retained_bytes
                    .map(human_bytes)
                    .unwrap_or_else(|| "-".into())
            )
        };
        lines.push(("replay window", shown));
    }
    lines.push((
        "verdict",
        format!(
            "{}: {}",
            s.verdict.health.to_string().to_uppercase(),
            s.verdict.summary
        ),
    ));
    lines.push(("what to do", s.verdict.action.clone()));
    lines
        .iter()
        .map(|(k, v)| format!("{k:<20} {v}\n"))
        .collect()
}
