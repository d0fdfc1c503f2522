//! What an on-call engineer runs: `status`, `peek`, the metrics endpoint and the slot watchdog,
//! against real PostgreSQL and tansu.

mod support;

use std::time::Duration;

use outbox_testkit::{free_port, PgConfig, TansuStorage};
use serde_json::{json, Value};
use support::*;

/// `status --json`, parsed.
async fn status_json(env: &Env, extra: &[&str]) -> anyhow::Result<Value> {
    let mut flags = vec!["--json"];
    flags.extend_from_slice(extra);
    let (code, out, err) = tailer_cli(&db_args(env, "status", &flags)).await?;
    anyhow::ensure!(code == Some(0), "status failed ({code:?}): {err}");
    Ok(serde_json::from_str(&out)?)
}

/// Write `n` single-event transactions; returns the event ids in commit order.
async fn write_events(env: &Env, n: usize, aggregate: &str) -> anyhow::Result<Vec<String>> {
    let mut client = env.db.connect().await?;
    let mut ids = Vec::new();
    for i in 0..n {
        let tx = client.transaction().await?;
        let id = emit(&tx, "order", aggregate, "OrderCreated", &json!({"n": i})).await?;
        tx.commit().await?;
        ids.push(id.to_string());
    }
    Ok(ids)
}

fn small_wal_keep() -> PgConfig {
    PgConfig::default()
        .set("max_slot_wal_keep_size", "'1MB'")
        .set("min_wal_size", "'32MB'")
        .set("max_wal_size", "'64MB'")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_healthy_slot_with_a_running_tailer() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let tailer = spawn_in_process(env.config(&[]));
    let ids = write_events(&env, 5, "a").await?;
    env.consume("outbox.event.order", ids.len()).await?;
    wait_until(
        Duration::from_secs(30),
        "the tailer to connect and confirm",
        || async {
            let s = status_json(&env, &[]).await?;
            Ok(s["active"] == json!(true) && s["lag_bytes"].as_i64().is_some_and(|b| b < 1 << 20))
        },
    )
    .await?;

    let s = status_json(&env, &[]).await?;
    assert_eq!(s["slot"], json!(SLOT));
    assert_eq!(s["plugin"], json!("pgoutput"));
    assert!(s["active_pid"].as_i64().is_some(), "{s:#}");
    assert!(s["confirmed_flush_lsn"].as_str().is_some());
    assert!(s["restart_lsn"].as_str().is_some());
    assert_eq!(s["wal_status"], json!("reserved"));
    assert_eq!(s["safe_wal_size"], Value::Null, "no max_slot_wal_keep_size");
    assert_eq!(s["wal_level"], json!("logical"));
    assert_eq!(s["publication"]["name"], json!(PUBLICATION));
    assert_eq!(s["publication"]["tables"], json!(["public.outbox"]));
    assert_eq!(s["publication"]["publishes"], json!(["insert"]));
    assert_eq!(s["verdict"]["health"], json!("healthy"), "{s:#}");

    let (code, table, _) = tailer_cli(&db_args(&env, "status", &[])).await?;
    assert_eq!(code, Some(0));
    assert!(table.contains("HEALTHY"), "{table}");
    assert!(table.contains("yes, pid"), "{table}");
    tailer.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_lagging_slot_says_no_tailer_is_connected() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    write_events(&env, 200, "a").await?;

    let s = status_json(&env, &["--lag-warn-bytes", "10000"]).await?;
    assert_eq!(s["active"], json!(false));
    assert!(s["lag_bytes"].as_i64().unwrap() > 10_000, "{s:#}");
    assert_eq!(s["verdict"]["health"], json!("lagging"), "{s:#}");
    assert!(
        s["verdict"]["action"]
            .as_str()
            .unwrap()
            .contains("no tailer is connected"),
        "{s:#}"
    );
    // The default threshold (64 MiB) is far away.
    let s = status_json(&env, &[]).await?;
    assert_eq!(s["verdict"]["health"], json!("healthy"), "{s:#}");

    // A missing slot is an error with the fix, also as a JSON log line.
    let (code, out, err) = tailer_cli(&db_args(
        &env,
        "status",
        &["--slot", "nope", "--log-format", "json"],
    ))
    .await?;
    assert_eq!(code, Some(3));
    assert!(out.is_empty());
    assert!(err.contains("outbox-tailer setup"), "{err}");
    let log_line = err
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a JSON log line");
    let log: Value = serde_json::from_str(log_line)?;
    assert_eq!(log["level"], json!("ERROR"), "{log:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_an_invalidated_and_an_at_risk_slot() -> anyhow::Result<()> {
    let env = env_with(small_wal_keep(), TansuStorage::Memory).await?;
    env.setup().await?;
    write_events(&env, 3, "a").await?;

    // Within max_slot_wal_keep_size, but far below the 1 GiB default warning threshold.
    let s = status_json(&env, &[]).await?;
    assert!(s["safe_wal_size"].as_i64().is_some(), "{s:#}");
    assert_eq!(s["verdict"]["health"], json!("at_risk"), "{s:#}");

    env.invalidate_slot().await?;
    let s = status_json(&env, &[]).await?;
    assert_eq!(s["wal_status"], json!("lost"), "{s:#}");
    assert_eq!(s["verdict"]["health"], json!("invalidated"), "{s:#}");
    assert!(
        s["verdict"]["action"]
            .as_str()
            .unwrap()
            .contains("Recovering from an invalidated slot"),
        "{s:#}"
    );
    let (_, table, _) = tailer_cli(&db_args(&env, "status", &[])).await?;
    assert!(table.contains("INVALIDATED"), "{table}");

    // `run` refuses the slot before streaming, with the same pointer.
    let (code, _, err) = tailer_cli(&env.run_args(&[])).await?;
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("invalidated"), "{err}");
    assert!(err.contains("docs/operations.md"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_shows_the_waiting_events_and_leaves_the_slot_where_it_was() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let mut client = env.db.connect().await?;
    let mut ids = Vec::new();
    for t in 0..3 {
        let tx = client.transaction().await?;
        for e in 0..2 {
            ids.push(
                emit(
                    &tx,
                    "order",
                    &format!("o-{t}"),
                    "OrderCreated",
                    &json!({"t": t, "e": e}),
                )
                .await?
                .to_string(),
            );
        }
        tx.commit().await?;
    }
    // A transaction without outbox rows, and one rolled back: neither is an event.
    client
        .batch_execute(
            "INSERT INTO orders (id, customer, amount_cents) VALUES (gen_random_uuid(), 'c', 1)",
        )
        .await?;
    let tx = client.transaction().await?;
    emit(&tx, "order", "x", "Rolled", &json!({})).await?;
    tx.rollback().await?;
    let before = env.confirmed_lsn().await?;

    let (code, out, err) = tailer_cli(&env_peek_args(&env, &["--json"])).await?;
    assert_eq!(code, Some(0), "{err}");
    let report: Value = serde_json::from_str(&out)?;
    let events = report["events"].as_array().unwrap();
    let header = |e: &Value, name: &str| {
        e["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == json!(name))
            .map(|h| h["value"].as_str().unwrap().to_owned())
    };
    let got: Vec<String> = events.iter().map(|e| header(e, "id").unwrap()).collect();
    assert_eq!(got, ids, "exactly the committed events, in commit order");
    assert_eq!(report["more"], json!(false));
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["topic"], json!("outbox.event.order"));
        assert_eq!(e["key"], json!(format!("o-{}", i / 2)));
        assert_eq!(e["seq"], json!(i % 2));
        assert_eq!(header(e, "outbox-lsn").as_deref(), e["commit_lsn"].as_str());
        assert_eq!(header(e, "type").as_deref(), Some("OrderCreated"));
        assert!(e["payload_bytes"].as_u64().unwrap() > 0);
        assert!(
            e.get("payload").is_none(),
            "no payload without --show-payload"
        );
    }

    // --limit counts events (not the Begin/Relation/Commit changes around them).
    let (_, out, _) = tailer_cli(&env_peek_args(
        &env,
        &["--json", "--limit", "3", "--show-payload"],
    ))
    .await?;
    let report: Value = serde_json::from_str(&out)?;
    let events = report["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(report["more"], json!(true));
    let payload: Value = serde_json::from_str(events[0]["payload"].as_str().unwrap())?;
    assert_eq!(payload, json!({"t": 0, "e": 0}));

    let (_, table, _) = tailer_cli(&env_peek_args(&env, &[])).await?;
    assert!(table.contains("6 event(s) waiting"), "{table}");
    assert!(table.contains(&ids[5]), "{table}");

    assert_eq!(
        env.confirmed_lsn().await?,
        before,
        "peek never moves the slot"
    );
    let leftovers: i64 = env
        .client
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name <> $1",
            &[&SLOT],
        )
        .await?
        .get(0);
    assert_eq!(leftovers, 0, "the temporary copy is gone");

    // Nothing was consumed: the tailer still delivers all of them.
    let tailer = spawn_in_process(env.config(&[]));
    let records = env.consume("outbox.event.order", ids.len()).await?;
    let delivered: Vec<&str> = records.iter().map(|r| r.header("id").unwrap()).collect();
    assert_eq!(delivered, ids);
    tailer.stop().await?;
    Ok(())
}

fn env_peek_args(env: &Env, extra: &[&str]) -> Vec<String> {
    db_args(env, "peek", extra)
}

/// What a consumer sees of a record, in peek's JSON terms: topic, key, headers in order,
/// payload, and the dead-letter reason (`outbox-error`).
fn as_peeked(r: &outbox_testkit::KafkaRecord) -> Value {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    json!({
        "topic": r.topic,
        "key": r.key.as_deref().map(lossy),
        "headers": r.headers.iter()
            .map(|(name, value)| json!({"name": name, "value": lossy(value)}))
            .collect::<Vec<_>>(),
        "payload": r.payload.as_deref().map(lossy),
        "unroutable": r.header("outbox-error"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peek_shows_exactly_what_run_then_publishes() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let routing = [
        "--message-prefix",
        "outbox",
        "--dead-letter-topic",
        "outbox.dlq",
    ];
    let envelope = |id: &str, key: &str| {
        json!({
            "id": id, "aggregatetype": "order", "aggregateid": key, "type": "ViaMessage",
            "payload": {"via": id}, "headers": {"tenant": "acme"}
        })
        .to_string()
    };
    let emit_msg = "SELECT pg_logical_emit_message($1, $2, $3)";
    let mut client = env.db.connect().await?;

    // Table rows and messages in one transaction; a message with another prefix is no event.
    let tx = client.transaction().await?;
    let first = emit(&tx, "order", "o-1", "OrderCreated", &json!({"n": 1})).await?;
    tx.execute(emit_msg, &[&true, &"outbox", &envelope("m-tx", "o-1")])
        .await?;
    tx.execute(emit_msg, &[&true, &"other", &envelope("m-other", "o-1")])
        .await?;
    let second = emit(&tx, "order", "o-1", "OrderPaid", &json!({"n": 2})).await?;
    tx.commit().await?;
    // Non-transactional messages: one event, one not JSON (dead-lettered), one ignored.
    client
        .execute(emit_msg, &[&false, &"outbox", &envelope("m-alone", "o-2")])
        .await?;
    client
        .execute(emit_msg, &[&false, &"outbox", &"not json"])
        .await?;
    client
        .execute(emit_msg, &[&false, &"other", &envelope("m-x", "o-2")])
        .await?;
    let tx = client.transaction().await?;
    let third = emit(&tx, "order", "o-3", "OrderCreated", &json!({"n": 3})).await?;
    tx.commit().await?;

    let mut flags = vec!["--json", "--show-payload"];
    flags.extend_from_slice(&routing);
    let (code, out, err) = tailer_cli(&env_peek_args(&env, &flags)).await?;
    assert_eq!(code, Some(0), "{err}");
    let report: Value = serde_json::from_str(&out)?;
    assert_eq!(report["more"], json!(false));
    let peeked = report["events"].as_array().unwrap();
    let on = |topic: &str| -> Vec<&Value> {
        peeked
            .iter()
            .filter(|e| e["topic"] == json!(topic))
            .collect()
    };
    let (events, dead) = (on("outbox.event.order"), on("outbox.dlq"));
    assert_eq!(events.len() + dead.len(), peeked.len(), "{report:#}");
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["headers"][0]["value"].as_str().unwrap())
        .collect();
    let (first, second, third) = (first.to_string(), second.to_string(), third.to_string());
    assert_eq!(ids, [&*first, "m-tx", &*second, "m-alone", &*third]);
    assert_eq!(dead.len(), 1, "{report:#}");
    // A non-transactional message never commits: no commit time, in peek or in the record.
    assert!(events[3].get("commit_time_us").is_none(), "{:#}", events[3]);
    assert!(events[0]["commit_time_us"].as_i64().is_some());

    let tailer = spawn_in_process(env.config(&routing));
    let published = env.consume("outbox.event.order", events.len()).await?;
    let dead_lettered = env.consume("outbox.dlq", dead.len()).await?;
    tailer.stop().await?;
    let shown = |e: &[&Value]| -> Vec<Value> {
        e.iter()
            .map(|e| {
                json!({
                    "topic": e["topic"], "key": e["key"], "headers": e["headers"],
                    "payload": e["payload"], "unroutable": e["unroutable"],
                })
            })
            .collect()
    };
    let consumed = |r: &[outbox_testkit::KafkaRecord]| r.iter().map(as_peeked).collect::<Vec<_>>();
    assert_eq!(consumed(&published), shown(&events));
    assert_eq!(consumed(&dead_lettered), shown(&dead));
    assert_eq!(published[3].header("outbox-commit-time-us"), None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_events_flow() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let tailer =
        spawn_in_process(env.config(&["--metrics-addr", &addr, "--slot-check-interval-ms", "200"]));
    wait_until(Duration::from_secs(30), "/readyz to answer 200", || async {
        Ok(http_get(&addr, "/readyz")
            .await
            .is_ok_and(|(code, _)| code == 200))
    })
    .await?;
    assert_eq!(http_get(&addr, "/healthz").await?.0, 200);
    assert_eq!(http_get(&addr, "/nope").await?.0, 404);

    let before = scrape(&addr).await?;
    assert_eq!(
        sample(&before, "outbox_tailer_events_published_total"),
        Some(0.0)
    );
    assert_eq!(sample(&before, "outbox_tailer_streaming"), Some(1.0));
    let confirmed_before = sample(&before, "outbox_tailer_confirmed_lsn").unwrap();

    let ids = write_events(&env, 10, "a").await?;
    env.consume("outbox.event.order", ids.len()).await?;
    wait_until(
        Duration::from_secs(30),
        "acks and the confirmed LSN in /metrics",
        || async {
            let m = scrape(&addr).await?;
            // On 18 the confirm also waits for the publication guard's next check.
            Ok(sample(&m, "outbox_tailer_events_acked_total") == Some(10.0)
                && sample(&m, "outbox_tailer_in_flight_events") == Some(0.0)
                && sample(&m, "outbox_tailer_slot_checks_total").is_some_and(|v| v >= 1.0)
                && sample(&m, "outbox_tailer_confirmed_lsn").is_some_and(|v| v > confirmed_before))
        },
    )
    .await?;
    let after = scrape(&addr).await?;
    assert_eq!(
        sample(&after, "outbox_tailer_events_published_total"),
        Some(10.0)
    );
    assert_eq!(
        sample(&after, "outbox_tailer_transactions_total"),
        Some(10.0)
    );
    assert!(sample(&after, "outbox_tailer_published_bytes_total").unwrap() > 10.0 * 36.0);
    assert_eq!(
        sample(&after, "outbox_tailer_publish_latency_seconds_count"),
        Some(10.0)
    );
    let confirmed = sample(&after, "outbox_tailer_confirmed_lsn").unwrap();
    assert!(
        confirmed > confirmed_before,
        "{confirmed} > {confirmed_before}"
    );
    assert!(sample(&after, "outbox_tailer_lag_seconds").unwrap() < 60.0);
    assert!(sample(&after, "outbox_tailer_slot_lag_bytes").is_some());
    assert_eq!(
        sample(&after, "outbox_tailer_slot_safe_wal_size_bytes"),
        Some(-1.0)
    );
    assert_eq!(sample(&after, "outbox_tailer_reconnects_total"), Some(0.0));

    // A walsender killed under the tailer: a reconnect and an error of kind `replication`.
    env.client
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
        ))
        .await?;
    wait_until(
        Duration::from_secs(30),
        "a reconnect in /metrics",
        || async {
            let m = scrape(&addr).await?;
            Ok(sample(&m, "outbox_tailer_reconnects_total") == Some(1.0)
                && m.contains("outbox_tailer_errors_total{kind=\"replication\"} 1"))
        },
    )
    .await?;
    let stats = tailer.stop().await?;
    assert_eq!(stats.events_published, 10);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_stops_the_tailer_when_the_slot_is_invalidated() -> anyhow::Result<()> {
    let env = env_with(small_wal_keep(), TansuStorage::Memory).await?;
    env.setup().await?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let tailer =
        spawn_in_process(env.config(&["--metrics-addr", &addr, "--slot-check-interval-ms", "100"]));
    let ids = write_events(&env, 3, "a").await?;
    env.consume("outbox.event.order", ids.len()).await?;
    wait_until(
        Duration::from_secs(30),
        "safe_wal_size in /metrics",
        || async {
            let m = scrape(&addr).await?;
            Ok(sample(&m, "outbox_tailer_slot_safe_wal_size_bytes").is_some_and(|v| v >= 0.0))
        },
    )
    .await?;

    // An open transaction with an xid pins the slot's restart_lsn while WAL piles up.
    let mut holder = env.db.connect().await?;
    let pin = holder.transaction().await?;
    pin.batch_execute(
        "INSERT INTO orders (id, customer, amount_cents) VALUES (gen_random_uuid(), 'pin', 1)",
    )
    .await?;
    env.invalidate_slot().await?;

    let result = tokio::time::timeout(Duration::from_secs(60), tailer.handle)
        .await
        .expect("the tailer stops on its own")?;
    let err = result
        .expect_err("an invalidated slot is fatal")
        .to_string();
    assert!(err.contains("invalidated"), "{err}");
    assert!(err.contains("docs/operations.md"), "{err}");
    pin.rollback().await?;
    Ok(())
}
