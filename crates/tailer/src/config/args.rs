//! Every setting, declared once. Each field gets its flag and environment variable from clap
//! and its TOML key (the field's name) from serde; the `file` module layers the file
//! under what clap parsed. Settings with a default are `Option`s here (the default is applied
//! in the `resolve` module), so "not given" can be told from "given".
//!
//! The few arguments that are deliberately command line only are in [`COMMAND_LINE_ONLY`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use pgoutput::Lsn;
use serde::{Deserialize, Serialize};

use crate::config::route_args::RouteArgs;
use crate::config::secret::Secret;
use crate::config::settings::AfterPublish;

/// Arguments that name a position or an action for one invocation. From a file or the
/// environment they would repeat at every start: skip events again, replay again.
pub const COMMAND_LINE_ONLY: &[&str] = &[
    "config",
    "start_lsn",
    "force",
    "from_lsn",
    "to_lsn",
    "dry_run",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// Where `replay` sends events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayTarget {
    Kafka,
    Stdout,
}

/// Where the outbox lives.
#[derive(Debug, Args, Default, Serialize, Deserialize)]
pub struct DatabaseArgs {
    /// TOML file with any of these settings (flags and environment variables take precedence).
    #[arg(long, env = "OUTBOX_CONFIG")]
    pub config: Option<PathBuf>,

    /// PostgreSQL connection, `host=… port=… user=… dbname=…` or `postgres://user@host/db`
    /// [default: host=localhost user=postgres dbname=postgres].
    #[arg(long, env = "OUTBOX_POSTGRES", hide_env_values = true)]
    pub postgres: Option<Secret>,

    /// PostgreSQL password (overrides one in the connection string).
    #[arg(long, env = "OUTBOX_POSTGRES_PASSWORD", hide_env_values = true)]
    pub postgres_password: Option<Secret>,

    /// Logical replication slot [default: outbox_slot].
    #[arg(long, env = "OUTBOX_SLOT")]
    pub slot: Option<String>,

    /// Publication holding the outbox table [default: outbox_pub].
    #[arg(long, env = "OUTBOX_PUBLICATION")]
    pub publication: Option<String>,

    /// Outbox table, `schema.table` [default: public.outbox].
    #[arg(long, env = "OUTBOX_TABLE")]
    pub table: Option<String>,

    /// A second slot that trails the live one by `--replay-retention-secs`, so `replay` can
    /// re-publish recent events that were already confirmed [default: none]. Holds WAL for that
    /// long: see docs/operations.md.
    #[arg(long, env = "OUTBOX_REPLAY_SLOT")]
    pub replay_slot: Option<String>,

    /// A failover slot (PostgreSQL 17+): synchronised to standbys that set
    /// `sync_replication_slots`, so the tailer can follow a promotion. `setup` creates the slot
    /// with it, or turns it on for an existing slot (stop the tailer first). See docs/ha.md.
    #[arg(long, env = "OUTBOX_SLOT_FAILOVER")]
    #[serde(default)]
    pub failover: bool,
}

/// When `status` and the running tailer's slot watchdog call a slot lagging or at risk.
#[derive(Debug, Args, Default, Clone, Serialize, Deserialize)]
pub struct ThresholdArgs {
    /// Lag (bytes of WAL behind the server's current position) above which the slot is
    /// "lagging" [default: 67108864 = 64 MiB].
    #[arg(long, env = "OUTBOX_LAG_WARN_BYTES")]
    pub lag_warn_bytes: Option<u64>,

    /// `safe_wal_size` (bytes of WAL that may still be written before PostgreSQL invalidates
    /// the slot) below which the slot is "at risk of invalidation" [default: 1073741824 = 1 GiB].
    #[arg(long, env = "OUTBOX_SAFE_WAL_WARN_BYTES")]
    pub safe_wal_warn_bytes: Option<u64>,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct SetupArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub db: DatabaseArgs,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct StatusArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub db: DatabaseArgs,

    #[command(flatten)]
    #[serde(flatten)]
    pub thresholds: ThresholdArgs,

    /// Print one JSON object instead of the table.
    #[arg(long, env = "OUTBOX_JSON")]
    #[serde(default)]
    pub json: bool,
}

#[derive(Debug, Args, Default, Serialize, Deserialize)]
pub struct RunArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub db: DatabaseArgs,

    /// Kafka bootstrap servers [default: localhost:9092].
    #[arg(long, env = "OUTBOX_KAFKA_BROKERS")]
    pub brokers: Option<String>,

    /// Any librdkafka option as key=value (repeatable), e.g. `-X security.protocol=SASL_SSL`;
    /// in the environment one per line, in the file a `[kafka]` table.
    #[arg(
        short = 'X',
        long = "kafka-option",
        value_name = "KEY=VALUE",
        env = "OUTBOX_KAFKA_OPTIONS",
        hide_env_values = true,
        value_delimiter = '\n'
    )]
    #[serde(default)]
    pub kafka: Vec<Secret>,

    /// Compression: none, gzip, snappy, lz4, zstd [default: lz4].
    #[arg(long, env = "OUTBOX_COMPRESSION")]
    pub compression: Option<String>,

    /// Producer linger in milliseconds [default: 5]: how long records wait to share a produce
    /// request while the stream is busy (a light one is sent at once, see
    /// `--send-at-once-below`). 0 never waits, at the cost of many small produce requests
    /// under load (docs/benchmarks.md has the measurements).
    #[arg(long, env = "OUTBOX_LINGER_MS")]
    pub linger_ms: Option<u64>,

    /// While events arrive slower than this (events per second) and the replication stream has
    /// nothing more queued, records go to Kafka at once instead of waiting for the linger
    /// [default: 2000]. Faster streams batch for the linger. 0: always wait for the linger.
    #[arg(long, env = "OUTBOX_SEND_AT_ONCE_BELOW")]
    pub send_at_once_below: Option<u64>,

    #[command(flatten)]
    #[serde(flatten)]
    pub route: RouteArgs,

    /// Most events published but not yet acked [default: 20000].
    #[arg(long, env = "OUTBOX_MAX_IN_FLIGHT_EVENTS")]
    pub max_in_flight_events: Option<u64>,

    /// Most bytes published but not yet acked [default: 16777216].
    #[arg(long, env = "OUTBOX_MAX_IN_FLIGHT_BYTES")]
    pub max_in_flight_bytes: Option<u64>,

    /// Also publish events written with `pg_logical_emit_message(true, PREFIX, <JSON envelope>)`
    /// (no outbox table needed); envelope keys are the column names above.
    #[arg(long, env = "OUTBOX_MESSAGE_PREFIX")]
    pub message_prefix: Option<String>,

    /// Create the slot (after checking the publication) if it does not exist. For a first start
    /// only: a new slot begins at the current WAL position.
    #[arg(long, env = "OUTBOX_CREATE_SLOT")]
    #[serde(default)]
    pub create_slot: bool,

    /// Create missing topics through the Kafka admin API before the first record to them.
    #[arg(long, env = "OUTBOX_CREATE_TOPICS")]
    #[serde(default)]
    pub create_topics: bool,

    /// Partitions of topics created with --create-topics [default: 1].
    #[arg(long, env = "OUTBOX_TOPIC_PARTITIONS")]
    pub topic_partitions: Option<i32>,

    /// Replication factor of topics created with --create-topics [default: -1, the broker's
    /// `default.replication.factor`].
    #[arg(
        long,
        env = "OUTBOX_TOPIC_REPLICATION_FACTOR",
        allow_negative_numbers = true
    )]
    pub topic_replication_factor: Option<i32>,

    /// Idempotent resume: before the first record to a topic, read up to this many records
    /// back in each partition to find the newest one this relay published, and skip events
    /// already there [default: 10000; 0 turns it off].
    #[arg(long, env = "OUTBOX_RESUME_SCAN_RECORDS")]
    pub resume_scan_records: Option<u64>,

    /// Exactly-once delivery with Kafka transactions: events are published in Kafka
    /// transactions holding whole PostgreSQL transactions, and the slot is confirmed only
    /// after the Kafka commit. Consumers read with `isolation.level=read_committed`. Needs a
    /// broker with transactions (not tansu 0.6).
    #[arg(long, env = "OUTBOX_EXACTLY_ONCE")]
    #[serde(default)]
    pub exactly_once: bool,

    /// `transactional.id` of --exactly-once [default: `outbox-tailer.<system id>.<slot>`].
    /// One tailer per id: a second one with the same id fences the first.
    #[arg(long, env = "OUTBOX_TRANSACTIONAL_ID")]
    pub transactional_id: Option<String>,

    /// --exactly-once: commit the Kafka transaction once it holds this many events
    /// [default: 250000]. A PostgreSQL transaction is never split, so one may exceed it.
    #[arg(long, env = "OUTBOX_TRANSACTION_MAX_EVENTS")]
    pub transaction_max_events: Option<u64>,

    /// --exactly-once: commit once the Kafka transaction holds this many bytes
    /// [default: 268435456].
    #[arg(long, env = "OUTBOX_TRANSACTION_MAX_BYTES")]
    pub transaction_max_bytes: Option<u64>,

    /// --exactly-once: commit at the latest this many milliseconds after the Kafka
    /// transaction's first event [default: 100]; while catching up on a backlog (the newest
    /// transaction received committed over 1 s ago), 50 times that.
    #[arg(long, env = "OUTBOX_TRANSACTION_MAX_MS")]
    pub transaction_max_ms: Option<u64>,

    /// Seconds a stop may take in all (finish the open transaction, wait for in-flight acks,
    /// send the last confirmed LSN) [default: 25, inside Kubernetes' 30 s grace period].
    #[arg(long, env = "OUTBOX_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout_secs: Option<u64>,

    /// Milliseconds between status updates to PostgreSQL [default: 1000].
    #[arg(long, env = "OUTBOX_STATUS_INTERVAL_MS")]
    pub status_interval_ms: Option<u64>,

    /// While the replication stream is far behind (the walsender sends transactions that
    /// committed over 100 ms ago) and nothing is left to read, wait this many milliseconds
    /// before reading again, so the stream arrives in large pieces: less CPU per event on a
    /// backlog, no effect on a live stream [default: 2, at most 50]. 0: always read at once.
    #[arg(long, env = "OUTBOX_CATCH_UP_PAUSE_MS")]
    pub catch_up_pause_ms: Option<u64>,

    /// Serve Prometheus metrics on `/metrics`, liveness on `/healthz` and readiness on
    /// `/readyz` at this address, e.g. `127.0.0.1:9187` [default: off].
    #[arg(long, env = "OUTBOX_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// `/readyz` fails when events are in flight and nothing was confirmed for this many
    /// seconds [default: 60].
    #[arg(long, env = "OUTBOX_READY_MAX_STALL_SECS")]
    pub ready_max_stall_secs: Option<u64>,

    /// Milliseconds between checks of the slot (lag, `safe_wal_size`, invalidation) while
    /// running [default: 10000].
    #[arg(long, env = "OUTBOX_SLOT_CHECK_INTERVAL_MS")]
    pub slot_check_interval_ms: Option<u64>,

    #[command(flatten)]
    #[serde(flatten)]
    pub thresholds: ThresholdArgs,

    /// Start streaming at this LSN instead of the slot's position: transactions committed
    /// before it are SKIPPED and never published (the slot is advanced to it first). For
    /// recovering from a poison event or a deliberate cut-over only; on the command line only.
    /// Refused unless the replay slot holds the skipped range, or `--force` is given.
    #[arg(long, value_name = "LSN")]
    pub start_lsn: Option<Lsn>,

    /// With `--start-lsn`: skip even when no replay slot (`--replay-slot`) still holds the
    /// skipped range, so the skipped events can never be replayed.
    #[arg(long, requires = "start_lsn")]
    #[serde(default)]
    pub force: bool,

    /// With `--replay-slot`: how far (in seconds of confirmed progress) the replay slot trails
    /// the live slot [default: 86400].
    #[arg(long, env = "OUTBOX_REPLAY_RETENTION_SECS")]
    pub replay_retention_secs: Option<u64>,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct PeekArgs {
    /// The routing flags of `run` (topic template, columns, message prefix, …), so events are
    /// shown exactly as `run` would publish them.
    #[command(flatten)]
    #[serde(flatten)]
    pub run: Box<RunArgs>,

    /// Show at most this many events [default: 20].
    #[arg(long = "limit", env = "OUTBOX_PEEK_LIMIT")]
    pub peek_limit: Option<usize>,

    /// Also print each event's payload (off by default: payloads may hold personal data).
    #[arg(long, env = "OUTBOX_SHOW_PAYLOAD")]
    #[serde(default)]
    pub show_payload: bool,

    /// Print one JSON object instead of the table.
    #[arg(long, env = "OUTBOX_JSON")]
    #[serde(default)]
    pub json: bool,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct ReplayArgs {
    /// Database, routing and Kafka settings, as for `run`.
    #[command(flatten)]
    #[serde(flatten)]
    pub run: Box<RunArgs>,

    /// Replay transactions whose commit LSN (header `outbox-lsn`) is at least this, e.g. 0/16B3748.
    #[arg(long, value_name = "LSN")]
    pub from_lsn: Lsn,

    /// … and at most this [default: the server's current WAL position when replay starts].
    #[arg(long, value_name = "LSN")]
    pub to_lsn: Option<Lsn>,

    /// Where replayed events go: `kafka` (the topics `run` publishes to, records identical to
    /// the originals, so consumers dedupe them by `id`) or `stdout` (one JSON object per line)
    /// [default: kafka].
    #[arg(long = "to", value_enum, env = "OUTBOX_REPLAY_TO")]
    pub replay_to: Option<ReplayTarget>,

    /// Decode and route the range, print the summary, publish nothing.
    #[arg(long)]
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Args, Serialize, Deserialize)]
pub struct PollArgs {
    /// Database, routing and Kafka settings, as for `run` (slot settings are not used).
    #[command(flatten)]
    #[serde(flatten)]
    pub run: RunArgs,

    /// Milliseconds between polls [default: 2000, the classic example].
    #[arg(long = "interval-ms", env = "OUTBOX_POLL_INTERVAL_MS")]
    pub poll_interval_ms: Option<u64>,

    /// Rows per poll [default: 10, the classic example].
    #[arg(long = "batch", env = "OUTBOX_POLL_BATCH")]
    pub poll_batch: Option<i64>,

    /// After a full batch, poll again at once instead of waiting (the tuned setting).
    #[arg(long = "drain", env = "OUTBOX_POLL_DRAIN")]
    #[serde(default)]
    pub poll_drain: bool,

    /// What to do with published rows [default: mark].
    #[arg(long = "after", value_enum, env = "OUTBOX_POLL_AFTER")]
    pub poll_after: Option<AfterPublish>,
}
