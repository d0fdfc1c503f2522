//! The benchmark harness: starts its own PostgreSQL and broker through the testkit, writes the
//! same workloads for every relay, and measures them side by side in one run.
//!
//! Relays, each its own process (so its memory is its own): the tailer, the polling relay
//! (`outbox-tailer poll`) with the classic defaults and with a tuned setting, Debezium 3.6.3
//! (embedded engine with the Outbox Event Router and a KafkaProducer; installed by the
//! harness, see `relay::debezium`) with its defaults and with one tuned setting, and
//! `pg_recvlogical` draining to /dev/null (the walsender's own limit on this machine). For
//! diagnosis, `--relays debezium-engine` drains with Debezium's engine alone (nothing sent).
//!
//! Scenarios: backlog drain (events in 100-event transactions, and single-event transactions,
//! written while the relays are stopped; time to first event, to last event acked, to the slot
//! confirmed), live latency at fixed rates (commit to consume), one huge transaction (time and
//! peak RSS), and behaviour (duplicates after a clean restart and after SIGKILL, slot lag while
//! only unpublished tables are written).

pub mod behaviour;
pub mod kafka;
pub mod measure;
pub mod plots;
pub mod relay;
pub mod report;
pub mod rows;
pub mod scenario;
pub mod workload;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

pub use relay::RelayKind;
pub use report::Report;
pub use workload::LiveRate;

/// outbox-tailer, Debezium, polling and `pg_recvlogical` (the walsender's own limit) side by side, on
/// this machine, on the same data.
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

    /// Relays to measure besides pg_recvlogical
    /// [default: tailer,poll-classic,poll-tuned,debezium,debezium-tuned]. The Debezium relays
    /// need a JDK 17 and a one-time download from PyPI, which the harness does itself (see
    /// `relay::debezium`); leave them out with `--relays tailer,poll-classic,poll-tuned`.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub relays: Vec<RelayKind>,

    /// Scenarios in which Debezium runs (default: all requested ones).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub debezium_scenarios: Vec<ScenarioKind>,

    /// Write results-*.md and the plots again from an earlier run's results JSON, and stop.
    #[arg(long)]
    pub render: Option<PathBuf>,

    /// Project-local directory for installed tools (Debezium's jars, the compiled runner)
    /// [default: .bench/tools in the workspace, or $OUTBOX_BENCH_TOOLS].
    #[arg(long)]
    pub tools_dir: Option<PathBuf>,

    /// Live rates in events/s, each optionally with events per transaction (`10000x10`),
    /// instead of the defaults (1000,10000,10000x10; smoke: 200,200x10).
    #[arg(long, value_delimiter = ',')]
    pub live_rates: Vec<LiveRate>,

    /// Seconds of writes per live rate, instead of the default (30; smoke: 2).
    #[arg(long)]
    pub live_seconds: Option<u64>,

    /// Partitions of the live topic. librdkafka's mock cluster finds a fetch's offset by
    /// walking the partition's batches from the oldest, so its cost of serving the measuring
    /// consumer grows with the batches a run leaves in each partition (see docs/benchmarks.md).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub live_partitions: i32,

    /// tansu's storage: `memory` (the default, fastest) or `sqlite` (durable, as a deployment
    /// would run it; a killed producer's last batch is readable at once there).
    #[arg(long, value_enum, default_value_t = TansuStore::Memory)]
    pub tansu_storage: TansuStore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TansuStore {
    Memory,
    Sqlite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum BrokerKind {
    /// librdkafka's in-process mock cluster: isolates the relay's own speed.
    Mock,
    /// tansu, a real Kafka-protocol broker.
    Tansu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum ScenarioKind {
    BacklogBatched,
    BacklogSingle,
    Live,
    Huge,
    /// Duplicates after a clean restart and after SIGKILL; idle slot lag.
    Behaviour,
}

impl ScenarioKind {
    /// A backlog every relay drains in turn.
    pub fn is_drain(self) -> bool {
        matches!(
            self,
            ScenarioKind::BacklogBatched | ScenarioKind::BacklogSingle | ScenarioKind::Huge
        )
    }
}

/// Workload sizes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Sizes {
    pub batched_events: u64,
    pub batch: u64,
    pub single_txns: u64,
    pub live_rates: Vec<LiveRate>,
    pub live_seconds: u64,
    pub huge_events: u64,
    /// Behaviour: events (100-event transactions) before and after each restart.
    pub restart_events: u64,
    /// Behaviour: seconds of writes to an unpublished table, and seconds of waiting after.
    pub idle_seconds: u64,
    /// Classic polling's drains stop after this many seconds (it publishes 5 events/s).
    pub poll_window_seconds: u64,
    /// Live: seconds after the writes within which every event must have arrived; a relay
    /// still behind then does not keep up with the rate.
    pub live_grace_seconds: u64,
    /// Behaviour: how long a relay started on an invalidated slot may keep running before it
    /// is stopped and reported as still running (Debezium gave up after ~83 s here).
    #[serde(default = "Sizes::slot_lost_wait_before")]
    pub slot_lost_wait_seconds: u64,
}

impl Sizes {
    pub fn for_options(options: &BenchOptions) -> Sizes {
        let mut sizes = Sizes::defaults(options.smoke);
        if !options.live_rates.is_empty() {
            sizes.live_rates = options.live_rates.clone();
        }
        if let Some(seconds) = options.live_seconds {
            sizes.live_seconds = seconds;
        }
        // librdkafka's mock cluster keeps only the last 5 MB (or 100,000 message sets) of each
        // partition and drops older ones, so the behaviour scenario, which reads back every id
        // a relay published, must stay below that there. Debezium's records are uncompressed
        // (~550 bytes each): its SIGKILL step at 20,000 events (up to 30,000 records with the
        // re-sent ones, ~5.5 MB a partition) lost its first records, and the harness waited for
        // them. 10,000 events keep every relay under 3 MB a partition.
        if options.broker == BrokerKind::Mock {
            sizes.restart_events = sizes.restart_events.min(10_000);
        }
        sizes
    }

    /// The wait of results written before the setting existed.
    fn slot_lost_wait_before() -> u64 {
        60
    }

    fn defaults(smoke: bool) -> Sizes {
        if smoke {
            Sizes {
                batched_events: 2_000,
                batch: 100,
                single_txns: 300,
                live_rates: vec![
                    LiveRate::single(200),
                    LiveRate {
                        events_per_sec: 200,
                        per_txn: 10,
                    },
                ],
                live_seconds: 2,
                huge_events: 5_000,
                restart_events: 2_000,
                idle_seconds: 2,
                poll_window_seconds: 3,
                live_grace_seconds: 3,
                slot_lost_wait_seconds: 30,
            }
        } else {
            Sizes {
                batched_events: 1_000_000,
                batch: 100,
                single_txns: 200_000,
                live_rates: vec![
                    LiveRate::single(1_000),
                    LiveRate::single(10_000),
                    LiveRate {
                        events_per_sec: 10_000,
                        per_txn: 10,
                    },
                ],
                live_seconds: 30,
                huge_events: 1_000_000,
                restart_events: 100_000,
                idle_seconds: 10,
                poll_window_seconds: 30,
                live_grace_seconds: 15,
                slot_lost_wait_seconds: 300,
            }
        }
    }
}

/// Run every requested scenario and collect the results.
pub async fn run(options: &BenchOptions) -> anyhow::Result<Report> {
    let mut report = None;
    run_into(options, &mut report).await?;
    report.ok_or_else(|| anyhow::anyhow!("no report"))
}

/// Like `run`, and the results so far are written to `--out` after every scenario, so a run
/// that fails late keeps what it measured.
pub async fn run_into(options: &BenchOptions, out: &mut Option<Report>) -> anyhow::Result<()> {
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
        ScenarioKind::Behaviour,
    ];
    let scenarios: Vec<ScenarioKind> = if options.scenarios.is_empty() {
        all.to_vec()
    } else {
        options.scenarios.clone()
    };
    let relays: Vec<RelayKind> = if options.relays.is_empty() {
        vec![
            RelayKind::Tailer,
            RelayKind::PollClassic,
            RelayKind::PollTuned,
            RelayKind::Debezium,
            RelayKind::DebeziumTuned,
        ]
    } else {
        options.relays.clone()
    };
    // tansu has no Kafka transactions: the tailer refuses --exactly-once there.
    let relays: Vec<RelayKind> = relays
        .into_iter()
        .filter(|r| !(*r == RelayKind::TailerExactlyOnce && options.broker == BrokerKind::Tansu))
        .collect();
    let debezium_in = |kind: ScenarioKind| {
        options.debezium_scenarios.is_empty() || options.debezium_scenarios.contains(&kind)
    };
    let wants_debezium =
        scenarios.iter().any(|k| debezium_in(*k)) && relays.iter().any(|r| r.is_debezium());
    let debezium = if wants_debezium {
        let dir = options
            .tools_dir
            .clone()
            .unwrap_or_else(relay::debezium::default_tools_dir);
        let dir2 = dir.clone();
        let started = std::time::Instant::now();
        let installed =
            tokio::task::spawn_blocking(move || relay::debezium::Debezium::install(&dir2))
                .await??;
        eprintln!(
            "Debezium ready in {} ({:.1} s)",
            dir.display(),
            started.elapsed().as_secs_f64()
        );
        Some(installed)
    } else {
        None
    };
    let mut report = Report::new(options, &sizes);
    for kind in scenarios {
        let tools = scenario::Tools {
            tailer_bin: tailer_bin.clone(),
            debezium: debezium.clone(),
            relays: relays
                .iter()
                .copied()
                .filter(|r| !r.is_debezium() || debezium_in(kind))
                // The engine-alone diagnosis publishes nothing: drains only.
                .filter(|r| r.publishes() || kind.is_drain())
                .collect(),
            poll_window: std::time::Duration::from_secs(sizes.poll_window_seconds),
            live_grace: std::time::Duration::from_secs(sizes.live_grace_seconds),
            live_partitions: options.live_partitions,
        };
        let env = scenario::Env::start(options.broker, options.tansu_storage, &tools).await?;
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
                    rows.extend(scenario::live(&env, *rate, sizes.live_seconds).await?);
                }
                rows
            }
            ScenarioKind::Huge => scenario::huge(&env, sizes.huge_events).await?,
            ScenarioKind::Behaviour => {
                for b in behaviour::run(&env, &sizes).await? {
                    eprintln!("{}", b.one_line());
                    report.behaviour.push(b);
                }
                Vec::new()
            }
        };
        for row in &rows {
            eprintln!("{}", row.one_line());
        }
        report.rows.extend(rows);
        report.targets = report.check_targets();
        if let Some(dir) = &options.out {
            report.write(dir)?;
        }
        *out = Some(report.clone());
    }
    report.targets = report.check_targets();
    for check in &report.targets {
        eprintln!("{}", check.one_line());
    }
    *out = Some(report);
    Ok(())
}
