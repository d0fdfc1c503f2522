//! Results: a run's rows with the machine and sizes they were measured on, and the issue's
//! targets checked against them; written as JSON, as markdown tables and as plots.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::rows::{BehaviourRow, Row};
use crate::{BenchOptions, Sizes};

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub smoke: bool,
    pub broker: crate::BrokerKind,
    pub machine: Machine,
    pub sizes: Sizes,
    pub rows: Vec<Row>,
    pub behaviour: Vec<BehaviourRow>,
    pub targets: Vec<TargetCheck>,
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
            targets: Vec::new(),
        }
    }

    /// The throughput rows relative to `pg_recvlogical` on the same scenario.
    fn ratio(&self, row: &Row) -> Option<f64> {
        let base = self
            .rows
            .iter()
            .find(|r| r.scenario == row.scenario && r.relay.starts_with("pg_recvlogical"))?;
        // Rates, so a poller stopped after a window compares by what it did in it.
        (base.rate() > 0.0).then(|| row.rate() / base.rate())
    }

    /// The targets, checked against this run's rows.
    pub fn check_targets(&self) -> Vec<TargetCheck> {
        let mock = self.broker == crate::BrokerKind::Mock;
        let tailer = |scenario: &dyn Fn(&str) -> bool| {
            self.rows
                .iter()
                .find(|r| r.relay == "outbox-tailer" && scenario(&r.scenario))
        };
        let mut checks = Vec::new();
        for (prefix, what) in [
            ("backlog: ", "100-event transactions"),
            ("backlog: ", "single-event transactions"),
        ] {
            let row = tailer(&|s: &str| s.starts_with(prefix) && s.contains(what));
            let ratio = row.and_then(|r| self.ratio(r));
            checks.push(TargetCheck {
                target: format!(
                    "backlog drain ({what}) >= 90% of pg_recvlogical's rate, mock cluster"
                ),
                measured: ratio.map(|x| format!("{:.0}%", x * 100.0)),
                met: ratio.filter(|_| mock).map(|x| x >= 0.9),
            });
        }
        for what in ["single-event transactions", "10-event transactions"] {
            let live = tailer(&|s: &str| s.starts_with("live: 10000 events/s") && s.contains(what));
            let p99 = live.and_then(|r| r.latency_ms.map(|l| l[1]));
            checks.push(TargetCheck {
                target: format!(
                    "live p99 commit-to-consume <= 10 ms at 10,000 events/s ({what}), mock cluster"
                ),
                measured: p99.map(|p| format!("{p:.1} ms")),
                met: p99
                    .filter(|_| mock && live.is_some_and(|r| r.published.is_none()))
                    .map(|p| p <= 10.0),
            });
        }
        let huge = tailer(&|s: &str| s.starts_with("one transaction"));
        let rss = huge.and_then(|r| r.peak_rss_kib);
        checks.push(TargetCheck {
            target: "one huge transaction: tailer peak RSS <= 64 MiB".into(),
            measured: rss.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)),
            met: rss.map(|k| k <= 64 * 1024),
        });
        checks
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
        md.push_str("| scenario | relay | broker | events | seconds to last ack | events/s | vs pg_recvlogical | first event s | confirmed s | peak RSS MiB | PostgreSQL CPU ms | relay CPU ms | harness (broker, watcher) CPU ms | WAL bytes | rows updated | dead tuples after | autovacuums | VACUUM after, ms |\n");
        md.push_str(
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let secs = |s: Option<f64>, none: &str| {
            s.map(|s| format!("{s:.2}")).unwrap_or_else(|| none.into())
        };
        let opt = |v: Option<String>| v.unwrap_or_else(|| "–".into());
        for r in self.rows.iter().filter(|r| !r.is_live()) {
            let not_confirmed = if r.relay.starts_with("pg_recvlogical") || r.published.is_some() {
                "–"
            } else if r.relay.starts_with("polling") {
                "no slot"
            } else if r.relay.starts_with("Debezium") && r.scenario.starts_with("one transaction") {
                // It confirms a transaction only once it sees the next one.
                "never (one transaction behind)"
            } else {
                "> 120 after last ack"
            };
            let last_ack = match (r.published, r.extrapolated_seconds()) {
                (Some(n), Some(x)) => format!(
                    "not drained: {n} in a {:.0} s window; all: ~{x:.0} (extrapolated)",
                    r.seconds
                ),
                _ => format!("{:.2}", r.seconds),
            };
            let rate = if r.published.is_some() {
                format!("{:.1}", r.rate())
            } else {
                format!("{:.0}", r.rate())
            };
            md.push_str(&format!(
                "| {} | {} | {} | {} | {last_ack} | {rate} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.scenario,
                r.relay,
                r.broker,
                r.events,
                opt(self.ratio(r).map(|x| format!("{:.0}%", x * 100.0))),
                secs(r.first_event_seconds, "–"),
                secs(r.confirmed_seconds, not_confirmed),
                opt(r.peak_rss_kib.map(|k| format!("{:.1}", k as f64 / 1024.0))),
                opt(r.pg_cpu_ms.map(|c| c.to_string())),
                opt(r.relay_cpu_ms.map(|c| c.to_string())),
                opt(r.harness_cpu_ms.map(|c| c.to_string())),
                opt(r.wal_bytes.map(|w| w.to_string())),
                opt(r.obsolete_rows.map(|d| d.to_string())),
                opt(r.dead_tuples.map(|d| d.to_string())),
                opt(r.autovacuums.map(|d| d.to_string())),
                opt(r.vacuum_ms.map(|v| format!("{v:.0}"))),
            ));
        }
        let live: Vec<&Row> = self.rows.iter().filter(|r| r.is_live()).collect();
        if !live.is_empty() {
            md.push_str("\n| live scenario | relay | broker | delivered | p50 ms | p99 ms | p99 ms by third of the run | max ms | CPU while writing: PostgreSQL / relay / harness (writers, consumer, mock cluster), % of one core |\n|---|---|---|---|---:|---:|---:|---:|---|\n");
            for r in live {
                let [p50, p99, max] = r.latency_ms.unwrap_or_default();
                let thirds = opt(r.p99_by_third_ms.map(|t| t.map(third_ms).join(" / ")));
                let delivered = match r.published {
                    Some(n) => format!(
                        "{n} of {}: fell behind (latency of those delivered)",
                        r.events
                    ),
                    None => format!("all {}", r.events),
                };
                let pct = |ms: Option<u64>| {
                    opt(ms.map(|ms| format!("{:.0}", ms as f64 / 10.0 / r.seconds.max(1e-9))))
                };
                md.push_str(&format!(
                    "| {} | {} | {} | {delivered} | {p50:.1} | {p99:.1} | {thirds} | {max:.1} | {} / {} / {} |\n",
                    r.scenario,
                    r.relay,
                    r.broker,
                    pct(r.pg_cpu_ms),
                    pct(r.relay_cpu_ms),
                    pct(r.harness_cpu_ms),
                ));
            }
        }
        if !self.behaviour.is_empty() {
            md.push_str("\n| behaviour | relay | broker | duplicates after clean restart | duplicates after SIGKILL | slot lag, unpublished writes only | started on an invalidated slot |\n|---|---|---|---:|---:|---|---|\n");
            for b in &self.behaviour {
                md.push_str(&format!(
                    "| restart, kill, idle | {} | {} | {} of {} events | {} of {} events (killed with {} in the broker) | {} | {} |\n",
                    b.relay,
                    b.broker,
                    b.restart_duplicates,
                    b.restart_events,
                    b.kill_duplicates,
                    b.kill_events,
                    b.kill_after,
                    b.idle
                        .as_ref()
                        .map(|i| i.describe())
                        .unwrap_or_else(|| "no slot".into()),
                    b.slot_lost
                        .as_ref()
                        .map(|l| l.describe())
                        .unwrap_or_else(|| "no slot".into()),
                ));
            }
        }
        md.push_str("\n| target | measured | met |\n|---|---:|---|\n");
        for t in self.check_targets() {
            md.push_str(&format!(
                "| {} | {} | {} |\n",
                t.target,
                t.measured.as_deref().unwrap_or("not measured"),
                t.verdict()
            ));
        }
        md
    }

    pub fn broker_label(&self) -> &'static str {
        match self.broker {
            crate::BrokerKind::Mock => "librdkafka mock cluster",
            crate::BrokerKind::Tansu => "tansu",
        }
    }

    /// The file names of this run's results: `results-<broker>[-smoke]`.
    pub fn stem(&self) -> String {
        let broker = match self.broker {
            crate::BrokerKind::Mock => "mock",
            crate::BrokerKind::Tansu => "tansu",
        };
        format!("{broker}{}", if self.smoke { "-smoke" } else { "" })
    }

    /// `results-<stem>.json`, `results-<stem>.md` and the plots in `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let stem = self.stem();
        std::fs::write(
            dir.join(format!("results-{stem}.json")),
            serde_json::to_string_pretty(self)?,
        )?;
        std::fs::write(dir.join(format!("results-{stem}.md")), self.markdown())?;
        crate::plots::write(&self.rows, &stem, self.broker_label(), dir)?;
        Ok(())
    }
}

/// One of the targets and this run's verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetCheck {
    pub target: String,
    pub measured: Option<String>,
    /// `None`: not applicable to this run (another broker, a relay that fell behind).
    pub met: Option<bool>,
}

impl TargetCheck {
    pub fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "yes",
            Some(false) => "MISSED",
            None => "n/a in this run",
        }
    }

    pub fn one_line(&self) -> String {
        format!(
            "target | {}: {} ({})",
            self.target,
            self.measured.as_deref().unwrap_or("not measured"),
            self.verdict()
        )
    }
}

/// A third of a live run's p99 in ms; 0 when none of its events arrived (a relay that fell
/// behind), shown as "–".
fn third_ms(p99: f64) -> String {
    if p99 > 0.0 {
        format!("{p99:.1}")
    } else {
        "–".into()
    }
}
