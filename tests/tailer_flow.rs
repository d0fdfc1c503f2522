//! The tailer's happy paths against real PostgreSQL and tansu.

mod support;

use std::time::Duration;

use pgoutput::Lsn;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_events_arrive_in_commit_order_with_headers() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let tailer = spawn_in_process(env.config(&[]));
    let mut ids = Vec::new();
    for i in 0..20 {
        let mut client = env.db.connect().await?;
        let tx = client.transaction().await?;
        ids.push(
            emit(
                &tx,
                "order",
                &format!("o-{}", i % 3),
                "OrderCreated",
                &json!({"n": i}),
            )
            .await?,
        );
        ids.push(
            emit(
                &tx,
                "order",
                &format!("o-{}", i % 3),
                "OrderPaid",
                &json!({"n": i}),
            )
            .await?,
        );
        tx.commit().await?;
    }
    let records = env.consume("outbox.event.order", ids.len()).await?;
    assert_eq!(records.len(), ids.len());
    for r in &records {
        assert!(r.header("type").is_some());
        assert!(r.header("outbox-lsn").is_some());
        assert!(r.header("outbox-seq").is_some());
    }
    let got: Vec<String> = records
        .iter()
        .map(|r| r.header("id").unwrap().to_owned())
        .collect();
    let want: Vec<String> = ids.iter().map(|u| u.to_string()).collect();
    assert_eq!(got, want, "single partition: order equals commit order");
    let stats = tailer.stop().await?;
    assert_eq!(stats.events_published, 40);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_transactions_and_savepoints_produce_nothing() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let tailer = spawn_in_process(env.config(&[]));
    let mut client = env.db.connect().await?;

    let tx = client.transaction().await?;
    emit(&tx, "order", "a", "Rolled", &json!({})).await?;
    tx.rollback().await?;

    let mut tx = client.transaction().await?;
    let kept_before = emit(&tx, "order", "a", "Kept", &json!({"at": "before"})).await?;
    {
        let sp = tx.savepoint("sp").await?;
        emit(&sp, "order", "a", "RolledSavepoint", &json!({})).await?;
        sp.rollback().await?;
    }
    let kept_after = emit(&tx, "order", "a", "Kept", &json!({"at": "after"})).await?;
    tx.commit().await?;

    // A last, committed marker: once it arrived, everything before it has been decided.
    let tx = client.transaction().await?;
    let marker = emit(&tx, "order", "a", "Marker", &json!({})).await?;
    tx.commit().await?;

    let records = env.consume("outbox.event.order", 3).await?;
    let ids: Vec<&str> = records.iter().map(|r| r.header("id").unwrap()).collect();
    assert_eq!(
        ids,
        [
            kept_before.to_string(),
            kept_after.to_string(),
            marker.to_string()
        ],
        "only committed, non-rolled-back rows, in order"
    );
    assert!(records.iter().all(|r| r.header("type") != Some("Rolled")));
    tailer.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_transactions_come_out_in_commit_order() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let tailer = spawn_in_process(env.config(&[]));
    let mut a = env.db.connect().await?;
    let mut b = env.db.connect().await?;

    // A starts first and writes first, but commits last.
    let ta = a.transaction().await?;
    let a1 = emit(&ta, "order", "x", "A1", &json!({})).await?;
    let tb = b.transaction().await?;
    let b1 = emit(&tb, "order", "x", "B1", &json!({})).await?;
    let a2 = emit(&ta, "order", "x", "A2", &json!({})).await?;
    let b2 = emit(&tb, "order", "x", "B2", &json!({})).await?;
    tb.commit().await?;
    ta.commit().await?;

    let records = env.consume("outbox.event.order", 4).await?;
    let ids: Vec<String> = records
        .iter()
        .map(|r| r.header("id").unwrap().to_owned())
        .collect();
    let want: Vec<String> = [b1, b2, a1, a2].iter().map(|u| u.to_string()).collect();
    assert_eq!(ids, want, "commit order, not start order");
    let lsn = |i: usize| {
        records[i]
            .header("outbox-lsn")
            .unwrap()
            .parse::<pgoutput::Lsn>()
            .unwrap()
    };
    assert!(lsn(0) < lsn(2), "B committed before A");
    assert_eq!(records[0].header("outbox-seq"), Some("0"));
    assert_eq!(records[1].header("outbox-seq"), Some("1"));
    tailer.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_row_insert_and_copy_deliver_every_row_in_order() -> anyhow::Result<()> {
    use futures::SinkExt;

    let env = env().await?;
    env.setup().await?;
    let tailer = spawn_in_process(env.config(&[]));
    env.client
        .batch_execute(
            "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload)
             SELECT gen_random_uuid(), 'bulk', 'k' || (i % 7), 'Multi', jsonb_build_object('i', i)
             FROM generate_series(0, 499) AS i",
        )
        .await?;
    let copy = env
        .client
        .copy_in("COPY outbox (id, aggregatetype, aggregateid, type, payload) FROM STDIN")
        .await?;
    let mut lines = String::new();
    for i in 500..1000 {
        lines.push_str(&format!(
            "{}\tbulk\tk{}\tCopied\t{{\"i\": {i}}}\n",
            uuid::Uuid::new_v4(),
            i % 7
        ));
    }
    futures::pin_mut!(copy);
    copy.send(bytes::Bytes::from(lines)).await?;
    copy.finish().await?;

    let records = env.consume("outbox.event.bulk", 1000).await?;
    assert_eq!(records.len(), 1000);
    for (i, r) in records.iter().enumerate() {
        let payload: serde_json::Value = serde_json::from_slice(r.payload.as_deref().unwrap())?;
        assert_eq!(payload["i"], i, "row {i} out of order");
        assert_eq!(r.key_str(), Some(format!("k{}", i % 7).as_str()));
        assert_eq!(r.header("outbox-seq"), Some((i % 500).to_string().as_str()));
        assert_eq!(
            r.header("type"),
            Some(if i < 500 { "Multi" } else { "Copied" })
        );
    }
    tailer.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_transaction_stays_within_the_in_flight_window() -> anyhow::Result<()> {
    const ROWS: u64 = 200_000;
    const WINDOW: u64 = 1_000;
    let env = env().await?;
    env.setup().await?;
    let tailer = spawn_in_process(env.config(&["--max-in-flight-events", &WINDOW.to_string()]));
    let end: String = {
        env.client
            .batch_execute(&format!(
                "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload)
                 SELECT gen_random_uuid(), 'huge', 'h' || (i % 10), 'Bulk', jsonb_build_object('i', i)
                 FROM generate_series(1, {ROWS}) AS i"
            ))
            .await?;
        env.client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await?
            .get(0)
    };
    let end: pgoutput::Lsn = end.parse()?;
    wait_until(
        Duration::from_secs(300),
        "the huge transaction to be confirmed",
        || async { Ok(env.confirmed_lsn().await? >= end) },
    )
    .await?;
    let stats = tailer.stop().await?;
    assert_eq!(stats.events_published, ROWS);
    assert_eq!(stats.events_acked, ROWS);
    assert!(
        stats.peak_in_flight <= WINDOW,
        "peak in flight {} > {WINDOW}",
        stats.peak_in_flight
    );
    let records = env.consume("outbox.event.huge", ROWS as usize).await?;
    assert_eq!(records.len() as u64, ROWS);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tailer_keeps_slot_lag_near_zero_under_unrelated_writes() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let tailer = spawn_in_process(env.config(&["--status-interval-ms", "200"]));
    let before = env.current_wal_lsn().await?;
    for _ in 0..5 {
        env.client
            .batch_execute(
                "INSERT INTO orders (id, customer, amount_cents)
                 SELECT gen_random_uuid(), repeat('c', 200), i FROM generate_series(1, 20000) AS i",
            )
            .await?;
    }
    // WAL written, measured at the server: the tailer may already be confirming meanwhile.
    let after = env.current_wal_lsn().await?;
    let written = after.as_u64() - before.as_u64();
    assert!(
        written > 4 << 20,
        "the writes produced {written} bytes of WAL"
    );
    wait_until(
        Duration::from_secs(60),
        "slot lag to return near zero",
        || async { Ok(env.slot_lag_bytes().await? < 64 << 10) },
    )
    .await?;
    tailer.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logical_messages_are_routed_like_table_rows() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let tailer = spawn_in_process(env.config(&["--message-prefix", "outbox"]));
    let envelope = |id: &str, n: u32| {
        json!({
            "id": id, "aggregatetype": "order", "aggregateid": "m-1", "type": "ViaMessage",
            "payload": {"n": n}, "headers": {"tenant": "acme"}
        })
        .to_string()
    };
    let mut client = env.db.connect().await?;
    let emit_msg = "SELECT pg_logical_emit_message($1, $2, $3)";

    let tx = client.transaction().await?;
    tx.execute(emit_msg, &[&true, &"outbox", &envelope("m-a", 1)])
        .await?;
    tx.execute(emit_msg, &[&true, &"other-prefix", &envelope("m-x", 9)])
        .await?;
    tx.commit().await?;

    let tx = client.transaction().await?;
    tx.execute(emit_msg, &[&true, &"outbox", &envelope("m-rolled", 2)])
        .await?;
    tx.rollback().await?;

    client
        .execute(emit_msg, &[&false, &"outbox", &envelope("m-b", 3)])
        .await?;
    let tx = client.transaction().await?;
    let row_id = emit(&tx, "order", "m-1", "ViaTable", &json!({"n": 4})).await?;
    tx.commit().await?;

    let records = env.consume("outbox.event.order", 3).await?;
    let ids: Vec<&str> = records.iter().map(|r| r.header("id").unwrap()).collect();
    assert_eq!(ids, ["m-a", "m-b", row_id.to_string().as_str()]);
    assert_eq!(records[0].key_str(), Some("m-1"));
    assert_eq!(records[0].header("type"), Some("ViaMessage"));
    assert_eq!(records[0].header("tenant"), Some("acme"));
    let payload: serde_json::Value =
        serde_json::from_slice(records[0].payload.as_deref().unwrap())?;
    assert_eq!(payload, json!({"n": 1}));
    tailer.stop().await?;
    Ok(())
}

/// Every event's position (`outbox-lsn`, `outbox-seq`) is unique and follows the order events
/// are published in, also when a non-transactional message ends right where a transaction's
/// commit record begins (the transaction that emitted it, here): PostgreSQL reports a message
/// at its record's end, a transaction at its commit record's start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_are_unique_and_ordered_across_messages_and_transactions() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let tailer = spawn_in_process(env.config(&["--message-prefix", "outbox"]));
    let envelope = |id: &str| {
        json!({
            "id": id, "aggregatetype": "order", "aggregateid": "p-1", "type": "Evt",
            "payload": {}
        })
        .to_string()
    };
    let mut client = env.db.connect().await?;
    let emit_msg = "SELECT pg_logical_emit_message($1, $2, $3)";
    for i in 0..3 {
        let tx = client.transaction().await?;
        emit(&tx, "order", "p-1", "ViaTable", &json!({"i": i})).await?;
        tx.execute(
            emit_msg,
            &[&false, &"outbox", &envelope(&format!("standalone-{i}"))],
        )
        .await?;
        tx.commit().await?;
    }
    let records = env.consume("outbox.event.order", 6).await?;
    let positions: Vec<(Lsn, u32)> = records
        .iter()
        .map(|r| {
            let lsn = r
                .header("outbox-lsn")
                .expect("outbox-lsn")
                .parse()
                .expect("an LSN");
            let seq = r
                .header("outbox-seq")
                .expect("outbox-seq")
                .parse()
                .expect("a number");
            (lsn, seq)
        })
        .collect();
    let mut sorted = positions.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted, positions,
        "unique and in publishing order: {positions:?}"
    );
    tailer.stop().await?;
    Ok(())
}

/// A team whose outbox columns have other names sets them once for the tailer and the
/// writer: the writer's message envelopes use the same keys, so the tailer reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_envelopes_follow_the_configured_column_names() -> anyhow::Result<()> {
    use outbox_app::{NewEvent, OutboxColumns, OutboxTable, OutboxWriter};
    let env = env().await?;
    env.setup().await?;
    let columns = OutboxColumns {
        id: "event_id".into(),
        aggregate_type: "kind".into(),
        aggregate_id: "entity".into(),
        event_type: "event_type".into(),
        payload: "body".into(),
        headers: "meta".into(),
    };
    let tailer = spawn_in_process(env.config(&[
        "--message-prefix",
        "outbox",
        "--id-column",
        "event_id",
        "--route-by",
        "kind",
        "--key-column",
        "entity",
        "--type-column",
        "event_type",
        "--payload-column",
        "body",
        "--headers-column",
        "meta",
    ]));
    let writer = OutboxWriter::with_columns(OutboxTable::default(), columns)?;
    let mut client = env.db.connect().await?;
    let tx = client.transaction().await?;
    let event = NewEvent::new("invoice", "inv-7", "InvoiceSent", json!({"total": 12}))
        .with_headers(json!({"tenant": "acme"}));
    let id = writer.emit_message(&tx, "outbox", &event).await?;
    tx.commit().await?;
    let records = env.consume("outbox.event.invoice", 1).await?;
    assert_eq!(records[0].header("id"), Some(id.to_string().as_str()));
    assert_eq!(records[0].key_str(), Some("inv-7"));
    assert_eq!(records[0].header("type"), Some("InvoiceSent"));
    assert_eq!(records[0].header("tenant"), Some("acme"));
    tailer.stop().await?;
    Ok(())
}

/// A Debezium JsonConverter deployment's records, and the writer's trace context carried to
/// the consumer: the writer library stores it, the tailer turns it into W3C headers, the
/// record's timestamp is the commit time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_records_carry_the_writers_trace_context_and_commit_time() -> anyhow::Result<()> {
    use outbox_app::writer::{NewEvent, OutboxWriter, TraceContext};

    let env = env().await?;
    env.setup().await?;
    let tailer = spawn_in_process(env.config(&[
        "--key-format",
        "json",
        "--value-format",
        "json",
        "--field-placement",
        "type:envelope:eventType",
    ]));
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let trace = TraceContext::new(traceparent, Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"))?;
    let writer = OutboxWriter::default();
    let mut client = env.db.connect().await?;
    let tx = client.transaction().await?;
    let traced = writer
        .emit(
            &tx,
            &NewEvent::new(
                "order",
                "o-1",
                "OrderCreated",
                json!({"total": 12.5, "note": "a\"b"}),
            )
            .with_trace(trace.clone()),
        )
        .await?;
    let plain = writer
        .emit(&tx, &NewEvent::new("order", "o-2", "OrderPaid", json!({})))
        .await?;
    tx.commit().await?;

    let records = env.consume("outbox.event.order", 2).await?;
    let by_id = |id: uuid::Uuid| {
        records
            .iter()
            .find(|r| r.header("id") == Some(id.to_string().as_str()))
            .expect("the event arrived")
    };
    let r = by_id(traced);
    assert_eq!(r.key.as_deref(), Some(&b"\"o-1\""[..]), "a JSON string key");
    assert_eq!(
        std::str::from_utf8(r.payload.as_deref().unwrap())?,
        r#"{"payload":"{\"note\": \"a\\\"b\", \"total\": 12.5}","eventType":"OrderCreated"}"#,
        "the jsonb text as a JSON string beside the placed field"
    );
    assert_eq!(r.header("traceparent"), Some(traceparent));
    assert_eq!(
        r.header("traceparent").map(|p| &p[3..35]),
        Some(trace.trace_id()),
        "the consumer continues the writer's trace"
    );
    assert_eq!(
        r.header("tracestate"),
        Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
    );
    let commit_header: i64 = r.header("outbox-commit-time-us").unwrap().parse()?;
    assert_eq!(
        r.timestamp,
        Some(commit_header / 1000),
        "record time = commit time"
    );
    assert!(by_id(plain).header("traceparent").is_none());
    tailer.stop().await?;
    Ok(())
}

/// A backlog that committed well before the tailer reads it is read in paced pieces
/// (`--catch-up-pause-ms`, `relay/read_pacing.rs`) and still arrives whole and in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_far_behind_is_read_paced_and_arrives_whole_in_order() -> anyhow::Result<()> {
    const TXNS: usize = 100;
    const ROWS: usize = 100;
    let env = env().await?;
    env.setup().await?;
    for t in 0..TXNS {
        env.client
            .batch_execute(&format!(
                "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload)
                 SELECT gen_random_uuid(), 'paced', 'p', 'Bulk', jsonb_build_object('n', i)
                 FROM generate_series({}, {}) AS i",
                t * ROWS,
                (t + 1) * ROWS - 1
            ))
            .await?;
    }
    // The input of this test is the backlog's age: pacing starts once the walsender sends
    // transactions that committed more than BEHIND ago (server clock), so wait until the
    // server's clock is well past the last commit.
    let committed: String = env
        .client
        .query_one("SELECT clock_timestamp()::text", &[])
        .await?
        .get(0);
    let aged = format!(
        "SELECT clock_timestamp() - '{committed}'::timestamptz > interval '{} milliseconds'",
        outbox_tailer::relay::read_pacing::BEHIND.as_millis() * 2
    );
    wait_until(Duration::from_secs(30), "the backlog to age", || async {
        Ok(env
            .client
            .query_one(aged.as_str(), &[])
            .await?
            .get::<_, bool>(0))
    })
    .await?;

    let addr = format!("127.0.0.1:{}", outbox_testkit::free_port()?);
    let tailer = spawn_in_process(env.config(&["--metrics-addr", &addr]));
    let records = env.consume("outbox.event.paced", TXNS * ROWS).await?;
    let numbers = records
        .iter()
        .map(|r| {
            let payload: serde_json::Value = serde_json::from_str(r.payload_str().unwrap_or(""))?;
            payload["n"]
                .as_u64()
                .ok_or_else(|| anyhow::anyhow!("no n in {payload}"))
        })
        .collect::<anyhow::Result<Vec<u64>>>()?;
    let want: Vec<u64> = (0..(TXNS * ROWS) as u64).collect();
    assert_eq!(
        numbers, want,
        "one aggregate: every event once, in commit order"
    );

    let pauses = sample(&scrape(&addr).await?, "outbox_tailer_catch_up_pauses_total");
    assert!(
        pauses.is_some_and(|p| p >= 1.0),
        "the backlog was not read paced: outbox_tailer_catch_up_pauses_total = {pauses:?}"
    );
    let stats = tailer.stop().await?;
    assert_eq!(stats.events_published, (TXNS * ROWS) as u64);
    Ok(())
}
