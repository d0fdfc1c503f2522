//! From arguments (flags, environment and file already layered) to the settings the tailer
//! runs with: defaults applied, everything validated, names checked before they reach SQL.

use std::time::Duration;

use crate::config::args::{
    DatabaseArgs, PeekArgs, PollArgs, ReplayArgs, ReplayTarget, RunArgs, StatusArgs, ThresholdArgs,
};
use crate::config::command_line::Command;
use crate::config::file::SettingsFile;
use crate::config::kafka_safety;
use crate::config::settings::{
    AfterPublish, Partitioner, PollConfig, SinkConfig, SlotThresholds, SourceConfig, TailerConfig,
    TransactionConfig,
};
use crate::error::TailerError;
use crate::pg::names::{validate_ident, validate_slot, TableName};
use crate::pg::tls::parse_conn_str;

/// The producer's linger without `--linger-ms`, for busy streams (light ones are sent at once:
/// `DEFAULT_SEND_AT_ONCE_BELOW`). No linger at all gave 1.4 ms p50 at 1,000 events/s on the mock
/// cluster, but through tansu, a real broker on the same two cores, the many small requests it
/// makes let latency at 10,000 events/s grow to seconds (docs/benchmarks.md, "Round two").
const DEFAULT_LINGER_MS: u64 = 5;

/// Below this many events per second, records go out at once when the stream has nothing
/// more queued (`relay::sink::send_now`).
const DEFAULT_SEND_AT_ONCE_BELOW: u64 = 2_000;

impl Command {
    /// The `--config` file this command names.
    pub fn settings_file(&self) -> Result<SettingsFile, TailerError> {
        let db = match self {
            Command::Run(a) => &a.db,
            Command::Setup(a) => &a.db,
            Command::Status(a) => &a.db,
            Command::Peek(a) => &a.run.db,
            Command::Replay(a) => &a.run.db,
            Command::Poll(a) => &a.run.db,
            Command::Config(a) => &a.run.db,
            Command::ImportDebezium(_) | Command::Completions { .. } | Command::Man => {
                return Ok(SettingsFile::default())
            }
        };
        SettingsFile::load(db.config.as_deref())
    }
}

impl DatabaseArgs {
    /// Layer the file under these arguments and resolve.
    pub fn resolve(&self) -> Result<SourceConfig, TailerError> {
        SettingsFile::load(self.config.as_deref())?
            .under(self)?
            .settings()
    }

    /// Resolve arguments that already hold the file's values.
    pub fn settings(&self) -> Result<SourceConfig, TailerError> {
        let conn = self
            .postgres
            .as_ref()
            .map_or("host=localhost user=postgres dbname=postgres", |s| {
                s.expose()
            });
        let (mut pg, tls) = parse_conn_str(conn)?;
        if let Some(pw) = &self.postgres_password {
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
        let slot = or_default(&self.slot, "outbox_slot");
        validate_slot(&slot)?;
        let publication = or_default(&self.publication, "outbox_pub");
        validate_ident("publication", &publication)?;
        let table = TableName::parse(&or_default(&self.table, "public.outbox"))?;
        if let Some(replay) = &self.replay_slot {
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
            replay_slot: self.replay_slot.clone(),
            failover: self.failover,
        })
    }
}

impl ThresholdArgs {
    pub fn settings(&self) -> SlotThresholds {
        let d = SlotThresholds::default();
        SlotThresholds {
            lag_warn_bytes: self.lag_warn_bytes.unwrap_or(d.lag_warn_bytes),
            safe_wal_warn_bytes: self.safe_wal_warn_bytes.unwrap_or(d.safe_wal_warn_bytes),
        }
    }
}

impl StatusArgs {
    /// The slot to look at and when to call it lagging or at risk.
    pub fn resolve(&self) -> Result<(SourceConfig, SlotThresholds, StatusArgs), TailerError> {
        let args = SettingsFile::load(self.db.config.as_deref())?.under(self)?;
        Ok((args.db.settings()?, args.thresholds.settings(), args))
    }
}

impl RunArgs {
    /// Merge flags, environment, file and defaults; validate everything.
    pub fn resolve(&self) -> Result<TailerConfig, TailerError> {
        SettingsFile::load(self.db.config.as_deref())?
            .under(self)?
            .settings()
    }

    /// Resolve arguments that already hold the file's values.
    pub fn settings(&self) -> Result<TailerConfig, TailerError> {
        let route = self.route.settings()?;
        let sink = self.sink()?;
        if !route.position_headers && (sink.resume_scan > 0 || sink.transactions.is_some()) {
            return Err(TailerError::Config(
                "--debezium-headers-only drops the outbox-lsn/outbox-seq/outbox-source headers                  that idempotent resume and --exactly-once read back from Kafka: add                  --resume-scan-records 0 (and no --exactly-once) to accept re-sends after a                  crash as Debezium does, or keep the headers"
                    .into(),
            ));
        }
        Ok(TailerConfig {
            source: self.db.settings()?,
            sink,
            max_in_flight_events: at_least_1(
                "max_in_flight_events",
                self.max_in_flight_events.unwrap_or(20_000),
            )?,
            max_in_flight_bytes: at_least_1(
                "max_in_flight_bytes",
                self.max_in_flight_bytes.unwrap_or(16 << 20),
            )?,
            message_prefix: self.message_prefix.clone(),
            create_slot: self.create_slot,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs.unwrap_or(25)),
            // Status updates must stay well inside wal_sender_timeout (60 s by default).
            status_interval: Duration::from_millis(at_most(
                "status_interval_ms",
                at_least_1(
                    "status_interval_ms",
                    self.status_interval_ms.unwrap_or(1000),
                )?,
                10_000,
            )?),
            // Longer pauses would risk filling the socket's receive window and holding up the
            // walsender.
            catch_up_pause: Duration::from_millis(at_most(
                "catch_up_pause_ms",
                self.catch_up_pause_ms.unwrap_or(2),
                50,
            )?),
            metrics_addr: self.metrics_addr,
            ready_max_stall: Duration::from_secs(at_least_1(
                "ready_max_stall_secs",
                self.ready_max_stall_secs.unwrap_or(60),
            )?),
            slot_check_interval: Duration::from_millis(at_least_1(
                "slot_check_interval_ms",
                self.slot_check_interval_ms.unwrap_or(10_000),
            )?),
            thresholds: self.thresholds.settings(),
            start_lsn: self.start_lsn,
            force_skip: self.force,
            replay_retention: Duration::from_secs(self.replay_retention_secs.unwrap_or(86_400)),
            route,
        })
    }

    fn sink(&self) -> Result<SinkConfig, TailerError> {
        let compression = or_default(&self.compression, "lz4");
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&compression.as_str()) {
            return Err(TailerError::Config(format!(
                "compression {compression:?}: use none, gzip, snappy, lz4 or zstd"
            )));
        }
        let mut options = vec![("compression.type".to_owned(), compression)];
        let linger = self.linger_ms.unwrap_or(DEFAULT_LINGER_MS);
        options.push(("linger.ms".to_owned(), linger.to_string()));
        // Blank entries (a trailing newline in OUTBOX_KAFKA_OPTIONS, from a YAML block or a
        // Secret file) are nothing to set.
        for raw in self.kafka.iter().filter(|r| !r.expose().trim().is_empty()) {
            let (k, v) = raw.expose().split_once('=').ok_or_else(|| {
                TailerError::Config("a kafka option (-X) is not of the form key=value".into())
            })?;
            options.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        kafka_safety::check(&options)?;
        let partitioner = options
            .iter()
            .rev()
            .find(|(k, _)| k == "partitioner")
            .and_then(|(_, v)| Partitioner::from_librdkafka(v))
            .unwrap_or_default();
        let replication_factor = self.topic_replication_factor.unwrap_or(-1);
        if replication_factor == 0 || replication_factor < -1 {
            return Err(TailerError::Config(format!(
                "topic_replication_factor {replication_factor}: use -1 (the broker's default) or \
                 at least 1"
            )));
        }
        Ok(SinkConfig {
            brokers: or_default(&self.brokers, "localhost:9092"),
            options,
            create_topics: self.create_topics,
            topic_partitions: self.topic_partitions.unwrap_or(1),
            topic_replication_factor: replication_factor,
            partitioner,
            resume_scan: self.resume_scan_records.unwrap_or(10_000),
            transactions: self.transactions()?,
            send_at_once_below: self
                .send_at_once_below
                .unwrap_or(DEFAULT_SEND_AT_ONCE_BELOW),
        })
    }
}

impl RunArgs {
    fn transactions(&self) -> Result<Option<TransactionConfig>, TailerError> {
        if !self.exactly_once {
            let given = [
                ("transactional_id", self.transactional_id.is_some()),
                (
                    "transaction_max_events",
                    self.transaction_max_events.is_some(),
                ),
                (
                    "transaction_max_bytes",
                    self.transaction_max_bytes.is_some(),
                ),
                ("transaction_max_ms", self.transaction_max_ms.is_some()),
            ];
            if let Some((name, _)) = given.iter().find(|(_, set)| *set) {
                return Err(TailerError::Config(format!(
                    "{name} applies to Kafka transactions only: add --exactly-once \
                     (OUTBOX_EXACTLY_ONCE=true, exactly_once = true) or remove it"
                )));
            }
            return Ok(None);
        }
        if let Some(id) = &self.transactional_id {
            if id.trim().is_empty() {
                return Err(TailerError::Config(
                    "transactional_id is empty: give a name, or leave it out to derive one \
                     from the slot"
                        .into(),
                ));
            }
        }
        let positive = |name: &str, value: Option<u64>, default: u64| match value {
            Some(0) => Err(TailerError::Config(format!(
                "{name} 0: a Kafka transaction must be allowed at least one"
            ))),
            v => Ok(v.unwrap_or(default)),
        };
        Ok(Some(TransactionConfig {
            id: self.transactional_id.clone(),
            max_events: positive(
                "transaction_max_events",
                self.transaction_max_events,
                250_000,
            )?,
            max_bytes: positive(
                "transaction_max_bytes",
                self.transaction_max_bytes,
                256 << 20,
            )?,
            max_wait: Duration::from_millis(positive(
                "transaction_max_ms",
                self.transaction_max_ms,
                100,
            )?),
        }))
    }
}

/// What `peek` shows, resolved.
#[derive(Debug)]
pub struct PeekSettings {
    pub config: TailerConfig,
    pub limit: usize,
    pub show_payload: bool,
    pub json: bool,
}

impl PeekArgs {
    pub fn resolve(&self) -> Result<PeekSettings, TailerError> {
        let args = SettingsFile::load(self.run.db.config.as_deref())?.under(self)?;
        Ok(PeekSettings {
            config: args.run.settings()?,
            limit: args.peek_limit.unwrap_or(20),
            show_payload: args.show_payload,
            json: args.json,
        })
    }
}

impl ReplayArgs {
    /// The run settings and where the events go.
    pub fn resolve(&self) -> Result<(TailerConfig, ReplayTarget), TailerError> {
        let args = SettingsFile::load(self.run.db.config.as_deref())?.under(self)?;
        let mut config = args.run.settings()?;
        // Replay publishes again on purpose, outside Kafka transactions: with the tailer's
        // transactional.id it would fence the running tailer.
        config.sink.transactions = None;
        Ok((config, args.replay_to.unwrap_or(ReplayTarget::Kafka)))
    }
}

impl PollArgs {
    /// The run settings and the polling cadence.
    pub fn resolve(&self) -> Result<(TailerConfig, PollConfig), TailerError> {
        let args = SettingsFile::load(self.run.db.config.as_deref())?.under(self)?;
        if args.run.exactly_once {
            return Err(TailerError::Config(
                "exactly_once is a mode of `run`: `poll` publishes at least once (remove \
                 --exactly-once / OUTBOX_EXACTLY_ONCE / exactly_once for poll)"
                    .into(),
            ));
        }
        Ok((args.run.settings()?, args.poll_config()?))
    }

    /// The polling cadence of arguments that already hold the file's values.
    pub fn poll_config(&self) -> Result<PollConfig, TailerError> {
        let classic = PollConfig::CLASSIC;
        let interval_ms = self
            .poll_interval_ms
            .unwrap_or(u64::try_from(classic.interval.as_millis()).unwrap_or(u64::MAX));
        let batch = self.poll_batch.unwrap_or(classic.batch);
        if batch < 1 || interval_ms == 0 {
            return Err(TailerError::Config(
                "poll batch and interval must be at least 1".into(),
            ));
        }
        Ok(PollConfig {
            interval: Duration::from_millis(interval_ms),
            batch,
            drain: self.poll_drain,
            after: self.poll_after.unwrap_or(AfterPublish::Mark),
        })
    }
}

fn or_default(value: &Option<String>, default: &str) -> String {
    value.clone().unwrap_or_else(|| default.to_owned())
}

fn at_least_1(name: &str, v: u64) -> Result<u64, TailerError> {
    if v == 0 {
        return Err(TailerError::Config(format!("{name} must be at least 1")));
    }
    Ok(v)
}

fn at_most(name: &str, v: u64, max: u64) -> Result<u64, TailerError> {
    if v > max {
        return Err(TailerError::Config(format!("{name} must be at most {max}")));
    }
    Ok(v)
}
