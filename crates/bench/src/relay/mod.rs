//! Starting and stopping the relays under test.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::BrokerKind;

/// The tailer as its own process.
#[derive(Debug)]
pub struct TailerRelay {
    child: Child,
}

impl TailerRelay {
    pub fn start(
        bin: &Path,
        conn_str: &str,
        bootstrap: &str,
        slot: &str,
        broker: BrokerKind,
    ) -> anyhow::Result<TailerRelay> {
        let mut cmd = Command::new(bin);
        cmd.args(["run", "--postgres", conn_str, "--brokers", bootstrap])
            .args(["--slot", slot, "--publication", "bench_pub"])
            .args(["--status-interval-ms", "100"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if broker == BrokerKind::Tansu {
            cmd.arg("--create-topics");
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(TailerRelay { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait (the tailer finishes its transaction, drains acks, confirms).
    pub fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for TailerRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pg_recvlogical` from the slot's position to `end`, output to /dev/null; returns how long.
pub fn recvlogical(
    pg_bin: &Path,
    port: u16,
    db: &str,
    slot: &str,
    end: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = Command::new(pg_bin.join("pg_recvlogical"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
        ])
        .args([
            "--slot",
            slot,
            "--start",
            "--no-loop",
            "-E",
            end,
            "-f",
            "/dev/null",
        ])
        .args(["-o", "proto_version=1", "-o", "publication_names=bench_pub"])
        .stdin(Stdio::null())
        .status()
        .context("running pg_recvlogical")?;
    anyhow::ensure!(status.success(), "pg_recvlogical failed: {status}");
    Ok(started.elapsed())
}
