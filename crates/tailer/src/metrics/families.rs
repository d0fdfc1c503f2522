//! Names and help texts of every metric family the tailer exports.
//!
//! Names follow Prometheus' conventions: the `outbox_tailer_` prefix, the unit as the last
//! word before `_total` (`_seconds`, `_bytes`), `_total` on counters and only on counters.
//! An LSN is a position in the WAL, not an amount, so `confirmed_lsn` carries no unit.

/// The name and help text of one metric family.
#[derive(Debug, Clone, Copy)]
pub(super) struct Family {
    pub name: &'static str,
    pub help: &'static str,
}

impl Family {
    pub fn opts(self) -> prometheus::Opts {
        prometheus::Opts::new(self.name, self.help)
    }
}

pub(super) const BUILD_INFO: Family = Family {
    name: "outbox_tailer_build_info",
    help: "Always 1; the tailer's version is in the `version` label",
};

// What the pipeline publishes and Kafka acknowledges.
pub(super) const EVENTS_PUBLISHED: Family = Family {
    name: "outbox_tailer_events_published_total",
    help: "Events handed to the Kafka producer (dead-letter records included)",
};
pub(super) const PUBLISHED_BYTES: Family = Family {
    name: "outbox_tailer_published_bytes_total",
    help: "Bytes of key, value and headers handed to the Kafka producer",
};
pub(super) const EVENTS_ACKED: Family = Family {
    name: "outbox_tailer_events_acked_total",
    help: "Events acknowledged by Kafka",
};
pub(super) const DEAD_LETTERED: Family = Family {
    name: "outbox_tailer_dead_lettered_total",
    help: "Unroutable events sent to the dead-letter topic",
};
pub(super) const TRANSACTIONS: Family = Family {
    name: "outbox_tailer_transactions_total",
    help: "Transactions received from the slot",
};
pub(super) const IN_FLIGHT_EVENTS: Family = Family {
    name: "outbox_tailer_in_flight_events",
    help: "Events handed to Kafka and not yet acknowledged",
};
pub(super) const IN_FLIGHT_BYTES: Family = Family {
    name: "outbox_tailer_in_flight_bytes",
    help: "Bytes handed to Kafka and not yet acknowledged",
};

// How late events are.
pub(super) const PUBLISH_LATENCY: Family = Family {
    name: "outbox_tailer_publish_latency_seconds",
    help: "Time from handing an event to the Kafka producer to its ack (sampled: the first \
        event of each transaction and every 16th after it)",
};
pub(super) const RECEIVE_DELAY: Family = Family {
    name: "outbox_tailer_receive_delay_seconds",
    help: "Time from a transaction's commit (the server's commit timestamp) to the tailer \
           reading its end: the walsender's decoding plus the network",
};
pub(super) const CONFIRMED_LSN: Family = Family {
    name: "outbox_tailer_confirmed_lsn",
    help: "LSN confirmed to PostgreSQL, as a number (everything before it is in Kafka)",
};
pub(super) const LAG_SECONDS: Family = Family {
    name: "outbox_tailer_lag_seconds",
    help: "Now minus the commit time of the last confirmed transaction (0 while caught up)",
};

// The replication stream.
pub(super) const STREAMING: Family = Family {
    name: "outbox_tailer_streaming",
    help: "1 while the replication stream is connected",
};
pub(super) const STANDBY: Family = Family {
    name: "outbox_tailer_standby",
    help: "1 while standing by: the slot is active in another process, taken over when released",
};
pub(super) const RECONNECTS: Family = Family {
    name: "outbox_tailer_reconnects_total",
    help: "Replication stream reconnects after a transient error",
};
pub(super) const CATCH_UP_PAUSES: Family = Family {
    name: "outbox_tailer_catch_up_pauses_total",
    help: "Times reading the replication stream was held off for --catch-up-pause-ms while it \
           was far behind (the stream then arrives in larger pieces)",
};
pub(super) const ERRORS: Family = Family {
    name: "outbox_tailer_errors_total",
    help: "Errors, by kind",
};

// Idempotent resume.
pub(super) const RESUME_SKIPPED: Family = Family {
    name: "outbox_tailer_resume_skipped_total",
    help: "Events acknowledged without sending: the partition's tail showed this relay had \
           published them already",
};
pub(super) const RESUME_FALLBACKS: Family = Family {
    name: "outbox_tailer_resume_fallbacks_total",
    help: "Partitions whose tail held no record of this relay: at-least-once for them",
};

// Kafka transactions (`--exactly-once`).
pub(super) const KAFKA_COMMITS: Family = Family {
    name: "outbox_tailer_kafka_transactions_committed_total",
    help: "Kafka transactions committed (--exactly-once)",
};
pub(super) const KAFKA_ABORTS: Family = Family {
    name: "outbox_tailer_kafka_transactions_aborted_total",
    help: "Kafka transactions aborted and sent again from the last commit (--exactly-once)",
};
pub(super) const KAFKA_COMMIT_SECONDS: Family = Family {
    name: "outbox_tailer_kafka_commit_seconds",
    help: "Time one Kafka transaction commit took (--exactly-once)",
};

// What the slot watchdog sees.
pub(super) const SLOT_LAG_BYTES: Family = Family {
    name: "outbox_tailer_slot_lag_bytes",
    help: "pg_current_wal_lsn() - confirmed_flush_lsn of the slot, at the last slot check",
};
pub(super) const SLOT_RETAINED_BYTES: Family = Family {
    name: "outbox_tailer_slot_retained_wal_bytes",
    help: "pg_current_wal_lsn() - restart_lsn of the slot: WAL kept for it",
};
pub(super) const SLOT_SAFE_WAL_BYTES: Family = Family {
    name: "outbox_tailer_slot_safe_wal_size_bytes",
    help: "safe_wal_size of the slot: WAL that may be written before it is invalidated \
           (-1 when max_slot_wal_keep_size is unlimited)",
};
pub(super) const SLOT_CHECKS: Family = Family {
    name: "outbox_tailer_slot_checks_total",
    help: "Slot checks made by the watchdog",
};

// librdkafka's own statistics (`statistics.interval.ms`), per producer.
pub(super) const KAFKA_QUEUE_MESSAGES: Family = Family {
    name: "outbox_tailer_kafka_producer_queue_messages",
    help: "Messages in librdkafka's producer queues, not yet acknowledged by a broker",
};
pub(super) const KAFKA_QUEUE_BYTES: Family = Family {
    name: "outbox_tailer_kafka_producer_queue_bytes",
    help: "Bytes of the messages in librdkafka's producer queues",
};
pub(super) const KAFKA_TRANSMITTED_MESSAGES: Family = Family {
    name: "outbox_tailer_kafka_transmitted_messages_total",
    help: "Messages librdkafka transmitted to the brokers (retries included)",
};
pub(super) const KAFKA_TRANSMITTED_BYTES: Family = Family {
    name: "outbox_tailer_kafka_transmitted_bytes_total",
    help: "Bytes of the messages librdkafka transmitted to the brokers (retries included)",
};
pub(super) const KAFKA_BROKER_UP: Family = Family {
    name: "outbox_tailer_kafka_broker_up",
    help: "1 while librdkafka's connection to the broker is up",
};
pub(super) const KAFKA_BROKER_RTT_AVG: Family = Family {
    name: "outbox_tailer_kafka_broker_rtt_avg_seconds",
    help: "Average round-trip time of requests to the broker over the last statistics interval",
};
pub(super) const KAFKA_BROKER_RTT_P99: Family = Family {
    name: "outbox_tailer_kafka_broker_rtt_p99_seconds",
    help: "99th percentile of the round-trip time of requests to the broker over the last \
           statistics interval",
};
pub(super) const KAFKA_BROKER_REQUEST_ERRORS: Family = Family {
    name: "outbox_tailer_kafka_broker_request_errors_total",
    help: "Requests to the broker that failed to transmit",
};
pub(super) const KAFKA_BROKER_REQUEST_RETRIES: Family = Family {
    name: "outbox_tailer_kafka_broker_request_retries_total",
    help: "Requests to the broker sent again",
};
