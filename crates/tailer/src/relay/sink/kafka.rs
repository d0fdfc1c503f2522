//! The Kafka implementation of [`Sink`](crate::relay::sink::Sink), through librdkafka's
//! threaded producer; delivery reports become [`Ack`]s on the pipeline's channel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message as _;
use tokio::sync::mpsc;

use crate::config::settings::Partitioner;
use crate::config::SinkConfig;
use crate::error::TailerError;
use crate::metrics::librdkafka::ProducerTotals;
use crate::metrics::Metrics;
use crate::relay::progress::Ticket;
use crate::relay::route::Record;
use crate::relay::sink::partitioner::partition;
use crate::relay::sink::resume::Resume;
use crate::relay::sink::send_now::SendNow;
use crate::relay::sink::topics::Topics;
use crate::relay::sink::transaction::{self, Batch};
use crate::relay::sink::{Ack, DeliveryFailure, Sink};
use crate::shutdown::Shutdown;

struct AckContext {
    acks: mpsc::UnboundedSender<Ack>,
    /// Where librdkafka's statistics go, once the sink has metrics.
    metrics: OnceLock<Arc<Metrics>>,
    totals: Mutex<ProducerTotals>,
    /// Delivery reports received, for [`SendNow`].
    delivered: Arc<AtomicU64>,
}

impl ClientContext for AckContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        crate::relay::sink::log_librdkafka(level, fac, message);
    }

    fn stats(&self, stats: Statistics) {
        if let (Some(metrics), Ok(mut totals)) = (self.metrics.get(), self.totals.lock()) {
            metrics.kafka.record(&stats, &mut totals);
        }
    }
}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<Ticket>) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let result = match result {
            Ok(_) => Ok(()),
            Err((err, msg)) => Err(DeliveryFailure {
                topic: msg.topic().to_owned(),
                reason: err.to_string(),
            }),
        };
        let _ = self.acks.send(Ack {
            ticket: *ticket,
            result,
        });
    }
}

/// Publishes to Kafka through librdkafka.
pub struct KafkaSink {
    producer: Arc<ThreadedProducer<AckContext>>,
    topics: Topics,
    /// Idempotent resume (`run` only: `replay` publishes again on purpose).
    resume: Option<Resume>,
    acks: mpsc::UnboundedSender<Ack>,
    metrics: Option<Arc<Metrics>>,
    stop: Option<Shutdown>,
    /// `--exactly-once`: the open Kafka transaction.
    batch: Option<Batch>,
    partitioner: Partitioner,
    /// Send at once when the source is idle (not with `--exactly-once`, whose records become
    /// visible only at the commit, nor without a linger). Last field: dropped after
    /// `producer`, it joins its helper, which drops the producer's last handle.
    send_now: Option<SendNow>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topics", &self.topics)
            .finish()
    }
}

/// How often librdkafka reports its statistics: a few times per usual scrape interval.
const STATISTICS_INTERVAL_MS: &str = "5000";

/// The producer settings the tailer relies on; user options are applied after these.
fn producer_config(
    config: &SinkConfig,
    max_events: u64,
    max_bytes: u64,
    max_message: usize,
) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &config.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0")
        // A refused record stops the producer and purges everything queued behind it; a
        // request already on the wire is refused by the broker's sequence check.
        .set("enable.gapless.guarantee", "true")
        .set(
            "queue.buffering.max.messages",
            (max_events + 1024).min(i32::MAX as u64).to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            // Room for the whole window plus one largest record: librdkafka refuses a record
            // bigger than this limit even with an empty queue.
            ((max_bytes + max_message as u64) / 1024 * 2 + 1024)
                .min(i32::MAX as u64)
                .to_string(),
        )
        .set(
            "message.max.bytes",
            (max_message + 65_536).max(1_000_000).to_string(),
        )
        .set("client.id", "outbox-tailer")
        // librdkafka's queue and broker round trips as metrics (`-X statistics.interval.ms=0`
        // turns them off).
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    if let Some(id) = config.transactions.as_ref().and_then(|t| t.id.as_deref()) {
        cc.set("transactional.id", id);
    }
    for (k, v) in &config.options {
        cc.set(k, v);
    }
    cc
}

impl KafkaSink {
    pub fn new(
        config: &SinkConfig,
        acks: mpsc::UnboundedSender<Ack>,
        max_events: u64,
        max_bytes: u64,
        max_message: usize,
    ) -> Result<KafkaSink, TailerError> {
        let cc = producer_config(config, max_events, max_bytes, max_message);
        let delivered = Arc::new(AtomicU64::new(0));
        let producer = cc
            .create_with_context(AckContext {
                acks: acks.clone(),
                metrics: OnceLock::new(),
                totals: Mutex::default(),
                delivered: Arc::clone(&delivered),
            })
            .map_err(|source| TailerError::Kafka {
                context: "creating the producer (check the -X options)",
                source,
            })?;
        let admin = if config.create_topics {
            Some(
                client_config(config)
                    .create()
                    .map_err(|source| TailerError::Kafka {
                        context: "creating the admin client",
                        source,
                    })?,
            )
        } else {
            None
        };
        let batch = match &config.transactions {
            Some(t) => {
                let Some(id) = t.id.clone() else {
                    return Err(TailerError::Bug(
                        "--exactly-once without a transactional.id".into(),
                    ));
                };
                Some(Batch::new(t.clone(), id))
            }
            None => None,
        };
        let producer = Arc::new(producer);
        // librdkafka's default linger is 5 ms; the tailer always sets one.
        let linger_ms = config
            .options
            .iter()
            .rev()
            .find(|(k, _)| k == "linger.ms" || k == "queue.buffering.max.ms")
            .map_or(Some(5.0), |(_, v)| v.trim().parse::<f64>().ok());
        let below = match (batch.is_none(), linger_ms) {
            (true, Some(ms)) if ms > 0.0 => config.send_at_once_below,
            _ => 0,
        };
        // Sending at once waits at most one linger for its records (a float number of ms).
        let linger = Duration::from_secs_f64(linger_ms.unwrap_or(0.0).clamp(0.0, 900_000.0) / 1e3);
        let send_now = SendNow::start(Arc::clone(&producer), delivered, below, linger)
            .inspect_err(|e| {
                tracing::warn!(error = %e, "no thread for sending at once: every record waits for linger.ms");
            })
            .ok()
            .flatten();
        Ok(KafkaSink {
            producer,
            topics: Topics::new(config, admin),
            resume: None,
            acks,
            metrics: None,
            stop: None,
            batch,
            partitioner: config.partitioner,
            send_now,
        })
    }

    /// `--exactly-once`: register the transactional.id with the broker's coordinator, which
    /// fences any older producer with it and aborts its open transaction. Before the first
    /// record, and before idempotent resume reads the tails.
    pub async fn start_transactions(&mut self) -> Result<(), TailerError> {
        if let Some(batch) = &self.batch {
            transaction::init(&self.producer, batch, self.stop.as_ref()).await?;
            tracing::info!(transactional_id = %batch.id(), "Kafka transactions ready");
        }
        Ok(())
    }

    /// Skip events this relay (`source`) already published, found by reading up to
    /// `config.resume_scan` records back in each partition (0: off).
    pub fn with_resume(mut self, config: &SinkConfig, source: &str) -> Self {
        if config.resume_scan > 0 {
            let consumer = client_config(config);
            let resume = Resume::new(consumer, source, config.resume_scan);
            self.resume = Some(resume);
        }
        self
    }

    /// Count skipped events and at-least-once fallbacks here, and librdkafka's statistics.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        let _ = self.producer.context().metrics.set(Arc::clone(&metrics));
        self.metrics = Some(metrics);
        self
    }

    /// The sink a relay (`run` or `poll`) uses: sized by its window and record limit.
    pub fn for_tailer(
        config: &crate::config::TailerConfig,
        acks: mpsc::UnboundedSender<Ack>,
    ) -> Result<KafkaSink, TailerError> {
        KafkaSink::new(
            &config.sink,
            acks,
            config.max_in_flight_events,
            config.max_in_flight_bytes,
            config.route.max_message_bytes,
        )
    }

    /// Stop waiting for the broker (topic creation) once shutdown is requested.
    pub fn with_stop(mut self, stop: Shutdown) -> Self {
        self.stop = Some(stop);
        self
    }
}

impl Sink for KafkaSink {
    fn transactional(&self) -> bool {
        self.batch.is_some()
    }

    async fn commit(&mut self, now: bool) -> Result<bool, TailerError> {
        self.commit_batch(now).await
    }

    fn commit_deadline(&self, catching_up: bool) -> Option<std::time::Instant> {
        self.batch.as_ref().and_then(|b| b.deadline(catching_up))
    }

    fn all_committed(&self) -> bool {
        self.batch.as_ref().is_none_or(Batch::is_empty)
    }

    fn needs_abort(&self) -> bool {
        self.batch.as_ref().is_some_and(Batch::needs_abort)
    }

    async fn abort(&mut self) -> Result<(), TailerError> {
        self.abort_batch().await
    }

    fn source_idle(&mut self) {
        if let Some(send_now) = self.send_now.as_mut() {
            send_now.idle();
        }
    }

    async fn send(&mut self, record: Record, ticket: Ticket) -> Result<(), TailerError> {
        let partitions = self
            .topics
            .partitions(&record.topic, &self.producer, self.stop.as_mut())
            .await?;
        let partition = partition(self.partitioner, record.key.as_deref(), partitions);
        if let (Some(resume), Some(position)) = (self.resume.as_mut(), record.position) {
            let metrics = self.metrics.as_deref();
            let topic = &record.topic;
            let stop = self.stop.as_mut();
            if resume
                .already_sent(topic, partitions, partition, position, metrics, stop)
                .await?
            {
                if let Some(m) = metrics {
                    m.resume_skipped.inc();
                }
                let _ = self.acks.send(Ack {
                    ticket,
                    result: Ok(()),
                });
                return Ok(());
            }
        }
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (k, v) in &record.headers {
            headers = headers.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        let mut base = BaseRecord::with_opaque_to(&record.topic, Box::new(ticket))
            .headers(headers)
            .partition(partition);
        if let Some(k) = &record.key {
            base = base.key(k.as_ref());
        }
        if let Some(ts) = record.timestamp_ms {
            base = base.timestamp(ts);
        }
        if let Some(p) = &record.payload {
            base = base.payload(p.as_ref());
        }
        if let Some(batch) = self.batch.as_mut() {
            batch.before_send(&*self.producer, record.size())?;
        }
        loop {
            match self.producer.send(base) {
                Ok(()) => {
                    if let Some(send_now) = self.send_now.as_mut() {
                        send_now.handed_over();
                    }
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The in-flight window normally keeps us below librdkafka's queue limit
                    // (e.g. a smaller `-X queue.buffering.max.messages` breaks that); wait for
                    // room, but not past a shutdown.
                    base = back;
                    if self.stop.as_ref().is_some_and(Shutdown::is_requested) {
                        return Err(TailerError::Interrupted(
                            "while waiting for room in the producer's queue".into(),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((err, _)) => {
                    return Err(TailerError::Delivery {
                        topic: record.topic.clone(),
                        reason: err.to_string(),
                    })
                }
            }
        }
    }
}

impl KafkaSink {
    async fn commit_batch(&mut self, now: bool) -> Result<bool, TailerError> {
        let Some(batch) = self.batch.as_mut() else {
            return Ok(true);
        };
        if batch.is_empty() || !(now || batch.full()) {
            return Ok(batch.is_empty());
        }
        let started = std::time::Instant::now();
        transaction::commit(&self.producer, batch).await?;
        if let Some(m) = &self.metrics {
            m.kafka_commits.inc();
            m.kafka_commit_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(true)
    }

    async fn abort_batch(&mut self) -> Result<(), TailerError> {
        let Some(batch) = self.batch.as_mut() else {
            return Ok(());
        };
        transaction::abort(&self.producer, batch).await?;
        // Watermarks raised by the aborted records are void: read the tails again.
        if let Some(resume) = self.resume.as_mut() {
            resume.forget();
        }
        if let Some(m) = &self.metrics {
            m.kafka_aborts.inc();
        }
        Ok(())
    }
}

/// The connection settings other clients (admin, the tail reader) share with the producer.
fn client_config(config: &SinkConfig) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &config.brokers);
    for (k, v) in &config.options {
        if k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.") {
            cc.set(k, v);
        }
    }
    cc
}
