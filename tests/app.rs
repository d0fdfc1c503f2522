//! The producing side against a real PostgreSQL: migrations applied exactly once (also when two
//! migrators race), events that commit or roll back with the caller's transaction (rows and
//! logical messages), and a load generator that writes exactly what it was asked for.

use std::time::Duration;

use clap::Parser;
use outbox_app::cli::{self, Cli};
use outbox_app::load::{self, Amount, LoadConfig, Via};
use outbox_app::migrate::{self, Migration};
use outbox_app::orders::{self, FailPoint, NewOrder, ORDER_CREATED};
use outbox_app::{
    emit, emit_many, emit_message, emit_messages, AppError, MessageEnvelope, NewEvent, OutboxTable,
    OutboxWriter, DEFAULT_MESSAGE_PREFIX,
};
use outbox_testkit::{PgCluster, TestDb};
use pgoutput::{Bytes, Message};
use serde_json::{json, Value};
use tokio_postgres::Client;
use uuid::Uuid;

/// A fresh database with the embedded migrations applied.
async fn migrated() -> anyhow::Result<(PgCluster, TestDb, Client)> {
    let pg = PgCluster::start().await?;
    let db = pg.create_database().await?;
    let mut client = db.connect().await?;
    migrate::run(&mut client, &migrate::embedded()).await?;
    Ok((pg, db, client))
}

async fn count(client: &Client, table: &str) -> anyhow::Result<i64> {
    Ok(client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get(0))
}

/// A publication on the outbox and a pgoutput slot, created before anything is written.
async fn create_slot(client: &Client, name: &str) -> anyhow::Result<()> {
    // Separate statements: a slot cannot be created in a transaction that has written.
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION {name} FOR TABLE outbox WITH (publish = 'insert')"
        ))
        .await?;
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&name],
        )
        .await?;
    Ok(())
}

/// The logical messages the slot would deliver, as `(prefix, transactional, content)`.
async fn peek_messages(client: &Client, name: &str) -> anyhow::Result<Vec<(String, bool, Value)>> {
    let rows = client
        .query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
               'proto_version', '1', 'publication_names', $2, 'messages', 'true')",
            &[&name, &name],
        )
        .await?;
    let mut messages = Vec::new();
    for row in rows {
        let data: Vec<u8> = row.get(0);
        if let Message::LogicalMessage(m) = pgoutput::decode(&Bytes::from(data))? {
            let content: Value = serde_json::from_slice(&m.content)?;
            messages.push((m.prefix, m.flags & 1 == 1, content));
        }
    }
    Ok(messages)
}

#[tokio::test]
async fn failure_after_the_order_insert_leaves_neither_order_nor_event() -> anyhow::Result<()> {
    let (_pg, _db, mut client) = migrated().await?;
    let order = NewOrder {
        customer: "ada".into(),
        amount_cents: 4200,
    };
    let writer = OutboxWriter::default();

    let failed =
        orders::create_order(&mut client, &writer, &order, FailPoint::AfterOrderInsert).await;
    assert!(
        matches!(failed, Err(AppError::InjectedFailure)),
        "{failed:?}"
    );
    assert_eq!(count(&client, "orders").await?, 0);
    assert_eq!(count(&client, "outbox").await?, 0);

    let created = orders::create_order(&mut client, &writer, &order, FailPoint::Never).await?;
    assert_eq!(count(&client, "orders").await?, 1);
    let row = client
        .query_one(
            "SELECT id, aggregatetype, aggregateid, type, payload FROM outbox",
            &[],
        )
        .await?;
    assert_eq!(row.get::<_, Uuid>(0), created.event_id);
    assert_eq!(row.get::<_, String>(1), "order");
    assert_eq!(row.get::<_, String>(2), created.order_id.to_string());
    assert_eq!(row.get::<_, String>(3), ORDER_CREATED);
    let payload: Value = row.get(4);
    assert_eq!(payload["order_id"], json!(created.order_id));
    assert_eq!(payload["customer"], "ada");
    assert_eq!(payload["amount_cents"], 4200);
    Ok(())
}

#[tokio::test]
async fn emit_commits_and_rolls_back_with_the_callers_transaction() -> anyhow::Result<()> {
    let (_pg, _db, mut client) = migrated().await?;
    let event = |n: u32| {
        NewEvent::new(
            "invoice",
            format!("inv-{n}"),
            "InvoiceIssued",
            json!({"n": n}),
        )
    };

    let tx = client.transaction().await?;
    emit(&tx, &event(1)).await?;
    emit_many(&tx, &[event(2), event(3)]).await?;
    tx.rollback().await?;
    assert_eq!(count(&client, "outbox").await?, 0, "rolled back: no rows");

    let given = Uuid::new_v4();
    let tx = client.transaction().await?;
    let first = emit(
        &tx,
        &event(4)
            .with_id(given)
            .with_headers(json!({"trace": "t-4"})),
    )
    .await?;
    let many = emit_many(&tx, &[event(5), event(6), event(7)]).await?;
    tx.commit().await?;
    assert_eq!(first, given, "a given id is kept");

    let rows = client
        .query(
            "SELECT id, aggregateid, headers FROM outbox ORDER BY (payload->>'n')::int",
            &[],
        )
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [vec![given], many].concat());
    assert_eq!(
        rows[0].get::<_, Option<Value>>(2),
        Some(json!({"trace": "t-4"}))
    );
    assert_eq!(rows[1].get::<_, Option<Value>>(2), None);
    assert_eq!(rows[3].get::<_, String>(1), "inv-7");
    Ok(())
}

#[tokio::test]
async fn writer_uses_a_configured_schema_qualified_table() -> anyhow::Result<()> {
    let (_pg, _db, mut client) = migrated().await?;
    client
        .batch_execute(
            r#"CREATE SCHEMA app; CREATE TABLE app."Events" (LIKE outbox INCLUDING ALL)"#,
        )
        .await?;
    let writer = OutboxWriter::new(OutboxTable::new("app.Events")?);
    let e = NewEvent::new("order", "o-1", "OrderShipped", json!({}));
    let tx = client.transaction().await?;
    writer.emit(&tx, &e).await?;
    writer.emit_many(&tx, &[e.clone(), e]).await?;
    tx.commit().await?;
    assert_eq!(count(&client, r#"app."Events""#).await?, 3);
    assert_eq!(count(&client, "outbox").await?, 0);
    Ok(())
}

#[tokio::test]
async fn migrate_twice_applies_each_migration_once() -> anyhow::Result<()> {
    let pg = PgCluster::start().await?;
    let db = pg.create_database().await?;
    let mut client = db.connect().await?;
    let migrations = migrate::from_dir(std::path::Path::new(migrate::DEFAULT_MIGRATIONS_DIR))?;
    let files: Vec<String> = migrations.iter().map(|m| m.file.clone()).collect();

    let first = migrate::run(&mut client, &migrations).await?;
    assert_eq!(first.applied, files);
    let second = migrate::run(&mut client, &migrate::embedded()).await?;
    assert!(second.applied.is_empty(), "{second:?}");
    assert_eq!(second.already_applied, files);

    assert_eq!(
        count(&client, "outbox_app_migrations").await?,
        files.len() as i64
    );
    assert_eq!(
        count(&client, "outbox").await?,
        0,
        "the outbox table exists"
    );
    Ok(())
}

#[tokio::test]
async fn two_concurrent_migrates_apply_each_migration_exactly_once() -> anyhow::Result<()> {
    let pg = PgCluster::start().await?;
    let db = pg.create_database().await?;
    let (mut a, mut b) = (db.connect().await?, db.connect().await?);
    // Extra migrations widen the window in which the two runs interleave.
    let mut migrations = migrate::embedded();
    let first_extra = migrations.iter().map(|m| m.version).max().unwrap_or(0) + 1;
    let extras = first_extra..first_extra + 6;
    for v in extras.clone() {
        migrations.push(Migration {
            version: v,
            file: format!("{v:04}_extra.sql"),
            sql: format!("CREATE TABLE extra_{v} (id int); INSERT INTO extra_{v} VALUES ({v});"),
        });
    }

    let (ra, rb) = tokio::join!(
        migrate::run(&mut a, &migrations),
        migrate::run(&mut b, &migrations)
    );
    let (ra, rb) = (ra?, rb?);
    let mut applied = [ra.applied.clone(), rb.applied.clone()].concat();
    applied.sort();
    let files: Vec<String> = migrations.iter().map(|m| m.file.clone()).collect();
    assert_eq!(
        applied, files,
        "each applied by exactly one run: {ra:?} {rb:?}"
    );
    assert_eq!(ra.applied.len() + ra.already_applied.len(), files.len());
    assert_eq!(rb.applied.len() + rb.already_applied.len(), files.len());

    assert_eq!(
        count(&a, "outbox_app_migrations").await?,
        files.len() as i64
    );
    for v in extras {
        assert_eq!(count(&a, &format!("extra_{v}")).await?, 1);
    }
    Ok(())
}

#[tokio::test]
async fn an_edited_applied_migration_is_an_error_naming_the_file() -> anyhow::Result<()> {
    let (_pg, _db, mut client) = migrated().await?;
    let mut migrations = migrate::embedded();
    let edited = migrations
        .iter_mut()
        .find(|m| m.file == "0002_outbox.sql")
        .expect("0002_outbox.sql is embedded");
    edited
        .sql
        .push_str("\nALTER TABLE outbox ADD COLUMN sneaky int;");
    migrations.push(Migration {
        version: 9999,
        file: "9999_later.sql".into(),
        sql: "CREATE TABLE later (id int);".into(),
    });

    let err = migrate::run(&mut client, &migrations).await.unwrap_err();
    match &err {
        AppError::ChecksumMismatch { file, .. } => assert_eq!(file, "0002_outbox.sql"),
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("0002_outbox.sql"), "{err}");
    let later: Option<String> = client
        .query_one("SELECT to_regclass('later')::text", &[])
        .await?
        .get(0);
    assert_eq!(later, None, "nothing newer was applied after the mismatch");
    Ok(())
}

#[tokio::test]
async fn emitted_messages_are_decoded_only_when_their_transaction_commits() -> anyhow::Result<()> {
    let (_pg, _db, mut client) = migrated().await?;
    create_slot(&client, "app_messages").await?;

    let committed = NewEvent::new("order", "o-1", "OrderCreated", json!({"total": 42}))
        .with_headers(json!({"tenant": "t1"}));
    let tx = client.transaction().await?;
    let id = emit_message(&tx, DEFAULT_MESSAGE_PREFIX, &committed).await?;
    tx.commit().await?;

    let tx = client.transaction().await?;
    let rolled_back = NewEvent::new("order", "o-2", "OrderCreated", json!({"total": 7}));
    emit_message(&tx, DEFAULT_MESSAGE_PREFIX, &rolled_back).await?;
    tx.rollback().await?;

    let batch: Vec<NewEvent> = (0..3)
        .map(|n| NewEvent::new("order", format!("b-{n}"), "OrderPaid", json!([n])))
        .collect();
    let tx = client.transaction().await?;
    let batch_ids = emit_messages(&tx, "custom", &batch).await?;
    tx.commit().await?;

    let messages = peek_messages(&client, "app_messages").await?;
    assert_eq!(messages.len(), 4, "{messages:?}");
    let (prefix, transactional, content) = &messages[0];
    assert_eq!(prefix, DEFAULT_MESSAGE_PREFIX);
    assert!(transactional);
    assert_eq!(
        content,
        &json!({
            "id": id,
            "aggregatetype": "order",
            "aggregateid": "o-1",
            "type": "OrderCreated",
            "payload": {"total": 42},
            "headers": {"tenant": "t1"},
        })
    );
    for (n, (prefix, _, content)) in messages[1..].iter().enumerate() {
        assert_eq!(prefix, "custom");
        let envelope: MessageEnvelope = serde_json::from_value(content.clone())?;
        assert_eq!(envelope.id, batch_ids[n], "messages keep the given order");
        assert_eq!(envelope.aggregateid, format!("b-{n}"));
        assert_eq!(envelope.headers, None);
        assert_eq!(content["headers"], Value::Null);
    }
    assert!(
        messages.iter().all(|(_, _, c)| c["aggregateid"] != "o-2"),
        "the rolled-back message is never decoded"
    );
    assert_eq!(count(&client, "outbox").await?, 0, "messages write no rows");
    Ok(())
}

#[tokio::test]
async fn load_writes_exactly_the_requested_count() -> anyhow::Result<()> {
    let (_pg, db, client) = migrated().await?;
    let config = LoadConfig {
        events_per_tx: 5,
        concurrency: 3,
        ..LoadConfig::new(db.conn_str(), Amount::Count(37))
    };
    let summary = load::run(&config).await?;

    assert_eq!(count(&client, "outbox").await?, 37);
    assert_eq!(summary.events, 37);
    assert_eq!(
        summary.transactions, 8,
        "7 full transactions of 5 and one of 2"
    );
    assert!(!summary.interrupted);
    assert_rate_consistent(&summary);
    let keys: i64 = client
        .query_one("SELECT count(DISTINCT aggregateid) FROM outbox", &[])
        .await?
        .get(0);
    assert_eq!(keys, 16, "events cycle through the default 16 aggregates");
    Ok(())
}

#[tokio::test]
async fn load_writes_rate_times_duration_events_paced_over_the_duration() -> anyhow::Result<()> {
    let (_pg, db, client) = migrated().await?;
    let config = LoadConfig {
        rate: Some(20.0),
        events_per_tx: 2,
        concurrency: 2,
        ..LoadConfig::new(db.conn_str(), Amount::Duration(Duration::from_secs(2)))
    };
    let summary = load::run(&config).await?;

    assert_eq!(count(&client, "outbox").await?, 40);
    assert_eq!(summary.events, 40);
    assert_eq!(summary.transactions, 20);
    // The last transaction is scheduled at 38 events / 20 per second = 1.9 s.
    assert!(
        summary.elapsed >= Duration::from_millis(1900),
        "paced, not bursted: {summary:?}"
    );
    assert_rate_consistent(&summary);
    Ok(())
}

#[tokio::test]
async fn load_via_messages_writes_exactly_the_count_and_no_rows() -> anyhow::Result<()> {
    let (_pg, db, client) = migrated().await?;
    create_slot(&client, "app_load").await?;
    let config = LoadConfig {
        events_per_tx: 4,
        via: Via::Message {
            prefix: "load".into(),
        },
        ..LoadConfig::new(db.conn_str(), Amount::Count(10))
    };
    let summary = load::run(&config).await?;

    assert_eq!(summary.events, 10);
    assert_eq!(summary.transactions, 3);
    let messages = peek_messages(&client, "app_load").await?;
    let seqs: Vec<u64> = messages
        .iter()
        .map(|(prefix, _, c)| {
            assert_eq!(prefix, "load");
            c["payload"]["seq"].as_u64().expect("seq")
        })
        .collect();
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    assert_eq!(count(&client, "outbox").await?, 0);
    Ok(())
}

#[tokio::test]
async fn the_command_line_migrates_creates_orders_and_loads() -> anyhow::Result<()> {
    let pg = PgCluster::start().await?;
    let db = pg.create_database().await?;
    let conn = db.conn_str();
    let run = |args: &[&str]| {
        let argv = ["outbox-app", "--postgres", conn.as_str()]
            .into_iter()
            .chain(args.iter().copied());
        cli::run(Cli::parse_from(argv))
    };

    let before = run(&["create-order", "--customer", "ada", "--amount-cents", "1"]).await;
    assert!(
        matches!(before, Err(AppError::NotMigrated { .. })),
        "{before:?}"
    );
    run(&["migrate"]).await?;
    run(&["migrate", "--migrations", migrate::DEFAULT_MIGRATIONS_DIR]).await?;
    run(&[
        "create-order",
        "--customer",
        "ada",
        "--amount-cents",
        "4200",
    ])
    .await?;
    let failed = run(&[
        "create-order",
        "--customer",
        "bob",
        "--amount-cents",
        "1",
        "--fail-after-order",
    ])
    .await;
    assert!(
        matches!(failed, Err(AppError::InjectedFailure)),
        "{failed:?}"
    );
    run(&[
        "load",
        "--count",
        "6",
        "--events-per-tx",
        "3",
        "--concurrency",
        "2",
    ])
    .await?;

    let client = db.connect().await?;
    let migrations = migrate::embedded().len() as i64;
    assert_eq!(count(&client, "outbox_app_migrations").await?, migrations);
    assert_eq!(count(&client, "orders").await?, 1);
    assert_eq!(count(&client, "outbox").await?, 7);
    Ok(())
}

fn assert_rate_consistent(summary: &load::LoadSummary) {
    assert!(summary.events_per_sec > 0.0, "{summary:?}");
    let expected = summary.events as f64 / summary.elapsed.as_secs_f64();
    assert!(
        (summary.events_per_sec - expected).abs() < 1e-6 * expected.max(1.0),
        "{summary:?}"
    );
}
