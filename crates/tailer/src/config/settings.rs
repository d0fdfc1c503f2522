//! The resolved settings each part of the tailer is built from: validated, defaults applied,
//! nothing optional left that has a default.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::config::route_args::RecordFormat;
use crate::config::secret::is_secret_option;
use crate::pg::names::TableName;
use crate::pg::tls::PgTls;

/// Where and how to connect to PostgreSQL, and which slot and publication to use.
#[derive(Clone)]
pub struct SourceConfig {
    pub pg: tokio_postgres::Config,
    /// sslmode and certificates, applied to every connection (see `tls`).
    pub tls: PgTls,
    pub slot: String,
    pub publication: String,
    pub table: TableName,
    /// The slot that trails the live one so `replay` can reach back (none: no replay window).
    pub replay_slot: Option<String>,
    /// Create (or turn the slot into) a failover slot (PostgreSQL 17+).
    pub failover: bool,
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("pg", &describe_pg(&self.pg))
            .field("tls", &self.tls)
            .field("slot", &self.slot)
            .field("publication", &self.publication)
            .field("table", &self.table)
            .field("replay_slot", &self.replay_slot)
            .field("failover", &self.failover)
            .finish()
    }
}

/// The first host of a connection (a name or a socket directory) and its port, as libpq picks
/// them by default.
pub fn host_and_port(pg: &tokio_postgres::Config) -> (String, u16) {
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    (host, pg.get_ports().first().copied().unwrap_or(5432))
}

/// `user@host:port/db`, without the password.
pub fn describe_pg(pg: &tokio_postgres::Config) -> String {
    let (host, port) = host_and_port(pg);
    format!(
        "{}@{host}:{port}/{}",
        pg.get_user().unwrap_or("postgres"),
        pg.get_dbname().unwrap_or("postgres")
    )
}

/// Header names the tailer sets itself; user headers may not use them, so a consumer can
/// trust a record's position.
pub const RESERVED_HEADER_PREFIX: &str = "outbox-";

/// True for a name in the tailer's own header namespace (compared case-insensitively).
pub fn is_reserved_header(name: &str) -> bool {
    name.get(..RESERVED_HEADER_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_HEADER_PREFIX))
}

/// How outbox rows become Kafka records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    pub topic: String,
    /// Debezium's `route.topic.regex` over the route-by value (none: the value as it is).
    pub topic_regex: Option<String>,
    pub route_by: String,
    pub key_column: String,
    pub id_column: String,
    pub type_column: String,
    /// Named explicitly: a table without it is refused. By default a table without a `type`
    /// column simply sends no `type` header.
    pub type_column_required: bool,
    pub payload_column: String,
    pub headers_column: String,
    /// `(column, header name)`
    pub header_columns: Vec<(String, String)>,
    /// `(column, field name)` beside the payload in a JSON object value.
    pub envelope_fields: Vec<(String, String)>,
    pub key_format: RecordFormat,
    pub value_format: RecordFormat,
    pub expand_json_payload: bool,
    pub tombstone_on_empty_payload: bool,
    pub timestamp: RecordTimestamp,
    /// Debezium's `tracingspancontext` column (a Java properties text).
    pub tracing_column: String,
    pub tracing_column_required: bool,
    /// The `outbox-*` position headers and `type` (off: only what Debezium sends).
    pub position_headers: bool,
    pub dead_letter_topic: Option<String>,
    pub max_message_bytes: usize,
}

/// Where a record's timestamp comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordTimestamp {
    /// The transaction's commit time (a polled row: its insert time; no commit: produce time).
    Commit,
    /// The time the record is handed to the producer.
    Produce,
    /// A timestamp, timestamptz or bigint (milliseconds) column.
    Column(String),
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            topic: "outbox.event.${routedByValue}".into(),
            topic_regex: None,
            route_by: "aggregatetype".into(),
            key_column: "aggregateid".into(),
            id_column: "id".into(),
            type_column: "type".into(),
            type_column_required: false,
            payload_column: "payload".into(),
            headers_column: "headers".into(),
            header_columns: Vec::new(),
            envelope_fields: Vec::new(),
            key_format: RecordFormat::String,
            value_format: RecordFormat::String,
            expand_json_payload: false,
            tombstone_on_empty_payload: false,
            timestamp: RecordTimestamp::Commit,
            tracing_column: "tracingspancontext".into(),
            tracing_column_required: false,
            position_headers: true,
            dead_letter_topic: None,
            max_message_bytes: 1_000_000,
        }
    }
}

/// The Kafka producer.
#[derive(Clone, Default)]
pub struct SinkConfig {
    pub brokers: String,
    /// librdkafka options, applied after the tailer's defaults.
    pub options: Vec<(String, String)>,
    pub create_topics: bool,
    pub topic_partitions: i32,
    /// -1: the broker's default.
    pub topic_replication_factor: i32,
    /// How keys map to partitions (`-X partitioner=…`).
    pub partitioner: Partitioner,
    /// Records read back per partition for idempotent resume (0: off).
    pub resume_scan: u64,
    /// `--exactly-once`: Kafka transactions, and how large each may grow.
    pub transactions: Option<TransactionConfig>,
    /// Send at once, without the linger, while the stream is slower than this many events per
    /// second (0: always linger).
    pub send_at_once_below: u64,
}

/// How keys map to partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitioner {
    /// The Java producer's default (Debezium, Kafka Connect, Kafka Streams): murmur2.
    #[default]
    Murmur2,
    /// librdkafka's `consistent_random`/`consistent`: CRC-32 of the key. The placement of
    /// tailer releases before murmur2 became the default, and of librdkafka-based producers.
    Crc32,
}

impl Partitioner {
    /// The partitioner a librdkafka `partitioner` option names, when the tailer can honour it
    /// (it places keys itself, deterministically; random placement would split an aggregate).
    pub fn from_librdkafka(name: &str) -> Option<Partitioner> {
        match name {
            "murmur2" | "murmur2_random" => Some(Partitioner::Murmur2),
            "consistent" | "consistent_random" => Some(Partitioner::Crc32),
            _ => None,
        }
    }
}

/// Kafka transactions of `--exactly-once`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionConfig {
    /// `None`: derived from the source (system identifier and slot) at start.
    pub id: Option<String>,
    pub max_events: u64,
    pub max_bytes: u64,
    pub max_wait: std::time::Duration,
}

impl std::fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options: Vec<_> = self
            .options
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_option(k) { "<redacted>" } else { v };
                format!("{k}={shown}")
            })
            .collect();
        f.debug_struct("SinkConfig")
            .field("brokers", &self.brokers)
            .field("options", &options)
            .field("create_topics", &self.create_topics)
            .finish()
    }
}

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct TailerConfig {
    pub source: SourceConfig,
    pub route: RouteConfig,
    pub sink: SinkConfig,
    pub max_in_flight_events: u64,
    pub max_in_flight_bytes: u64,
    /// Prefix of logical decoding messages that carry events (none: messages are ignored).
    pub message_prefix: Option<String>,
    pub create_slot: bool,
    pub shutdown_timeout: Duration,
    pub status_interval: Duration,
    /// How long reading is held off while the stream is far behind (zero: never).
    pub catch_up_pause: Duration,
    /// Where to serve `/metrics`, `/healthz`, `/readyz` (none: no HTTP endpoint).
    pub metrics_addr: Option<SocketAddr>,
    /// `/readyz` fails when events are in flight and nothing was confirmed for this long.
    pub ready_max_stall: Duration,
    /// How often the slot watchdog looks at the slot.
    pub slot_check_interval: Duration,
    pub thresholds: SlotThresholds,
    /// Skip ahead to this LSN before streaming (`run --start-lsn`).
    pub start_lsn: Option<pgoutput::Lsn>,
    /// Skip with `start_lsn` even when nothing can replay the skipped range.
    pub force_skip: bool,
    /// How far the replay slot trails the live slot.
    pub replay_retention: Duration,
}

/// When `status` and the running tailer's slot watchdog call a slot lagging or at risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotThresholds {
    pub lag_warn_bytes: u64,
    pub safe_wal_warn_bytes: u64,
}

impl Default for SlotThresholds {
    fn default() -> Self {
        SlotThresholds {
            lag_warn_bytes: 64 << 20,
            safe_wal_warn_bytes: 1 << 30,
        }
    }
}

/// What to do with published rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterPublish {
    /// `UPDATE … SET published_at = now()`: rows stay for a retention job.
    Mark,
    /// `DELETE`: the table stays small.
    Delete,
}

/// How often and how much to poll.
#[derive(Debug, Clone, Copy)]
pub struct PollConfig {
    pub interval: Duration,
    pub batch: i64,
    /// Poll again at once after a full batch instead of waiting for the interval.
    pub drain: bool,
    pub after: AfterPublish,
}

impl PollConfig {
    /// The classic example: every 2 s, 10 rows.
    pub const CLASSIC: PollConfig = PollConfig {
        interval: Duration::from_secs(2),
        batch: 10,
        drain: false,
        after: AfterPublish::Mark,
    };
}
