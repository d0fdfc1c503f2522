//! The relays under test, one module each, and what they have in common: each runs as its own
//! process (so its memory is its own), reads its own slot, and is stopped cleanly (SIGTERM) or
//! killed (SIGKILL) by the scenarios.

pub mod debezium;
pub mod poll;
pub mod recvlogical;
pub mod tailer;

use std::process::{Child, Command};

use clap::ValueEnum;

/// A relay that publishes to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, serde::Serialize)]
pub enum RelayKind {
    /// outbox-tailer.
    Tailer,
    /// outbox-tailer with `--exactly-once` (Kafka transactions; the mock cluster only: tansu
    /// has no transactions).
    TailerExactlyOnce,
    /// outbox-tailer with idempotent resume off (`--resume-scan-records 0`): what resume costs.
    TailerNoResume,
    /// Debezium 3.6.3 (embedded engine, Outbox Event Router, KafkaProducer), its defaults.
    Debezium,
    /// Debezium with the one tuned setting (see `debezium::TUNED`).
    DebeziumTuned,
    /// Diagnosis, drains only: Debezium's engine and Outbox Event Router with nothing sent to
    /// Kafka (the runner's `bench.sink=none`), timed by the runner's own count. Not a relay.
    DebeziumEngine,
    /// `outbox-tailer poll` with the classic defaults: every 2 s, 10 rows.
    PollClassic,
    /// `outbox-tailer poll` with the tuned setting (see `poll::Tuned`).
    PollTuned,
}

impl RelayKind {
    /// The name in the results.
    pub fn label(self) -> String {
        match self {
            RelayKind::Tailer => "outbox-tailer".into(),
            RelayKind::TailerExactlyOnce => "outbox-tailer --exactly-once".into(),
            RelayKind::TailerNoResume => "outbox-tailer, resume off".into(),
            RelayKind::Debezium => "Debezium 3.6.3 (defaults)".into(),
            RelayKind::DebeziumTuned => format!("Debezium 3.6.3 ({})", debezium::TUNED_LABEL),
            RelayKind::DebeziumEngine => "Debezium 3.6.3 engine alone (no Kafka)".into(),
            RelayKind::PollClassic => "polling classic (2 s, 10 rows)".into(),
            RelayKind::PollTuned => format!("polling tuned ({})", poll::tuned_args()),
        }
    }

    /// Each WAL relay reads its own slot, created with the cluster; pollers read the table.
    pub fn slot(self) -> Option<&'static str> {
        match self {
            RelayKind::Tailer => Some("bench_tailer"),
            RelayKind::TailerExactlyOnce => Some("bench_tailer_eos"),
            RelayKind::TailerNoResume => Some("bench_tailer_noresume"),
            RelayKind::Debezium => Some("bench_debezium"),
            RelayKind::DebeziumTuned => Some("bench_debezium_tuned"),
            RelayKind::DebeziumEngine => Some("bench_debezium_engine"),
            RelayKind::PollClassic | RelayKind::PollTuned => None,
        }
    }

    pub fn is_debezium(self) -> bool {
        matches!(
            self,
            RelayKind::Debezium | RelayKind::DebeziumTuned | RelayKind::DebeziumEngine
        )
    }

    /// Whether the relay publishes to the broker (every one but the engine-alone diagnosis).
    pub fn publishes(self) -> bool {
        self != RelayKind::DebeziumEngine
    }

    /// The tailer's extra flags in this variant.
    pub fn tailer_flags(self) -> &'static [&'static str] {
        match self {
            RelayKind::TailerExactlyOnce => &["--exactly-once"],
            RelayKind::TailerNoResume => &["--resume-scan-records", "0"],
            _ => &[],
        }
    }

    pub fn is_polling(self) -> bool {
        matches!(self, RelayKind::PollClassic | RelayKind::PollTuned)
    }
}

/// A running relay process.
#[derive(Debug)]
pub struct Running {
    child: Child,
    /// Debezium's runner reports acknowledged batches on stdout.
    pub acks: Option<debezium::AckLog>,
}

impl Running {
    /// Start `cmd` as a relay that reports nothing on stdout.
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Running> {
        let child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {:?}: {e}", cmd.get_program()))?;
        Ok(Running { child, acks: None })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still alive (not exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The exit status once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM and wait: each relay's clean shutdown (the tailer drains acks and confirms;
    /// Debezium's engine commits its offsets).
    pub fn stop(mut self) -> anyhow::Result<()> {
        signal(self.child.id(), "TERM");
        let status = self.child.wait()?;
        anyhow::ensure!(
            status.success() || status.code().is_none() || status.code() == Some(143),
            "relay exited with {status} after SIGTERM"
        );
        Ok(())
    }

    /// SIGKILL and reap: a crash.
    pub fn kill(mut self) -> anyhow::Result<()> {
        signal(self.child.id(), "KILL");
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}
