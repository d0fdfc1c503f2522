//! Prometheus metrics of one run, and what readiness and the lag in seconds are computed from.
//!
//! ```text
//!   pipeline ──counters, gauges, latency──▶ Metrics ◀──lag bytes, safe_wal_size── watchdog
//!                                              │
//!                         background::metrics_server (/metrics, /healthz, /readyz)
//! ```
//!
//! Each run owns its registry (no global state), so several tailers can live in one process.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Every metric of one run, plus what `/readyz` and the lag in seconds are computed from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub events_published: IntCounter,
    pub bytes_published: IntCounter,
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
    pub errors: IntCounterVec,
    pub streaming: IntGauge,
    pub slot_lag_bytes: IntGauge,
    pub slot_retained_bytes: IntGauge,
    pub slot_safe_wal_bytes: IntGauge,
    pub slot_checks: IntCounter,
    pub resume_skipped: IntCounter,
    pub resume_fallbacks: IntCounter,
    pub kafka_commits: IntCounter,
    pub kafka_aborts: IntCounter,
    pub kafka_commit_seconds: Histogram,
    /// Unix µs of the newest point known to be fully confirmed: the commit time of the last
    /// confirmed transaction, or the moment an idle keepalive showed we were caught up.
    confirmed_point_us: AtomicI64,
    /// An idle keepalive arrived and no transaction started since: lag is zero.
    caught_up: AtomicBool,
    /// Unix µs of the last time the confirmed LSN moved or the pipeline was seen idle.
    last_progress_us: AtomicI64,
}

/// The name and help text of one metric family.
#[derive(Debug, Clone, Copy)]
struct Family {
    name: &'static str,
    help: &'static str,
}

impl Family {
    fn opts(self) -> Opts {
        Opts::new(self.name, self.help)
    }
}

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

// What the pipeline publishes and Kafka acknowledges.
const EVENTS_PUBLISHED: Family = Family {
    name: "outbox_tailer_events_published_total",
    help: "Events handed to the Kafka producer (dead-letter records included)",
};
const BYTES_PUBLISHED: Family = Family {
    name: "outbox_tailer_bytes_published_total",
    help: "Bytes of key, value and headers handed to the Kafka producer",
};
const EVENTS_ACKED: Family = Family {
    name: "outbox_tailer_events_acked_total",
    help: "Events acknowledged by Kafka",
};
const DEAD_LETTERED: Family = Family {
    name: "outbox_tailer_dead_lettered_total",
    help: "Unroutable events sent to the dead-letter topic",
};
const TRANSACTIONS: Family = Family {
    name: "outbox_tailer_transactions_total",
    help: "Transactions received from the slot",
};
const IN_FLIGHT_EVENTS: Family = Family {
    name: "outbox_tailer_in_flight_events",
    help: "Events handed to Kafka and not yet acknowledged",
};
const IN_FLIGHT_BYTES: Family = Family {
    name: "outbox_tailer_in_flight_bytes",
    help: "Bytes handed to Kafka and not yet acknowledged",
};

// How late events are.
const PUBLISH_LATENCY: Family = Family {
    name: "outbox_tailer_publish_latency_seconds",
    help: "Time from handing an event to the Kafka producer to its ack",
};
const RECEIVE_DELAY: Family = Family {
    name: "outbox_tailer_receive_delay_seconds",
    help: "Time from a transaction's commit (the server's commit timestamp) to the tailer \
           reading its end: the walsender's decoding plus the network",
};
const CONFIRMED_LSN: Family = Family {
    name: "outbox_tailer_confirmed_lsn",
    help: "LSN confirmed to PostgreSQL, as a number (everything before it is in Kafka)",
};
const LAG_SECONDS: Family = Family {
    name: "outbox_tailer_lag_seconds",
    help: "Now minus the commit time of the last confirmed transaction (0 while caught up)",
};

// The replication stream.
const STREAMING: Family = Family {
    name: "outbox_tailer_streaming",
    help: "1 while the replication stream is connected",
};
const RECONNECTS: Family = Family {
    name: "outbox_tailer_reconnects_total",
    help: "Replication stream reconnects after a transient error",
};
const ERRORS: Family = Family {
    name: "outbox_tailer_errors_total",
    help: "Errors, by kind",
};

// Idempotent resume.
const RESUME_SKIPPED: Family = Family {
    name: "outbox_tailer_resume_skipped_total",
    help: "Events acknowledged without sending: the partition's tail showed this relay had \
           published them already",
};
const RESUME_FALLBACKS: Family = Family {
    name: "outbox_tailer_resume_fallbacks_total",
    help: "Partitions whose tail held no record of this relay: at-least-once for them",
};

// Kafka transactions (`--exactly-once`).
const KAFKA_COMMITS: Family = Family {
    name: "outbox_tailer_kafka_transactions_committed_total",
    help: "Kafka transactions committed (--exactly-once)",
};
const KAFKA_ABORTS: Family = Family {
    name: "outbox_tailer_kafka_transactions_aborted_total",
    help: "Kafka transactions aborted and sent again from the last commit (--exactly-once)",
};
const KAFKA_COMMIT_SECONDS: Family = Family {
    name: "outbox_tailer_kafka_commit_seconds",
    help: "Time one Kafka transaction commit took (--exactly-once)",
};

// What the slot watchdog sees.
const SLOT_LAG_BYTES: Family = Family {
    name: "outbox_tailer_slot_lag_bytes",
    help: "pg_current_wal_lsn() - confirmed_flush_lsn of the slot, at the last slot check",
};
const SLOT_RETAINED_BYTES: Family = Family {
    name: "outbox_tailer_slot_retained_wal_bytes",
    help: "pg_current_wal_lsn() - restart_lsn of the slot: WAL kept for it",
};
const SLOT_SAFE_WAL_BYTES: Family = Family {
    name: "outbox_tailer_slot_safe_wal_size_bytes",
    help: "safe_wal_size of the slot: WAL that may be written before it is invalidated \
           (-1 when max_slot_wal_keep_size is unlimited)",
};
const SLOT_CHECKS: Family = Family {
    name: "outbox_tailer_slot_checks_total",
    help: "Slot checks made by the watchdog",
};

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
        let now = now_us();
        Metrics {
            events_published: counter(&r, EVENTS_PUBLISHED),
            bytes_published: counter(&r, BYTES_PUBLISHED),
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
            errors: registered(&r, IntCounterVec::new(ERRORS.opts(), &["kind"])),
            streaming: gauge(&r, STREAMING),
            slot_lag_bytes: gauge(&r, SLOT_LAG_BYTES),
            slot_retained_bytes: gauge(&r, SLOT_RETAINED_BYTES),
            slot_safe_wal_bytes: gauge(&r, SLOT_SAFE_WAL_BYTES),
            slot_checks: counter(&r, SLOT_CHECKS),
            resume_skipped: counter(&r, RESUME_SKIPPED),
            resume_fallbacks: counter(&r, RESUME_FALLBACKS),
            kafka_commits: counter(&r, KAFKA_COMMITS),
            kafka_aborts: counter(&r, KAFKA_ABORTS),
            kafka_commit_seconds: latency(&r, KAFKA_COMMIT_SECONDS),
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
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
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
