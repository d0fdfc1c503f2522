//! The benchmark harness: starts its own PostgreSQL and broker through the testkit, writes the
//! same workloads for every relay, and measures them side by side in one run.
//!
//! Relays measured so far: the tailer (its own process, so its memory is its own) and
//! `pg_recvlogical` draining to /dev/null (the walsender's own limit on this machine). The
//! polling relay joins when `outbox-tailer poll` exists.
//!
//! Scenarios: backlog drain (events in 100-event transactions, and single-event transactions,
//! written while the relay is stopped), live latency at fixed rates (commit to consume), and one
//! huge transaction (time and peak RSS).

pub mod measure;
pub mod relay;
pub mod report;
pub mod scenario;
pub mod workload;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

pub use report::Report;

/// Measures the tailer against the walsender's own limit, on this machine.
#[derive(Debug, Clone, Parser)]
#[command(name = "outbox-bench", version)]
pub struct BenchOptions {
    /// Tiny sizes (seconds, not minutes): proves the harness works, numbers mean nothing.
    #[arg(long)]
    pub smoke: bool,

    /// Broker for the relays' output.
    #[arg(long, value_enum, default_value_t = BrokerKind::Mock)]
    pub broker: BrokerKind,

    /// Scenarios to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<ScenarioKind>,

    /// Directory for results.json and results.md (e.g. docs/bench).
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// The tailer binary [default: outbox-bench-tailer next to this executable].
    #[arg(long)]
    pub tailer_bin: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
pub enum BrokerKind {
    /// librdkafka's in-process mock cluster: isolates the relay's own speed.
    Mock,
    /// tansu, a real Kafka-protocol broker.
    Tansu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
pub enum ScenarioKind {
    BacklogBatched,
    BacklogSingle,
    Live,
    Huge,
}

/// Workload sizes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub batched_events: u64,
    pub batch: u64,
    pub single_txns: u64,
    pub live_rates: Vec<u64>,
    pub live_seconds: u64,
    pub huge_events: u64,
}

impl Sizes {
    pub fn for_options(options: &BenchOptions) -> Sizes {
        if options.smoke {
            Sizes {
                batched_events: 2_000,
                batch: 100,
                single_txns: 300,
                live_rates: vec![200],
                live_seconds: 2,
                huge_events: 5_000,
            }
        } else {
            Sizes {
                batched_events: 1_000_000,
                batch: 100,
                single_txns: 200_000,
                live_rates: vec![1_000, 10_000],
                live_seconds: 30,
                huge_events: 1_000_000,
            }
        }
    }
}

/// Run every requested scenario and collect the results.
pub async fn run(options: &BenchOptions) -> anyhow::Result<Report> {
    let sizes = Sizes::for_options(options);
    let tailer_bin = match &options.tailer_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("outbox-bench-tailer"))
            .ok_or_else(|| anyhow::anyhow!("cannot locate outbox-bench-tailer"))?,
    };
    anyhow::ensure!(
        tailer_bin.is_file(),
        "{} is missing: build it with `cargo build --release -p outbox-bench` (scripts/bench does)",
        tailer_bin.display()
    );
    let all = [
        ScenarioKind::BacklogBatched,
        ScenarioKind::BacklogSingle,
        ScenarioKind::Live,
        ScenarioKind::Huge,
    ];
    let scenarios: Vec<ScenarioKind> = if options.scenarios.is_empty() {
        all.to_vec()
    } else {
        options.scenarios.clone()
    };
    let mut report = Report::new(options, &sizes);
    for kind in scenarios {
        let env = scenario::Env::start(options.broker, &tailer_bin).await?;
        let rows = match kind {
            ScenarioKind::BacklogBatched => {
                scenario::backlog(
                    &env,
                    workload::Backlog::Batched {
                        events: sizes.batched_events,
                        batch: sizes.batch,
                    },
                )
                .await?
            }
            ScenarioKind::BacklogSingle => {
                scenario::backlog(
                    &env,
                    workload::Backlog::Single {
                        txns: sizes.single_txns,
                    },
                )
                .await?
            }
            ScenarioKind::Live => {
                let mut rows = Vec::new();
                for rate in &sizes.live_rates {
                    rows.push(scenario::live(&env, *rate, sizes.live_seconds).await?);
                }
                rows
            }
            ScenarioKind::Huge => scenario::huge(&env, sizes.huge_events).await?,
        };
        for row in &rows {
            eprintln!("{}", row.one_line());
        }
        report.rows.extend(rows);
    }
    Ok(report)
}
