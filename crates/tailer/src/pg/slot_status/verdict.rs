//! The verdict on one slot reading: invalidated beats at risk beats lagging, each with what to
//! do about it.

use super::{Health, PublicationStatus, SlotStatus, Verdict};
use crate::config::SlotThresholds;

/// The verdict: invalidated beats at risk beats lagging.
pub fn judge(s: &SlotStatus, t: SlotThresholds) -> Verdict {
    let lost = s.wal_status.as_deref() == Some("lost") || s.invalidation_reason.is_some();
    if lost {
        return invalidated(s);
    }
    let unreserved = s.wal_status.as_deref() == Some("unreserved");
    if unreserved
        || s.safe_wal_size
            .is_some_and(|b| b < t.safe_wal_warn_bytes as i64)
    {
        return at_risk(s);
    }
    if s.lag_bytes.is_some_and(|b| b > t.lag_warn_bytes as i64) {
        return lagging(s, t);
    }
    healthy(s)
}

fn invalidated(s: &SlotStatus) -> Verdict {
    let reason = s.invalidation_reason.as_deref();
    let cause = match reason {
        Some("idle_timeout") => "it was inactive for longer than idle_replication_slot_timeout \
                                 (PostgreSQL 18), so PostgreSQL released the WAL it held"
            .to_owned(),
        Some("rows_removed") => "the primary removed catalog rows it still needed (a logical \
                                 slot on a standby without hot_standby_feedback)"
            .to_owned(),
        Some("wal_level_insufficient") => {
            "wal_level on the primary dropped below logical".to_owned()
        }
        Some(other) if other != "wal_removed" => format!("PostgreSQL invalidated it ({other})"),
        _ => "PostgreSQL removed WAL it still needed".to_owned(),
    };
    let why = reason.map(|r| format!(" ({r})")).unwrap_or_default();
    let prevent = match reason {
        Some("idle_timeout") => {
            "; to prevent it, keep the tailer running or raise idle_replication_slot_timeout"
        }
        _ => "",
    };
    Verdict {
        health: Health::Invalidated,
        summary: format!(
            "slot {} is invalidated{why}: {cause}, so it can never stream again and events \
             committed after its confirmed_flush_lsn {} may not have been published",
            s.slot,
            s.confirmed_flush_lsn.as_deref().unwrap_or("?")
        ),
        action: format!(
            "stop the tailer, then follow \"Recovering from an invalidated slot\" in \
             docs/operations.md (new slot, re-publish the gap from the outbox table if rows \
             are kept){prevent}"
        ),
    }
}

fn at_risk(s: &SlotStatus) -> Verdict {
    Verdict {
        health: Health::AtRisk,
        summary: format!(
            "slot {} is at risk of invalidation: wal_status {}, {} of WAL may still be \
             written before PostgreSQL removes what the slot needs \
             (max_slot_wal_keep_size = {})",
            s.slot,
            s.wal_status.as_deref().unwrap_or("?"),
            s.safe_wal_size
                .map(human_bytes)
                .unwrap_or_else(|| "?".into()),
            s.max_slot_wal_keep_size
        ),
        action: format!(
            "make the tailer catch up now: it is {}; check its logs and Kafka; if it cannot \
             catch up in time, raise max_slot_wal_keep_size (ALTER SYSTEM SET \
             max_slot_wal_keep_size = …; SELECT pg_reload_conf())",
            if s.active {
                "connected"
            } else {
                "NOT connected"
            }
        ),
    }
}

fn lagging(s: &SlotStatus, t: SlotThresholds) -> Verdict {
    Verdict {
        health: Health::Lagging,
        summary: format!(
            "slot {} is {} behind the server's WAL position (threshold {})",
            s.slot,
            s.lag_bytes.map(human_bytes).unwrap_or_default(),
            human_bytes(t.lag_warn_bytes as i64)
        ),
        action: if s.active {
            "the tailer is connected but behind: check its logs, Kafka's health and the \
             outbox_tailer_in_flight_events metric; lag shrinks as it catches up"
                .into()
        } else {
            "no tailer is connected: start `outbox-tailer run` (WAL accumulates on the \
             server until it confirms)"
                .into()
        },
    }
}

fn healthy(s: &SlotStatus) -> Verdict {
    Verdict {
        health: Health::Healthy,
        summary: format!(
            "slot {} is {} behind, WAL retained for it is {}",
            s.slot,
            s.lag_bytes.map(human_bytes).unwrap_or_else(|| "?".into()),
            s.retained_bytes
                .map(human_bytes)
                .unwrap_or_else(|| "?".into())
        ),
        action: publication_action(&s.publication),
    }
}

/// A healthy slot still streams nothing without a publication that holds the outbox table.
fn publication_action(p: &PublicationStatus) -> String {
    if !p.exists {
        format!(
            "publication {} does not exist: run `outbox-tailer setup`",
            p.name
        )
    } else if !p.includes_outbox_table {
        format!(
            "publication {} does not include the outbox table: ALTER PUBLICATION … ADD TABLE",
            p.name
        )
    } else {
        String::from("nothing to do")
    }
}

/// `1.5 MiB (1572864 bytes)`-style, for people.
pub fn human_bytes(b: i64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit < units.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.1} {} ({b} bytes)", units[unit])
    }
}
