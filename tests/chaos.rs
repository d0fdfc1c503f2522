//! Chaos: writers commit continuously (some transactions rolled back on purpose) while a seeded
//! controller SIGKILLs and restarts the tailer process, restarts the broker (tansu, SQLite
//! storage) and restarts PostgreSQL (fast and immediate). Then every topic is read from the
//! beginning and judged against the database: nothing lost, nothing from rolled-back
//! transactions, per-aggregate commit order once duplicates are removed.
//!
//! `OUTBOX_CHAOS_SEED=<n>` replays a run's fault schedule and workload choices (the timing of
//! processes still varies); `OUTBOX_CHAOS_SECS=<n>` sets how long faults are injected (default
//! 100); `OUTBOX_CHAOS_PACE_MS=<n>` how often each writer commits (default 150). A soak is the
//! same test with a long duration and a slower pace, see docs/reliability.md.

#[path = "chaos/faults.rs"]
mod faults;
mod support;
#[path = "chaos/verify.rs"]
mod verify;
#[path = "chaos/workload.rs"]
mod workload;

use std::time::{Duration, Instant};

use faults::{ChaosTailer, Controller};
use outbox_testkit::{PgConfig, TansuStorage};
use pgoutput::Lsn;
use support::*;
use workload::Workload;

const DEFAULT_SECS: u64 = 100;
/// Each writer commits one transaction per this many milliseconds: continuous load that leaves
/// the two cores to the services under test, and a run of about two minutes.
const DEFAULT_PACE_MS: u64 = 150;
/// The issue asks for at least this many SIGKILLs of the tailer per run.
const MIN_KILLS: u32 = 20;

fn setting(name: &str) -> anyhow::Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v.trim().parse().map_err(|e| {
            anyhow::anyhow!("{name}={v:?} is not a non-negative integer: {e}")
        })?)),
        Err(_) => Ok(None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_under_chaos() -> anyhow::Result<()> {
    let seed = match setting("OUTBOX_CHAOS_SEED")? {
        Some(seed) => seed,
        None => rand::random(),
    };
    let secs = setting("OUTBOX_CHAOS_SECS")?.unwrap_or(DEFAULT_SECS);
    let pace_ms = setting("OUTBOX_CHAOS_PACE_MS")?.unwrap_or(DEFAULT_PACE_MS);
    eprintln!(
        "chaos: seed {seed} (replay with OUTBOX_CHAOS_SEED={seed}), {secs} s of faults, \
         each writer commits every {pace_ms} ms"
    );
    let started = Instant::now();

    let mut env = env_with(PgConfig::default(), TansuStorage::Sqlite).await?;
    env.setup().await?;
    let mut tailer = ChaosTailer::start(&env)?;
    let workload = Workload::start(&env.db, seed, Duration::from_millis(pace_ms));
    let mut controller = Controller::new(seed);
    let chaos = controller
        .run(&mut env, &mut tailer, Duration::from_secs(secs), MIN_KILLS)
        .await;
    let written = workload.finish().await;
    let fail = |what: String, tailer: &ChaosTailer, controller: &Controller| {
        let server_log = env.pg.server_log();
        let server_log: Vec<&str> = server_log.lines().collect();
        anyhow::anyhow!(
            "{what}\nseed {seed} (replay with OUTBOX_CHAOS_SEED={seed})\nfaults:\n{}\n\
             tailer log (last 60 lines):\n{}\nPostgreSQL log (last 20 lines):\n{}",
            controller.timeline.join("\n"),
            tailer.log_tail(60),
            server_log[server_log.len().saturating_sub(20)..].join("\n")
        )
    };
    chaos.map_err(|e| fail(format!("injecting faults: {e:#}"), &tailer, &controller))?;
    let written = written.map_err(|e| fail(format!("writers: {e:#}"), &tailer, &controller))?;
    let chaos_secs = started.elapsed().as_secs_f64();

    // Drain: everything committed gets confirmed by the tailer that runs now.
    tailer.ensure_running()?;
    let client = env.db.connect().await?;
    let end: Lsn = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get::<_, String>(0)
        .parse()?;
    let confirmed = wait_until(
        Duration::from_secs(180),
        "the slot to confirm everything written",
        || async {
            let row = client
                .query_one(
                    "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                    &[&SLOT],
                )
                .await?;
            Ok(row.get::<_, String>(0).parse::<Lsn>()? >= end)
        },
    )
    .await;
    confirmed.map_err(|e| fail(format!("{e:#}"), &tailer, &controller))?;

    // Everything is acked and confirmed: from now on the broker serves only the verifier.
    tailer.kill()?;
    let committed = verify::committed_events(&client).await?;
    verify::check_workload(&committed)?;
    let bootstrap = env.broker.bootstrap_servers();
    let verdict = verify::verify(&bootstrap, &committed, &written.rolled_back)
        .await
        .map_err(|e| fail(format!("reading the topics: {e:#}"), &tailer, &controller))?;
    let summary = format!(
        "chaos summary: seed {seed}; {:.0} s of faults, {:.0} s in all; {}; \
         {} committed transactions ({} events), {} rolled back on purpose ({} events), \
         {} cut by a fault; {} records read, {} duplicates ({:.2}%: {} sent again by the relay, \
         {} retried by the producer); tailer exits on its own: {}",
        chaos_secs,
        started.elapsed().as_secs_f64(),
        controller.counts,
        written.committed_txns,
        verdict.committed,
        written.rolled_back_txns,
        written.rolled_back.len(),
        written.interrupted_txns,
        verdict.records,
        verdict.duplicates,
        100.0 * verdict.duplicates as f64 / verdict.committed.max(1) as f64,
        verdict.republished(),
        verdict.producer_retries,
        tailer.unexpected_exits.len()
    );
    eprintln!("{summary}");
    if !verdict.passed() {
        return Err(fail(verdict.problems(), &tailer, &controller));
    }
    if !tailer.unexpected_exits.is_empty() {
        return Err(fail(
            format!(
                "the tailer exited on its own during transient faults: {:?}",
                tailer.unexpected_exits
            ),
            &tailer,
            &controller,
        ));
    }
    // Idempotent resume: tailer kills and PostgreSQL restarts make the relay send nothing twice;
    // only the producer's own retries after a broker restart may remain (counted above).
    if verdict.republished() > 0 {
        return Err(fail(
            format!(
                "{} records were sent again by the relay (a new CreateTime): idempotent resume \
                 should have skipped them",
                verdict.republished()
            ),
            &tailer,
            &controller,
        ));
    }
    assert!(controller.counts.tailer_kills >= MIN_KILLS);
    assert!(
        verdict.committed > 0 && written.rolled_back_txns > 0,
        "the workload wrote nothing to judge"
    );
    Ok(())
}
