//! outbox-tailer, as its own process.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

use super::Running;
use crate::BrokerKind;

pub fn start(
    bin: &Path,
    conn_str: &str,
    bootstrap: &str,
    slot: &str,
    broker: BrokerKind,
    flags: &[&str],
) -> anyhow::Result<Running> {
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--postgres", conn_str, "--brokers", bootstrap])
        .args(["--slot", slot, "--publication", "bench_pub"])
        .args(["--status-interval-ms", "100"])
        .args(flags)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if broker == BrokerKind::Tansu {
        cmd.arg("--create-topics");
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Running { child, acks: None })
}
