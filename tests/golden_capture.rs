//! Captures pgoutput messages from a live PostgreSQL for every scenario the decoder's golden
//! tests cover, and checks that each one decodes to the expected shape — so the suite proves
//! the decoder against whatever server version the testkit finds.
//!
//! `CAPTURE_GOLDEN=1 OUTBOX_PG_VERSION=<major> cargo test -p outbox-e2e --test golden_capture`
//! also rewrites `crates/pgoutput/tests/golden/pg<major>/*.txt` and the fuzz seeds in `crates/pgoutput/fuzz/corpus/decode/`.
//!
//! Each scenario runs its setup (tables, publication) before creating its own slot, then its
//! workload, then reads the slot once.

#[path = "../crates/pgoutput/tests/support/golden_file.rs"]
mod golden_file;
#[path = "../crates/pgoutput/tests/support/golden_shape.rs"]
mod golden_shape;

use std::path::{Path, PathBuf};

use golden_file::Captured;
use outbox_testkit::PgCluster;
use pgoutput::{Bytes, Decoder};

enum Step {
    /// One simple-query batch (so it may hold BEGIN … COMMIT).
    Sql(&'static str),
}

struct Scenario {
    name: &'static str,
    setup: &'static str,
    two_phase_slot: bool,
    options: &'static [(&'static str, &'static str)],
    workload: &'static [Step],
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "types",
        setup: "
            CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
            CREATE TABLE golden_types (
                id int PRIMARY KEY, label text, amount numeric, raw bytea, feeling mood,
                doc jsonb, big text, at timestamptz);
            CREATE PUBLICATION types_pub FOR TABLE golden_types;",
        two_phase_slot: false,
        options: &[("proto_version", "1"), ("publication_names", "types_pub")],
        workload: &[
            Step::Sql(
                r#"INSERT INTO golden_types VALUES (1, 'plain', 12.50, '\xdeadbeef00'::bytea, 'happy',
                   '{"a": [1, 2], "b": null}', NULL, '2025-01-02 03:04:05.678901+00')"#,
            ),
            Step::Sql("INSERT INTO golden_types (id) VALUES (2)"),
            Step::Sql("INSERT INTO golden_types (id, label, feeling) VALUES (3, 'héllo wörld ✓ 🐘 日本語', 'sad')"),
            Step::Sql("INSERT INTO golden_types (id, big)
                 SELECT 4, string_agg(md5(i::text), '') FROM generate_series(1, 3200) AS i"),
            Step::Sql("INSERT INTO golden_types (id, label) VALUES (5, 'five'), (6, 'six'), (7, 'seven')"),
        ],
    },
    Scenario {
        name: "replica_identity",
        setup: "
            CREATE TABLE ri_default (id int PRIMARY KEY, note text, big text);
            ALTER TABLE ri_default ALTER COLUMN big SET STORAGE EXTERNAL;
            CREATE TABLE ri_full (id int, note text, big text);
            ALTER TABLE ri_full ALTER COLUMN big SET STORAGE EXTERNAL;
            ALTER TABLE ri_full REPLICA IDENTITY FULL;
            CREATE TABLE ri_index (id int, code text NOT NULL, note text);
            CREATE UNIQUE INDEX ri_index_code ON ri_index (code);
            ALTER TABLE ri_index REPLICA IDENTITY USING INDEX ri_index_code;
            CREATE TABLE ri_nothing (id int, note text);
            ALTER TABLE ri_nothing REPLICA IDENTITY NOTHING;
            CREATE PUBLICATION ri_pub FOR TABLE ri_default, ri_full, ri_index;
            CREATE PUBLICATION ri_insert_pub FOR TABLE ri_nothing WITH (publish = 'insert');
            INSERT INTO ri_default VALUES (1, 'one', NULL),
                (2, 'two', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 125) AS i));
            INSERT INTO ri_full VALUES (2, 'two', NULL),
                (1, 'one', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 125) AS i));
            INSERT INTO ri_index VALUES (1, 'A', 'one'), (2, 'B', 'two');",
        two_phase_slot: false,
        options: &[
            ("proto_version", "1"),
            ("publication_names", "ri_pub,ri_insert_pub"),
        ],
        workload: &[
            Step::Sql("UPDATE ri_default SET note = 'two updated' WHERE id = 2"),
            Step::Sql("UPDATE ri_default SET id = 10 WHERE id = 1"),
            Step::Sql("DELETE FROM ri_default WHERE id = 10"),
            Step::Sql("UPDATE ri_full SET note = 'one updated' WHERE id = 1"),
            Step::Sql("DELETE FROM ri_full WHERE id = 2"),
            Step::Sql("UPDATE ri_index SET code = 'A2' WHERE id = 1"),
            Step::Sql("UPDATE ri_index SET note = 'two updated' WHERE id = 2"),
            Step::Sql("DELETE FROM ri_index WHERE code = 'B'"),
            Step::Sql("INSERT INTO ri_nothing VALUES (1, 'nothing')"),
            Step::Sql("UPDATE ri_nothing SET note = 'not published'"),
        ],
    },
    Scenario {
        name: "truncate",
        setup: "
            CREATE TABLE trunc_a (id serial PRIMARY KEY);
            CREATE TABLE trunc_b (id int PRIMARY KEY, a_id int REFERENCES trunc_a);
            CREATE PUBLICATION trunc_pub FOR TABLE trunc_a, trunc_b;",
        two_phase_slot: false,
        options: &[("proto_version", "1"), ("publication_names", "trunc_pub")],
        workload: &[
            Step::Sql("INSERT INTO trunc_a DEFAULT VALUES"),
            Step::Sql("TRUNCATE trunc_a, trunc_b RESTART IDENTITY CASCADE"),
            Step::Sql("TRUNCATE trunc_b"),
        ],
    },
    Scenario {
        name: "messages",
        setup: "
            CREATE TABLE msg_t (id int PRIMARY KEY);
            CREATE PUBLICATION msg_pub FOR TABLE msg_t;",
        two_phase_slot: false,
        options: &[
            ("proto_version", "1"),
            ("publication_names", "msg_pub"),
            ("messages", "true"),
        ],
        workload: &[
            Step::Sql("SELECT pg_logical_emit_message(true, 'outbox', 'transactional payload')"),
            Step::Sql(r"SELECT pg_logical_emit_message(false, 'heartbeat', '\x00ff01'::bytea)"),
            Step::Sql("BEGIN; INSERT INTO msg_t VALUES (1);
             SELECT pg_logical_emit_message(true, 'outbox', 'ünïcödé'); COMMIT"),
            Step::Sql("BEGIN; SELECT pg_logical_emit_message(true, 'dropped', 'rolled back');
             SELECT pg_logical_emit_message(false, 'aborted_nontx', 'x'); ROLLBACK"),
        ],
    },
    Scenario {
        name: "origin",
        setup: "
            CREATE TABLE origin_t (id int PRIMARY KEY);
            CREATE PUBLICATION origin_pub FOR TABLE origin_t;
            SELECT pg_replication_origin_create('golden_origin');",
        two_phase_slot: false,
        options: &[("proto_version", "1"), ("publication_names", "origin_pub")],
        workload: &[
            Step::Sql("SELECT pg_replication_origin_session_setup('golden_origin');
             BEGIN;
             SELECT pg_replication_origin_xact_setup('0/AB01', '2025-01-02 03:04:05+00');
             INSERT INTO origin_t VALUES (1);
             COMMIT;
             SELECT pg_replication_origin_session_reset();"),
        ],
    },
    Scenario {
        name: "two_phase",
        setup: "
            CREATE TABLE tp_t (id int PRIMARY KEY, note text);
            CREATE PUBLICATION tp_pub FOR TABLE tp_t;",
        two_phase_slot: true,
        options: &[
            ("proto_version", "3"),
            ("publication_names", "tp_pub"),
            ("two_phase", "true"),
            ("streaming", "on"),
        ],
        workload: &[
            Step::Sql("BEGIN; INSERT INTO tp_t VALUES (1, 'commit me');
             PREPARE TRANSACTION 'golden_commit'"),
            Step::Sql("COMMIT PREPARED 'golden_commit'"),
            Step::Sql("BEGIN; INSERT INTO tp_t VALUES (2, 'roll me back');
             PREPARE TRANSACTION 'golden_rollback'"),
            Step::Sql("ROLLBACK PREPARED 'golden_rollback'"),
            Step::Sql("BEGIN; INSERT INTO tp_t SELECT g, 'big ' || g FROM generate_series(100, 1099) AS g;
             PREPARE TRANSACTION 'golden_stream'"),
            Step::Sql("COMMIT PREPARED 'golden_stream'"),
        ],
    },
    Scenario {
        name: "streaming",
        setup: "
            CREATE TYPE stream_mood AS ENUM ('sad', 'ok', 'happy');
            CREATE TABLE st_t (id int PRIMARY KEY, note text, feeling stream_mood);
            CREATE TABLE st_other (id int PRIMARY KEY);
            CREATE PUBLICATION st_pub FOR TABLE st_t, st_other;",
        two_phase_slot: false,
        options: &[
            ("proto_version", "2"),
            ("publication_names", "st_pub"),
            ("messages", "true"),
            ("streaming", "on"),
        ],
        workload: &[
            // Read after the fact, PostgreSQL 15 detects the aborts while streaming and stops
            // each chunk at the first aborted change: Stream Abort arrives without the rows.
            Step::Sql(
                "BEGIN;
                 INSERT INTO st_t SELECT g, 'kept ' || g, 'ok' FROM generate_series(1, 1000) AS g;
                 SELECT pg_logical_emit_message(true, 'stream', 'inside a streamed transaction');
                 SAVEPOINT sp;
                 INSERT INTO st_t SELECT g, 'undone ' || g, 'sad' FROM generate_series(5001, 6000) AS g;
                 ROLLBACK TO SAVEPOINT sp;
                 UPDATE st_t SET note = 'updated' WHERE id = 1;
                 DELETE FROM st_t WHERE id = 2;
                 TRUNCATE st_other;
                 COMMIT",
            ),
            Step::Sql(
                "BEGIN;
                 INSERT INTO st_t SELECT g, 'aborted ' || g, 'happy' FROM generate_series(7001, 8000) AS g;
                 ROLLBACK",
            ),
            Step::Sql("INSERT INTO st_t VALUES (9001, 'small, not streamed', 'happy')"),
        ],
    },
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/pgoutput/tests/golden")
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/pgoutput/fuzz/corpus/decode")
}

async fn capture(
    client: &tokio_postgres::Client,
    scenario: &Scenario,
) -> anyhow::Result<Vec<Captured>> {
    let slot = format!("golden_{}", scenario.name);
    client.batch_execute(scenario.setup).await?;
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput', false, $2)",
            &[&slot, &scenario.two_phase_slot],
        )
        .await?;
    for Step::Sql(sql) in scenario.workload {
        client.batch_execute(sql).await?;
    }
    let captured = read_slot(client, &slot, scenario.options).await?;
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await?;
    Ok(captured)
}

/// Consumes everything decodable so far (`pg_logical_slot_get_binary_changes` returns exactly
/// the bytes a walsender would put into XLogData).
async fn read_slot(
    client: &tokio_postgres::Client,
    slot: &str,
    options: &[(&str, &str)],
) -> anyhow::Result<Vec<Captured>> {
    // The slot reads only flushed WAL; a synchronous commit flushes everything written before it.
    client.batch_execute("SET synchronous_commit = on").await?;
    client.batch_execute("SELECT txid_current()").await?;
    client.batch_execute("RESET synchronous_commit").await?;
    let options: Vec<&str> = options.iter().flat_map(|(k, v)| [*k, *v]).collect();
    let rows = client
        .query(
            "SELECT lsn::text, xid::text, data
               FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, VARIADIC $2::text[])",
            &[&slot, &options],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Captured {
                lsn: row.get(0),
                xid: row.get::<_, String>(1).parse()?,
                data: Bytes::from(row.get::<_, Vec<u8>>(2)),
            })
        })
        .collect()
}

/// The first message of each kind (inside and outside streaming blocks), plus truncated and
/// bit-flipped copies of a few, as fuzzing seeds.
fn corpus_seeds(name: &str, messages: &[Captured]) -> Vec<(String, Vec<u8>)> {
    let mut decoder = Decoder::new();
    let mut seen = Vec::new();
    let mut seeds = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let in_stream = decoder.in_stream();
        let Ok(decoded) = decoder.decode(&m.data) else {
            continue;
        };
        let key = (decoded.kind(), in_stream);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let label = format!("{name}-{i:04}-{}", decoded.kind().name().replace(' ', "_"));
        seeds.push((label.clone(), m.data.to_vec()));
        if (9..=4096).contains(&m.data.len()) {
            seeds.push((format!("{label}-cut"), m.data[..m.data.len() / 2].to_vec()));
            let mut flipped = m.data.to_vec();
            let at = flipped.len() - 3;
            flipped[at] ^= 0x80;
            seeds.push((format!("{label}-flip"), flipped));
        }
    }
    seeds
}

#[tokio::test]
async fn golden_capture() -> anyhow::Result<()> {
    let pg = PgCluster::start().await?;
    let db = pg.create_database().await?;
    let client = db.connect().await?;
    // Text output of timestamps and floats depends on the decoding session's settings.
    client
        .batch_execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET extra_float_digits = 3;",
        )
        .await?;
    let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    let major = pg.major()?;
    let golden_dir = golden_dir().join(format!("pg{major}"));
    let write = std::env::var_os("CAPTURE_GOLDEN").is_some_and(|v| v == "1");

    let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        golden_shape::SCENARIOS,
        "every scenario has expectations"
    );
    if write {
        std::fs::create_dir_all(&golden_dir)?;
        std::fs::create_dir_all(corpus_dir())?;
    }
    let runnable = golden_shape::scenarios_of(major);
    for scenario in SCENARIOS.iter().filter(|s| runnable.contains(&s.name)) {
        let messages = capture(&client, scenario).await?;
        golden_shape::check(scenario.name, major, &messages);
        if write {
            let options: Vec<String> = scenario
                .options
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let header = [
                format!("pgoutput golden capture, scenario {:?}", scenario.name),
                format!("server: PostgreSQL {version}"),
                format!("slot options: {}", options.join(" ")),
                format!(
                    "re-capture: CAPTURE_GOLDEN=1 OUTBOX_PG_VERSION={major} cargo test -p \
                     outbox-e2e --test golden_capture"
                ),
                "one message per line: <lsn> <xid> <hex of the pgoutput message>".to_owned(),
            ];
            let text = golden_file::render(&header, &messages);
            assert_eq!(golden_file::parse(&text).as_ref(), Ok(&messages));
            std::fs::write(golden_dir.join(format!("{}.txt", scenario.name)), text)?;
            // The fuzz seeds come from one major (the set they were first made from); the
            // golden bytes from every major.
            if major == 15 {
                for (label, bytes) in corpus_seeds(scenario.name, &messages) {
                    std::fs::write(corpus_dir().join(label), bytes)?;
                }
            }
        }
    }
    Ok(())
}
