//! The harness in smoke mode (tiny sizes), so it cannot silently rot.

use outbox_bench::{BenchOptions, BrokerKind, RelayKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_run_measures_every_scenario_and_relay() -> anyhow::Result<()> {
    let options = BenchOptions {
        smoke: true,
        broker: BrokerKind::Mock,
        scenarios: Vec::new(),
        out: None,
        tailer_bin: Some(env!("CARGO_BIN_EXE_outbox-bench-tailer").into()),
        // Debezium has its own smoke test (debezium_smoke.rs).
        relays: vec![
            RelayKind::Tailer,
            RelayKind::PollClassic,
            RelayKind::PollTuned,
        ],
        debezium_scenarios: Vec::new(),
        tools_dir: None,
        render: None,
        live_rates: Vec::new(),
        live_seconds: None,
        live_partitions: 3,
        tansu_storage: outbox_bench::TansuStore::Memory,
    };
    let report = outbox_bench::run(&options).await?;
    let throughput: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.latency_ms.is_none())
        .collect();
    assert_eq!(
        throughput.len(),
        12,
        "3 scenarios x (pg_recvlogical, tailer, polling classic, polling tuned): {:#?}",
        report.rows
    );
    for r in &throughput {
        assert!(r.seconds > 0.0 && r.events > 0, "{r:?}");
    }
    assert!(throughput
        .iter()
        .filter(|r| r.relay == "outbox-tailer")
        .all(|r| r.peak_rss_kib.is_some_and(|k| k > 0)
            && r.first_event_seconds
                .is_some_and(|s| s > 0.0 && s <= r.seconds)
            && r.confirmed_seconds.is_some()));
    // Classic polling (10 rows every 2 s) is stopped after its window, having published some
    // but not all; the tuned poller drains everything, marking every row (dead versions to
    // vacuum); the tailer never touches the table.
    for r in throughput
        .iter()
        .filter(|r| r.relay.starts_with("polling classic"))
    {
        assert!(
            r.published.is_some_and(|n| n > 0 && n < r.events)
                && r.extrapolated_seconds().is_some_and(|s| s > r.seconds),
            "{r:?}"
        );
    }
    for r in throughput.iter().filter(|r| r.relay == "outbox-tailer") {
        assert_eq!(r.obsolete_rows, Some(0), "{r:?}");
    }
    for r in throughput
        .iter()
        .filter(|r| r.relay.starts_with("polling tuned"))
    {
        assert!(
            r.published.is_none()
                && r.obsolete_rows == Some(r.events as i64)
                && r.vacuum_ms.is_some(),
            "{r:?}"
        );
    }
    // Classic polling's behaviour is the tuned poller's, at hours per restart: not run.
    assert_eq!(report.behaviour.len(), 2, "{:#?}", report.behaviour);
    for b in &report.behaviour {
        assert!(
            b.restart_published >= b.restart_events && b.kill_published >= b.kill_events,
            "{b:?}"
        );
        assert_eq!(b.idle.is_some(), b.relay == "outbox-tailer", "{b:?}");
    }
    let live: Vec<_> = report.rows.iter().filter(|r| r.is_live()).collect();
    assert_eq!(live.len(), 6, "2 rates x 3 relays: {live:#?}");
    for r in &live {
        assert_eq!(
            r.events, 400,
            "200 events/s for 2 s, whatever the transaction size: {r:?}"
        );
        let [p50, p99, max] = r.latency_ms.unwrap();
        assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{r:?}");
        if !r.relay.starts_with("polling classic") {
            assert_eq!(r.published, None, "kept up with 200 events/s: {r:?}");
            // Each third of the writes has events, none slower than the run's slowest.
            let thirds = r.p99_by_third_ms.unwrap();
            assert!(thirds.iter().all(|&t| t > 0.0 && t <= max), "{r:?}");
        }
    }
    assert!(live
        .iter()
        .any(|r| r.scenario.contains("10-event transactions")));
    assert_eq!(report.targets.len(), 5, "{:#?}", report.targets);
    let md = report.markdown();
    assert!(
        md.contains("vs pg_recvlogical")
            && md.contains("p99 ms")
            && md.contains("SIGKILL")
            && md.contains("extrapolated")
            && md.contains("| target |"),
        "{md}"
    );
    Ok(())
}
