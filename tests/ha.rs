//! High availability: a standby tailer on the same slot waits while the active one streams,
//! and takes over when the active one dies (SIGKILL) or is cut off (SIGSTOP: its connection
//! stays open, so the walsender holds the slot until `wal_sender_timeout`).

mod support;

use std::time::{Duration, Instant};

use outbox_testkit::{free_port, PgConfig, TansuStorage};
use support::crash::spawn_raw;
use support::*;

const TOPIC: &str = "outbox.event.order";

async fn write(env: &Env, key: &str, n: usize) -> anyhow::Result<Vec<String>> {
    commit_events(&mut env.db.connect().await?, key, 0, n).await
}

async fn delivered(env: &Env, ids: &[String]) -> anyhow::Result<()> {
    let within = Duration::from_secs(60);
    consume_ids(&env.broker.bootstrap_servers(), TOPIC, ids, within).await?;
    Ok(())
}

/// `/readyz` of a tailer: (status, body).
async fn readyz(addr: &str) -> (u16, String) {
    http_get(addr, "/readyz")
        .await
        .unwrap_or((0, String::new()))
}

/// Start the active tailer, wait until it streams; then the standby, until it stands by.
async fn active_and_standby(env: &Env) -> anyhow::Result<(TailerProcess, TailerProcess, String)> {
    let active = spawn_raw(env, &env.run_args(&[]))?;
    delivered(env, &write(env, "a-0", 3).await?).await?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let standby = spawn_raw(env, &env.run_args(&["--metrics-addr", &addr]))?;
    let probe = addr.clone();
    wait_until(
        Duration::from_secs(30),
        "the second tailer to stand by",
        || {
            let probe = probe.clone();
            async move {
                let (status, body) = readyz(&probe).await;
                Ok(status == 503 && body.contains("standing by"))
            }
        },
    )
    .await?;
    Ok((active, standby, addr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_when_the_active_tailer_is_killed() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let (mut active, mut standby, addr) = active_and_standby(&env).await?;
    // Alive, not ready, and says so in its metrics.
    assert_eq!(http_get(&addr, "/healthz").await?.0, 200);
    assert_eq!(
        sample(&scrape(&addr).await?, "outbox_tailer_standby"),
        Some(1.0)
    );
    // The active one keeps streaming meanwhile.
    delivered(&env, &write(&env, "a-1", 3).await?).await?;

    active.kill();
    let killed = Instant::now();
    let probe = addr.clone();
    wait_until(Duration::from_secs(30), "the standby to take over", || {
        let probe = probe.clone();
        async move { Ok(readyz(&probe).await.0 == 200) }
    })
    .await?;
    let takeover = killed.elapsed();
    eprintln!("takeover after SIGKILL: {} ms", takeover.as_millis());
    assert_eq!(
        sample(&scrape(&addr).await?, "outbox_tailer_standby"),
        Some(0.0)
    );
    delivered(&env, &write(&env, "b-1", 5).await?).await?;
    let log = standby.stderr();
    assert_eq!(log.matches("standing by").count(), 1, "logged once: {log}");
    assert!(log.contains("taking over"), "{log}");
    assert_eq!(standby.terminate()?.code(), Some(0), "{}", standby.stderr());
    Ok(())
}

/// A cut connection (the active process frozen): the walsender keeps the slot until
/// `wal_sender_timeout` (5 s here), then the standby takes over. The frozen process, thawed,
/// finds its stream gone and stands by in turn: it never streams beside the new active one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_tailer_loses_the_slot_after_wal_sender_timeout() -> anyhow::Result<()> {
    let config = PgConfig::default().set("wal_sender_timeout", "5s");
    let env = env_with(config, TansuStorage::Memory).await?;
    env.setup().await?;
    let (mut active, mut standby, addr) = active_and_standby(&env).await?;
    let pid = active.child.id().to_string();
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
    };
    anyhow::ensure!(signal("-STOP")?.success(), "kill -STOP");
    let frozen = Instant::now();
    let probe = addr.clone();
    wait_until(Duration::from_secs(60), "the standby to take over", || {
        let probe = probe.clone();
        async move { Ok(readyz(&probe).await.0 == 200) }
    })
    .await?;
    let takeover = frozen.elapsed();
    eprintln!(
        "takeover after a cut connection (wal_sender_timeout=5s): {} ms",
        takeover.as_millis()
    );
    assert!(
        takeover >= Duration::from_secs(4),
        "the walsender held the slot for its timeout, not less: {takeover:?}"
    );
    anyhow::ensure!(signal("-CONT")?.success(), "kill -CONT");
    delivered(&env, &write(&env, "c-1", 5).await?).await?;
    wait_until(
        Duration::from_secs(60),
        "the thawed tailer to stand by",
        || {
            let log = active.stderr();
            async move { Ok(log.contains("standing by")) }
        },
    )
    .await?;
    assert_eq!(standby.terminate()?.code(), Some(0), "{}", standby.stderr());
    active.kill();
    Ok(())
}
