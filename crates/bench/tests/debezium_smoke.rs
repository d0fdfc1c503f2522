//! Debezium in the harness, at smoke sizes: both variants drain every backlog, keep up with a
//! live rate and go through the behaviour scenario, through librdkafka's mock cluster. Needs a
//! JDK 17 and python3 with pip (scripts/test installs them); the harness installs Debezium's
//! jars itself. Fails when Java is missing: Debezium is part of the comparison, not optional.

use outbox_bench::{BenchOptions, BrokerKind, LiveRate, RelayKind, ScenarioKind};

fn options(relays: Vec<RelayKind>, scenarios: Vec<ScenarioKind>) -> BenchOptions {
    BenchOptions {
        smoke: true,
        broker: BrokerKind::Mock,
        scenarios,
        out: None,
        tailer_bin: Some(env!("CARGO_BIN_EXE_outbox-bench-tailer").into()),
        relays,
        debezium_scenarios: Vec::new(),
        tools_dir: None,
        render: None,
        // One live rate keeps the test short; the 10-event-transaction rate is the tailer
        // smoke test's.
        live_rates: vec![LiveRate::single(200)],
        live_seconds: None,
        live_partitions: 3,
        tansu_storage: outbox_bench::TansuStore::Memory,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_delivers_every_event_in_every_scenario() -> anyhow::Result<()> {
    let variants = [RelayKind::Debezium, RelayKind::DebeziumTuned];
    let report = outbox_bench::run(&options(
        variants.to_vec(),
        vec![
            ScenarioKind::BacklogBatched,
            ScenarioKind::BacklogSingle,
            ScenarioKind::Huge,
            ScenarioKind::Live,
        ],
    ))
    .await?;
    let labels: Vec<String> = variants.iter().map(|v| v.label()).collect();
    let drains: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.latency_ms.is_none() && labels.contains(&r.relay))
        .collect();
    assert_eq!(drains.len(), 6, "3 drains x 2 variants: {drains:#?}");
    for r in &drains {
        // A drain row exists only when every event arrived; `published` is set only for a
        // relay stopped before the end.
        assert!(r.published.is_none() && r.events > 0, "{r:?}");
        assert!(
            r.first_event_seconds
                .is_some_and(|s| s > 0.0 && s <= r.seconds)
                && r.peak_rss_kib.is_some_and(|k| k > 50 * 1024)
                && r.relay_cpu_ms.is_some_and(|ms| ms > 0)
                && r.pg_cpu_ms.is_some()
                && r.wal_bytes.is_some(),
            "{r:?}"
        );
        // Debezium confirms one transaction behind: never the last one of a single huge one.
        if r.scenario.starts_with("one transaction") {
            assert_eq!(r.confirmed_seconds, None, "{r:?}");
        } else {
            assert!(r.confirmed_seconds.is_some_and(|s| s >= r.seconds), "{r:?}");
        }
    }
    let live: Vec<_> = report.rows.iter().filter(|r| r.is_live()).collect();
    assert_eq!(live.len(), 2, "{live:#?}");
    for r in live {
        let [p50, p99, max] = r.latency_ms.expect("latency");
        assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{r:?}");
        assert_eq!(r.published, None, "kept up with 200 events/s: {r:?}");
    }

    let report = outbox_bench::run(&options(
        vec![RelayKind::Debezium],
        vec![ScenarioKind::Behaviour],
    ))
    .await?;
    assert_eq!(report.behaviour.len(), 1, "{:#?}", report.behaviour);
    let b = &report.behaviour[0];
    assert!(
        b.restart_events > 0
            && b.restart_published >= b.restart_events
            && b.kill_events > 0
            && b.kill_published >= b.kill_events
            && b.kill_after > 0,
        "{b:?}"
    );
    let idle = b.idle.as_ref().expect("Debezium has a slot");
    assert!(idle.wal_bytes > 0, "{idle:?}");
    assert!(b.slot_lost.is_some(), "{b:?}");
    Ok(())
}

/// The diagnosis relay: Debezium's engine with nothing sent to Kafka drains, timed by the
/// runner's own count, and is left out of the scenarios that read the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_engine_alone_drains_and_publishes_nothing() -> anyhow::Result<()> {
    let report = outbox_bench::run(&options(
        vec![RelayKind::DebeziumEngine],
        vec![ScenarioKind::BacklogBatched, ScenarioKind::Live],
    ))
    .await?;
    let label = RelayKind::DebeziumEngine.label();
    let rows: Vec<_> = report.rows.iter().filter(|r| r.relay == label).collect();
    assert_eq!(rows.len(), 1, "one drain, no live row: {:#?}", report.rows);
    let r = rows[0];
    assert_eq!(r.broker, "none", "{r:?}");
    assert!(
        r.published.is_none()
            && r.first_event_seconds
                .is_some_and(|s| s > 0.0 && s <= r.seconds)
            && r.confirmed_seconds.is_some_and(|s| s >= r.seconds)
            && r.relay_cpu_ms.is_some_and(|ms| ms > 0),
        "{r:?}"
    );
    Ok(())
}
