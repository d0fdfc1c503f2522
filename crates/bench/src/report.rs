//! Results: one row per (scenario, relay), written as JSON and as a markdown table.

use std::path::Path;

use serde::Serialize;

use crate::behaviour::BehaviourRow;
use crate::{BenchOptions, Sizes};

#[derive(Debug, Clone, Default, Serialize)]
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
    pub wal_bytes: Option<i64>,
    /// p50, p99, max in milliseconds (commit to consume).
    pub latency_ms: Option<[f64; 3]>,
}

impl Row {
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn one_line(&self) -> String {
        match self.latency_ms {
            Some([p50, p99, max]) => format!(
                "{} | {} | {}: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
                self.scenario, self.relay, self.broker
            ),
            None => format!(
                "{} | {} | {}: {:.2} s, {:.0} events/s",
                self.scenario,
                self.relay,
                self.broker,
                self.seconds,
                self.rate()
            ),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_kib: u64,
}

impl Machine {
    fn here() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model: cpuinfo
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default(),
            memory_kib: meminfo
                .lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub smoke: bool,
    pub broker: crate::BrokerKind,
    pub machine: Machine,
    pub sizes: Sizes,
    pub rows: Vec<Row>,
    pub behaviour: Vec<BehaviourRow>,
}

impl Report {
    pub fn new(options: &BenchOptions, sizes: &Sizes) -> Report {
        Report {
            smoke: options.smoke,
            broker: options.broker,
            machine: Machine::here(),
            sizes: sizes.clone(),
            rows: Vec::new(),
            behaviour: Vec::new(),
        }
    }

    /// The throughput rows relative to `pg_recvlogical` on the same scenario.
    fn ratio(&self, row: &Row) -> Option<f64> {
        let base = self
            .rows
            .iter()
            .find(|r| r.scenario == row.scenario && r.relay.starts_with("pg_recvlogical"))?;
        (row.seconds > 0.0).then(|| base.seconds / row.seconds)
    }

    pub fn markdown(&self) -> String {
        let mut md = format!(
            "Machine: {} CPUs ({}), {} GiB. Broker for the relays: {:?}.{}\n\n",
            self.machine.cpus,
            self.machine.cpu_model,
            self.machine.memory_kib / 1024 / 1024,
            self.broker,
            if self.smoke {
                " SMOKE RUN: tiny sizes, numbers mean nothing."
            } else {
                ""
            }
        );
        md.push_str("| scenario | relay | broker | events | seconds to last ack | events/s | vs pg_recvlogical | first event s | confirmed s | peak RSS MiB | PostgreSQL CPU ms | WAL bytes |\n");
        md.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let secs = |s: Option<f64>, none: &str| {
            s.map(|s| format!("{s:.2}")).unwrap_or_else(|| none.into())
        };
        for r in self.rows.iter().filter(|r| r.latency_ms.is_none()) {
            let not_confirmed = if r.relay.starts_with("pg_recvlogical") {
                "–"
            } else {
                "> 120 after last ack"
            };
            md.push_str(&format!(
                "| {} | {} | {} | {} | {:.2} | {:.0} | {} | {} | {} | {} | {} | {} |\n",
                r.scenario,
                r.relay,
                r.broker,
                r.events,
                r.seconds,
                r.rate(),
                self.ratio(r)
                    .map(|x| format!("{:.0}%", x * 100.0))
                    .unwrap_or_else(|| "–".into()),
                secs(r.first_event_seconds, "–"),
                secs(r.confirmed_seconds, not_confirmed),
                r.peak_rss_kib
                    .map(|k| format!("{:.1}", k as f64 / 1024.0))
                    .unwrap_or_else(|| "–".into()),
                r.pg_cpu_ms
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "–".into()),
                r.wal_bytes
                    .map(|w| w.to_string())
                    .unwrap_or_else(|| "–".into()),
            ));
        }
        let live: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.latency_ms.is_some())
            .collect();
        if !live.is_empty() {
            md.push_str("\n| live scenario | relay | broker | p50 ms | p99 ms | max ms |\n|---|---|---|---:|---:|---:|\n");
            for r in live {
                let [p50, p99, max] = r.latency_ms.unwrap_or_default();
                md.push_str(&format!(
                    "| {} | {} | {} | {p50:.1} | {p99:.1} | {max:.1} |\n",
                    r.scenario, r.relay, r.broker
                ));
            }
        }
        if !self.behaviour.is_empty() {
            md.push_str("\n| behaviour | relay | broker | duplicates after clean restart | duplicates after SIGKILL | slot lag, unpublished writes only |\n|---|---|---|---:|---:|---|\n");
            for b in &self.behaviour {
                md.push_str(&format!(
                    "| restart, kill, idle | {} | {} | {} of {} events | {} of {} events (killed with {} in the broker) | {} B WAL written; lag {} B at the end, {} B {} s later{} |\n",
                    b.relay,
                    b.broker,
                    b.restart_duplicates,
                    b.restart_events,
                    b.kill_duplicates,
                    b.kill_events,
                    b.kill_after,
                    b.idle_wal_bytes,
                    b.idle_lag_at_end,
                    b.idle_lag_after_wait,
                    b.idle_wait_seconds,
                    b.idle_caught_up_seconds
                        .map(|s| format!(" (caught up after {s:.2} s)"))
                        .unwrap_or_default(),
                ));
            }
        }
        md
    }

    /// `results.json` and `results.md` in `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_string_pretty(self)?,
        )?;
        std::fs::write(dir.join("results.md"), self.markdown())?;
        Ok(())
    }
}
