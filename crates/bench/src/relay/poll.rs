//! `outbox-tailer poll`, the polling relay, as its own process: the classic defaults, and the
//! tuned setting.
//!
//! The tuned setting was picked by measuring a few on the backlog workloads (see
//! docs/polling-vs-tailing.md): drain full batches back to back, 500 rows a round, and poll
//! every 100 ms when idle. `OUTBOX_BENCH_POLL_TUNED` replaces its arguments (e.g.
//! `--drain --batch 1000 --interval-ms 50`) to measure another one.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

use super::{RelayKind, Running};
use crate::BrokerKind;

/// The classic example's settings are `outbox-tailer poll`'s defaults.
const CLASSIC: &[&str] = &[];
const TUNED: &str = "--drain --batch 500 --interval-ms 100";

/// The tuned setting's arguments.
pub fn tuned_args() -> String {
    std::env::var("OUTBOX_BENCH_POLL_TUNED").unwrap_or_else(|_| TUNED.to_owned())
}

pub fn start(
    bin: &Path,
    kind: RelayKind,
    conn_str: &str,
    bootstrap: &str,
    broker: BrokerKind,
) -> anyhow::Result<Running> {
    let tuned = tuned_args();
    let settings: Vec<&str> = match kind {
        RelayKind::PollTuned => tuned.split_whitespace().collect(),
        _ => CLASSIC.to_vec(),
    };
    let mut cmd = Command::new(bin);
    cmd.args(["poll", "--postgres", conn_str, "--brokers", bootstrap])
        .args(settings)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if broker == BrokerKind::Tansu {
        cmd.arg("--create-topics");
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {} poll", bin.display()))?;
    Ok(Running { child, acks: None })
}
