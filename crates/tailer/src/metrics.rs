//! Prometheus metrics of one run, and what liveness, readiness and the lag in seconds are
//! computed from.
//!
//! ```text
//!   pipeline ──counters, gauges, latency, heartbeat──▶ Metrics ◀──slot gauges── watchdog
//!   librdkafka (producer context) ──statistics──────▶    │
//!                                                         ▼
//!                   background::metrics_server: /metrics, /healthz, /readyz
//! ```
//!
//! Each run owns its registry (no global state), so several tailers can live in one process.
//! Names are in [`families`]; every labelled family whose label values are known up front
//! (`errors_total{kind}`) exports them at 0 from the start.

mod families;
pub mod health;
pub mod librdkafka;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Registry, TextEncoder,
};

use families::*;
use health::Heartbeat;
use librdkafka::KafkaStats;

/// Every metric of one run, plus what `/readyz`, `/healthz` and the lag in seconds are
/// computed from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub events_published: IntCounter,
    pub published_bytes: IntCounter,
    pub events_acked: IntCounter,
    pub dead_lettered: IntCounter,
    pub transactions: IntCounter,
    pub publish_latency: Histogram,
    pub receive_delay: Histogram,
    pub confirmed_lsn: IntGauge,
    pub lag_seconds: Gauge,
    pub in_flight_events: IntGauge,
    pub in_flight_bytes: IntGauge,
    pub reconnects: IntCounter,
    pub catch_up_pauses: IntCounter,
    pub errors: IntCounterVec,
    pub streaming: IntGauge,
    /// 1 while another process holds the slot and this one waits to take over.
    pub standby: IntGauge,
    pub slot_lag_bytes: IntGauge,
    pub slot_retained_bytes: IntGauge,
    pub slot_safe_wal_bytes: IntGauge,
    pub slot_checks: IntCounter,
    pub resume_skipped: IntCounter,
    pub resume_fallbacks: IntCounter,
    pub kafka_commits: IntCounter,
    pub kafka_aborts: IntCounter,
    pub kafka_commit_seconds: Histogram,
    /// librdkafka's statistics, reported through the producer's context.
    pub kafka: KafkaStats,
    /// When the relay loop last turned (`/healthz`).
    pub heartbeat: Heartbeat,
    /// Unix µs of the newest point known to be fully confirmed: the commit time of the last
    /// confirmed transaction, or the moment an idle keepalive showed we were caught up.
    confirmed_point_us: AtomicI64,
    /// An idle keepalive arrived and no transaction started since: lag is zero.
    caught_up: AtomicBool,
    /// Unix µs of the last time the confirmed LSN moved or the pipeline was seen idle.
    last_progress_us: AtomicI64,
}

/// Every `kind` of `outbox_tailer_errors_total`: [`TailerError::kind`](crate::TailerError::kind)
/// plus the watchdog's `slot_check`. Each starts at 0, so `rate()` and `increase()` see the
/// first error of a kind.
pub const ERROR_KINDS: [&str; 16] = [
    "config",
    "refused",
    "database",
    "slot_invalidated",
    "unroutable",
    "not_retained",
    "delivery",
    "unreachable",
    "interrupted",
    "replication",
    "postgres",
    "transaction",
    "kafka",
    "decode",
    "bug",
    "slot_check",
];

/// Register `metric` in `registry`; names and options are constants here, so a failure is a
/// programming error caught by the unit tests.
fn registered<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    let metric = metric.expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn counter(registry: &Registry, family: Family) -> IntCounter {
    registered(registry, IntCounter::with_opts(family.opts()))
}

fn gauge(registry: &Registry, family: Family) -> IntGauge {
    registered(registry, IntGauge::with_opts(family.opts()))
}

fn latency(registry: &Registry, family: Family) -> Histogram {
    let opts = HistogramOpts::new(family.name, family.help).buckets(LATENCY_BUCKETS.to_vec());
    registered(registry, Histogram::with_opts(opts))
}

/// Histogram buckets of the latency metrics, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// `outbox_tailer_build_info{version}`, always 1.
fn build_info(registry: &Registry) {
    let info = registered(registry, IntGaugeVec::new(BUILD_INFO.opts(), &["version"]));
    info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
}

/// The standard `process_*` metrics (CPU, memory, file descriptors, start time) of this
/// process; procfs is Linux-only.
fn process_metrics(registry: &Registry) {
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("unique metric");
    #[cfg(not(target_os = "linux"))]
    let _ = registry;
}

impl Metrics {
    /// A transaction committed at `commit_us` (Unix µs) was read to its end now.
    pub fn received_transaction(&self, commit_us: i64) {
        let delay = (now_us() - commit_us).max(0) as f64 / 1e6;
        self.receive_delay.observe(delay);
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        build_info(&r);
        process_metrics(&r);
        let now = now_us();
        let errors = registered(&r, IntCounterVec::new(ERRORS.opts(), &["kind"]));
        for kind in ERROR_KINDS {
            errors.with_label_values(&[kind]);
        }
        Metrics {
            events_published: counter(&r, EVENTS_PUBLISHED),
            published_bytes: counter(&r, PUBLISHED_BYTES),
            events_acked: counter(&r, EVENTS_ACKED),
            dead_lettered: counter(&r, DEAD_LETTERED),
            transactions: counter(&r, TRANSACTIONS),
            publish_latency: latency(&r, PUBLISH_LATENCY),
            receive_delay: latency(&r, RECEIVE_DELAY),
            confirmed_lsn: gauge(&r, CONFIRMED_LSN),
            lag_seconds: registered(&r, Gauge::with_opts(LAG_SECONDS.opts())),
            in_flight_events: gauge(&r, IN_FLIGHT_EVENTS),
            in_flight_bytes: gauge(&r, IN_FLIGHT_BYTES),
            reconnects: counter(&r, RECONNECTS),
            catch_up_pauses: counter(&r, CATCH_UP_PAUSES),
            errors,
            streaming: gauge(&r, STREAMING),
            standby: gauge(&r, STANDBY),
            slot_lag_bytes: gauge(&r, SLOT_LAG_BYTES),
            slot_retained_bytes: gauge(&r, SLOT_RETAINED_BYTES),
            slot_safe_wal_bytes: gauge(&r, SLOT_SAFE_WAL_BYTES),
            slot_checks: counter(&r, SLOT_CHECKS),
            resume_skipped: counter(&r, RESUME_SKIPPED),
            resume_fallbacks: counter(&r, RESUME_FALLBACKS),
            kafka_commits: counter(&r, KAFKA_COMMITS),
            kafka_aborts: counter(&r, KAFKA_ABORTS),
            kafka_commit_seconds: latency(&r, KAFKA_COMMIT_SECONDS),
            kafka: KafkaStats::new(&r),
            heartbeat: Heartbeat::default(),
            registry: r,
            confirmed_point_us: AtomicI64::new(now),
            caught_up: AtomicBool::new(false),
            last_progress_us: AtomicI64::new(now),
        }
    }

    /// Count an error of `kind` (`replication`, `delivery`, `slot_check`, …).
    pub fn error(&self, kind: &str) {
        self.errors.with_label_values(&[kind]).inc();
    }

    /// The confirmed LSN moved; `commit_time_us` is the commit time of the newest transaction
    /// now confirmed (none for a keepalive).
    pub fn confirmed(&self, lsn: pgoutput::Lsn, commit_time_us: Option<i64>) {
        self.confirmed_lsn
            .set(i64::try_from(lsn.as_u64()).unwrap_or(i64::MAX));
        if let Some(t) = commit_time_us {
            self.confirmed_point_us.fetch_max(t, Ordering::Relaxed);
        }
        self.last_progress_us.store(now_us(), Ordering::Relaxed);
    }

    /// A keepalive arrived with nothing open or in flight: everything sent is confirmed.
    pub fn caught_up(&self) {
        let now = now_us();
        self.confirmed_point_us.fetch_max(now, Ordering::Relaxed);
        self.last_progress_us.store(now, Ordering::Relaxed);
        self.caught_up.store(true, Ordering::Relaxed);
    }

    /// A transaction started: no longer caught up.
    pub fn transaction_started(&self) {
        self.caught_up.store(false, Ordering::Relaxed);
    }

    /// Seconds between now and the newest fully confirmed point.
    pub fn current_lag_seconds(&self) -> f64 {
        if self.caught_up.load(Ordering::Relaxed) {
            return 0.0;
        }
        let behind = now_us() - self.confirmed_point_us.load(Ordering::Relaxed);
        behind.max(0) as f64 / 1e6
    }

    /// Ready: streaming, and either nothing in flight or the confirmed LSN moved within
    /// `max_stall`. The reason when not.
    pub fn readiness(&self, max_stall: Duration) -> Result<(), String> {
        if self.standby.get() == 1 {
            return Err("standing by: the slot is active in another process".into());
        }
        if self.streaming.get() != 1 {
            return Err("not streaming from the slot".into());
        }
        if self.in_flight_events.get() == 0 {
            return Ok(());
        }
        let since = now_us() - self.last_progress_us.load(Ordering::Relaxed);
        let stall = Duration::from_micros(u64::try_from(since).unwrap_or(0));
        if stall > max_stall {
            return Err(format!(
                "{} events in flight and nothing confirmed for {}s",
                self.in_flight_events.get(),
                stall.as_secs()
            ));
        }
        Ok(())
    }

    /// Alive unless the relay loop is running and has not turned within `wedged_after`
    /// ([`health`]). The reason when not.
    pub fn liveness(&self, wedged_after: Duration) -> Result<(), String> {
        health::liveness(self.heartbeat.since_last_turn(), wedged_after)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        self.lag_seconds.set(self.current_lag_seconds());
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_family() {
        let m = Metrics::new();
        m.events_published.inc();
        m.error("replication");
        m.publish_latency.observe(0.01);
        m.received_transaction(now_us() - 2_000);
        let text = m.render();
        for name in [
            "outbox_tailer_events_published_total 1",
            "outbox_tailer_errors_total{kind=\"replication\"} 1",
            "outbox_tailer_publish_latency_seconds_count 1",
            "outbox_tailer_receive_delay_seconds_bucket{le=\"0.0025\"} 1",
            "outbox_tailer_lag_seconds",
            "outbox_tailer_confirmed_lsn",
            "outbox_tailer_published_bytes_total 0",
            "outbox_tailer_build_info{version=\"",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
        #[cfg(target_os = "linux")]
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }

    #[test]
    fn every_error_kind_starts_at_zero() {
        let text = Metrics::new().render();
        for kind in ERROR_KINDS {
            let line = format!("outbox_tailer_errors_total{{kind=\"{kind}\"}} 0");
            assert!(text.contains(&line), "{line} missing in\n{text}");
        }
    }

    /// `TailerError::kind` and [`ERROR_KINDS`] name the same kinds: a new error variant gets
    /// its zero-initialised series too.
    #[test]
    fn error_kinds_cover_every_tailer_error() {
        let source = include_str!("error.rs");
        let start = source
            .find("pub fn kind(&self)")
            .expect("TailerError::kind");
        let body = &source[start..];
        let body = &body[..body.find("\n    }\n").expect("end of kind()")];
        let kinds: Vec<&str> = body
            .split("=> \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert_eq!(kinds.len(), ERROR_KINDS.len() - 1, "{kinds:?}");
        for kind in kinds {
            assert!(ERROR_KINDS.contains(&kind), "{kind} missing in ERROR_KINDS");
        }
    }

    #[test]
    fn liveness_follows_the_heartbeat() {
        let m = Metrics::new();
        let limit = Duration::from_secs(60);
        assert!(m.liveness(limit).is_ok(), "before the loop runs");
        let in_loop = m.heartbeat.enter();
        assert!(m.liveness(limit).is_ok());
        m.heartbeat.turned_ago(Duration::from_secs(61));
        assert!(m.liveness(limit).unwrap_err().contains("wedged"));
        in_loop.turn();
        assert!(m.liveness(limit).is_ok());
    }

    #[test]
    fn readiness_needs_streaming_and_progress() {
        let m = Metrics::new();
        assert!(m.readiness(Duration::from_secs(60)).is_err());
        m.streaming.set(1);
        assert!(m.readiness(Duration::from_secs(60)).is_ok());
        m.in_flight_events.set(5);
        m.last_progress_us.store(0, Ordering::Relaxed);
        assert!(m.readiness(Duration::from_secs(60)).is_err());
        m.confirmed(pgoutput::Lsn::from(10), None);
        assert!(m.readiness(Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn lag_is_zero_when_caught_up() {
        let m = Metrics::new();
        m.caught_up();
        assert_eq!(m.current_lag_seconds(), 0.0);
        m.transaction_started();
        m.confirmed_point_us
            .store(now_us() - 5_000_000, Ordering::Relaxed);
        assert!(m.current_lag_seconds() >= 5.0);
    }
}
