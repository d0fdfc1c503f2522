//! Configuration: flags, environment variables and an optional TOML file, in that order of
//! precedence, resolved into a [`TailerConfig`] that the library uses.
//!
//! Secrets (the PostgreSQL password, `sasl.password`/`ssl.key.password` Kafka options) never
//! appear in `Debug` output, logs, or `--help`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::error::TailerError;
use crate::names::{validate_ident, validate_slot, TableName};

/// The producer's linger, librdkafka's own default. 1 ms halves the median at 1,000 events/s
/// (mock cluster: p50 2.8 ms against 5.7) but at 10,000 events/s it sends so many small
/// requests that the tail grows (mock: p99 49.7 ms against 10.3; tansu: 236.9 against 52.2)
/// and the tailer's CPU doubles. docs/polling-vs-tailing.md has the runs.
const DEFAULT_LINGER_MS: u64 = 5;

/// Tails PostgreSQL's WAL and publishes transactional-outbox events to Kafka.
///
/// Events are read from a logical replication slot (pgoutput), published in commit order
/// (key = aggregate id), and the slot is advanced only after Kafka acknowledged them.
/// First time: `outbox-tailer setup` creates the publication and the slot; then
/// `outbox-tailer run`.
#[derive(Debug, Parser)]
#[command(name = "outbox-tailer", version, propagate_version = true)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "OUTBOX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

// The binary's whole command line: `Cli`'s `run` and `setup` plus the operator commands
// (`status`, `peek`). `Cli` stays the embeddable subset (tests and the demo build a `run`
// configuration from it).
/// Tails PostgreSQL's WAL and publishes transactional-outbox events to Kafka.
///
/// Events are read from a logical replication slot (pgoutput), published in commit order
/// (key = aggregate id), and the slot is advanced only after Kafka acknowledged them.
/// First time: `outbox-tailer setup` creates the publication and the slot; then
/// `outbox-tailer run`. On call: `outbox-tailer status` and `outbox-tailer peek`.
#[derive(Debug, Parser)]
#[command(name = "outbox-tailer", version, propagate_version = true)]
pub struct CommandLine {
    /// Log format.
    #[arg(long, env = "OUTBOX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: AnyCommand,
}

#[derive(Debug, Subcommand)]
pub enum AnyCommand {
    #[command(flatten)]
    Core(Command),
    /// Show the slot, its lag and WAL retention, the publication, and a verdict with what to do.
    Status(StatusArgs),
    /// Show the events waiting in the slot, routed as they would be published, without
    /// consuming them (reads a temporary copy of the slot; the slot itself never moves).
    Peek(PeekArgs),
    /// Re-publish the outbox events committed between two LSNs (a commit's LSN is in every
    /// record's `outbox-lsn` header) without moving the live slot: reads a temporary copy of
    /// the replay slot (`--replay-slot`) or of the live slot, whichever still holds the range.
    Replay(ReplayArgs),
    /// The polling relay: publish unpublished outbox rows every interval, then mark them
    /// published (or delete them). A baseline, and a fallback where logical replication is not
    /// available; needs the `seq` and `published_at` columns (migrations/0003).
    Poll(Box<PollArgs>),
}

#[derive(Debug, Args)]
pub struct PollArgs {
    /// Database, routing and Kafka settings, as for `run` (slot settings are not used).
    #[command(flatten)]
    pub run: RunArgs,

    /// Milliseconds between polls [default: 2000, the classic example].
    #[arg(long, env = "OUTBOX_POLL_INTERVAL_MS", default_value_t = 2000)]
    pub interval_ms: u64,

    /// Rows per poll [default: 10, the classic example].
    #[arg(long, env = "OUTBOX_POLL_BATCH", default_value_t = 10)]
    pub batch: i64,

    /// After a full batch, poll again at once instead of waiting (the tuned setting).
    #[arg(long, env = "OUTBOX_POLL_DRAIN")]
    pub drain: bool,

    /// What to do with published rows.
    #[arg(long, env = "OUTBOX_POLL_AFTER", value_enum, default_value_t = crate::poll::AfterPublish::Mark)]
    pub after: crate::poll::AfterPublish,
}

impl PollArgs {
    pub fn poll_config(&self) -> Result<crate::poll::PollConfig, TailerError> {
        if self.batch < 1 || self.interval_ms == 0 {
            return Err(TailerError::Config(
                "poll batch and interval must be at least 1".into(),
            ));
        }
        Ok(crate::poll::PollConfig {
            interval: Duration::from_millis(self.interval_ms),
            batch: self.batch,
            drain: self.drain,
            after: self.after,
        })
    }
}

/// When `status` and the running tailer's slot watchdog call a slot lagging or at risk.
#[derive(Debug, Args, Default, Clone)]
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

impl ThresholdArgs {
    pub fn resolve(&self, file: &FileConfig) -> SlotThresholds {
        let d = SlotThresholds::default();
        SlotThresholds {
            lag_warn_bytes: self
                .lag_warn_bytes
                .or(file.lag_warn_bytes)
                .unwrap_or(d.lag_warn_bytes),
            safe_wal_warn_bytes: self
                .safe_wal_warn_bytes
                .or(file.safe_wal_warn_bytes)
                .unwrap_or(d.safe_wal_warn_bytes),
        }
    }
}

/// Resolved [`ThresholdArgs`].
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

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,

    #[command(flatten)]
    pub thresholds: ThresholdArgs,

    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PeekArgs {
    /// The routing flags of `run` (topic template, columns, message prefix, …), so events are
    /// shown exactly as `run` would publish them.
    #[command(flatten)]
    pub run: Box<RunArgs>,

    /// Show at most this many events.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,

    /// Also print each event's payload (off by default: payloads may hold personal data).
    #[arg(long)]
    pub show_payload: bool,

    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Database, routing and Kafka settings, as for `run`.
    #[command(flatten)]
    pub run: Box<RunArgs>,

    /// Replay transactions whose commit LSN (header `outbox-lsn`) is at least this, e.g. 0/16B3748.
    #[arg(long, value_name = "LSN")]
    pub from_lsn: pgoutput::Lsn,

    /// … and at most this [default: the server's current WAL position when replay starts].
    #[arg(long, value_name = "LSN")]
    pub to_lsn: Option<pgoutput::Lsn>,

    /// Where replayed events go: `kafka` (the topics `run` publishes to, records identical to
    /// the originals, so consumers dedupe them by `id`) or `stdout` (one JSON object per line).
    #[arg(long, value_enum, default_value_t = ReplayTarget::Kafka)]
    pub to: ReplayTarget,

    /// Decode and route the range, print the summary, publish nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Where `replay` sends events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayTarget {
    Kafka,
    Stdout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream outbox inserts from the slot to Kafka until SIGINT/SIGTERM.
    Run(Box<RunArgs>),
    /// Create the publication (FOR TABLE <outbox> WITH (publish = 'insert')) and then the slot,
    /// if missing. Idempotent; prints what it did.
    Setup(SetupArgs),
}

/// Where the outbox lives.
#[derive(Debug, Args, Default)]
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
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
}

#[derive(Debug, Args, Default)]
pub struct RunArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,

    /// Kafka bootstrap servers [default: localhost:9092].
    #[arg(long, env = "OUTBOX_KAFKA_BROKERS")]
    pub brokers: Option<String>,

    /// Any librdkafka option as key=value (repeatable), e.g. `-X security.protocol=SASL_SSL`.
    #[arg(short = 'X', long = "kafka-option", value_name = "KEY=VALUE")]
    pub kafka_options: Vec<Secret>,

    /// Compression: none, gzip, snappy, lz4, zstd [default: lz4].
    #[arg(long, env = "OUTBOX_COMPRESSION")]
    pub compression: Option<String>,

    /// Producer linger in milliseconds [default: 5]. Lower it (1) for the lowest latency at
    /// low rates; keep 5 at thousands of events/s (docs/polling-vs-tailing.md has the
    /// measurements).
    #[arg(long, env = "OUTBOX_LINGER_MS")]
    pub linger_ms: Option<u64>,

    /// Topic template; `${column}` is replaced by that column's value, `${routedByValue}` by
    /// the route-by column's [default: outbox.event.${routedByValue}].
    #[arg(long, env = "OUTBOX_TOPIC")]
    pub topic: Option<String>,

    /// Column whose value routes the event [default: aggregatetype].
    #[arg(long, env = "OUTBOX_ROUTE_BY")]
    pub route_by: Option<String>,

    /// Column used as the Kafka key [default: aggregateid].
    #[arg(long, env = "OUTBOX_KEY_COLUMN")]
    pub key_column: Option<String>,

    /// Event id column, sent as header `id` [default: id].
    #[arg(long, env = "OUTBOX_ID_COLUMN")]
    pub id_column: Option<String>,

    /// Event type column, sent as header `type` [default: type].
    #[arg(long, env = "OUTBOX_TYPE_COLUMN")]
    pub type_column: Option<String>,

    /// Payload column (jsonb, json, text or bytea; bytes passed unchanged) [default: payload].
    #[arg(long, env = "OUTBOX_PAYLOAD_COLUMN")]
    pub payload_column: Option<String>,

    /// Optional jsonb column whose object entries become headers [default: headers].
    #[arg(long, env = "OUTBOX_HEADERS_COLUMN")]
    pub headers_column: Option<String>,

    /// Extra column sent as a header, `column` or `column:header-name` (repeatable).
    #[arg(long = "header-column", value_name = "COLUMN[:HEADER]")]
    pub header_columns: Vec<String>,

    /// Topic for rows that cannot be routed (NULL key, missing route value, too large).
    /// Without it such a row stops the tailer.
    #[arg(long, env = "OUTBOX_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,

    /// Largest record accepted, in bytes (key + value + headers) [default: 1000000]. Larger rows
    /// are unroutable (dead-letter topic, or the tailer stops). Keep it at or below every
    /// topic's `max.message.bytes` (broker default 1048588): see docs/operations.md.
    #[arg(long, env = "OUTBOX_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,

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
    pub create_slot: bool,

    /// Create missing topics through the Kafka admin API before the first record to them.
    #[arg(long, env = "OUTBOX_CREATE_TOPICS")]
    pub create_topics: bool,

    /// Partitions of topics created with --create-topics [default: 1].
    #[arg(long, env = "OUTBOX_TOPIC_PARTITIONS")]
    pub topic_partitions: Option<i32>,

    /// Seconds to wait for in-flight acks on shutdown [default: 30].
    #[arg(long, env = "OUTBOX_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout_secs: Option<u64>,

    /// Milliseconds between status updates to PostgreSQL [default: 1000].
    #[arg(long, env = "OUTBOX_STATUS_INTERVAL_MS")]
    pub status_interval_ms: Option<u64>,

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
    pub thresholds: ThresholdArgs,

    /// Start streaming at this LSN instead of the slot's position: transactions committed
    /// before it are SKIPPED and never published (the slot is advanced to it first). For
    /// recovering from a poison event or a deliberate cut-over only; on the command line only.
    #[arg(long, env = "OUTBOX_START_LSN", value_name = "LSN")]
    pub start_lsn: Option<pgoutput::Lsn>,

    /// With `--replay-slot`: how far (in seconds of confirmed progress) the replay slot trails
    /// the live slot [default: 86400].
    #[arg(long, env = "OUTBOX_REPLAY_RETENTION_SECS")]
    pub replay_retention_secs: Option<u64>,
}

/// A setting that may hold a secret (a password, a connection string, a librdkafka option):
/// `Debug` never prints it, so neither can a log line or a panic message.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// The TOML file: every field optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub postgres: Option<Secret>,
    pub postgres_password: Option<Secret>,
    pub slot: Option<String>,
    pub publication: Option<String>,
    pub table: Option<String>,
    pub replay_slot: Option<String>,
    pub replay_retention_secs: Option<u64>,
    pub brokers: Option<String>,
    #[serde(default)]
    pub kafka: std::collections::BTreeMap<String, Secret>,
    pub compression: Option<String>,
    pub linger_ms: Option<u64>,
    pub topic: Option<String>,
    pub route_by: Option<String>,
    pub key_column: Option<String>,
    pub id_column: Option<String>,
    pub type_column: Option<String>,
    pub payload_column: Option<String>,
    pub headers_column: Option<String>,
    #[serde(default)]
    pub header_columns: Vec<String>,
    pub dead_letter_topic: Option<String>,
    pub max_message_bytes: Option<usize>,
    pub max_in_flight_events: Option<u64>,
    pub max_in_flight_bytes: Option<u64>,
    pub message_prefix: Option<String>,
    pub create_slot: Option<bool>,
    pub create_topics: Option<bool>,
    pub topic_partitions: Option<i32>,
    pub shutdown_timeout_secs: Option<u64>,
    pub status_interval_ms: Option<u64>,
    pub metrics_addr: Option<SocketAddr>,
    pub ready_max_stall_secs: Option<u64>,
    pub slot_check_interval_ms: Option<u64>,
    pub lag_warn_bytes: Option<u64>,
    pub safe_wal_warn_bytes: Option<u64>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, TailerError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            TailerError::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        toml::from_str(&text)
            .map_err(|e| TailerError::Config(format!("config file {}: {e}", path.display())))
    }
}

/// Where and how to connect to PostgreSQL, and which slot and publication to use.
#[derive(Clone)]
pub struct SourceConfig {
    pub pg: tokio_postgres::Config,
    /// sslmode and certificates, applied to every connection (see `tls`).
    pub tls: crate::tls::PgTls,
    pub slot: String,
    pub publication: String,
    pub table: TableName,
    /// The slot that trails the live one so `replay` can reach back (none: no replay window).
    pub replay_slot: Option<String>,
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
            .finish()
    }
}

/// `user@host:port/db`, without the password.
pub fn describe_pg(pg: &tokio_postgres::Config) -> String {
    let host = pg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        pg.get_user().unwrap_or("postgres"),
        pg.get_dbname().unwrap_or("postgres")
    )
}

/// How outbox rows become Kafka records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    pub topic: String,
    pub route_by: String,
    pub key_column: String,
    pub id_column: String,
    pub type_column: String,
    pub payload_column: String,
    pub headers_column: String,
    /// `(column, header name)`
    pub header_columns: Vec<(String, String)>,
    pub dead_letter_topic: Option<String>,
    pub max_message_bytes: usize,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            topic: "outbox.event.${routedByValue}".into(),
            route_by: "aggregatetype".into(),
            key_column: "aggregateid".into(),
            id_column: "id".into(),
            type_column: "type".into(),
            payload_column: "payload".into(),
            headers_column: "headers".into(),
            header_columns: Vec::new(),
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

/// librdkafka options whose values are secrets.
pub fn is_secret_option(key: &str) -> bool {
    key.contains("password") || key.contains("secret") || key.ends_with(".key.pem")
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
    /// Where to serve `/metrics`, `/healthz`, `/readyz` (none: no HTTP endpoint).
    pub metrics_addr: Option<SocketAddr>,
    /// `/readyz` fails when events are in flight and nothing was confirmed for this long.
    pub ready_max_stall: Duration,
    /// How often the slot watchdog looks at the slot.
    pub slot_check_interval: Duration,
    pub thresholds: SlotThresholds,
    /// Skip ahead to this LSN before streaming (`run --start-lsn`).
    pub start_lsn: Option<pgoutput::Lsn>,
    /// How far the replay slot trails the live slot.
    pub replay_retention: Duration,
}

impl DatabaseArgs {
    pub fn file(&self) -> Result<FileConfig, TailerError> {
        match &self.config {
            Some(path) => FileConfig::load(path),
            None => Ok(FileConfig::default()),
        }
    }

    /// Resolve against the file's values and the defaults.
    pub fn resolve(&self, file: &FileConfig) -> Result<SourceConfig, TailerError> {
        let conn = self.postgres.as_ref().or(file.postgres.as_ref()).map_or(
            "host=localhost user=postgres dbname=postgres",
            Secret::expose,
        );
        let (mut pg, tls) = crate::tls::parse_conn_str(conn)?;
        if let Some(pw) = self
            .postgres_password
            .as_ref()
            .or(file.postgres_password.as_ref())
        {
            pg.password(pw.expose().as_bytes());
        }
        if pg.get_user().is_none() {
            pg.user("postgres");
        }
        if pg.get_dbname().is_none() {
            let user = pg.get_user().unwrap_or("postgres").to_owned();
            pg.dbname(&user);
        }
        pg.application_name("outbox-tailer");
        let slot = pick(&self.slot, &file.slot, "outbox_slot");
        validate_slot(&slot)?;
        let publication = pick(&self.publication, &file.publication, "outbox_pub");
        validate_ident("publication", &publication)?;
        let table = TableName::parse(&pick(&self.table, &file.table, "public.outbox"))?;
        let replay_slot = self
            .replay_slot
            .clone()
            .or_else(|| file.replay_slot.clone());
        if let Some(replay) = &replay_slot {
            validate_slot(replay)?;
            if *replay == slot {
                return Err(TailerError::Config(format!(
                    "the replay slot must differ from the live slot ({slot})"
                )));
            }
        }
        Ok(SourceConfig {
            pg,
            tls,
            slot,
            publication,
            table,
            replay_slot,
        })
    }
}

fn pick(arg: &Option<String>, file: &Option<String>, default: &str) -> String {
    arg.clone()
        .or_else(|| file.clone())
        .unwrap_or_else(|| default.to_owned())
}

impl RunArgs {
    /// Merge flags, environment, file and defaults; validate everything.
    pub fn resolve(&self) -> Result<TailerConfig, TailerError> {
        let file = self.db.file()?;
        let source = self.db.resolve(&file)?;
        let d = RouteConfig::default();
        let mut header_columns = Vec::new();
        for spec in self.header_columns.iter().chain(&file.header_columns) {
            let (col, header) = spec.split_once(':').unwrap_or((spec, spec));
            if col.is_empty() || header.is_empty() {
                return Err(TailerError::Config(format!(
                    "header column {spec:?}: expected `column` or `column:header-name`"
                )));
            }
            header_columns.push((col.to_owned(), header.to_owned()));
        }
        let route = RouteConfig {
            topic: pick(&self.topic, &file.topic, &d.topic),
            route_by: pick(&self.route_by, &file.route_by, &d.route_by),
            key_column: pick(&self.key_column, &file.key_column, &d.key_column),
            id_column: pick(&self.id_column, &file.id_column, &d.id_column),
            type_column: pick(&self.type_column, &file.type_column, &d.type_column),
            payload_column: pick(
                &self.payload_column,
                &file.payload_column,
                &d.payload_column,
            ),
            headers_column: pick(
                &self.headers_column,
                &file.headers_column,
                &d.headers_column,
            ),
            header_columns,
            dead_letter_topic: self
                .dead_letter_topic
                .clone()
                .or_else(|| file.dead_letter_topic.clone()),
            max_message_bytes: self
                .max_message_bytes
                .or(file.max_message_bytes)
                .unwrap_or(d.max_message_bytes),
        };
        crate::route::validate_template(&route.topic)?;

        let mut options: Vec<(String, String)> = file
            .kafka
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
            .collect();
        let compression = self
            .compression
            .clone()
            .or_else(|| file.compression.clone())
            .unwrap_or_else(|| "lz4".into());
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&compression.as_str()) {
            return Err(TailerError::Config(format!(
                "compression {compression:?}: use none, gzip, snappy, lz4 or zstd"
            )));
        }
        options.insert(0, ("compression.type".into(), compression));
        let linger = self
            .linger_ms
            .or(file.linger_ms)
            .unwrap_or(DEFAULT_LINGER_MS);
        options.insert(1, ("linger.ms".into(), linger.to_string()));
        for raw in &self.kafka_options {
            let (k, v) = raw.expose().split_once('=').ok_or_else(|| {
                TailerError::Config("a kafka option (-X) is not of the form key=value".into())
            })?;
            options.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let sink = SinkConfig {
            brokers: pick(&self.brokers, &file.brokers, "localhost:9092"),
            options,
            create_topics: self.create_topics || file.create_topics.unwrap_or(false),
            topic_partitions: self.topic_partitions.or(file.topic_partitions).unwrap_or(1),
        };
        // Status updates must stay well inside wal_sender_timeout (60 s by default).
        let at_most = |name: &str, v: u64, max: u64| {
            if v > max {
                Err(TailerError::Config(format!("{name} must be at most {max}")))
            } else {
                Ok(v)
            }
        };
        let positive = |name: &str, v: u64| {
            if v == 0 {
                Err(TailerError::Config(format!("{name} must be at least 1")))
            } else {
                Ok(v)
            }
        };
        Ok(TailerConfig {
            source,
            route,
            sink,
            max_in_flight_events: positive(
                "max_in_flight_events",
                self.max_in_flight_events
                    .or(file.max_in_flight_events)
                    .unwrap_or(20_000),
            )?,
            max_in_flight_bytes: positive(
                "max_in_flight_bytes",
                self.max_in_flight_bytes
                    .or(file.max_in_flight_bytes)
                    .unwrap_or(16 << 20),
            )?,
            message_prefix: self
                .message_prefix
                .clone()
                .or_else(|| file.message_prefix.clone()),
            create_slot: self.create_slot || file.create_slot.unwrap_or(false),
            shutdown_timeout: Duration::from_secs(
                self.shutdown_timeout_secs
                    .or(file.shutdown_timeout_secs)
                    .unwrap_or(30),
            ),
            status_interval: Duration::from_millis(at_most(
                "status_interval_ms",
                positive(
                    "status_interval_ms",
                    self.status_interval_ms
                        .or(file.status_interval_ms)
                        .unwrap_or(1000),
                )?,
                10_000,
            )?),
            metrics_addr: self.metrics_addr.or(file.metrics_addr),
            ready_max_stall: Duration::from_secs(positive(
                "ready_max_stall_secs",
                self.ready_max_stall_secs
                    .or(file.ready_max_stall_secs)
                    .unwrap_or(60),
            )?),
            slot_check_interval: Duration::from_millis(positive(
                "slot_check_interval_ms",
                self.slot_check_interval_ms
                    .or(file.slot_check_interval_ms)
                    .unwrap_or(10_000),
            )?),
            thresholds: self.thresholds.resolve(&file),
            start_lsn: self.start_lsn,
            replay_retention: Duration::from_secs(
                self.replay_retention_secs
                    .or(file.replay_retention_secs)
                    .unwrap_or(86_400),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let mut argv = vec!["outbox-tailer", "run"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(r) => *r,
            Command::Setup(_) => unreachable!(),
        }
    }

    #[test]
    fn defaults_follow_debezium() {
        let c = run_args(&[]).resolve().unwrap();
        assert_eq!(c.route.topic, "outbox.event.${routedByValue}");
        assert_eq!(c.route.key_column, "aggregateid");
        assert_eq!(c.source.slot, "outbox_slot");
        assert_eq!(c.source.table.to_string(), "public.outbox");
    }

    #[test]
    fn password_never_in_debug_output() {
        let c = run_args(&[
            "--postgres",
            "host=db user=u password=hunter2 dbname=x",
            "-X",
            "sasl.password=s3cret",
        ])
        .resolve()
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn secrets_never_in_debug_output_of_the_arguments() {
        let argv = [
            "outbox-tailer",
            "run",
            "--postgres",
            "host=db password=hunter2",
            "--postgres-password",
            "pw-flag-secret",
            "-X",
            "sasl.password=s3cret",
        ];
        let shown = format!("{:?}", Cli::try_parse_from(argv).unwrap());
        for secret in ["hunter2", "pw-flag-secret", "s3cret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let file: FileConfig = toml::from_str(
            "postgres_password = 'file-secret'\n[kafka]\n'sasl.password' = 'k-secret'\n",
        )
        .unwrap();
        let shown = format!("{file:?}");
        assert!(
            !shown.contains("file-secret") && !shown.contains("k-secret"),
            "{shown}"
        );
    }

    #[test]
    fn bad_names_are_rejected() {
        let e = run_args(&["--slot", "Bad-Slot"]).resolve().unwrap_err();
        assert!(e.to_string().contains("slot name"), "{e}");
        let e = run_args(&["--publication", "p'; --"])
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("publication"), "{e}");
    }

    #[test]
    fn file_unknown_keys_are_rejected() {
        let e = toml::from_str::<FileConfig>("slott = 'x'").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn file_values_apply_and_flags_win() {
        let path = std::env::temp_dir().join(format!("outbox-tailer-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "slot = 'from_file'\npublication = 'file_pub'\ntopic = 'events.${type}'\n\
             dead_letter_topic = 'dlq'\nmax_in_flight_events = 7\n[kafka]\n'socket.timeout.ms' = '1234'\n",
        )
        .unwrap();
        let path_str = path.to_str().unwrap();
        let c = run_args(&["--config", path_str, "--publication", "flag_pub"]).resolve();
        std::fs::remove_file(&path).unwrap();
        let c = c.unwrap();
        assert_eq!(c.source.slot, "from_file");
        assert_eq!(
            c.source.publication, "flag_pub",
            "the flag wins over the file"
        );
        assert_eq!(c.route.topic, "events.${type}");
        assert_eq!(c.route.dead_letter_topic.as_deref(), Some("dlq"));
        assert_eq!(c.max_in_flight_events, 7);
        assert!(c
            .sink
            .options
            .contains(&("socket.timeout.ms".to_owned(), "1234".to_owned())));
    }

    #[test]
    fn a_missing_config_file_is_a_clear_error() {
        let e = run_args(&["--config", "/nonexistent/outbox.toml"])
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("cannot read config file"), "{e}");
    }
}
