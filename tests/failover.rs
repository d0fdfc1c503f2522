//! Following a primary failover (PostgreSQL 17 and 18: failover slots): the tailer is given
//! both hosts, the primary dies (immediate stop), the standby is promoted and written to, and
//! every committed event arrives once, in per-key order. And the cases that must stop instead
//! of skipping events: no `synchronized_standby_slots` on the old primary, and PostgreSQL 16,
//! whose promotion loses the slot.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use outbox_testkit::{PgCluster, PgConfig, StopMode, TansuStorage};
use support::crash::spawn_raw;
use support::*;

const TOPIC: &str = "outbox.event.order";
const STANDBY_SLOT: &str = "standby1";

/// A primary with the outbox, a failover slot (17+) and a physical standby that synchronises
/// it; with `guard`, the primary also holds logical decoding back for the standby
/// (`synchronized_standby_slots`) and commits synchronously to it.
async fn primary_and_standby(major: u32, guard: bool) -> anyhow::Result<(Env, PgCluster)> {
    let mut env = env_with(PgConfig::default().major(major), TansuStorage::Memory).await?;
    env.client
        .batch_execute(&format!(
            "SELECT pg_create_physical_replication_slot('{STANDBY_SLOT}', true)"
        ))
        .await?;
    let setup = if major >= 17 {
        vec!["--failover"]
    } else {
        vec![]
    };
    let (code, out, err) = tailer_cli(&db_args(&env, "setup", &setup)).await?;
    anyhow::ensure!(code == Some(0), "setup: {out}{err}");
    let mut settings = vec![("hot_standby_feedback", "on")];
    if major >= 17 {
        settings.push(("sync_replication_slots", "on"));
    }
    let standby = env.pg.start_standby(STANDBY_SLOT, &settings)?;
    env.client = env.db.connect().await?;
    if guard {
        env.pg.reconfigure(&[
            ("synchronized_standby_slots", &format!("'{STANDBY_SLOT}'")),
            ("synchronous_standby_names", &format!("'{STANDBY_SLOT}'")),
        ])?;
    }
    Ok((env, standby))
}

/// `host=primary,standby`: the tailer finds whichever is the primary.
fn both_hosts(env: &Env, standby: &PgCluster) -> Vec<String> {
    let mut args = env.run_args(&[]);
    let at = args.iter().position(|a| a == "--postgres").unwrap() + 1;
    args[at] = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname={} \
         target_session_attrs=read-write",
        env.pg.port(),
        standby.port(),
        env.db.name
    );
    args
}

/// Commit `n` events of `key`, numbered from `from`, on the server at `port`; their ids.
async fn write_on(
    env: &Env,
    port: u16,
    key: &str,
    from: usize,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let conn = format!(
        "host=127.0.0.1 port={port} user=postgres dbname={}",
        env.db.name
    );
    let (mut client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    commit_events(&mut client, key, from, n).await
}

/// The slot on the standby is synchronised and has caught up with `lsn` of the primary.
async fn synced(env: &Env, standby: &PgCluster) -> anyhow::Result<()> {
    let conn = format!(
        "host=127.0.0.1 port={} user=postgres dbname={}",
        standby.port(),
        env.db.name
    );
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let primary_at = env.confirmed_lsn().await?;
    wait_until(
        Duration::from_secs(60),
        "the slot to be synchronised to the standby",
        || {
            let client = &client;
            async move {
                // The standby's slot sync needs a running-transactions record from the primary.
                env.client
                    .batch_execute("SELECT pg_log_standby_snapshot()")
                    .await?;
                let row = client
                    .query_opt(
                        // A synced slot is temporary (and dropped at promotion) until the
                        // standby has caught up with it: persisted is what survives.
                        "SELECT synced AND NOT temporary, confirmed_flush_lsn::text \
                     FROM pg_replication_slots WHERE slot_name = 'outbox_slot'",
                        &[],
                    )
                    .await?;
                Ok(row.is_some_and(|r| {
                    r.get::<_, bool>(0)
                        && r.get::<_, Option<String>>(1)
                            .and_then(|l| l.parse::<pgoutput::Lsn>().ok())
                            .is_some_and(|l| l >= primary_at)
                }))
            }
        },
    )
    .await
}

async fn fail_over(env: &mut Env, standby: &PgCluster) -> anyhow::Result<()> {
    env.pg.stop(StopMode::Immediate)?;
    standby.promote()
}

async fn follows_a_failover(major: u32) -> anyhow::Result<()> {
    let (mut env, standby) = primary_and_standby(major, true).await?;
    let mut tailer = spawn_raw(&env, &both_hosts(&env, &standby))?;
    let mut ids = Vec::new();
    for key in ["k-1", "k-2", "k-3"] {
        ids.extend(write_on(&env, env.pg.port(), key, 0, 20).await?);
    }
    wait_until(
        Duration::from_secs(60),
        "the tailer to confirm the first writes",
        || async { Ok(env.slot_lag_bytes().await? < 1024) },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", tailer.stderr()))?;
    synced(&env, &standby).await?;
    fail_over(&mut env, &standby).await?;
    for key in ["k-1", "k-2", "k-3"] {
        ids.extend(write_on(&env, standby.port(), key, 20, 20).await?);
    }
    let found = consume_ids(
        &env.broker.bootstrap_servers(),
        TOPIC,
        &ids,
        Duration::from_secs(120),
    )
    .await;
    // Everything up to the last event; a re-sent copy would come before it (re-sends follow
    // the reconnect, new events follow them).
    let records = match found {
        Ok(records) => records,
        Err(e) => panic!("{e}\ntailer log:\n{}", tailer.stderr()),
    };
    // Per key, the payload numbers in offset order, first copies only.
    let mut seen = std::collections::HashSet::new();
    let mut per_key: HashMap<String, Vec<i64>> = HashMap::new();
    let mut duplicates = 0;
    for r in &records {
        let id = r.header("id").unwrap_or_default().to_owned();
        if !seen.insert(id) {
            duplicates += 1;
            continue;
        }
        let n = serde_json::from_str::<serde_json::Value>(r.payload_str().unwrap_or("{}"))?["n"]
            .as_i64()
            .unwrap_or(-1);
        per_key
            .entry(r.key_str().unwrap_or_default().to_owned())
            .or_default()
            .push(n);
    }
    eprintln!(
        "PostgreSQL {major} failover: {} events, {duplicates} duplicates",
        ids.len()
    );
    for (key, ns) in &per_key {
        assert_eq!(
            *ns,
            (0..40).collect::<Vec<_>>(),
            "{key} in commit order, each once"
        );
    }
    assert_eq!(
        duplicates, 0,
        "idempotent resume: nothing sent twice across the failover"
    );
    let log = tailer.stderr();
    assert!(log.contains("following a failover"), "{log}");
    assert_eq!(tailer.terminate()?.code(), Some(0), "{}", tailer.stderr());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_failover_on_17() -> anyhow::Result<()> {
    follows_a_failover(17).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_failover_on_18() -> anyhow::Result<()> {
    follows_a_failover(18).await
}

/// Stops with the runbook instead of following: `needle` is in its last words.
async fn refuses_to_follow(major: u32, guard: bool, needle: &str) -> anyhow::Result<()> {
    let (mut env, standby) = primary_and_standby(major, guard).await?;
    let mut tailer = spawn_raw(&env, &both_hosts(&env, &standby))?;
    write_on(&env, env.pg.port(), "k-1", 0, 5).await?;
    wait_until(
        Duration::from_secs(60),
        "the tailer to confirm the first writes",
        || async { Ok(env.slot_lag_bytes().await? < 1024) },
    )
    .await?;
    if major >= 17 {
        synced(&env, &standby).await?;
    }
    fail_over(&mut env, &standby).await?;
    write_on(&env, standby.port(), "k-1", 5, 5).await?;
    let status = tailer.wait_exit(Duration::from_secs(120)).await?;
    let log = tailer.stderr();
    assert_eq!(status.code(), Some(3), "fix the database: {log}");
    assert!(log.contains(needle) && log.contains("docs/ha.md"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_synchronized_standby_slots_a_failover_stops_the_tailer() -> anyhow::Result<()> {
    refuses_to_follow(17, false, "synchronized_standby_slots").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_16_a_failover_loses_the_slot_and_stops_the_tailer() -> anyhow::Result<()> {
    refuses_to_follow(16, false, "does not exist there").await
}

/// `setup --failover` turns failover on for an existing slot (not while a tailer streams from
/// it), and `status` says what a failover would do at each step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_turns_failover_on_and_status_says_what_a_failover_would_do() -> anyhow::Result<()> {
    let env = env_with(PgConfig::default().major(17), TansuStorage::Memory).await?;
    env.setup().await?;
    let status = || async { tailer_cli(&db_args(&env, "status", &[])).await };
    let (_, out, _) = status().await?;
    assert!(out.contains("not a failover slot"), "{out}");

    let mut tailer = spawn_raw(&env, &env.run_args(&[]))?;
    wait_until(Duration::from_secs(60), "the tailer to stream", || async {
        let row = env
            .client
            .query_one(
                "SELECT active FROM pg_replication_slots WHERE slot_name = 'outbox_slot'",
                &[],
            )
            .await?;
        Ok(row.get::<_, bool>(0))
    })
    .await?;
    let (code, out, err) = tailer_cli(&db_args(&env, "setup", &["--failover"])).await?;
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(err.contains("a tailer is streaming from it"), "{err}");
    assert_eq!(tailer.terminate()?.code(), Some(0), "{}", tailer.stderr());

    let (code, out, err) = tailer_cli(&db_args(&env, "setup", &["--failover"])).await?;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("turned on failover for slot outbox_slot"),
        "{out}"
    );
    let (_, out, _) = status().await?;
    assert!(
        out.contains("failover") && out.contains("synchronized_standby_slots is empty"),
        "{out}"
    );
    env.client
        .batch_execute(&format!(
            "SELECT pg_create_physical_replication_slot('{STANDBY_SLOT}', true)"
        ))
        .await?;
    env.pg
        .reconfigure(&[("synchronized_standby_slots", &format!("'{STANDBY_SLOT}'"))])?;
    let (_, out, _) = status().await?;
    assert!(out.contains("the tailer follows it"), "{out}");
    Ok(())
}
