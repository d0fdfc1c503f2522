//! The chaos controller: at random moments (seeded), SIGKILL and restart the tailer process,
//! stop and restart the broker, restart PostgreSQL (fast or immediate).
//!
//! The random delays between faults are the workload, not synchronisation: nothing waits on a
//! timer for something to have happened.

use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outbox_testkit::StopMode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::Env;

/// The tailer binary as a process; every incarnation appends to one log file.
#[derive(Debug)]
pub struct ChaosTailer {
    child: Option<Child>,
    args: Vec<String>,
    pub log: PathBuf,
    /// Exits the tailer took on its own (it should only ever be killed).
    pub unexpected_exits: Vec<String>,
}

impl ChaosTailer {
    pub fn start(env: &Env) -> anyhow::Result<ChaosTailer> {
        let mut tailer = ChaosTailer {
            child: None,
            // Produce-time timestamps: the verdict tells a relay's re-send (a new CreateTime)
            // from the producer's own retry (the same one); commit-time timestamps, the
            // default, are the same on every copy.
            args: env.run_args(&["--record-timestamp", "produce"]),
            log: env.pg.socket_dir().join("chaos-tailer.log"),
            unexpected_exits: Vec::new(),
        };
        tailer.spawn()?;
        Ok(tailer)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_outbox-tailer-under-test"))
            .args(&self.args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Note an exit the tailer took by itself since the last look.
    pub fn check(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                self.unexpected_exits.push(status.to_string());
                self.child = None;
            }
        }
        Ok(())
    }

    /// SIGKILL: no chance to finish a transaction, flush the producer or confirm.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.check()?;
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn()
    }

    /// Make sure a tailer runs (after an unexpected exit, start one for the final drain).
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.check()?;
        if self.child.is_none() {
            self.spawn()?;
        }
        Ok(())
    }

    /// The last `lines` lines of every incarnation's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ChaosTailer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// How many faults of each kind were injected.
#[derive(Debug, Default, Clone)]
pub struct FaultCounts {
    pub tailer_kills: u32,
    pub broker_restarts: u32,
    pub pg_fast_restarts: u32,
    pub pg_immediate_restarts: u32,
}

impl FaultCounts {
    pub fn total(&self) -> u32 {
        self.tailer_kills
            + self.broker_restarts
            + self.pg_fast_restarts
            + self.pg_immediate_restarts
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} faults: {} tailer SIGKILLs, {} broker restarts, {} PostgreSQL fast restarts, \
             {} PostgreSQL immediate restarts",
            self.total(),
            self.tailer_kills,
            self.broker_restarts,
            self.pg_fast_restarts,
            self.pg_immediate_restarts
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillTailer,
    RestartBroker,
    RestartPg(StopMode),
}

/// Injects faults until `duration` has passed and at least `min_kills` tailer SIGKILLs were
/// made. Every fault is undone before the next one: at the end all services run.
#[derive(Debug)]
pub struct Controller {
    rng: StdRng,
    pub counts: FaultCounts,
    /// One line per fault, with its time since the start, for failure reports.
    pub timeline: Vec<String>,
}

impl Controller {
    pub fn new(seed: u64) -> Controller {
        Controller {
            rng: StdRng::seed_from_u64(seed),
            counts: FaultCounts::default(),
            timeline: Vec::new(),
        }
    }

    pub async fn run(
        &mut self,
        env: &mut Env,
        tailer: &mut ChaosTailer,
        duration: Duration,
        min_kills: u32,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < duration || self.counts.tailer_kills < min_kills {
            let pause = Duration::from_millis(self.rng.random_range(200..2_500));
            tokio::time::sleep(pause).await;
            tailer.check()?;
            let fault = if start.elapsed() >= duration {
                Fault::KillTailer
            } else {
                self.pick()
            };
            self.timeline
                .push(format!("{:>8.1}s {fault:?}", start.elapsed().as_secs_f64()));
            self.inject(fault, env, tailer).await?;
        }
        Ok(())
    }

    fn pick(&mut self) -> Fault {
        match self.rng.random_range(0..100) {
            0..60 => Fault::KillTailer,
            60..76 => Fault::RestartBroker,
            76..88 => Fault::RestartPg(StopMode::Fast),
            _ => Fault::RestartPg(StopMode::Immediate),
        }
    }

    async fn inject(
        &mut self,
        fault: Fault,
        env: &mut Env,
        tailer: &mut ChaosTailer,
    ) -> anyhow::Result<()> {
        // How long the fault lasts before it is undone.
        let outage = Duration::from_millis(self.rng.random_range(0..1_500));
        match fault {
            Fault::KillTailer => {
                tailer.kill()?;
                tokio::time::sleep(outage / 3).await;
                tailer.restart()?;
                self.counts.tailer_kills += 1;
            }
            Fault::RestartBroker => {
                env.broker.stop();
                tokio::time::sleep(outage).await;
                tokio::task::block_in_place(|| env.broker.start_again())?;
                self.counts.broker_restarts += 1;
            }
            Fault::RestartPg(mode) => {
                tokio::task::block_in_place(|| env.pg.stop(mode))?;
                tokio::time::sleep(outage).await;
                tokio::task::block_in_place(|| env.pg.start_again())?;
                match mode {
                    StopMode::Immediate => self.counts.pg_immediate_restarts += 1,
                    _ => self.counts.pg_fast_restarts += 1,
                }
            }
        }
        Ok(())
    }
}
