//! What differs between PostgreSQL majors, each tested on the major that has it (whatever
//! `OUTBOX_PG_VERSION` says): 13 refused; 14's empty transactions; slots saved at a clean
//! shutdown from 17 on; 18's idle-timeout invalidation, its silent skipping of a missing
//! publication, and its generated columns.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use outbox_testkit::{consume_until, PgConfig, StopMode, TansuStorage};
use pgoutput::Lsn;
use support::crash::spawn_raw;
use support::*;

const TOPIC: &str = "outbox.event.order";

async fn env_on(major: u32) -> anyhow::Result<Env> {
    env_on_with(PgConfig::default().major(major)).await
}

async fn env_on_with(config: PgConfig) -> anyhow::Result<Env> {
    env_with(config, TansuStorage::Memory).await
}

/// Commit `n` transactions of one outbox event each; their ids.
async fn write(env: &Env, n: usize, agg: &str) -> anyhow::Result<Vec<String>> {
    let mut client = env.db.connect().await?;
    let mut ids = Vec::new();
    for i in 0..n {
        let tx = client.transaction().await?;
        let id = emit(&tx, "order", agg, "Evt", &serde_json::json!({"n": i})).await?;
        tx.commit().await?;
        ids.push(id.to_string());
    }
    Ok(ids)
}

async fn consume_ids(env: &Env, ids: &[String]) -> anyhow::Result<()> {
    let want: HashSet<String> = ids.iter().cloned().collect();
    consume_until(
        &env.broker.bootstrap_servers(),
        TOPIC,
        Duration::from_secs(60),
        move |r| {
            let got: HashSet<&str> = r.iter().filter_map(|r| r.header("id")).collect();
            want.iter().all(|id| got.contains(id.as_str()))
        },
    )
    .await?;
    Ok(())
}

/// Wait until the slot confirmed everything written so far.
async fn caught_up(env: &Env) -> anyhow::Result<Lsn> {
    let end = env.current_wal_lsn().await?;
    wait_until(Duration::from_secs(60), "the slot to catch up", || async {
        Ok(env.confirmed_lsn().await? >= end)
    })
    .await?;
    env.confirmed_lsn().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_13_is_refused_at_setup_and_preflight() -> anyhow::Result<()> {
    let env = env_on(13).await?;
    for command in ["setup", "run"] {
        let args = if command == "run" {
            env.run_args(&[])
        } else {
            db_args(&env, "setup", &[])
        };
        let (code, _, stderr) = tailer_cli(&args).await?;
        assert_eq!(code, Some(3), "{command}: {stderr}");
        assert!(
            stderr.contains("PostgreSQL 13 is not supported")
                && stderr.contains("needs 14 or later"),
            "{command}: {stderr}"
        );
    }
    let slots: i64 = env
        .client
        .query_one("SELECT count(*) FROM pg_replication_slots", &[])
        .await?
        .get(0);
    assert_eq!(slots, 0, "nothing created");
    Ok(())
}

/// Transactions that touch only other tables: (transactions the tailer received, events
/// published), once the slot has confirmed past them.
async fn unrelated_transactions(major: u32) -> anyhow::Result<(u64, u64)> {
    let env = env_on(major).await?;
    env.setup().await?;
    let tailer = spawn_in_process(env.config(&["--status-interval-ms", "100"]));
    for i in 0..50i64 {
        env.client
            .execute(
                "INSERT INTO orders (id, customer, amount_cents) VALUES (gen_random_uuid(), 'c', $1)",
                &[&i],
            )
            .await?;
    }
    caught_up(&env).await?;
    let stats = tailer.stop().await?;
    Ok((stats.transactions, stats.events_published))
}

/// 14 sends every transaction as a Begin/Commit pair, also those without a published change; 15
/// stopped sending empty ones. The slot advances either way, nothing is published, and the
/// queue of unconfirmed transactions does not grow with them (they merge, see progress.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_transactions_of_14_advance_the_slot_and_publish_nothing() -> anyhow::Result<()> {
    let (received, published) = unrelated_transactions(14).await?;
    assert!(received >= 50, "14 sent {received} empty transactions");
    assert_eq!(published, 0);
    let (received, published) = unrelated_transactions(17).await?;
    assert_eq!(received, 0, "17 skips empty transactions");
    assert_eq!(published, 0);
    Ok(())
}

/// `confirmed_flush_lsn` after the tailer caught up, stopped, and the server restarted fast.
async fn confirmed_after_fast_restart(major: u32) -> anyhow::Result<(Lsn, Lsn)> {
    let mut env = env_on(major).await?;
    env.setup().await?;
    let mut tailer = env.spawn_process(&["--status-interval-ms", "100"])?;
    let ids = write(&env, 20, "o-1").await?;
    consume_ids(&env, &ids).await?;
    let before = caught_up(&env).await?;
    let status = tailer.terminate()?;
    assert_eq!(status.code(), Some(0), "{}", tailer.stderr());
    env.pg.restart(StopMode::Fast)?;
    env.client = env.db.connect().await?;
    Ok((before, env.confirmed_lsn().await?))
}

/// 17 writes slots at the shutdown checkpoint, so a clean restart keeps the slot where the
/// tailer left it (up to 16 it can go back to the last checkpoint: docs/reliability.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_keeps_the_slot_position_from_17_on() -> anyhow::Result<()> {
    for major in [17, 18] {
        let (before, after) = confirmed_after_fast_restart(major).await?;
        assert_eq!(after, before, "PostgreSQL {major}");
    }
    let (before, after) = confirmed_after_fast_restart(16).await?;
    assert!(
        after < before,
        "PostgreSQL 16 went back from {before} to {after}: the docs say it does"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_timeout_invalidation_is_refused_with_its_reason_and_runbook() -> anyhow::Result<()>
{
    let env = env_on_with(
        PgConfig::default()
            .major(18)
            .set("idle_replication_slot_timeout", "'1s'"),
    )
    .await?;
    env.setup().await?;
    let mut tailer = env.spawn_process(&[])?;
    let ids = write(&env, 3, "o-1").await?;
    consume_ids(&env, &ids).await?;
    let status = tailer.terminate()?;
    assert_eq!(status.code(), Some(0), "{}", tailer.stderr());
    // Idle slots are invalidated at checkpoints once the timeout has passed.
    wait_until(
        Duration::from_secs(60),
        "the idle slot to be invalidated",
        || async {
            env.client.batch_execute("CHECKPOINT").await?;
            let reason: Option<String> = env
                .client
                .query_one(
                    "SELECT invalidation_reason FROM pg_replication_slots WHERE slot_name = $1",
                    &[&SLOT],
                )
                .await?
                .get(0);
            Ok(reason.as_deref() == Some("idle_timeout"))
        },
    )
    .await?;
    let (code, _, stderr) = tailer_cli(&env.run_args(&[])).await?;
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("slot outbox_slot is invalidated (idle_timeout)")
            && stderr.contains("idle_replication_slot_timeout")
            && stderr.contains("Recovering from an invalidated slot"),
        "{stderr}"
    );
    let (_, stdout, _) = tailer_cli(&db_args(&env, "status", &[])).await?;
    assert!(stdout.contains("idle_timeout"), "{stdout}");
    Ok(())
}

/// The publication dropped while the tailer streams: up to 17 the walsender fails on the next
/// change; 18 skips the changes silently, and the tailer's publication guard stops it. Either
/// way it exits 3 and the slot is not confirmed past what was streamed.
async fn dropped_publication_stops_the_tailer(major: u32) -> anyhow::Result<()> {
    let env = env_on(major).await?;
    env.setup().await?;
    let mut tailer = env.spawn_process(&[])?;
    let ids = write(&env, 3, "o-1").await?;
    consume_ids(&env, &ids).await?;
    let streamed = caught_up(&env).await?;
    env.client
        .batch_execute(&format!("DROP PUBLICATION {PUBLICATION}"))
        .await?;
    let dropped = env.current_wal_lsn().await?;
    write(&env, 3, "o-2").await?;
    let status = tailer.wait_exit(Duration::from_secs(60)).await?;
    let log = tailer.stderr();
    assert_eq!(status.code(), Some(3), "PostgreSQL {major}: {log}");
    let said = if major >= 18 {
        "publication outbox_pub changed while streaming: it does not exist"
    } else {
        "publication \"outbox_pub\" does not exist"
    };
    assert!(log.contains(said), "PostgreSQL {major}: {log}");
    // Nothing committed after the drop is confirmed: those events were never streamed.
    let confirmed = env.confirmed_lsn().await?;
    assert!(
        confirmed >= streamed && confirmed <= dropped,
        "PostgreSQL {major}: confirmed {confirmed}, streamed {streamed}, dropped at {dropped}"
    );
    let (code, _, stderr) = tailer_cli(&env.run_args(&[])).await?;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("publication outbox_pub does not exist"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_publication_stops_the_tailer_on_18_as_before() -> anyhow::Result<()> {
    dropped_publication_stops_the_tailer(18).await?;
    dropped_publication_stops_the_tailer(17).await
}

/// Make the outbox's key column generated from the payload (`kind`: STORED or VIRTUAL).
async fn generated_key(env: &Env, kind: &str) -> anyhow::Result<()> {
    env.client
        .batch_execute(&format!(
            "ALTER TABLE outbox DROP COLUMN aggregateid; \
             ALTER TABLE outbox ADD COLUMN aggregateid text \
               GENERATED ALWAYS AS (payload ->> 'orderId') {kind}"
        ))
        .await?;
    Ok(())
}

async fn insert_raw(env: &Env) -> anyhow::Result<String> {
    let id = uuid::Uuid::new_v4();
    env.client
        .execute(
            "INSERT INTO outbox (id, aggregatetype, type, payload) \
             VALUES ($1, 'order', 'Created', '{\"orderId\": \"o-77\"}')",
            &[&id],
        )
        .await?;
    Ok(id.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_key_columns_work_on_18_when_published_and_are_refused_otherwise(
) -> anyhow::Result<()> {
    // 18, STORED: refused until the publication publishes generated columns, then delivered.
    let env = env_on(18).await?;
    generated_key(&env, "STORED").await?;
    env.setup().await?;
    let (code, _, stderr) = tailer_cli(&env.run_args(&[])).await?;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("aggregateid of public.outbox is a STORED generated column")
            && stderr.contains(
                "ALTER PUBLICATION \"outbox_pub\" SET (publish_generated_columns = stored)"
            ),
        "{stderr}"
    );
    env.client
        .batch_execute("ALTER PUBLICATION outbox_pub SET (publish_generated_columns = stored)")
        .await?;
    let tailer = spawn_in_process(env.config(&[]));
    let id = insert_raw(&env).await?;
    let records = consume_until(
        &env.broker.bootstrap_servers(),
        TOPIC,
        Duration::from_secs(60),
        |r| !r.is_empty(),
    )
    .await?;
    assert_eq!(records[0].header("id"), Some(id.as_str()));
    assert_eq!(records[0].key_str(), Some("o-77"), "the generated key");
    tailer.stop().await?;

    // 18, VIRTUAL: never published.
    let env = env_on(18).await?;
    generated_key(&env, "VIRTUAL").await?;
    env.setup().await?;
    let (code, _, stderr) = tailer_cli(&env.run_args(&[])).await?;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("is a VIRTUAL generated column"), "{stderr}");

    // 17: generated columns are not published at all.
    let env = env_on(17).await?;
    generated_key(&env, "STORED").await?;
    env.setup().await?;
    let (code, _, stderr) = tailer_cli(&env.run_args(&[])).await?;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("PostgreSQL 17 does not publish to logical replication"),
        "{stderr}"
    );
    Ok(())
}

/// Logical decoding on a physical standby: from 16 on it works (the slot is created on the
/// standby once the primary logs a running-transactions record); before, a clear refusal.
async fn standby_of(env: &mut Env) -> anyhow::Result<outbox_testkit::PgCluster> {
    env.client
        .batch_execute("SELECT pg_create_physical_replication_slot('standby1', true)")
        .await?;
    let standby = env
        .pg
        .start_standby("standby1", &[("hot_standby_feedback", "on")])?;
    env.client = env.db.connect().await?;
    Ok(standby)
}

fn on_standby(env: &Env, standby: &outbox_testkit::PgCluster, args: &[String]) -> Vec<String> {
    let conn = format!(
        "host=127.0.0.1 port={} user=postgres dbname={}",
        standby.port(),
        env.db.name
    );
    let mut args = args.to_vec();
    let at = args
        .iter()
        .position(|a| a == "--postgres")
        .expect("--postgres")
        + 1;
    args[at] = conn;
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoding_on_a_standby_works_from_16_and_is_refused_clearly_before() -> anyhow::Result<()> {
    // 15: refused with what to do.
    let mut env = env_on(15).await?;
    env.setup().await?;
    let standby = standby_of(&mut env).await?;
    let (code, _, stderr) = tailer_cli(&on_standby(
        &env,
        &standby,
        &env.run_args(&["--create-slot"]),
    ))
    .await?;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("PostgreSQL 15 cannot decode on a standby"),
        "{stderr}"
    );
    drop(standby);

    // 16: setup creates the slot on the standby, run streams what the primary commits.
    let mut env = env_on(16).await?;
    env.setup().await?;
    let standby = standby_of(&mut env).await?;
    let setup_args = on_standby(&env, &standby, &db_args(&env, "setup", &[]));
    let setup = tokio::spawn(async move { tailer_cli(&setup_args).await });
    // A slot on a standby waits for the primary's next running-transactions record.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while !setup.is_finished() {
        tick.tick().await;
        env.client
            .batch_execute("SELECT pg_log_standby_snapshot()")
            .await?;
    }
    let (code, stdout, stderr) = setup.await??;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let mut tailer = spawn_raw(&env, &on_standby(&env, &standby, &env.run_args(&[])))?;
    let ids = write(&env, 5, "o-1").await?;
    consume_ids(&env, &ids).await?;
    let status = tailer.terminate()?;
    assert_eq!(status.code(), Some(0), "{}", tailer.stderr());
    Ok(())
}
