//! The rows of a run's results: what the scenarios measure, and what the report and the plots
//! show. Nothing else of the crate is used here, so the scenarios, the report and the plots can
//! all share these types without importing each other.

use serde::{Deserialize, Serialize};

/// One relay in one drain or live scenario.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Row {
    pub scenario: String,
    pub relay: String,
    pub broker: String,
    pub events: u64,
    /// Drains: from the relay's start until the last event is in the broker (acked);
    /// `pg_recvlogical`: until it reached the end LSN. Live: the write phase.
    pub seconds: f64,
    /// Drains: from the relay's start until its first event is in the broker (start-up).
    pub first_event_seconds: Option<f64>,
    /// Drains: from the relay's start until its slot's `confirmed_flush_lsn` reached the end
    /// (`None`: not within 2 minutes after the last ack).
    pub confirmed_seconds: Option<f64>,
    pub peak_rss_kib: Option<u64>,
    pub pg_cpu_ms: Option<u64>,
    /// CPU time of the relay's process during the drain.
    pub relay_cpu_ms: Option<u64>,
    /// CPU time of the harness during the drain: the mock cluster (in-process) and the watcher.
    pub harness_cpu_ms: Option<u64>,
    pub wal_bytes: Option<i64>,
    /// p50, p99, max in milliseconds (commit to consume).
    pub latency_ms: Option<[f64; 3]>,
    /// Live: the p99 of the events written in each third of the write phase (a tail that grows
    /// through the run points at something that accumulates, such as the broker's log); 0 for
    /// a third none of whose events arrived.
    #[serde(default)]
    pub p99_by_third_ms: Option<[f64; 3]>,
    /// Records the relay published when it did not publish all `events`: drains stopped after
    /// a bounded window (`seconds` is then the window), live runs where the relay fell behind
    /// (latency is then that of the events that arrived).
    pub published: Option<u64>,
    /// Outbox rows the relay updated (marked published): each leaves a dead row version for
    /// vacuum, whether or not page pruning already shrank it.
    pub obsolete_rows: Option<i64>,
    /// Dead tuples in the outbox table after the relay ran (`pgstattuple`; page pruning during
    /// the relay's own scans removes some before vacuum).
    pub dead_tuples: Option<i64>,
    /// Autovacuum runs on the outbox table while the relay ran.
    pub autovacuums: Option<i64>,
    /// A manual `VACUUM outbox` after the relay ran: the vacuum work it left behind.
    pub vacuum_ms: Option<f64>,
}

impl Row {
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.published.unwrap_or(self.events) as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// A drain stopped after a bounded window: the time all `events` would take at the
    /// measured rate (an extrapolation, not a measurement).
    pub fn extrapolated_seconds(&self) -> Option<f64> {
        let rate = self.rate();
        (self.published.is_some() && self.latency_ms.is_none() && rate > 0.0)
            .then(|| self.events as f64 / rate)
    }

    pub fn is_live(&self) -> bool {
        self.latency_ms.is_some()
    }

    pub fn one_line(&self) -> String {
        match self.latency_ms {
            Some([p50, p99, max]) => {
                let [a, b, c] = self.p99_by_third_ms.unwrap_or_default();
                format!(
                    "{} | {} | {}: p50 {p50:.1} ms, p99 {p99:.1} ms (by third of the run {a:.1} / {b:.1} / {c:.1}), max {max:.1} ms",
                    self.scenario, self.relay, self.broker
                )
            }
            None => match self.published {
                Some(n) => format!(
                    "{} | {} | {}: {n} events in a {:.0} s window, {:.1} events/s (all {} would take ~{:.0} s, extrapolated)",
                    self.scenario,
                    self.relay,
                    self.broker,
                    self.seconds,
                    self.rate(),
                    self.events,
                    self.extrapolated_seconds().unwrap_or_default()
                ),
                None => format!(
                    "{} | {} | {}: {:.2} s, {:.0} events/s",
                    self.scenario,
                    self.relay,
                    self.broker,
                    self.seconds,
                    self.rate()
                ),
            },
        }
    }
}

/// One relay in the behaviour scenario.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BehaviourRow {
    pub relay: String,
    pub broker: String,
    /// Clean restart: events written (half before the SIGTERM, half after the restart),
    /// records published for them, and how many of those were duplicates.
    pub restart_events: u64,
    pub restart_published: u64,
    pub restart_duplicates: u64,
    /// SIGKILL: events written before the start, records in the broker when the kill came,
    /// records published in all, duplicates.
    pub kill_events: u64,
    pub kill_after: u64,
    pub kill_published: u64,
    pub kill_duplicates: u64,
    /// Idle (relays with a slot): WAL written by transactions on `orders` (not published) while
    /// the relay ran, the slot's lag when the writes stopped and `idle_seconds` later, and when
    /// the slot caught up (`None`: not within that wait).
    pub idle: Option<IdleLag>,
    /// Invalidated slot (relays with a slot): what the relay did when started on a slot
    /// PostgreSQL had invalidated (`wal_status = lost`) while it was stopped.
    #[serde(default)]
    pub slot_lost: Option<SlotLost>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SlotLost {
    /// Seconds from the start until the relay exited; `None`: still running after
    /// `wait_seconds` (then killed).
    pub exited_seconds: Option<f64>,
    /// The exit code (`None` when killed by a signal or still running).
    pub exit_code: Option<i32>,
    pub wait_seconds: u64,
}

impl SlotLost {
    pub fn describe(&self) -> String {
        match self.exited_seconds {
            Some(s) => format!(
                "exited after {s:.2} s (code {})",
                self.exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "none".into())
            ),
            None => format!("still running after {} s", self.wait_seconds),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdleLag {
    pub wal_bytes: i64,
    pub lag_at_end: i64,
    pub lag_after_wait: i64,
    pub wait_seconds: u64,
    pub caught_up_seconds: Option<f64>,
}

impl IdleLag {
    pub fn describe(&self) -> String {
        format!(
            "{} B WAL written; lag {} B at the end, {} B {} s later{}",
            self.wal_bytes,
            self.lag_at_end,
            self.lag_after_wait,
            self.wait_seconds,
            self.caught_up_seconds
                .map(|s| format!(" (caught up after {s:.2} s)"))
                .unwrap_or_default(),
        )
    }
}

impl BehaviourRow {
    pub fn one_line(&self) -> String {
        format!(
            "behaviour | {} | {}: clean restart {} duplicates of {} events; SIGKILL (after {} in broker) {} duplicates of {}; idle: {}; invalidated slot: {}",
            self.relay,
            self.broker,
            self.restart_duplicates,
            self.restart_events,
            self.kill_after,
            self.kill_duplicates,
            self.kill_events,
            self.idle
                .as_ref()
                .map(IdleLag::describe)
                .unwrap_or_else(|| "no slot".into()),
            self.slot_lost
                .as_ref()
                .map(SlotLost::describe)
                .unwrap_or_else(|| "no slot".into()),
        )
    }
}
