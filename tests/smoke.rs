//! Proves the harness: a real PostgreSQL with logical decoding and a real tansu broker, both
//! started by the testkit, both gone after the test — also when a test panics.

use std::path::PathBuf;
use std::time::Duration;

use outbox_testkit::{consume_until, create_topic, PgCluster, TansuBroker};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

#[tokio::test]
async fn logical_slot_sees_an_insert() -> anyhow::Result<()> {
    let pg = PgCluster::start().await?;
    let db = pg.create_database().await?;
    let client = db.connect().await?;
    for sql in [
        "CREATE TABLE outbox (id bigint PRIMARY KEY, payload text)",
        "CREATE PUBLICATION smoke_pub FOR TABLE outbox WITH (publish = 'insert')",
        "SELECT pg_create_logical_replication_slot('smoke_slot', 'pgoutput')",
        "INSERT INTO outbox VALUES (1, 'hello')",
    ] {
        client.batch_execute(sql).await?;
    }
    let level: String = client.query_one("SHOW wal_level", &[]).await?.get(0);
    assert_eq!(level, "logical");
    let rows = client
        .query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes('smoke_slot', NULL, NULL,
               'proto_version', '1', 'publication_names', 'smoke_pub')",
            &[],
        )
        .await?;
    let tags: Vec<u8> = rows.iter().map(|r| r.get::<_, Vec<u8>>(0)[0]).collect();
    assert_eq!(tags, b"BRIC", "Begin, Relation, Insert, Commit");
    Ok(())
}

#[tokio::test]
async fn a_record_round_trips_through_tansu() -> anyhow::Result<()> {
    let broker = TansuBroker::start().await?;
    let bootstrap = broker.bootstrap_servers();
    create_topic(&bootstrap, "smoke", 1).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    producer
        .send(
            FutureRecord::to("smoke")
                .key("order-1")
                .payload("{\"total\":42}")
                .headers(OwnedHeaders::new().insert(Header {
                    key: "id",
                    value: Some("e-1"),
                })),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    let got = consume_until(&bootstrap, "smoke", Duration::from_secs(30), |r| {
        !r.is_empty()
    })
    .await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].key_str(), Some("order-1"));
    assert_eq!(got[0].payload_str(), Some("{\"total\":42}"));
    assert_eq!(got[0].header("id"), Some("e-1"));
    Ok(())
}

fn postmaster_pid(pg: &PgCluster) -> u32 {
    let pidfile = std::fs::read_to_string(pg.data_dir().join("postmaster.pid")).unwrap();
    pidfile.lines().next().unwrap().trim().parse().unwrap()
}

/// The process is gone (or a zombie waiting for init to reap it) and its directory removed.
fn gone(pid: u32, dir: &std::path::Path) -> bool {
    let dead = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    };
    dead && !dir.exists()
}

#[tokio::test]
async fn services_are_removed_on_drop() -> anyhow::Result<()> {
    let pg = PgCluster::start().await?;
    let pid = postmaster_pid(&pg);
    let dir = pg.data_dir();
    assert!(PathBuf::from(format!("/proc/{pid}")).exists());
    drop(pg);
    assert!(
        gone(pid, &dir),
        "postmaster {pid} or {} survived",
        dir.display()
    );

    let broker = TansuBroker::start().await?;
    let log = broker.log_path();
    assert!(log.exists());
    drop(broker);
    assert!(!log.exists(), "broker directory survived");
    Ok(())
}

#[test]
fn services_are_removed_when_a_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let pg = rt.block_on(PgCluster::start()).unwrap();
        tx.send((postmaster_pid(&pg), pg.data_dir())).unwrap();
        panic!("a failing test");
    })
    .join();
    assert!(outcome.is_err(), "the thread was meant to panic");
    let (pid, dir) = rx.recv().unwrap();
    assert!(
        gone(pid, &dir),
        "postmaster {pid} or {} survived",
        dir.display()
    );
}

#[tokio::test]
async fn a_record_round_trips_through_the_mock_cluster() -> anyhow::Result<()> {
    let mock = outbox_testkit::MockKafka::start_with_topics(1, &[("mock-smoke", 1)])?;
    let bootstrap = mock.bootstrap_servers().to_owned();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .create()?;
    producer
        .send(
            FutureRecord::to("mock-smoke").key("k").payload("v"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)?;
    let got = consume_until(&bootstrap, "mock-smoke", Duration::from_secs(30), |r| {
        !r.is_empty()
    })
    .await?;
    assert_eq!(got[0].key_str(), Some("k"));
    assert_eq!(got[0].payload_str(), Some("v"));
    Ok(())
}
