//! librdkafka's own statistics as metrics: what the producer queues and how the brokers answer.
//!
//! librdkafka reports every `statistics.interval.ms` (set by the sink) through the producer's
//! context. Its totals grow for the life of one producer, so the counters here add the
//! difference to that producer's previous report ([`ProducerTotals`]).

use std::collections::HashMap;

use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use rdkafka::statistics::{Broker, Statistics};

use super::families::*;
use super::{counter, gauge, registered};

/// The librdkafka families of one run.
#[derive(Debug)]
pub struct KafkaStats {
    queue_messages: IntGauge,
    queue_bytes: IntGauge,
    transmitted_messages: IntCounter,
    transmitted_bytes: IntCounter,
    broker_up: IntGaugeVec,
    rtt_avg: GaugeVec,
    rtt_p99: GaugeVec,
    request_errors: IntCounterVec,
    request_retries: IntCounterVec,
}

/// What one producer reported last.
#[derive(Debug, Default)]
pub struct ProducerTotals {
    transmitted_messages: u64,
    transmitted_bytes: u64,
    /// Per broker name: request errors and retries.
    brokers: HashMap<String, (u64, u64)>,
}

/// Label of the per-broker families: librdkafka's broker name (`host:port/node id`).
const BROKER: &str = "broker";

impl KafkaStats {
    pub(super) fn new(r: &Registry) -> KafkaStats {
        let per_broker = |family: Family| registered(r, GaugeVec::new(family.opts(), &[BROKER]));
        KafkaStats {
            queue_messages: gauge(r, KAFKA_QUEUE_MESSAGES),
            queue_bytes: gauge(r, KAFKA_QUEUE_BYTES),
            transmitted_messages: counter(r, KAFKA_TRANSMITTED_MESSAGES),
            transmitted_bytes: counter(r, KAFKA_TRANSMITTED_BYTES),
            broker_up: registered(r, IntGaugeVec::new(KAFKA_BROKER_UP.opts(), &[BROKER])),
            rtt_avg: per_broker(KAFKA_BROKER_RTT_AVG),
            rtt_p99: per_broker(KAFKA_BROKER_RTT_P99),
            request_errors: registered(
                r,
                IntCounterVec::new(KAFKA_BROKER_REQUEST_ERRORS.opts(), &[BROKER]),
            ),
            request_retries: registered(
                r,
                IntCounterVec::new(KAFKA_BROKER_REQUEST_RETRIES.opts(), &[BROKER]),
            ),
        }
    }

    /// One statistics report of the producer whose earlier reports left `seen`.
    pub fn record(&self, stats: &Statistics, seen: &mut ProducerTotals) {
        self.queue_messages.set(clamp(stats.msg_cnt));
        self.queue_bytes.set(clamp(stats.msg_size));
        let grew = |old: &mut u64, new: u64| {
            let by = new.saturating_sub(*old);
            *old = new;
            by
        };
        let txmsgs = u64::try_from(stats.txmsgs).unwrap_or(0);
        let txmsg_bytes = u64::try_from(stats.txmsg_bytes).unwrap_or(0);
        self.transmitted_messages
            .inc_by(grew(&mut seen.transmitted_messages, txmsgs));
        self.transmitted_bytes
            .inc_by(grew(&mut seen.transmitted_bytes, txmsg_bytes));

        let reported: HashMap<&str, &Broker> = stats
            .brokers
            .values()
            .filter(|b| is_real(b))
            .map(|b| (b.name.as_str(), b))
            .collect();
        // A broker gone from the cluster leaves no stale gauge behind (its counters stay).
        for name in seen.brokers.keys() {
            if !reported.contains_key(name.as_str()) {
                let _ = self.broker_up.remove_label_values(&[name]);
                let _ = self.rtt_avg.remove_label_values(&[name]);
                let _ = self.rtt_p99.remove_label_values(&[name]);
            }
        }
        for (name, broker) in reported {
            let labels = [name];
            self.broker_up
                .with_label_values(&labels)
                .set(i64::from(broker.state == "UP"));
            let (avg, p99) = broker.rtt.as_ref().map_or((0, 0), |w| (w.avg, w.p99));
            self.rtt_avg.with_label_values(&labels).set(seconds(avg));
            self.rtt_p99.with_label_values(&labels).set(seconds(p99));
            let (errors, retries) = seen.brokers.entry(name.to_owned()).or_default();
            self.request_errors
                .with_label_values(&labels)
                .inc_by(grew(errors, broker.txerrs));
            self.request_retries
                .with_label_values(&labels)
                .inc_by(grew(retries, broker.txretries));
        }
    }
}

/// A broker of the cluster (configured or learned), not librdkafka's internal or logical ones.
fn is_real(broker: &Broker) -> bool {
    broker.source != "internal" && broker.source != "logical"
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// librdkafka's windows are in microseconds.
fn seconds(micros: i64) -> f64 {
    micros.max(0) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statistics report with what is read here filled in.
    fn report(msg_cnt: u64, txmsgs: i64, txerrs: u64, brokers: &[&str]) -> Statistics {
        let broker = |name: &str, source: &str| Broker {
            name: name.into(),
            source: source.into(),
            state: "UP".into(),
            txerrs,
            txretries: 1,
            rtt: Some(rdkafka::statistics::Window {
                avg: 1500,
                p99: 8000,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut all: HashMap<String, Broker> = brokers
            .iter()
            .map(|name| ((*name).to_owned(), broker(name, "learned")))
            .collect();
        all.insert(":0/internal".into(), broker(":0/internal", "internal"));
        Statistics {
            msg_cnt,
            msg_size: 2048,
            txmsgs,
            txmsg_bytes: txmsgs * 100,
            brokers: all,
            ..Default::default()
        }
    }

    #[test]
    fn reports_become_gauges_and_growing_counters() {
        let m = crate::metrics::Metrics::new();
        let mut seen = ProducerTotals::default();
        m.kafka
            .record(&report(3, 5, 1, &["b:9092/1", "c:9092/2"]), &mut seen);
        m.kafka.record(&report(0, 12, 4, &["b:9092/1"]), &mut seen);
        let text = m.render();
        for line in [
            "outbox_tailer_kafka_producer_queue_messages 0",
            "outbox_tailer_kafka_producer_queue_bytes 2048",
            "outbox_tailer_kafka_transmitted_messages_total 12",
            "outbox_tailer_kafka_transmitted_bytes_total 1200",
            "outbox_tailer_kafka_broker_up{broker=\"b:9092/1\"} 1",
            "outbox_tailer_kafka_broker_rtt_avg_seconds{broker=\"b:9092/1\"} 0.0015",
            "outbox_tailer_kafka_broker_rtt_p99_seconds{broker=\"b:9092/1\"} 0.008",
            "outbox_tailer_kafka_broker_request_errors_total{broker=\"b:9092/1\"} 4",
            "outbox_tailer_kafka_broker_request_retries_total{broker=\"b:9092/1\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(
            !text.contains("internal"),
            "librdkafka's internal broker:\n{text}"
        );
        assert!(
            !text.contains("rtt_avg_seconds{broker=\"c:9092/2\"}"),
            "a broker gone leaves no gauge:\n{text}"
        );
    }

    #[test]
    fn a_new_producer_starts_its_own_totals() {
        let m = crate::metrics::Metrics::new();
        m.kafka.record(
            &report(0, 7, 0, &["b:9092/1"]),
            &mut ProducerTotals::default(),
        );
        m.kafka.record(
            &report(0, 2, 0, &["b:9092/1"]),
            &mut ProducerTotals::default(),
        );
        assert!(m
            .render()
            .contains("outbox_tailer_kafka_transmitted_messages_total 9"));
    }
}
