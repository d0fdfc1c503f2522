//! The harness in smoke mode (tiny sizes), so it cannot silently rot.

use outbox_bench::{BenchOptions, BrokerKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_run_measures_every_scenario_and_relay() -> anyhow::Result<()> {
    let options = BenchOptions {
        smoke: true,
        broker: BrokerKind::Mock,
        scenarios: Vec::new(),
        out: None,
        tailer_bin: Some(env!("CARGO_BIN_EXE_outbox-bench-tailer").into()),
        relays: Vec::new(),
        debezium_scenarios: Vec::new(),
        tools_dir: None,
    };
    let report = outbox_bench::run(&options).await?;
    let throughput: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.latency_ms.is_none())
        .collect();
    assert_eq!(
        throughput.len(),
        6,
        "3 scenarios x 2 relays: {:#?}",
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
    assert_eq!(report.behaviour.len(), 1, "{:#?}", report.behaviour);
    let b = &report.behaviour[0];
    assert!(
        b.restart_published >= b.restart_events && b.kill_published >= b.kill_events,
        "{b:?}"
    );
    let live = report
        .rows
        .iter()
        .find(|r| r.latency_ms.is_some())
        .expect("a live row");
    let [p50, p99, max] = live.latency_ms.unwrap();
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{live:?}");
    let md = report.markdown();
    assert!(
        md.contains("vs pg_recvlogical") && md.contains("p99 ms") && md.contains("SIGKILL"),
        "{md}"
    );
    Ok(())
}
