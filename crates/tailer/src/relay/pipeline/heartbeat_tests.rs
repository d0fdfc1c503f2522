//! The loop's heartbeat (`/healthz`): it beats while idle and stops when a turn never ends.

use super::tests::{begin, insert, relation};
use super::*;
use crate::config::RouteConfig;
use crate::metrics::health::liveness;
use crate::pg::names::TableName;
use crate::relay::progress::Ticket;
use crate::relay::scripted_source::ScriptedSource;

/// A connected stream with nothing to say.
#[derive(Debug)]
struct SilentSource;

impl Source for SilentSource {
    async fn next(&mut self) -> Result<SourceEvent, TailerError> {
        std::future::pending().await
    }
    fn confirm(&mut self, _: Lsn) {}
    async fn close(self) {}
}

/// A hand-over that never finishes: what a lost wakeup or a blocked call looks like.
#[derive(Debug)]
struct StuckSink;

impl Sink for StuckSink {
    async fn send(&mut self, _: Record, _: Ticket) -> Result<(), TailerError> {
        std::future::pending().await
    }
}

fn pipeline<K: Sink>(sink: K, metrics: &Arc<Metrics>) -> Pipeline<K> {
    let (_, acks) = mpsc::unbounded_channel();
    let route = RouteConfig::default();
    let decoder =
        EventDecoder::new(TableName::parse("public.outbox").unwrap(), route.clone()).unwrap();
    let window = Window {
        max_events: 100,
        max_bytes: u64::MAX,
    };
    Pipeline::new(
        decoder,
        Router::new(route).unwrap(),
        sink,
        acks,
        window,
        Lsn::ZERO,
    )
    .with_metrics(Arc::clone(metrics))
}

/// Far below the real limit (2 s at least), far above an idle turn.
const WEDGED_AFTER: Duration = Duration::from_millis(1_000);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_loop_keeps_beating() {
    let metrics = Arc::new(Metrics::new());
    let mut p = pipeline(StuckSink, &metrics);
    let running = tokio::spawn(async move {
        let mut stop = Shutdown::default();
        let _ = p
            .stream(&mut SilentSource, &mut stop, Duration::from_secs(1))
            .await;
    });
    // Watch for several limits' worth of silence: the idle turns keep the loop alive.
    let watch_until = Instant::now() + WEDGED_AFTER * 3;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while Instant::now() < watch_until {
        tick.tick().await;
        assert!(
            metrics.heartbeat.since_last_turn().is_some(),
            "the loop runs"
        );
        assert_eq!(
            liveness(metrics.heartbeat.since_last_turn(), WEDGED_AFTER),
            Ok(())
        );
    }
    running.abort();
    let _ = running.await;
    assert_eq!(metrics.heartbeat.since_last_turn(), None, "left the loop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_that_never_ends_is_wedged() {
    let metrics = Arc::new(Metrics::new());
    let mut p = pipeline(StuckSink, &metrics);
    let mut source = ScriptedSource::default();
    source.events.extend([begin(100), relation(), insert(1)]);
    let running = tokio::spawn(async move {
        let mut stop = Shutdown::default();
        let _ = p
            .stream(&mut source, &mut stop, Duration::from_secs(1))
            .await;
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let reason = loop {
        tick.tick().await;
        if let Err(reason) = liveness(metrics.heartbeat.since_last_turn(), WEDGED_AFTER) {
            break reason;
        }
        assert!(
            Instant::now() < deadline,
            "the stuck hand-over never showed as wedged"
        );
    };
    assert!(reason.contains("has not turned"), "{reason}");
    running.abort();
}
