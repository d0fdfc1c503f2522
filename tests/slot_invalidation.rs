//! A slot lost to `max_slot_wal_keep_size` while the tailer is stopped, and the recovery
//! procedure of docs/operations.md ("Recovering from an invalidated slot") followed step by
//! step: what is lost, what the new slot publishes, and how the gap is re-published from the
//! outbox table (rows kept), with the events' original ids.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use outbox_testkit::{consume_until, KafkaRecord, PgConfig, TansuStorage};
use pgoutput::Lsn;
use serde_json::{json, Value};
use support::*;

const TOPIC: &str = "outbox.event.order";

async fn status_json(env: &Env) -> anyhow::Result<Value> {
    let (code, out, err) = tailer_cli(&db_args(env, "status", &["--json"])).await?;
    anyhow::ensure!(code == Some(0), "status failed ({code:?}): {err}");
    Ok(serde_json::from_str(&out)?)
}

/// `n` single-event transactions; the event ids in commit order.
async fn write(env: &Env, n: usize, batch: &str) -> anyhow::Result<Vec<String>> {
    let mut client = env.db.connect().await?;
    let mut ids = Vec::new();
    for i in 0..n {
        let tx = client.transaction().await?;
        let id = emit(
            &tx,
            "order",
            "agg-1",
            "Evt",
            &json!({"batch": batch, "n": i}),
        )
        .await?;
        tx.commit().await?;
        ids.push(id.to_string());
    }
    Ok(ids)
}

/// Read the topic until every id in `want` arrived.
async fn consume_ids(env: &Env, want: &[String]) -> anyhow::Result<Vec<KafkaRecord>> {
    let want: HashSet<String> = want.iter().cloned().collect();
    consume_until(
        &env.broker.bootstrap_servers(),
        TOPIC,
        Duration::from_secs(120),
        move |records| {
            let got: HashSet<&str> = records.iter().filter_map(|r| r.header("id")).collect();
            want.iter().all(|id| got.contains(id.as_str()))
        },
    )
    .await
}

/// WAL in another table plus checkpoints until the slot is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_slot_is_refused_and_the_documented_recovery_works() -> anyhow::Result<()> {
    let pg_config = PgConfig::default()
        .set("max_slot_wal_keep_size", "'1MB'")
        .set("min_wal_size", "'32MB'")
        .set("max_wal_size", "'64MB'");
    let env = env_with(pg_config, TansuStorage::Memory).await?;
    env.setup().await?;

    // Before: a tailer publishes batch A and stops cleanly.
    let mut tailer = env.spawn_process(&[])?;
    let a = write(&env, 5, "a").await?;
    consume_ids(&env, &a).await?;
    let status = tailer.terminate()?;
    assert_eq!(status.code(), Some(0), "{}", tailer.stderr());

    // The tailer stays stopped while batch B commits and WAL churn invalidates the slot.
    let b = write(&env, 4, "b").await?;
    env.invalidate_slot().await?;

    // `run` refuses with the exact message, and creates nothing.
    let (code, _, err) = tailer_cli(&env.run_args(&[])).await?;
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains(
            "slot outbox_slot is invalidated (wal_status = lost): the WAL it needed was removed, \
             so events may be missing. Follow \"Recovering from an invalidated slot\" in \
             docs/operations.md"
        ),
        "{err}"
    );

    // Step 1: the slot's confirmed_flush_lsn, where the gap starts.
    let s = status_json(&env).await?;
    assert_eq!(s["verdict"]["health"], json!("invalidated"), "{s:#}");
    let gap_start: Lsn = s["confirmed_flush_lsn"]
        .as_str()
        .expect("confirmed_flush_lsn in status --json")
        .parse()?;

    // Step 2: the last record in Kafka: its outbox-lsn is just below that position, and its
    // commit time is the gap's start in time.
    let before = consume_ids(&env, &a).await?;
    let last = before.last().expect("records before the gap");
    let last_lsn: Lsn = last.header("outbox-lsn").expect("outbox-lsn").parse()?;
    assert!(last_lsn < gap_start, "{last_lsn} < {gap_start}");
    let gap_start_us: i64 = last
        .header("outbox-commit-time-us")
        .expect("outbox-commit-time-us")
        .parse()?;

    // Step 3: drop the slot, recreate it with `setup`; the gap ends at the new slot.
    env.client
        .execute("SELECT pg_drop_replication_slot($1)", &[&SLOT])
        .await?;
    let (code, _, err) = tailer_cli(&db_args(&env, "setup", &[])).await?;
    assert_eq!(code, Some(0), "setup: {err}");
    let s = status_json(&env).await?;
    // A fresh slot (still "at risk" against the small max_slot_wal_keep_size of this test).
    assert_eq!(s["wal_status"], json!("reserved"), "{s:#}");
    let gap_end: Lsn = s["confirmed_flush_lsn"].as_str().unwrap().parse()?;
    assert!(gap_end > gap_start);
    let gap_end_time: String = env
        .client
        .query_one("SELECT now()::text", &[])
        .await?
        .get(0);

    // Step 4: start the tailer; batch C (committed from now on) is published, batch B is not:
    // that is the gap.
    let mut tailer = env.spawn_process(&[])?;
    let c = write(&env, 3, "c").await?;
    let after = consume_ids(&env, &c).await?;
    let got: HashSet<&str> = after.iter().filter_map(|r| r.header("id")).collect();
    let lost: Vec<&String> = b.iter().filter(|id| !got.contains(id.as_str())).collect();
    assert_eq!(lost.len(), b.len(), "batch B is lost from the stream");

    // Step 5: re-publish the gap from the outbox table, keeping the ids: delete and re-insert
    // the rows created in the window in one transaction (the publication only publishes
    // inserts, so the delete is invisible). The window opens a margin before the gap's start
    // (a transaction's created_at is its start, before its commit).
    let mut client = env.db.connect().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "CREATE TEMP TABLE gap ON COMMIT DROP AS SELECT * FROM outbox \
         WHERE created_at >= to_timestamp($1::bigint / 1e6) - interval '1 hour' \
           AND created_at < $2::text::timestamptz",
        &[&gap_start_us, &gap_end_time],
    )
    .await?;
    tx.batch_execute(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM gap); \
         INSERT INTO outbox SELECT * FROM gap;",
    )
    .await?;
    tx.commit().await?;

    let all: Vec<String> = [a.clone(), b.clone(), c.clone()].concat();
    let records = consume_ids(&env, &all).await?;
    let ids: Vec<&str> = records.iter().filter_map(|r| r.header("id")).collect();
    for id in &b {
        assert_eq!(
            ids.iter().filter(|x| **x == id.as_str()).count(),
            1,
            "gap event {id} re-published once with its own id"
        );
    }
    // Re-publishing is at-least-once too: A's events in the window come again (consumers
    // dedupe on id), nothing else is invented.
    assert!(ids.iter().all(|id| all.iter().any(|x| x == id)), "{ids:?}");
    let status = tailer.terminate()?;
    assert_eq!(status.code(), Some(0), "{}", tailer.stderr());
    Ok(())
}
