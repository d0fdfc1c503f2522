//! `outbox-tailer status`: the slot's health and verdict ([`crate::pg::slot_status`]), the
//! replay window, printed for people or as JSON.

use tokio_postgres::Client;

use crate::config::{SlotThresholds, SourceConfig};
use crate::error::TailerError;
use crate::pg::slot_status::human_bytes;
use crate::pg::slot_status::{
    read_status, FailoverStatus, PublicationStatus, ReplayWindow, SlotStatus, Verdict,
};

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
    status.failover = read_failover(&client, &config.slot).await?;
    Ok(status)
}

/// The slot's failover state, and what a failover would do now (17+).
async fn read_failover(client: &Client, slot: &str) -> Result<Option<FailoverStatus>, TailerError> {
    let Some(f) = crate::pg::failover::settings(client, slot).await? else {
        return Ok(None);
    };
    let verdict = match (f.in_recovery, f.failover, f.guarded()) {
        (true, _, _) => "this is a standby: the tailer streams from the primary's slot".into(),
        (false, false, _) => "not a failover slot: a promotion loses it and the tailer stops; \
                              `outbox-tailer setup --failover` (docs/ha.md)"
            .to_owned(),
        (false, true, false) => "a failover would stop the tailer: synchronized_standby_slots is \
                                 empty, so the tailer may get ahead of the standbys; list their \
                                 physical slots in it (docs/ha.md)"
            .to_owned(),
        (false, true, true) => format!(
            "a promoted standby among {} with sync_replication_slots keeps the slot: the \
             tailer follows it",
            f.standby_slots
        ),
    };
    Ok(Some(FailoverStatus {
        failover: f.failover,
        synced: f.synced,
        synchronized_standby_slots: f.standby_slots,
        in_recovery: f.in_recovery,
        verdict,
    }))
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
    let mut lines = slot_lines(s);
    lines.push(("publication", publication_line(&s.publication)));
    lines.push(("wal_level", s.wal_level.clone()));
    if let Some(reason) = &s.invalidation_reason {
        lines.push(("invalidation_reason", reason.clone()));
    }
    if let Some(w) = &s.replay_window {
        lines.push(("replay window", replay_window_line(w)));
    }
    if let Some(f) = &s.failover {
        lines.push((
            "failover",
            format!(
                "{} (synced: {}; synchronized_standby_slots: {}): {}",
                if f.failover { "on" } else { "off" },
                if f.synced { "yes" } else { "no" },
                if f.synchronized_standby_slots.is_empty() {
                    "none"
                } else {
                    &f.synchronized_standby_slots
                },
                f.verdict
            ),
        ));
    }
    lines.push(("verdict", verdict_line(&s.verdict)));
    lines.push(("what to do", s.verdict.action.clone()));
    lines
        .iter()
        .map(|(k, v)| format!("{k:<20} {v}\n"))
        .collect()
}

/// The slot itself and where it stands in the WAL.
fn slot_lines(s: &SlotStatus) -> Vec<(&'static str, String)> {
    vec![
        (
            "slot",
            format!(
                "{} ({} {}, database {})",
                s.slot,
                or_dash(&s.plugin),
                s.slot_type,
                or_dash(&s.database)
            ),
        ),
        ("active", active_line(s)),
        ("confirmed_flush_lsn", or_dash(&s.confirmed_flush_lsn)),
        ("restart_lsn", or_dash(&s.restart_lsn)),
        ("current_wal_lsn", s.current_wal_lsn.clone()),
        ("lag", bytes_or_dash(s.lag_bytes)),
        ("retained WAL", bytes_or_dash(s.retained_bytes)),
        ("wal_status", or_dash(&s.wal_status)),
        ("safe_wal_size", safe_wal_size_line(s)),
    ]
}

fn active_line(s: &SlotStatus) -> String {
    match (s.active, s.active_pid) {
        (true, Some(pid)) => format!("yes, pid {pid}"),
        (true, None) => "yes".into(),
        (false, _) => "no (no tailer connected)".into(),
    }
}

fn safe_wal_size_line(s: &SlotStatus) -> String {
    match s.safe_wal_size {
        Some(b) => human_bytes(b),
        None => format!(
            "unlimited (max_slot_wal_keep_size = {})",
            s.max_slot_wal_keep_size
        ),
    }
}

fn publication_line(p: &PublicationStatus) -> String {
    if !p.exists {
        return format!("{} (does not exist)", p.name);
    }
    let tables = if p.tables.is_empty() {
        "none".into()
    } else {
        p.tables.join(", ")
    };
    format!(
        "{} (publishes {}; tables: {tables})",
        p.name,
        p.publishes.join(", ")
    )
}

fn replay_window_line(w: &ReplayWindow) -> String {
    if !w.exists {
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
            or_dash(&w.confirmed_flush_lsn),
            bytes_or_dash(w.retained_bytes)
        )
    }
}

fn verdict_line(v: &Verdict) -> String {
    format!("{}: {}", v.health.to_string().to_uppercase(), v.summary)
}

fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

fn bytes_or_dash(b: Option<i64>) -> String {
    b.map(human_bytes).unwrap_or_else(|| "-".into())
}
