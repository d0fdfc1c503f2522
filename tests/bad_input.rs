//! Bad input, through the binary against real PostgreSQL and tansu: configuration errors exit
//! 2 before touching anything; rows that cannot be routed (no route value, too large) stop the
//! tailer without confirming them, or go to the dead-letter topic with the reason; a payload
//! that is not JSON is published unchanged from a text column, refused by PostgreSQL for a
//! jsonb column, and a logical message that is not a JSON envelope is unroutable.
//!
//! Already covered elsewhere: an invalid slot name, a NULL key (tailer_faults), unit tests of
//! each routing failure (crates/tailer/src/route.rs), the decoder fuzz loop
//! (crates/pgoutput/tests/fuzz_mutations.rs).

mod support;

use std::collections::HashSet;
use std::time::Duration;

use outbox_app::NewEvent;
use outbox_testkit::{consume_until, KafkaRecord};
use pgoutput::Lsn;
use serde_json::json;
use support::*;

const TOPIC: &str = "outbox.event.order";
const DLQ: &str = "outbox.dlq";

/// `outbox-tailer <args>` as a process, bounded; (exit code, stderr).
async fn tailer_cli(args: &[String]) -> anyhow::Result<(Option<i32>, String)> {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_outbox-tailer-under-test"))
            .args(args)
            .env("RUST_LOG", "info")
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

async fn count(env: &Env, sql: &str) -> anyhow::Result<i64> {
    Ok(env.client.query_one(sql, &[]).await?.get(0))
}

async fn current_wal_lsn(env: &Env) -> anyhow::Result<Lsn> {
    let row = env
        .client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?;
    Ok(row.get::<_, String>(0).parse()?)
}

/// One committed transaction of `order` events with these payloads; their ids.
async fn commit(env: &Env, payloads: &[serde_json::Value]) -> anyhow::Result<Vec<String>> {
    let mut client = env.db.connect().await?;
    let tx = client.transaction().await?;
    let mut ids = Vec::new();
    for p in payloads {
        ids.push(emit(&tx, "order", "agg-1", "Evt", p).await?.to_string());
    }
    tx.commit().await?;
    Ok(ids)
}

async fn consume_ids(env: &Env, topic: &str, want: &[String]) -> anyhow::Result<Vec<KafkaRecord>> {
    let want: HashSet<String> = want.iter().cloned().collect();
    consume_until(
        &env.broker.bootstrap_servers(),
        topic,
        Duration::from_secs(120),
        move |records| {
            let got: HashSet<&str> = records.iter().filter_map(|r| r.header("id")).collect();
            want.iter().all(|id| got.contains(id.as_str()))
        },
    )
    .await
}

fn record<'a>(records: &'a [KafkaRecord], id: &str) -> &'a KafkaRecord {
    records
        .iter()
        .find(|r| r.header("id") == Some(id))
        .unwrap_or_else(|| panic!("no record with id {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_exit_2_and_touch_nothing() -> anyhow::Result<()> {
    let env = env().await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("tailer.toml");
    std::fs::write(&file, "slot = \"outbox_slot\"\nslott = \"typo\"\n")?;
    let file = file.to_string_lossy().into_owned();

    let cases: Vec<(Vec<String>, &[&str])> = vec![
        (
            env.run_args(&["--create-slot", "--config", &file]),
            &["unknown field", "slott"],
        ),
        (
            env.run_args(&["--create-slot", "--slot", "outbox_slot; DROP TABLE outbox"]),
            &["slot name", "invalid", "lower-case"],
        ),
        (
            env.run_args(&[
                "--create-slot",
                "--publication",
                "pub\"; DROP TABLE outbox; --",
            ]),
            &["publication", "invalid", "plain identifier"],
        ),
        (
            vec![
                "setup".into(),
                "--postgres".into(),
                env.db.conn_str(),
                "--publication".into(),
                "two words".into(),
            ],
            &["publication", "invalid"],
        ),
        (
            vec![
                "setup".into(),
                "--postgres".into(),
                env.db.conn_str(),
                "--config".into(),
                file.clone(),
            ],
            &["unknown field", "slott"],
        ),
    ];
    for (args, expected) in cases {
        let (code, stderr) = tailer_cli(&args).await?;
        assert_eq!(code, Some(2), "{args:?}\n{stderr}");
        for e in expected {
            assert!(stderr.contains(e), "{args:?}: {e:?} missing from\n{stderr}");
        }
    }
    assert_eq!(
        count(&env, "SELECT count(*) FROM pg_replication_slots").await?,
        0
    );
    assert_eq!(count(&env, "SELECT count(*) FROM pg_publication").await?, 0);
    assert_eq!(
        count(&env, "SELECT count(*) FROM outbox").await?,
        0,
        "outbox intact"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_without_a_route_or_too_large_stop_the_tailer_or_are_dead_lettered(
) -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let limit = ["--max-message-bytes", "2000"];

    // good A | good B, empty aggregatetype X, oversized Y, good C | good D
    let a = commit(&env, &[json!({"a": 1})]).await?;
    let mut client = env.db.connect().await?;
    let tx = client.transaction().await?;
    let b = emit(&tx, "order", "agg-1", "Evt", &json!({"b": 1}))
        .await?
        .to_string();
    let x = emit(&tx, "", "agg-1", "Evt", &json!({"x": 1}))
        .await?
        .to_string();
    let big = json!({"pad": "y".repeat(5000)});
    let y = emit(&tx, "order", "agg-1", "Evt", &big).await?.to_string();
    let c = emit(&tx, "order", "agg-1", "Evt", &json!({"c": 1}))
        .await?
        .to_string();
    tx.commit().await?;
    let d = commit(&env, &[json!({"d": 1})]).await?;
    let end = current_wal_lsn(&env).await?;

    // Without a dead-letter topic: exit 1 naming the first bad event; A is published, the
    // bad transaction is not confirmed, so nothing after it is skipped.
    let (code, stderr) = tailer_cli(&env.run_args(&limit)).await?;
    assert!(code.is_some_and(|c| c != 0), "{stderr}");
    for e in [
        "unroutable outbox row",
        &format!("event id {x}"),
        "aggregatetype",
    ] {
        assert!(stderr.contains(e), "{e:?} missing from\n{stderr}");
    }
    consume_ids(&env, TOPIC, &a).await?;
    assert!(
        env.confirmed_lsn().await? < end,
        "the bad transaction was confirmed"
    );

    // With one: both bad rows are parked with their reason, the good rows flow around them.
    let mut dlq_args = limit.to_vec();
    dlq_args.extend(["--dead-letter-topic", DLQ]);
    let mut tailer = env.spawn_process(&dlq_args)?;
    let dead = consume_ids(&env, DLQ, &[x.clone(), y.clone()]).await?;
    assert_eq!(dead.len(), 2, "{dead:?}");
    let rx = record(&dead, &x);
    let reason = rx.header("outbox-error").expect("outbox-error header");
    assert!(
        reason.contains("route-by column `aggregatetype` is NULL or empty"),
        "{reason}"
    );
    assert_eq!(rx.payload_str(), Some("{\"x\": 1}"), "the payload is kept");
    let ry = record(&dead, &y);
    let reason = ry.header("outbox-error").expect("outbox-error header");
    assert!(
        reason.contains("exceeds max_message_bytes 2000"),
        "{reason}"
    );
    assert_eq!(
        ry.payload, None,
        "the oversized payload is dropped, the row is kept"
    );
    let good: Vec<String> = [a, vec![b, c], d].concat();
    let records = consume_ids(&env, TOPIC, &good).await?;
    assert!(records
        .iter()
        .all(|r| r.header("id") != Some(x.as_str()) && r.header("id") != Some(y.as_str())));
    wait_until(
        Duration::from_secs(60),
        "the slot to pass the dead-lettered rows",
        || async { Ok(env.confirmed_lsn().await? >= end) },
    )
    .await?;
    let status = tailer.terminate()?;
    assert_eq!(status.code(), Some(0), "{}", tailer.stderr());
    Ok(())
}

/// The tailer never parses a payload: the value is the column's bytes, unchanged. A text
/// payload column may hold anything; a jsonb column cannot hold invalid JSON (PostgreSQL
/// refuses the insert, the transaction never commits, nothing is there to lose).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_is_not_json_is_published_unchanged_or_refused_by_postgres(
) -> anyhow::Result<()> {
    let env = env().await?;
    let refused = env
        .client
        .execute(
            "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) \
             VALUES (gen_random_uuid(), 'order', 'agg-1', 'Evt', $1::text::jsonb)",
            &[&"not json {"],
        )
        .await
        .expect_err("jsonb refuses invalid JSON");
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_TEXT_REPRESENTATION),
        "{refused}"
    );

    env.client
        .batch_execute("ALTER TABLE outbox ALTER COLUMN payload TYPE text USING payload::text")
        .await?;
    env.setup().await?;
    let mut ids = Vec::new();
    for payload in ["not json {", "{\"ok\": true}", ""] {
        let id = uuid::Uuid::new_v4();
        env.client
            .execute(
                "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) \
                 VALUES ($1, 'order', 'agg-1', 'Evt', $2)",
                &[&id, &payload],
            )
            .await?;
        ids.push((id.to_string(), payload));
    }
    let tailer = spawn_in_process(env.config(&[]));
    let want: Vec<String> = ids.iter().map(|(id, _)| id.clone()).collect();
    let records = consume_ids(&env, TOPIC, &want).await?;
    for (id, payload) in &ids {
        assert_eq!(record(&records, id).payload_str(), Some(*payload), "{id}");
    }
    tailer.stop().await?;
    Ok(())
}

/// A logical decoding message under the configured prefix must be a JSON envelope; content
/// that is not is unroutable: the tailer stops on it, or dead-letters the raw content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logical_message_that_is_not_a_json_envelope_stops_or_is_dead_lettered(
) -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let prefix = ["--message-prefix", "outbox"];

    let mut client = env.db.connect().await?;
    let tx = client.transaction().await?;
    let good = NewEvent::new("order", "agg-1", "Evt", json!({"g": 1}));
    let before = outbox_app::emit_message(&tx, "outbox", &good)
        .await?
        .to_string();
    tx.execute(
        "SELECT pg_logical_emit_message(true, 'outbox', 'not a json envelope')",
        &[],
    )
    .await?;
    let after = outbox_app::emit_message(&tx, "outbox", &good)
        .await?
        .to_string();
    tx.commit().await?;
    let end = current_wal_lsn(&env).await?;

    let (code, stderr) = tailer_cli(&env.run_args(&prefix)).await?;
    assert!(code.is_some_and(|c| c != 0), "{stderr}");
    assert!(
        stderr.contains("logical message content is not a JSON object"),
        "{stderr}"
    );
    assert!(
        env.confirmed_lsn().await? < end,
        "the bad message was confirmed"
    );

    let mut args = prefix.to_vec();
    args.extend(["--dead-letter-topic", DLQ]);
    let mut tailer = env.spawn_process(&args)?;
    consume_ids(&env, TOPIC, &[before, after]).await?;
    let dead = consume_until(
        &env.broker.bootstrap_servers(),
        DLQ,
        Duration::from_secs(120),
        |r| !r.is_empty(),
    )
    .await?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].payload_str(), Some("not a json envelope"));
    let reason = dead[0].header("outbox-error").expect("outbox-error header");
    assert!(reason.contains("not a JSON object"), "{reason}");
    wait_until(Duration::from_secs(60), "the slot to pass it", || async {
        Ok(env.confirmed_lsn().await? >= end)
    })
    .await?;
    let status = tailer.terminate()?;
    assert_eq!(status.code(), Some(0), "{}", tailer.stderr());
    Ok(())
}

/// Each action has its own exit code (docs/operations.md): fix the configuration 2 and
/// operator recovery 4 are asserted above and in ops.rs/slot_invalidation.rs; here fix the
/// database 3 (a missing publication) and retry 5 (a server that is not there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_say_what_to_do() -> anyhow::Result<()> {
    let env = env().await?;
    let (code, stderr) = tailer_cli(&env.run_args(&[])).await?;
    assert_eq!(
        code,
        Some(3),
        "no publication yet: fix the database\n{stderr}"
    );
    assert!(stderr.contains("outbox-tailer setup"), "{stderr}");

    let closed = outbox_testkit::free_port()?;
    let args = [
        "status",
        "--postgres",
        &format!("host=127.0.0.1 port={closed} user=postgres dbname=postgres"),
    ]
    .map(String::from);
    let (code, stderr) = tailer_cli(&args).await?;
    assert_eq!(code, Some(5), "nobody listens: retry later\n{stderr}");
    assert!(stderr.contains("check that the server is up"), "{stderr}");
    Ok(())
}

/// A log collector reading `--log-format json` line by line gets JSON to the last line: a fatal
/// error is one JSON record (with its kind), never also a plain `error: …` line; the text
/// format keeps the plain line for a person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_stay_json_to_the_last_line() -> anyhow::Result<()> {
    let env = env().await?;
    let mut args = vec!["--log-format".to_owned(), "json".to_owned()];
    args.extend(env.run_args(&["--slot", "missing_slot"]));
    let (code, stderr) = tailer_cli(&args).await?;
    assert!(code.is_some_and(|c| c != 0), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the error is logged");
    for line in &lines {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{stderr}"));
        assert!(record.get("level").is_some(), "{line}");
    }
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("outbox-tailer stopped") && l.contains("\"ERROR\"")),
        "the last record is the fatal error: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes off a terminal: {stderr:?}"
    );

    let (_, text) = tailer_cli(&env.run_args(&["--slot", "missing_slot"])).await?;
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("error: ")),
        "text logs end with the plain error for a person: {text}"
    );
    assert!(!text.contains('\u{1b}'), "{text:?}");
    Ok(())
}
