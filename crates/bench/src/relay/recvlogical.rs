//! `pg_recvlogical` draining to /dev/null: the walsender's own limit on this machine.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

pub const SLOT: &str = "bench_recv";
pub const LABEL: &str = "pg_recvlogical (to /dev/null)";

/// From the slot's position to `end`, with `program` (a `pg_recvlogical`); returns how long it
/// took.
pub fn drain(program: &Path, port: u16, db: &str, end: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = Command::new(program)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", db, "--slot", SLOT, "--start", "--no-loop"])
        .args(["-E", end, "-f", "/dev/null"])
        .args(["-o", "proto_version=1", "-o", "publication_names=bench_pub"])
        .stdin(Stdio::null())
        .status()
        .context("running pg_recvlogical")?;
    anyhow::ensure!(status.success(), "pg_recvlogical failed: {status}");
    Ok(started.elapsed())
}
