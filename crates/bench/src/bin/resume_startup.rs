//! What idempotent resume costs, and saves, at start: a restarted sink re-sends records a first
//! one published, then new ones, on librdkafka's mock cluster (the client's own speed, no broker
//! latency to speak of).
//!
//! `cargo run -p outbox-bench --bin outbox-bench-resume-startup -- [PARTITIONS]
//! [RECORDS_PER_PARTITION]` (defaults 100 and 200) prints one line per mode and appends them
//! to `docs/bench/resume-startup.md`.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use outbox_tailer::config::SinkConfig;
use outbox_tailer::relay::progress::AckTracker;
use outbox_tailer::relay::record::{EventPosition, Record, HEADER_LSN, HEADER_SEQ, HEADER_SOURCE};
use outbox_tailer::relay::sink::{KafkaSink, Sink};
use outbox_testkit::MockKafka;
use pgoutput::Lsn;
use tokio::sync::mpsc;

const TOPIC: &str = "bench.resume";
const SOURCE: &str = "7000000000000000000/outbox_slot";

fn config(brokers: &str, scan: u64) -> SinkConfig {
    SinkConfig {
        brokers: brokers.to_owned(),
        options: vec![("linger.ms".into(), "5".into())],
        create_topics: false,
        topic_partitions: 1,
        topic_replication_factor: -1,
        partitioner: Default::default(),
        resume_scan: scan,
        send_at_once_below: 0,
        transactions: None,
    }
}

fn record(n: u64) -> Record {
    let position = EventPosition {
        lsn: Lsn::from(1_000 + n * 100),
        seq: 0,
    };
    Record {
        topic: TOPIC.into(),
        key: Some(Bytes::from(format!("aggregate-{n}"))),
        payload: Some(Bytes::from_static(b"{}")),
        headers: vec![
            (
                HEADER_LSN.into(),
                Some(Bytes::from(position.lsn.to_string())),
            ),
            (HEADER_SEQ.into(), Some(Bytes::from("0"))),
            (HEADER_SOURCE.into(), Some(Bytes::from(SOURCE))),
        ],
        timestamp_ms: None,
        position: Some(position),
    }
}

/// Send records `from..to` through a fresh sink, the first `resent` of them already in the
/// topic; the time until the first new record is acked, and until every record is.
async fn run(
    brokers: &str,
    scan: u64,
    from: u64,
    to: u64,
    resent: u64,
) -> anyhow::Result<(Duration, Duration)> {
    let (tx, mut acks) = mpsc::unbounded_channel();
    let mut sink = KafkaSink::new(&config(brokers, scan), tx, 1 << 20, 1 << 30, 1 << 20)?
        .with_resume(&config(brokers, scan), SOURCE);
    let mut tracker = AckTracker::new(Lsn::ZERO);
    let started = Instant::now();
    for n in from..to {
        tracker.begin();
        let ticket = tracker.publish(64).context("open transaction")?;
        sink.send(record(n), ticket).await?;
        tracker.commit(Lsn::from(1_000 + n * 100 + 50));
    }
    let mut first_new = None;
    for _ in from..to {
        let ack = acks.recv().await.context("ack")?;
        anyhow::ensure!(ack.result.is_ok(), "{ack:?}");
        if ack.ticket.txn >= resent && first_new.is_none() {
            first_new = Some(started.elapsed());
        }
    }
    Ok((first_new.context("no new record")?, started.elapsed()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let partitions: i32 = args.next().map_or(Ok(100), |a| a.parse())?;
    let per_partition: u64 = args.next().map_or(Ok(200), |a| a.parse())?;
    let mock = MockKafka::start_with_topics(1, &[(TOPIC, partitions)])?;
    let total = per_partition * u64::try_from(partitions)?;
    // The first incarnation publishes the topic full; the restarted one re-sends the last
    // tenth (skipped) and goes on.
    run(mock.bootstrap_servers(), 10_000, 0, total, 0).await?;
    let mut lines = Vec::new();
    let resent = total / 10;
    for (label, scan) in [("resume off", 0), ("resume on", 10_000)] {
        let brokers = mock.bootstrap_servers();
        let (first, all) = run(brokers, scan, total - resent, total + 10, resent).await?;
        let line = format!(
            "| {partitions} | {per_partition} | {resent} | {label} | {:.0} ms | {:.0} ms |",
            first.as_secs_f64() * 1e3,
            all.as_secs_f64() * 1e3
        );
        println!("{line}");
        lines.push(line);
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/bench/resume-startup.md"
    );
    let new = !std::path::Path::new(path).exists();
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if new {
        writeln!(
            out,
            "# Idempotent resume at start\n\nA restarted sink re-sends the last tenth of what a \
             first one published, then 10 new records, on librdkafka's mock cluster (`cargo run \
             -p outbox-bench --bin outbox-bench-resume-startup -- PARTITIONS RECORDS`). With \
             resume on, the topic's partitions are read back first and the re-sent records are \
             skipped.\n\n| partitions | records per partition | re-sent | mode | first new record \
             acked after | all acked after |\n|---|---|---|---|---|---|"
        )?;
    }
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}
