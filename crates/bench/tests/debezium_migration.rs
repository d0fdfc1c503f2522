//! Migrating from Debezium to the tailer under load, as docs/migrating-from-debezium.md
//! describes the cut-over: Debezium 3.6.3 (embedded engine, Outbox Event Router, Kafka
//! Connect's JsonConverter without schemas) streams an outbox while a writer inserts events
//! for a set of keys; Debezium is stopped cleanly (SIGTERM); the tailer starts on Debezium's
//! own slot and publication with the configuration `outbox-tailer import-debezium` makes of
//! the properties Debezium ran with; the writer keeps writing throughout.
//!
//! ```text
//!   writer   ──────────────────────────────────────────────────▶ stop
//!   Debezium ──▶ SIGTERM (confirms C)
//!   tailer                   start at C ──────────────────────────▶ drained
//!   commit order:  [ Debezium only | both: the switch-over window | tailer only ]
//! ```
//!
//! Then the consumer's view: every inserted event is there; each key kept its partition
//! across the switch; per key the sequence numbers are in order once duplicates are removed;
//! and the duplicates are exactly the events Debezium published after the position it
//! confirmed, each once from each relay, a contiguous run of the commit order that starts
//! right after Debezium's confirmed position. Needs a JDK 17 and python3 with pip, like
//! debezium_smoke.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use common::{read_topic, wait_for_records, Record, Relay, TAILER_BIN};
use outbox_bench::relay::debezium::connection_props;
use outbox_testkit::{MockKafka, PgCluster, TestDb};

const TOPIC: &str = "outbox.event.order";
const PARTITIONS: i32 = 6;
const KEYS: u64 = 24;
const SLOT: &str = "debezium_outbox";
const PUBLICATION: &str = "debezium_outbox_pub";
/// Events each relay publishes before the next step (at the writer's ~400 events/s).
const STEP_EVENTS: i64 = 400;

const SCHEMA: &str = "CREATE TABLE outbox (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    aggregatetype text NOT NULL,
    aggregateid text NOT NULL,
    type text NOT NULL,
    payload jsonb NOT NULL
);";

/// One committed event, in commit order.
#[derive(Debug, Clone)]
struct Written {
    id: String,
    key: String,
    seq: u64,
}

/// Inserts transactions of 1 to 3 events every few milliseconds until `stop`, each event
/// carrying its key's next sequence number; returns the committed events in commit order (one
/// connection, one transaction after the other).
async fn write_until(
    db: TestDb,
    stop: Arc<AtomicBool>,
    committed: Arc<AtomicU64>,
) -> anyhow::Result<Vec<Written>> {
    let mut client = db.connect().await?;
    let insert = client
        .prepare(
            "INSERT INTO outbox (aggregatetype, aggregateid, type, payload) \
             VALUES ('order', $1, 'OrderUpdated', jsonb_build_object('key', $1::text, 'seq', $2::bigint)) \
             RETURNING id::text",
        )
        .await?;
    let mut next_seq: HashMap<String, u64> = HashMap::new();
    let mut written = Vec::new();
    // Load, not synchronisation: a steady ~400 events/s.
    let mut pace = tokio::time::interval(Duration::from_millis(5));
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        pace.tick().await;
        let tx = client.transaction().await?;
        let mut batch = Vec::new();
        for _ in 0..1 + n % 3 {
            // A spread that is not round-robin, so neighbouring keys interleave.
            let key = format!("order-{}", (n * 7 + n / KEYS) % KEYS);
            let seq = next_seq.get(&key).copied().unwrap_or(0) + 1;
            let id: String = tx.query_one(&insert, &[&key, &(seq as i64)]).await?.get(0);
            batch.push(Written {
                id,
                key: key.clone(),
                seq,
            });
            next_seq.insert(key, seq);
            n += 1;
        }
        tx.commit().await?;
        committed.fetch_add(batch.len() as u64, Ordering::Relaxed);
        written.extend(batch);
    }
    Ok(written)
}

/// Which relay published a record: Debezium's carry its context headers.
fn by_debezium(r: &Record) -> bool {
    r.headers.iter().any(|(k, _)| k.starts_with("__debezium."))
}

/// `(key, seq)` from a record's value: JsonConverter's JSON string holding the jsonb text.
fn key_and_seq(r: &Record) -> anyhow::Result<(String, u64)> {
    let value = r.value.as_deref().context("a record without a value")?;
    let text: String = serde_json::from_slice(value)
        .with_context(|| format!("value is not a JSON string: {value:?}"))?;
    let payload: serde_json::Value = serde_json::from_str(&text)?;
    let key = payload["key"].as_str().context("payload without key")?;
    let seq = payload["seq"].as_u64().context("payload without seq")?;
    Ok((key.to_owned(), seq))
}

fn header<'a>(r: &'a Record, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
}

async fn slot_confirmed(client: &tokio_postgres::Client) -> anyhow::Result<Option<String>> {
    Ok(client
        .query_opt(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&SLOT],
        )
        .await?
        .and_then(|r| r.get(0)))
}

/// Wait until `cond` holds on the cluster, while `relay` runs.
async fn wait_until(
    client: &tokio_postgres::Client,
    sql: &str,
    relay: &mut Relay,
    within: Duration,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        let done: Option<bool> = client.query_opt(sql, &[]).await?.and_then(|r| r.get(0));
        if done == Some(true) {
            return Ok(());
        }
        relay.ensure_alive()?;
        anyhow::ensure!(Instant::now() < deadline, "{what}: not within {within:?}");
        tick.tick().await;
    }
}

fn lsn(text: &str) -> anyhow::Result<u64> {
    let (hi, lo) = text.split_once('/').context("an LSN is hi/lo")?;
    Ok((u64::from_str_radix(hi, 16)? << 32) | u64::from_str_radix(lo, 16)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_to_tailer_under_load_loses_nothing_and_keeps_key_order() -> anyhow::Result<()> {
    let started = Instant::now();
    let debezium = common::debezium().await?;
    let pg = PgCluster::start().await?;
    let db = pg.create_database().await?;
    let client = db.connect().await?;
    client.batch_execute(SCHEMA).await?;
    let kafka = MockKafka::start_with_topics(1, &[(TOPIC, PARTITIONS)])?;
    let bootstrap = kafka.bootstrap_servers().to_owned();
    let topics = [TOPIC.to_owned()];
    let dir = tempfile::Builder::new()
        .prefix("debezium-migration-")
        .tempdir()?;

    // Debezium as a deployment runs it: it creates its slot and its publication (filtered:
    // the outbox table only) and commits offsets every minute (the default), on stop too.
    let properties = dir.path().join("debezium.properties");
    let mut props = connection_props(pg.port(), &db.name, SLOT, &bootstrap, dir.path(), true);
    props.extend(
        [
            ("publication.name", PUBLICATION),
            ("publication.autocreate.mode", "filtered"),
            ("bench.key.converter", "json"),
            ("bench.value.converter", "json"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    props.push(("bench.config.out".into(), properties.display().to_string()));
    let mut dbz = Relay::debezium("Debezium", &debezium, &props, dir.path())?;
    wait_until(
        &client,
        &format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{SLOT}'"),
        &mut dbz,
        Duration::from_secs(90),
        "Debezium creating and streaming its slot",
    )
    .await?;
    let streaming = started.elapsed();

    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_until(db.clone(), stop.clone(), committed.clone()));

    wait_for_records(
        &bootstrap,
        &topics,
        STEP_EVENTS,
        Duration::from_secs(60),
        &mut [&mut dbz],
        "Debezium publishing under load",
    )
    .await?;
    let switch = Instant::now();
    dbz.stop()?;
    let confirmed = slot_confirmed(&client)
        .await?
        .context("Debezium's slot is gone")?;
    let debezium_stopped = switch.elapsed();
    let c = kafka_count(&bootstrap, &topics).await?;

    // The cut-over: the tailer's configuration made from Debezium's.
    let toml = dir.path().join("tailer.toml");
    let out = std::process::Command::new(TAILER_BIN)
        .arg("import-debezium")
        .arg(&properties)
        .arg("--output")
        .arg(&toml)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "import-debezium {} failed: {}\n{}",
        properties.display(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&properties).unwrap_or_default()
    );
    let imported = std::fs::read_to_string(&toml)?;
    let mut tailer = Relay::tailer(
        "tailer",
        dir.path(),
        &[
            "--brokers".to_owned(),
            bootstrap.clone(),
            // Confirms reach the slot sooner than the default second: the drain ends sooner.
            "--status-interval-ms".to_owned(),
            "100".to_owned(),
        ],
        Some(&toml),
    )?;
    wait_for_records(
        &bootstrap,
        &topics,
        c + STEP_EVENTS,
        Duration::from_secs(60),
        &mut [&mut tailer],
        "the tailer publishing under load after the switch",
    )
    .await?;
    let switched = switch.elapsed();
    stop.store(true, Ordering::Relaxed);
    let written = writer.await??;
    let end: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    wait_until(
        &client,
        &format!(
            "SELECT confirmed_flush_lsn >= '{end}'::pg_lsn FROM pg_replication_slots \
             WHERE slot_name = '{SLOT}'"
        ),
        &mut tailer,
        Duration::from_secs(60),
        "the tailer draining and confirming every write",
    )
    .await?;
    tailer.stop()?;
    let records = read_topic(&bootstrap, TOPIC, Duration::from_secs(60)).await?;

    // What each relay published, per event id.
    let mut from_debezium: HashMap<String, Vec<&Record>> = HashMap::new();
    let mut from_tailer: HashMap<String, Vec<&Record>> = HashMap::new();
    for r in &records {
        let id = r.id().context("a record without an id header")?;
        match by_debezium(r) {
            true => from_debezium.entry(id).or_default().push(r),
            false => from_tailer.entry(id).or_default().push(r),
        }
    }
    let written_ids: BTreeSet<&str> = written.iter().map(|w| w.id.as_str()).collect();

    // Nothing lost, nothing invented.
    let lost: Vec<&Written> = written
        .iter()
        .filter(|w| !from_debezium.contains_key(&w.id) && !from_tailer.contains_key(&w.id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} events lost, e.g. {:?}",
        lost.len(),
        written.len(),
        &lost[..lost.len().min(5)]
    );
    let unknown: Vec<&String> = from_debezium
        .keys()
        .chain(from_tailer.keys())
        .filter(|id| !written_ids.contains(id.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "records of events never written: {unknown:?}"
    );

    // Each relay publishes an event once; the duplicates are Debezium's and the tailer's.
    for (side, map) in [("Debezium", &from_debezium), ("the tailer", &from_tailer)] {
        let twice: Vec<(&String, usize)> = map
            .iter()
            .filter(|(_, rs)| rs.len() > 1)
            .map(|(id, rs)| (id, rs.len()))
            .collect();
        assert!(
            twice.is_empty(),
            "{side} published events more than once: {twice:?}"
        );
    }

    // Each key on one partition, the same before and after the switch.
    let mut partitions: BTreeMap<String, (BTreeSet<i32>, BTreeSet<i32>)> = BTreeMap::new();
    let by_id: HashMap<&str, &Written> = written.iter().map(|w| (w.id.as_str(), w)).collect();
    for r in &records {
        let (key, seq) = key_and_seq(r)?;
        let id = r.id().unwrap_or_default();
        let w = by_id[id.as_str()];
        // JsonConverter's key: the aggregate id as a JSON string.
        let json_key = serde_json::to_vec(&w.key)?;
        assert!(
            (w.key.as_str(), w.seq) == (key.as_str(), seq)
                && r.key.as_deref() == Some(json_key.as_slice()),
            "event {id} was written as {w:?}, published as {r:?}"
        );
        let entry = partitions.entry(key).or_default();
        match by_debezium(r) {
            true => entry.0.insert(r.partition),
            false => entry.1.insert(r.partition),
        };
    }
    for (key, (before, after)) in &partitions {
        assert!(
            before.len() <= 1 && before == after,
            "key {key}: Debezium used partitions {before:?}, the tailer {after:?}"
        );
    }
    let used: BTreeSet<i32> = partitions.values().flat_map(|(b, _)| b.clone()).collect();
    assert!(used.len() > 1, "every key on one partition: {used:?}");

    // Per key, in log order with duplicates removed, the sequence numbers run 1, 2, 3, ...
    let mut seen = BTreeSet::new();
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    for r in &records {
        if !seen.insert(r.id().unwrap_or_default()) {
            continue;
        }
        let (key, seq) = key_and_seq(r)?;
        let last = last_seq.entry(key.clone()).or_default();
        assert_eq!(
            seq,
            *last + 1,
            "key {key}: seq {seq} after {last} at {}/{} ({})",
            r.partition,
            r.offset,
            if by_debezium(r) { "Debezium" } else { "tailer" }
        );
        *last = seq;
    }

    // The duplicates: a contiguous run of the commit order, where Debezium's part ends and
    // the tailer's begins, starting after the position Debezium confirmed.
    let published_by = |w: &Written| {
        (
            from_debezium.contains_key(&w.id),
            from_tailer.contains_key(&w.id),
        )
    };
    let first_dup = written.iter().position(|w| published_by(w) == (true, true));
    let duplicates = written
        .iter()
        .filter(|w| published_by(w) == (true, true))
        .count();
    let debezium_only = written
        .iter()
        .filter(|w| published_by(w) == (true, false))
        .count();
    let tailer_only = written
        .iter()
        .filter(|w| published_by(w) == (false, true))
        .count();
    let order: Vec<u8> = written
        .iter()
        .map(|w| match published_by(w) {
            (true, false) => 0,
            (true, true) => 1,
            _ => 2,
        })
        .collect();
    let changes = order.windows(2).filter(|p| p[0] != p[1]).count();
    let sorted = order.windows(2).all(|p| p[0] <= p[1]);
    assert!(
        sorted && tailer_only > 0,
        "in commit order the events are not [Debezium only][both][tailer only] \
         ({changes} changes of publisher): {debezium_only} by Debezium only, {duplicates} by both, \
         {tailer_only} by the tailer only"
    );
    // The tailer started where Debezium's slot stood: nothing it published committed before.
    let confirmed_lsn = lsn(&confirmed)?;
    let mut earliest_tailer: Option<(u64, &str)> = None;
    for rs in from_tailer.values() {
        if let Some(text) = header(rs[0], "outbox-lsn") {
            let l = lsn(text)?;
            if earliest_tailer.is_none_or(|(e, _)| l < e) {
                earliest_tailer = Some((l, text));
            }
        }
    }
    let (earliest, earliest_text) =
        earliest_tailer.context("no outbox-lsn header on the tailer's records")?;
    assert!(
        earliest >= confirmed_lsn,
        "the tailer published a transaction committed at {earliest_text}, before Debezium's \
         confirmed {confirmed}"
    );

    let header_names =
        |r: &Record| -> Vec<String> { r.headers.iter().map(|(k, _)| k.clone()).collect() };
    let sample_dbz = records.iter().find(|r| by_debezium(r)).map(header_names);
    let sample_tailer = records.iter().find(|r| !by_debezium(r)).map(header_names);
    eprintln!("headers: Debezium {sample_dbz:?}, the tailer {sample_tailer:?}");
    eprintln!(
        "written {} events ({} keys): {debezium_only} published by Debezium only, {duplicates} by \
         both (the switch-over window{}), {tailer_only} by the tailer only; Debezium's slot \
         confirmed {confirmed} at its stop, the tailer's first commit {earliest_text}; \
         Debezium streaming after {:.1} s, stopped in {:.1} s, the tailer {} events past the \
         switch {:.1} s after it; {:.1} s in all\n--- imported configuration ---\n{imported}",
        written.len(),
        partitions.len(),
        first_dup
            .map(|i| format!(", from event #{} in commit order", i + 1))
            .unwrap_or_default(),
        streaming.as_secs_f64(),
        debezium_stopped.as_secs_f64(),
        STEP_EVENTS,
        switched.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}

async fn kafka_count(bootstrap: &str, topics: &[String]) -> anyhow::Result<i64> {
    let (bootstrap, topics) = (bootstrap.to_owned(), topics.to_vec());
    tokio::task::spawn_blocking(move || {
        let c: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("log_level", "3")
            .create()?;
        common::records_in(&c, &topics)
    })
    .await?
}
