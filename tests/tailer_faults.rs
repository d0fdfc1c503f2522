//! The tailer under faults, against real PostgreSQL and tansu: SIGKILL and SIGTERM with a
//! restart, a broker that goes away, misconfigurations, unroutable rows and a short
//! `wal_sender_timeout` with a broker that does not ack (issue 4, tests 6, 7, 9, 10, 11).

mod support;

use std::collections::HashSet;
use std::time::Duration;

use outbox_testkit::{consume_until, KafkaRecord, PgConfig, TansuStorage};
use pgoutput::Lsn;
use serde_json::json;
use support::crash::*;
use support::*;

const TOPIC: &str = "outbox.event.order";
/// Generous: tansu delivers to consumers slowly.
const CONSUME_WITHIN: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// helpers

async fn current_wal_lsn(env: &Env) -> anyhow::Result<Lsn> {
    let row = env
        .client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?;
    Ok(row.get::<_, String>(0).parse()?)
}

/// Write `txns` transactions of `per_txn` `order` events each (aggregate ids cycle through
/// `aggs`).
async fn write_events(
    env: &Env,
    txns: usize,
    per_txn: usize,
    aggs: usize,
) -> anyhow::Result<Vec<String>> {
    write_typed(env, "order", txns, per_txn, aggs).await
}

/// [`write_events`] for another aggregate type (topic `outbox.event.<aggregate_type>`).
async fn write_typed(
    env: &Env,
    aggregate_type: &str,
    txns: usize,
    per_txn: usize,
    aggs: usize,
) -> anyhow::Result<Vec<String>> {
    let mut client = env.db.connect().await?;
    let mut ids = Vec::new();
    for t in 0..txns {
        let tx = client.transaction().await?;
        for k in 0..per_txn {
            let n = t * per_txn + k;
            let id = emit(
                &tx,
                aggregate_type,
                &format!("agg-{}", n % aggs),
                "Evt",
                &json!({"n": n}),
            )
            .await?;
            ids.push(id.to_string());
        }
        tx.commit().await?;
    }
    Ok(ids)
}

/// Read `topic` from the beginning until every id in `want` has arrived.
async fn consume_ids(env: &Env, topic: &str, want: &[String]) -> anyhow::Result<Vec<KafkaRecord>> {
    let want: HashSet<String> = want.iter().cloned().collect();
    consume_until(
        &env.broker.bootstrap_servers(),
        topic,
        CONSUME_WITHIN,
        move |records| {
            let got: HashSet<&str> = records.iter().filter_map(|r| r.header("id")).collect();
            want.iter().all(|id| got.contains(id.as_str()))
        },
    )
    .await
}

/// `run` as `user` (password given with `--postgres-password`), against this environment.
fn run_as(env: &Env, user: &str, password: &str) -> Vec<String> {
    vec![
        "run".into(),
        "--postgres".into(),
        format!(
            "host={} port={} user={user} dbname={}",
            env.db.host, env.db.port, env.db.name
        ),
        "--postgres-password".into(),
        password.into(),
        "--brokers".into(),
        env.broker.bootstrap_servers(),
        "--create-topics".into(),
    ]
}

/// Wait for the process to exit on its own; returns (exit code, stderr).
async fn exit_of(p: &mut TailerProcess) -> anyhow::Result<(Option<i32>, String)> {
    let status = p.wait_exit(Duration::from_secs(60)).await?;
    Ok((status.code(), p.stderr()))
}

/// Assert a failed start: the exit code and every expected phrase in stderr.
async fn expect_failure(
    mut p: TailerProcess,
    code: i32,
    phrases: &[&str],
) -> anyhow::Result<String> {
    let (got, stderr) = exit_of(&mut p).await?;
    assert_eq!(got, Some(code), "exit code; stderr:\n{stderr}");
    for phrase in phrases {
        assert!(
            stderr.contains(phrase),
            "stderr lacks {phrase:?}:\n{stderr}"
        );
    }
    Ok(stderr)
}

/// Assert that `condition` stays false for all of `window` (polled).
async fn stays_false<F, Fut>(window: Duration, what: &str, condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    match wait_until(window, what, condition).await {
        Err(e) if e.to_string().starts_with("timed out") => Ok(()),
        Err(e) => Err(e),
        Ok(()) => anyhow::bail!("{what} happened within {window:?}, it must not"),
    }
}

// ---------------------------------------------------------------------------------------------
// 6. SIGKILL mid-stream

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_loses_nothing() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let start = env.confirmed_lsn().await?;
    let mut tailer = env.spawn_process(&[])?;

    let writer = Writer::start(&env);

    // Kill once Kafka acked something (the slot moved) and the writer is still going.
    wait_until(
        Duration::from_secs(60),
        "the tailer to confirm some events",
        || async { Ok(writer.written() >= 50 && env.confirmed_lsn().await? > start) },
    )
    .await?;
    tailer.kill();
    let written_at_kill = writer.written();
    wait_until(
        Duration::from_secs(30),
        "the walsender to release the slot",
        || async { Ok(walsender(&env).await?.is_none()) },
    )
    .await?;
    let confirmed_at_kill = env.confirmed_lsn().await?;

    // Transactions keep being committed after the kill.
    wait_until(
        Duration::from_secs(60),
        "more writes after the kill",
        || async { Ok(writer.written() >= written_at_kill + 100) },
    )
    .await?;
    let ids = writer.finish().await?;
    let end = current_wal_lsn(&env).await?;
    assert!(
        confirmed_at_kill < end,
        "the kill happened before the writes ended"
    );

    let _tailer = env.spawn_process(&[])?;
    let records = consume_ids(&env, TOPIC, &ids).await?;

    let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let got: HashSet<&str> = records.iter().filter_map(|r| r.header("id")).collect();
    assert_eq!(got, want, "every committed event arrives, and nothing else");
    assert_per_aggregate_order(&records);

    let mut duplicates = 0;
    for (id, copies) in by_id(&records) {
        if copies.len() < 2 {
            continue;
        }
        duplicates += copies.len() - 1;
        let first = position_of(copies[0]);
        for c in &copies {
            assert_eq!(
                position_of(c),
                first,
                "event {id}: a duplicate carries another position"
            );
            assert!(
                first.0 >= confirmed_at_kill,
                "event {id} was duplicated although its transaction (commit LSN {}) lies before \
                 the LSN confirmed at the kill ({confirmed_at_kill})",
                first.0
            );
        }
    }
    eprintln!(
        "sigkill: {} events in {} transactions, {written_at_kill} written at the kill, {duplicates} duplicates",
        ids.len(),
        ids.len() / 3
    );
    Ok(())
}

/// Idempotent resume: after each SIGKILL the restarted tailer reads each partition's tail,
/// finds the newest record it published itself, and sends nothing at or below it again, so
/// kills mid-stream leave every event in Kafka exactly once. On librdkafka's mock cluster,
/// whose stable offsets follow every append; tansu keeps a killed producer's last batch past its
/// last stable offset until the next write, see docs/reliability.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_mid_stream_publish_nothing_twice() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let mock = outbox_testkit::MockKafka::start_with_topics(1, &[(TOPIC, 3)])?;
    let args: Vec<String> = ["run", "--postgres", &env.db.conn_str(), "--brokers"]
        .iter()
        .map(|s| s.to_string())
        .chain([mock.bootstrap_servers().to_owned()])
        .collect();
    let writer = Writer::start(&env);
    let tailer = sigkill_cycles(&env, &args, &writer, 5, 30).await?;
    let ids = writer.finish().await?;
    let want: HashSet<String> = ids.iter().cloned().collect();
    let records = consume_until(mock.bootstrap_servers(), TOPIC, CONSUME_WITHIN, move |r| {
        let got: HashSet<&str> = r.iter().filter_map(|r| r.header("id")).collect();
        want.iter().all(|id| got.contains(id.as_str()))
    })
    .await?;
    assert_per_aggregate_order(&records);
    let twice: Vec<String> = by_id(&records)
        .into_iter()
        .filter(|(_, copies)| copies.len() > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(
        twice.is_empty(),
        "{} of {} events published more than once after 5 SIGKILLs: {:?}",
        twice.len(),
        ids.len(),
        &twice[..twice.len().min(10)]
    );
    let resumed = tailer.stderr();
    assert!(resumed.contains("read the partitions' tails"), "{resumed}");
    drop(tailer);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 7. Broker stopped

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_stopped_holds_the_slot_back_then_delivers_everything() -> anyhow::Result<()> {
    let mut env = env_with(PgConfig::default(), TansuStorage::Sqlite).await?;
    env.setup().await?;
    let tailer = spawn_in_process(env.config(&[]));

    // The topic exists and the tailer knows it before the broker goes away.
    let mut ids = write_events(&env, 1, 1, 1).await?;
    consume_ids(&env, TOPIC, &ids).await?;
    let primed = current_wal_lsn(&env).await?;
    wait_until(
        Duration::from_secs(30),
        "the slot to catch up while idle",
        || async { Ok(env.confirmed_lsn().await? >= primed) },
    )
    .await?;

    env.broker.stop();
    let before = current_wal_lsn(&env).await?;
    let mut outage_ids = write_events(&env, 30, 5, 4).await?;
    // A topic the tailer has not used yet: creating it must wait for the broker, not fail.
    let invoices = write_typed(&env, "invoice", 5, 2, 2).await?;
    outage_ids.extend(write_events(&env, 10, 5, 4).await?);
    ids.extend(outage_ids.iter().cloned());
    let after = current_wal_lsn(&env).await?;

    // The walsender has sent every transaction: the tailer has them, Kafka does not.
    wait_until(
        Duration::from_secs(30),
        "the walsender to send the writes",
        || async { Ok(matches!(walsender(&env).await?, Some((_, Some(sent))) if sent >= after)) },
    )
    .await?;
    // For a few seconds the slot must not pass the first un-acked transaction. Its commit LSN
    // is known only from the records, so record the highest confirmed position seen and check
    // it against that LSN once the records arrived.
    let highest = std::sync::Mutex::new(Lsn::ZERO);
    stays_false(
        Duration::from_secs(5),
        "confirmed_flush_lsn passing every un-acked write",
        || async {
            let confirmed = env.confirmed_lsn().await?;
            let mut h = highest.lock().expect("not poisoned");
            *h = (*h).max(confirmed);
            Ok(confirmed >= after)
        },
    )
    .await?;
    let highest = highest.into_inner().expect("not poisoned");
    anyhow::ensure!(
        !tailer.handle.is_finished(),
        "the tailer stopped while the broker was down"
    );

    tokio::task::block_in_place(|| env.broker.start_again())?;
    let records = consume_ids(&env, TOPIC, &ids).await?;
    let got: HashSet<&str> = records.iter().filter_map(|r| r.header("id")).collect();
    let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(got, want, "everything arrives once the broker is back");
    assert_per_aggregate_order(&records);
    let invoice_records = consume_ids(&env, "outbox.event.invoice", &invoices).await?;
    assert_per_aggregate_order(&invoice_records);
    let first_unacked = records
        .iter()
        .filter(|r| {
            outage_ids
                .iter()
                .any(|id| r.header("id") == Some(id.as_str()))
        })
        .map(|r| position_of(r).0)
        .min()
        .expect("outage records");
    assert!(
        first_unacked > before,
        "the outage writes start after {before}"
    );
    assert!(
        highest <= first_unacked,
        "while the broker was down the slot confirmed {highest}, past the commit LSN \
         {first_unacked} of the first un-acked transaction"
    );
    wait_until(
        Duration::from_secs(60),
        "confirmed_flush_lsn to pass the writes",
        || async { Ok(env.confirmed_lsn().await? >= after) },
    )
    .await?;
    let stats = tailer.stop().await?;
    assert_eq!(
        stats.reconnects, 0,
        "a broker outage is not a PostgreSQL reconnect: {stats:?}"
    );
    Ok(())
}

/// The first event of a new aggregate type arrives while the broker is away for longer than
/// the tailer's topic-creation timeouts (10 s per attempt): the creation must wait for the
/// broker like every other record does, not stop the tailer. Slow by nature (30 s of outage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_longer_than_admin_timeouts_while_a_new_topic_appears() -> anyhow::Result<()> {
    let mut env = env_with(PgConfig::default(), TansuStorage::Sqlite).await?;
    env.setup().await?;
    let tailer = spawn_in_process(env.config(&[]));
    wait_until(Duration::from_secs(30), "the tailer to stream", || async {
        Ok(walsender(&env).await?.is_some())
    })
    .await?;

    env.broker.stop();
    let ids = write_typed(&env, "invoice", 3, 2, 2).await?;
    let after = current_wal_lsn(&env).await?;
    // Several 10 s create-topic attempts have timed out by then.
    let outage = stays_false(Duration::from_secs(30), "the tailer to stop", || async {
        Ok(tailer.handle.is_finished())
    })
    .await;
    if outage.is_err() && tailer.handle.is_finished() {
        let result = tailer.handle.await?;
        anyhow::bail!("the tailer stopped while the broker was down: {result:?}");
    }
    outage?;
    assert!(
        env.confirmed_lsn().await? < after,
        "nothing acked, nothing confirmed"
    );

    tokio::task::block_in_place(|| env.broker.start_again())?;
    let records = consume_ids(&env, "outbox.event.invoice", &ids).await?;
    assert_per_aggregate_order(&records);
    wait_until(
        Duration::from_secs(60),
        "confirmed_flush_lsn to pass the writes",
        || async { Ok(env.confirmed_lsn().await? >= after) },
    )
    .await?;
    let stats = tailer.stop().await?;
    let log = env.pg.server_log();
    assert_eq!(stats.reconnects, 0, "{stats:?}\nserver log:\n{log}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 9. SIGTERM

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_then_restart_has_zero_duplicates() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let mut tailer = env.spawn_process(&[])?;
    let mut ids = write_events(&env, 30, 4, 5).await?;
    consume_ids(&env, TOPIC, &ids).await?;

    let status = tailer.terminate()?;
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM exits 0; stderr:\n{}",
        tailer.stderr()
    );

    ids.extend(write_events(&env, 30, 4, 5).await?);
    let mut tailer = env.spawn_process(&[])?;

    // Again, this time while transactions keep coming: the tailer finishes the open
    // transaction, waits for its acks and confirms before exiting.
    let seen = ids.len();
    let mark = env.confirmed_lsn().await?;
    let writer = Writer::start(&env);
    wait_until(
        Duration::from_secs(60),
        "the tailer to confirm new events",
        || async { Ok(writer.written() >= 50 && env.confirmed_lsn().await? > mark) },
    )
    .await?;
    let status = tokio::task::block_in_place(|| tailer.terminate())?;
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM mid-stream exits 0; stderr:\n{}",
        tailer.stderr()
    );
    let at_stop = writer.written();
    wait_until(Duration::from_secs(60), "writes after the stop", || async {
        Ok(writer.written() >= at_stop + 50)
    })
    .await?;
    ids.extend(writer.finish().await?);

    let _tailer = env.spawn_process(&[])?;
    // Re-sent transactions would come before the new ones on the single partition, so once
    // every id arrived, any duplicate is among the records read.
    let records = consume_ids(&env, TOPIC, &ids).await?;
    let duplicated: Vec<_> = by_id(&records)
        .into_iter()
        .filter(|(_, copies)| copies.len() > 1)
        .map(|(id, copies)| (id, position_of(copies[0])))
        .collect();
    assert!(
        duplicated.is_empty(),
        "duplicates after a clean stop: {duplicated:?}"
    );
    assert_eq!(records.len(), ids.len());
    assert_per_aggregate_order(&records);
    eprintln!(
        "sigterm: {} events, {} of them written while the second tailer ran or after",
        ids.len(),
        ids.len() - seen
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 10. Misconfigurations and unroutable rows

const SCRAM_HBA: &str = "\
local   all          all                 trust
host    all          postgres  127.0.0.1/32  trust
host    all          all       127.0.0.1/32  scram-sha-256
local   replication  all                 trust
host    replication  all       127.0.0.1/32  scram-sha-256
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfigurations_exit_non_zero_with_an_actionable_message() -> anyhow::Result<()> {
    let pg_config = PgConfig {
        hba: Some(SCRAM_HBA.into()),
        ..PgConfig::default()
    };
    let env = env_with(pg_config, TansuStorage::Memory).await?;

    // Invalid slot name: a configuration error, exit code 2, before touching the database.
    let p = env.spawn_process(&["--slot", "Bad-Slot"])?;
    expect_failure(p, 2, &["slot name", "invalid", "lower-case"]).await?;

    // Nothing set up: the publication is missing.
    let p = env.spawn_process(&[])?;
    expect_failure(
        p,
        3,
        &[
            "publication outbox_pub does not exist",
            "outbox-tailer setup",
        ],
    )
    .await?;

    // Publication but no slot.
    env.client
        .batch_execute("CREATE PUBLICATION outbox_pub FOR TABLE outbox WITH (publish = 'insert')")
        .await?;
    let p = env.spawn_process(&[])?;
    expect_failure(
        p,
        3,
        &[
            "replication slot outbox_slot does not exist",
            "outbox-tailer setup",
        ],
    )
    .await?;
    let slots: i64 = env
        .client
        .query_one("SELECT count(*) FROM pg_replication_slots", &[])
        .await?
        .get(0);
    assert_eq!(slots, 0, "run never creates a slot without --create-slot");

    // A publication that does not hold the outbox table.
    env.setup().await?;
    env.client
        .batch_execute("CREATE TABLE other (x int); CREATE PUBLICATION other_pub FOR TABLE other")
        .await?;
    let p = env.spawn_process(&["--publication", "other_pub"])?;
    expect_failure(
        p,
        3,
        &[
            "publication other_pub does not include the outbox table",
            "ALTER PUBLICATION",
        ],
    )
    .await?;

    // Wrong password for a role that needs one; the password never shows.
    env.client
        .batch_execute(
            "CREATE ROLE relay LOGIN REPLICATION PASSWORD 'right-pw-1'; \
             CREATE ROLE norepl LOGIN PASSWORD 'norepl-pw-1'",
        )
        .await?;
    let p = spawn_raw(&env, &run_as(&env, "relay", "wrong-pw-7f3a"))?;
    let stderr = expect_failure(p, 2, &["authentication failed", "password"]).await?;
    assert!(
        !stderr.contains("wrong-pw-7f3a"),
        "the password is printed:\n{stderr}"
    );

    // A role without REPLICATION.
    let p = spawn_raw(&env, &run_as(&env, "norepl", "norepl-pw-1"))?;
    let stderr = expect_failure(
        p,
        3,
        &["role norepl lacks the REPLICATION attribute", "ALTER ROLE"],
    )
    .await?;
    assert!(
        !stderr.contains("norepl-pw-1"),
        "the password is printed:\n{stderr}"
    );

    // Control: the same role with the right password streams (SCRAM over the replication
    // connection works, so the failures above are about the misconfigurations).
    let mut relay = spawn_raw(&env, &run_as(&env, "relay", "right-pw-1"))?;
    let ids = write_events(&env, 2, 2, 2).await?;
    consume_ids(&env, TOPIC, &ids).await?;
    let status = relay.terminate()?;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", relay.stderr());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_level_replica_is_refused() -> anyhow::Result<()> {
    let env = env_with(
        PgConfig::default().set("wal_level", "replica"),
        TansuStorage::Memory,
    )
    .await?;
    let p = env.spawn_process(&[])?;
    expect_failure(
        p,
        3,
        &[
            "wal_level is 'replica'",
            "wal_level = logical",
            "restart PostgreSQL",
        ],
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_row_stops_the_tailer_or_goes_to_the_dead_letter_topic() -> anyhow::Result<()> {
    let env = env().await?;
    env.client
        .batch_execute("ALTER TABLE outbox ALTER COLUMN aggregateid DROP NOT NULL")
        .await?;
    env.setup().await?;

    // good A | good B, bad X (NULL aggregateid), good C | good D
    let a = write_events(&env, 1, 1, 1).await?;
    let before_bad = current_wal_lsn(&env).await?;
    let mut client = env.db.connect().await?;
    let tx = client.transaction().await?;
    let b = emit(&tx, "order", "agg-b", "Evt", &json!({"b": 1}))
        .await?
        .to_string();
    let bad = uuid::Uuid::new_v4().to_string();
    tx.execute(
        "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) \
         VALUES ($1::text::uuid, 'order', NULL, 'Evt', '{\"bad\": true}')",
        &[&bad],
    )
    .await?;
    let c = emit(&tx, "order", "agg-c", "Evt", &json!({"c": 1}))
        .await?
        .to_string();
    tx.commit().await?;
    let d = write_events(&env, 1, 1, 1).await?;
    let end = current_wal_lsn(&env).await?;

    // Default: the tailer stops, naming the event, and does not confirm past it.
    let p = env.spawn_process(&[])?;
    let stderr = expect_failure(
        p,
        4,
        &[
            "unroutable outbox row",
            &format!("event id {bad}"),
            "aggregateid",
        ],
    )
    .await?;
    // The message names the transaction's commit LSN: the slot must stay at or before it.
    let bad_commit: Lsn = stderr
        .split("commit LSN ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the message names the commit LSN")
        .parse()?;
    assert!(
        bad_commit > before_bad,
        "commit LSN {bad_commit} of the bad transaction"
    );
    consume_ids(&env, TOPIC, &a).await?;
    let confirmed = env.confirmed_lsn().await?;
    assert!(
        confirmed <= bad_commit,
        "confirmed {confirmed} passed the unroutable transaction (commit LSN {bad_commit})"
    );

    // A restart reads the row again: it stops again on the same event.
    let p = env.spawn_process(&[])?;
    expect_failure(p, 4, &[&format!("event id {bad}, commit LSN {bad_commit}")]).await?;
    let confirmed = env.confirmed_lsn().await?;
    assert!(
        confirmed <= bad_commit,
        "the row was skipped on restart: confirmed {confirmed}"
    );

    // With a dead-letter topic the row is parked and the good rows around it flow.
    let mut tailer = env.spawn_process(&["--dead-letter-topic", "outbox.dlq"])?;
    let dlq = consume_ids(&env, "outbox.dlq", std::slice::from_ref(&bad)).await?;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let error = dlq[0]
        .header("outbox-error")
        .expect("dead-letter record has outbox-error");
    assert!(error.contains("aggregateid"), "outbox-error {error:?}");
    assert_eq!(
        position_of(&dlq[0]),
        (bad_commit, 1),
        "position of the dead-lettered row"
    );
    let good: Vec<String> = [a, vec![b, c], d].concat();
    let records = consume_ids(&env, TOPIC, &good).await?;
    assert!(
        records.iter().all(|r| r.header("id") != Some(bad.as_str())),
        "the unroutable row reached the normal topic"
    );
    assert_per_aggregate_order(&records);
    wait_until(
        Duration::from_secs(60),
        "the slot to pass the dead-lettered row",
        || async { Ok(env.confirmed_lsn().await? >= end) },
    )
    .await?;
    let status = tailer.terminate()?;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", tailer.stderr());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 11. Short wal_sender_timeout while the broker does not ack

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_wal_sender_timeout_with_a_stalled_broker_does_not_disconnect() -> anyhow::Result<()>
{
    let pg_config = PgConfig::default().set("wal_sender_timeout", "'2s'");
    let mut env = env_with(pg_config, TansuStorage::Sqlite).await?;
    env.setup().await?;
    // A small window: the pipeline stops reading the stream while Kafka does not ack.
    let tailer = spawn_in_process(env.config(&["--max-in-flight-events", "10"]));

    let mut ids = write_events(&env, 1, 1, 1).await?;
    consume_ids(&env, TOPIC, &ids).await?;
    let (pid, _) = walsender(&env).await?.expect("a walsender serves the slot");

    env.broker.stop();
    ids.extend(write_events(&env, 60, 5, 3).await?);
    let after = current_wal_lsn(&env).await?;
    // More than 3x wal_sender_timeout without acks.
    stays_false(
        Duration::from_secs(7),
        "the walsender to change or disappear",
        || async { Ok(walsender(&env).await?.map(|(p, _)| p) != Some(pid)) },
    )
    .await?;

    tokio::task::block_in_place(|| env.broker.start_again())?;
    let records = consume_ids(&env, TOPIC, &ids).await?;
    let got: HashSet<&str> = records.iter().filter_map(|r| r.header("id")).collect();
    assert_eq!(got.len(), ids.len());
    wait_until(
        Duration::from_secs(60),
        "confirmed_flush_lsn to pass the writes",
        || async { Ok(env.confirmed_lsn().await? >= after) },
    )
    .await?;
    assert_eq!(
        walsender(&env).await?.map(|(p, _)| p),
        Some(pid),
        "same walsender throughout"
    );
    let stats = tailer.stop().await?;
    assert_eq!(stats.reconnects, 0, "{stats:?}");
    let log = env.pg.server_log();
    assert!(
        !log.contains("terminating walsender process due to replication timeout"),
        "the walsender timed out:\n{log}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 10. One deadline for the whole stop

/// With the broker away and the window full inside a transaction, SIGTERM has the open
/// transaction to give up on, acks to wait for and a connection to close: one
/// `--shutdown-timeout-secs` covers all of it, not one per stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_within_one_shutdown_timeout() -> anyhow::Result<()> {
    let mut env = env().await?;
    env.setup().await?;
    let addr = format!("127.0.0.1:{}", outbox_testkit::free_port()?);
    let mut p = env.spawn_process(&[
        "--shutdown-timeout-secs",
        "4",
        "--max-in-flight-events",
        "5",
        "--metrics-addr",
        &addr,
    ])?;
    let ids = write_events(&env, 1, 1, 1).await?;
    consume_ids(&env, TOPIC, &ids).await?;
    env.broker.stop();
    write_events(&env, 1, 50, 1).await?;
    wait_until(
        Duration::from_secs(30),
        "the window to fill inside the 50-event transaction",
        || async {
            let metrics = scrape(&addr).await?;
            Ok(sample(&metrics, "outbox_tailer_in_flight_events") == Some(5.0))
        },
    )
    .await?;
    let started = std::time::Instant::now();
    let status = p.terminate()?;
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", p.stderr());
    assert!(
        took < Duration::from_secs(7),
        "a stop with a 4 s timeout took {took:?}:\n{}",
        p.stderr()
    );
    Ok(())
}
