//! The tailer as a drop-in for Debezium's Outbox Event Router, byte for byte: the same outbox
//! rows go through Debezium 3.6.3 (embedded engine, the router, Kafka Connect's own converters
//! from its jars) and through the tailer, each on its own slot of one publication, into topics
//! of their own on one broker; then every event's key, value, headers and partition must be
//! the same on both sides. One pair of relays per record format:
//!
//! ```text
//!   case  Debezium                                      tailer
//!   (a)   StringConverter key and value                 --key-format string --value-format string
//!   (b)   JsonConverter, schemas.enable=false           --key-format json --value-format json
//!   (c)   (b) + table.expand.json.payload=true          (b) + --expand-json-payload
//!   (d)   (b) + placement type:header:eventType,        (b) + --field-placement type:header:eventType
//!             type:envelope:eventType                         --field-placement type:envelope:eventType
//! ```
//!
//! Debezium's own context headers (`__debezium.context.*`) are left out; the tailer runs with
//! `--debezium-headers-only`, so every other header must match, in order. Needs a JDK 17 and
//! python3 with pip, like debezium_smoke.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::{read_topic, show, wait_for_records, Record, Relay};
use outbox_bench::relay::debezium::connection_props;
use outbox_testkit::{MockKafka, PgCluster};

const PUBLICATION: &str = "compare_pub";
const PARTITIONS: i32 = 6;
const AGGREGATE_TYPES: [&str; 2] = ["order", "customer"];

const SCHEMA: &str = "CREATE TABLE outbox (
    id uuid PRIMARY KEY,
    aggregatetype text NOT NULL,
    aggregateid text NOT NULL,
    type text,
    payload jsonb
);
CREATE PUBLICATION compare_pub FOR TABLE outbox WITH (publish = 'insert');";

/// Payloads as written (jsonb normalises them; both relays read the normalised text), for
/// every case.
///
/// Left out, because Debezium's bytes for them are not reproducible: arrays of objects whose
/// objects have different fields (`[{"qty": 1, "sku": "A"}, {"sku": "B", "note": "gift"}]`).
/// `JsonSchemaData` collects the element schemas in a `HashSet<Schema>` and merges them in its
/// iteration order, and `ConnectSchema.hashCode` hashes the `Schema.Type` enum by identity: the
/// merged struct's field order (and, when nested objects differ, which nested schema wins)
/// changes from one JVM to the next. Also left out: doubles that JDK 17's `Double.toString`
/// prints with more digits than the shortest form (`1e23` is `9.999999999999999E22` there,
/// `1.0E23` from JDK 19): Debezium's bytes depend on its JVM.
const PAYLOADS: &[Option<&str>] = &[
    Some(
        r#"{"id": 1, "lineItems": [{"sku": "A-1", "qty": 2, "price": 39.98}, {"sku": "B-2", "qty": 1, "price": 120.00}], "customer": {"name": "Zoë \"Z\" O'Brien", "address": {"city": "Zürich", "zip": "8001"}}}"#,
    ),
    Some(
        r#"{"small": 1e-5, "large": 12345678.9, "price": 39.98, "round": 120.00, "neg": -0.5, "int": -7, "big": 2147483648, "pi": 3.14159265358979323846}"#,
    ),
    Some(
        r#"{"text": "line1\nline2\ttab \\ backslash \"quoted\" / slash", "unicode": "😀 日本語 ü ß", "control": "bell\u0007 unit\u001f", "we\"ird key\n": 1}"#,
    ),
    Some("{}"),
    Some(
        r#"{"tags": ["a", "b", "c"], "matrix": [[1, 2], [3, 4]], "flags": [true, false], "prices": [39.98, 120.00, 1e-5]}"#,
    ),
    Some(r#"{"deep": {"a": {"b": {"c": [1.5, 2.25], "d": "x"}}, "e": 0}}"#),
    Some(r#"{"note": null, "empty": [], "ok": true, "nested": {}}"#),
    Some(r#"{"items": [{}, {"b": 1}], "sparse": [1, null, 3], "ragged": [[1], []]}"#),
    Some(r#"{"mixed": [1, "a"], "nulls": [null]}"#),
    Some(r#"{"ints": [1, 10000000000]}"#),
    Some(
        r#"{"thousand": 1000.0, "tenmillion": 10000000.0, "milli": 0.001, "tiny": 0.0001, "long": 123456789012345678, "min": -2147483649}"#,
    ),
    // Debezium types an array of arrays by its first element.
    Some(r#"{"o": [[{"a": 1}], [{"b": 2}]]}"#),
    Some(r#"{"a": [[], [1]]}"#),
    Some("[]"),
    Some(r#""just a string""#),
    Some("42"),
    Some("2.5"),
    Some("true"),
    Some("null"),
    None,
];

/// Payloads on which Debezium's `table.expand.json.payload` stops the connector: its schema is
/// inferred, then building the value fails (a WARN "JSON expansion failed"), the value stays
/// the string while the schema stays the inferred one, and the JsonConverter throws
/// `DataException` (e.g. "Invalid type for ARRAY: class java.lang.String"): the engine stops.
/// Kafka Connect would fail the task the same way. So case (c) does not read them (its slots
/// are moved past them); the other cases do.
const PAYLOADS_EXPANSION_STOPS_DEBEZIUM: &[Option<&str>] = &[
    Some(r#"[{"a": 1}, {"b": "x"}]"#),
    Some("[1, 2]"),
    Some(r#"{"huge": 10000000000000000000}"#),
    Some(r#"{"a": [{"x": 1.5}, {"x": 2}]}"#),
    Some(r#"{"o": [{"a": 1}, {"a": "x"}]}"#),
];

/// Event types, a NULL one among them (a placed NULL column is a header with a null value).
const TYPES: &[Option<&str>] = &[
    Some("OrderCreated"),
    Some("Type \"quoted\" \\ ü"),
    None,
    Some("CustomerMoved"),
    Some("Emoji 😀"),
];

/// Aggregate ids: many, so records spread over the partitions, and some that need escaping in
/// a JSON key or are not ASCII.
fn keys() -> Vec<String> {
    let mut keys: Vec<String> = (0..48).map(|i| format!("order-{i}")).collect();
    keys.extend(
        [
            "clé-ünïcødé-ß",
            "日本-1",
            "emoji-😀",
            "quote\"key",
            "back\\slash",
            "tab\tkey",
            "line\nkey",
            "",
        ]
        .map(String::from),
    );
    keys
}

#[derive(Debug, Clone)]
struct Row {
    id: String,
    aggregatetype: &'static str,
    aggregateid: String,
    event_type: Option<&'static str>,
    payload: Option<&'static str>,
}

/// Rows with `payloads`, spread over keys, aggregate types and event types; ids from `first`.
fn rows(payloads: &[Option<&'static str>], first: usize) -> Vec<Row> {
    let keys = keys();
    let n = keys.len().max(payloads.len()) * 2;
    (0..n)
        .map(|i| Row {
            id: format!("00000000-0000-4000-8000-{:012x}", first + i),
            aggregatetype: AGGREGATE_TYPES[i % AGGREGATE_TYPES.len()],
            aggregateid: keys[i % keys.len()].clone(),
            event_type: TYPES[i % TYPES.len()],
            payload: payloads[i % payloads.len()],
        })
        .collect()
}

async fn insert(client: &mut tokio_postgres::Client, rows: &[Row]) -> anyhow::Result<()> {
    // A few rows per transaction, so transactions of several events are covered too.
    for chunk in rows.chunks(5) {
        let tx = client.transaction().await?;
        for r in chunk {
            tx.execute(
                "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) \
                 VALUES ($1::text::uuid, $2, $3, $4, $5::text::jsonb)",
                &[
                    &r.id,
                    &r.aggregatetype,
                    &r.aggregateid,
                    &r.event_type,
                    &r.payload,
                ],
            )
            .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// One record format, run through both relays.
#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    json: bool,
    expand: bool,
    placements: bool,
}

const CASES: [Case; 4] = [
    Case {
        name: "a",
        json: false,
        expand: false,
        placements: false,
    },
    Case {
        name: "b",
        json: true,
        expand: false,
        placements: false,
    },
    Case {
        name: "c",
        json: true,
        expand: true,
        placements: false,
    },
    Case {
        name: "d",
        json: true,
        expand: false,
        placements: true,
    },
];

impl Case {
    fn describe(&self) -> String {
        let mut s = format!(
            "case ({}): {}",
            self.name,
            if self.json {
                "JsonConverter (schemas.enable=false)"
            } else {
                "StringConverter"
            }
        );
        if self.expand {
            s.push_str(" + table.expand.json.payload");
        }
        if self.placements {
            s.push_str(" + placement type:header:eventType,type:envelope:eventType");
        }
        s
    }

    fn debezium_slot(&self) -> String {
        format!("dbz_{}", self.name)
    }

    fn tailer_slot(&self) -> String {
        format!("tlr_{}", self.name)
    }

    fn debezium_topic(&self, aggregate_type: &str) -> String {
        format!("dbz_{}.{aggregate_type}", self.name)
    }

    fn tailer_topic(&self, aggregate_type: &str) -> String {
        format!("tlr_{}.{aggregate_type}", self.name)
    }

    fn debezium_props(&self) -> Vec<(String, String)> {
        let converter = if self.json { "json" } else { "string" };
        let mut props = vec![
            ("publication.name", PUBLICATION.to_owned()),
            ("table.include.list", "public.outbox".to_owned()),
            ("bench.key.converter", converter.to_owned()),
            ("bench.value.converter", converter.to_owned()),
            (
                "transforms.outbox.route.topic.replacement",
                format!("dbz_{}.${{routedByValue}}", self.name),
            ),
            // The runner places `type` as a header by default; each case says its own.
            (
                "bench.unset",
                "transforms.outbox.table.fields.additional.placement".to_owned(),
            ),
        ];
        if self.expand {
            props.push((
                "transforms.outbox.table.expand.json.payload",
                "true".to_owned(),
            ));
        }
        if self.placements {
            props.push((
                "transforms.outbox.table.fields.additional.placement",
                "type:header:eventType,type:envelope:eventType".to_owned(),
            ));
        }
        props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    fn tailer_flags(&self) -> Vec<String> {
        let format = if self.json { "json" } else { "string" };
        let topic = format!("tlr_{}.${{routedByValue}}", self.name);
        let mut flags = vec![
            "--key-format",
            format,
            "--value-format",
            format,
            "--topic",
            &topic,
            "--debezium-headers-only",
            "--resume-scan-records",
            "0",
        ];
        if self.expand {
            flags.push("--expand-json-payload");
        }
        if self.placements {
            flags.extend([
                "--field-placement",
                "type:header:eventType",
                "--field-placement",
                "type:envelope:eventType",
            ]);
        }
        flags.into_iter().map(String::from).collect()
    }
}

/// A record's topic without the relay's prefix, e.g. `order`.
fn routed(topic: &str) -> &str {
    topic.split_once('.').map_or(topic, |(_, rest)| rest)
}

/// How Debezium's record and the tailer's differ (empty: they do not), in lines that name
/// no event (the `id` header shows as `<id>`), so events that differ alike are reported once.
fn differences(row: &Row, dbz: &Record, tlr: &Record) -> String {
    let mut out = String::new();
    let mut differ = |what: &str, d: String, t: String| {
        if d != t {
            out.push_str(&format!("  {what}\n    debezium: {d}\n    tailer:   {t}\n"));
        }
    };
    differ(
        "routed topic",
        routed(&dbz.topic).to_owned(),
        routed(&tlr.topic).to_owned(),
    );
    differ(
        "partition",
        dbz.partition.to_string(),
        tlr.partition.to_string(),
    );
    differ("key", show(dbz.key.as_deref()), show(tlr.key.as_deref()));
    differ(
        "value",
        show(dbz.value.as_deref()),
        show(tlr.value.as_deref()),
    );
    let headers = |r: &Record| -> String {
        r.headers
            .iter()
            .filter(|(k, _)| !k.starts_with("__debezium."))
            .map(|(k, v)| match v.as_deref() {
                Some(id) if k == "id" && id == row.id.as_bytes() => format!("{k:?}=<id>"),
                v => format!("{k:?}={}", show(v)),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    differ(
        "headers, in order (Debezium's __debezium.* left out)",
        headers(dbz),
        headers(tlr),
    );
    out
}

fn describe(row: &Row) -> String {
    format!(
        "event {} (key {:?}, type {:?}, payload {:?})",
        row.id, row.aggregateid, row.event_type, row.payload
    )
}

/// Records by event id; an id seen twice, or a record without one, is a failure.
fn by_id(records: Vec<Record>, side: &str) -> anyhow::Result<HashMap<String, Record>> {
    let mut out = HashMap::new();
    for r in records {
        let id = r
            .id()
            .ok_or_else(|| anyhow::anyhow!("{side}: a record without an id header: {r:?}"))?;
        if let Some(earlier) = out.insert(id.clone(), r) {
            anyhow::bail!("{side}: event {id} published twice: {earlier:?}");
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailer_records_match_debeziums_byte_for_byte() -> anyhow::Result<()> {
    let started = Instant::now();
    let debezium = common::debezium().await?;
    let pg = PgCluster::start().await?;
    let db = pg.create_database().await?;
    let mut client = db.connect().await?;
    client.batch_execute(SCHEMA).await?;
    // Every slot before the rows, so every relay reads the same ones.
    for case in CASES {
        for slot in [case.debezium_slot(), case.tailer_slot()] {
            client
                .execute(
                    "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                    &[&slot],
                )
                .await?;
        }
    }
    // First the rows case (c) skips, then its slots move past them, then the rows of all.
    let stopping = rows(PAYLOADS_EXPANSION_STOPS_DEBEZIUM, 0);
    insert(&mut client, &stopping).await?;
    for slot in [CASES[2].debezium_slot(), CASES[2].tailer_slot()] {
        client
            .execute(
                "SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())",
                &[&slot],
            )
            .await?;
    }
    let common_rows = rows(PAYLOADS, stopping.len());
    insert(&mut client, &common_rows).await?;
    let rows_of = |case: &Case| -> Vec<&Row> {
        let skipped: &[Row] = if case.expand { &[] } else { &stopping };
        skipped.iter().chain(&common_rows).collect()
    };

    // Every topic exists with the same partitions before either relay produces to it.
    let topics: Vec<String> = CASES
        .iter()
        .flat_map(|c| {
            AGGREGATE_TYPES
                .iter()
                .flat_map(move |t| [c.debezium_topic(t), c.tailer_topic(t)])
        })
        .collect();
    let kafka = MockKafka::start_with_topics(
        1,
        &topics
            .iter()
            .map(|t| (t.as_str(), PARTITIONS))
            .collect::<Vec<_>>(),
    )?;
    let bootstrap = kafka.bootstrap_servers().to_owned();

    let dir = tempfile::Builder::new()
        .prefix("debezium-compare-")
        .tempdir()?;
    let mut relays = Vec::new();
    for case in CASES {
        let state = dir.path().join(format!("debezium-{}", case.name));
        std::fs::create_dir_all(&state)?;
        let mut props = connection_props(
            pg.port(),
            &db.name,
            &case.debezium_slot(),
            &bootstrap,
            &state,
            true,
        );
        props.extend(case.debezium_props());
        relays.push(Relay::debezium(
            &format!("Debezium, case ({})", case.name),
            &debezium,
            &props,
            &state,
        )?);
        let mut args = vec![
            "--postgres".to_owned(),
            db.conn_str(),
            "--brokers".to_owned(),
            bootstrap.clone(),
            "--slot".to_owned(),
            case.tailer_slot(),
            "--publication".to_owned(),
            PUBLICATION.to_owned(),
        ];
        args.extend(case.tailer_flags());
        relays.push(Relay::tailer(
            &format!("tailer-{}", case.name),
            dir.path(),
            &args,
            None,
        )?);
    }
    let expected: usize = CASES.iter().map(|c| rows_of(c).len() * 2).sum();
    wait_for_records(
        &bootstrap,
        &topics,
        expected as i64,
        Duration::from_secs(100),
        &mut relays.iter_mut().collect::<Vec<_>>(),
        "both relays publishing every row in every case",
    )
    .await?;
    let published = started.elapsed();
    for relay in &mut relays {
        relay.stop()?;
    }

    let mut report = Vec::new();
    let mut partitions_used = BTreeMap::new();
    for case in CASES {
        let rows = rows_of(&case);
        let row_by_id: HashMap<&str, &Row> = rows.iter().map(|r| (r.id.as_str(), *r)).collect();
        let mut dbz = Vec::new();
        let mut tlr = Vec::new();
        for t in AGGREGATE_TYPES {
            let within = Duration::from_secs(30);
            dbz.extend(read_topic(&bootstrap, &case.debezium_topic(t), within).await?);
            tlr.extend(read_topic(&bootstrap, &case.tailer_topic(t), within).await?);
        }
        let (dbz, tlr) = (by_id(dbz, "Debezium")?, by_id(tlr, "tailer")?);
        // Differences, each with the events that show it.
        let mut found: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
        for row in &rows {
            let row: &Row = row;
            let diff = match (dbz.get(&row.id), tlr.get(&row.id)) {
                (Some(d), Some(t)) => differences(row, d, t),
                (d, t) => format!(
                    "  published by Debezium: {}, by the tailer: {}\n",
                    d.is_some(),
                    t.is_some()
                ),
            };
            if !diff.is_empty() {
                found.entry(diff).or_default().push(row);
            }
        }
        let mut lines = Vec::new();
        for (diff, events) in &found {
            lines.push(format!(
                "{} event(s), e.g. {}:\n{diff}",
                events.len(),
                describe(events[0])
            ));
        }
        for id in dbz.keys().chain(tlr.keys()) {
            if !row_by_id.contains_key(id.as_str()) {
                lines.push(format!("event {id} was never written"));
            }
        }
        let used: std::collections::BTreeSet<i32> = dbz.values().map(|r| r.partition).collect();
        partitions_used.insert(case.name, used.len());
        if !lines.is_empty() {
            report.push(format!(
                "{}: {} of {} events differ, in {} way(s):\n{}",
                case.describe(),
                found.values().map(Vec::len).sum::<usize>(),
                rows.len(),
                found.len(),
                lines.join("\n")
            ));
        }
    }
    eprintln!(
        "{} events compared in {} cases; published by both in {:.1} s, {:.1} s in all; \
         partitions used per case: {partitions_used:?}",
        expected / 2,
        CASES.len(),
        published.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        report.is_empty(),
        "Debezium's records and the tailer's differ:\n\n{}",
        report.join("\n\n")
    );
    // The partition comparison means something only if keys spread.
    assert!(
        partitions_used.values().all(|n| *n == PARTITIONS as usize),
        "keys did not reach every partition: {partitions_used:?}"
    );
    Ok(())
}
