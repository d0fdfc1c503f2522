//! The Kafka implementation of [`Sink`](crate::relay::sink::Sink), through librdkafka's
//! threaded producer; delivery reports become [`Ack`]s on the pipeline's channel.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message as _;
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::config::SinkConfig;
use crate::error::TailerError;
use crate::relay::progress::Ticket;
use crate::relay::route::Record;
use crate::relay::sink::{Ack, DeliveryFailure, Sink};
use crate::shutdown::Shutdown;

struct AckContext {
    acks: mpsc::UnboundedSender<Ack>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<Ticket>) {
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
    producer: ThreadedProducer<AckContext>,
    admin: Option<AdminClient<DefaultClientContext>>,
    known_topics: HashSet<String>,
    partitions: i32,
    replication_factor: i32,
    stop: Option<Shutdown>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("known_topics", &self.known_topics.len())
            .finish()
    }
}

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
        .set("client.id", "outbox-tailer");
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
        let producer = cc
            .create_with_context(AckContext { acks })
            .map_err(|source| TailerError::Kafka {
                context: "creating the producer (check the -X options)",
                source,
            })?;
        let admin = if config.create_topics {
            let mut ac = ClientConfig::new();
            ac.set("bootstrap.servers", &config.brokers);
            for (k, v) in &config.options {
                if k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.") {
                    ac.set(k, v);
                }
            }
            Some(ac.create().map_err(|source| TailerError::Kafka {
                context: "creating the admin client",
                source,
            })?)
        } else {
            None
        };
        Ok(KafkaSink {
            producer,
            admin,
            known_topics: HashSet::new(),
            partitions: config.topic_partitions.max(1),
            replication_factor: config.topic_replication_factor,
            stop: None,
        })
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

    /// Create `topic` once (with `--create-topics`). A broker that is away is waited for, with
    /// backoff, like any record; only a definite refusal stops the tailer.
    async fn ensure_topic(&mut self, topic: &str) -> Result<(), TailerError> {
        let Some(admin) = &self.admin else {
            return Ok(());
        };
        if self.known_topics.contains(topic) {
            return Ok(());
        }
        let new = NewTopic::new(
            topic,
            self.partitions,
            TopicReplication::Fixed(self.replication_factor),
        );
        let opts = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(10)));
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let outcome = match admin.create_topics([&new], &opts).await {
                Ok(results) => match results.into_iter().next() {
                    None | Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
                        Ok(())
                    }
                    Some(Err((_, code))) => Err(code),
                },
                Err(KafkaError::AdminOp(code)) => Err(code),
                Err(source) => {
                    return Err(TailerError::Kafka {
                        context: "creating a topic",
                        source,
                    })
                }
            };
            match outcome {
                Ok(()) => break,
                Err(code) if broker_unavailable(code) => {
                    tracing::warn!(topic = %topic, error = %code, "broker unavailable while creating a topic, retrying");
                    let delay = backoff.next_delay();
                    let stopped = match self.stop.as_mut() {
                        Some(stop) => tokio::select! {
                            _ = tokio::time::sleep(delay) => false,
                            _ = stop.requested() => true,
                        },
                        None => {
                            tokio::time::sleep(delay).await;
                            false
                        }
                    };
                    if stopped {
                        return Err(TailerError::Interrupted(
                            "while waiting for the broker to create a topic".into(),
                        ));
                    }
                }
                Err(code) => {
                    return Err(TailerError::Delivery {
                        topic: topic.to_owned(),
                        reason: format!("could not create the topic: {code}"),
                    })
                }
            }
        }
        self.known_topics.insert(topic.to_owned());
        Ok(())
    }
}

impl Sink for KafkaSink {
    async fn send(&mut self, record: Record, ticket: Ticket) -> Result<(), TailerError> {
        self.ensure_topic(&record.topic).await?;
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (k, v) in &record.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_ref()),
            });
        }
        let mut base = BaseRecord::with_opaque_to(&record.topic, Box::new(ticket)).headers(headers);
        if let Some(k) = &record.key {
            base = base.key(k.as_ref());
        }
        if let Some(p) = &record.payload {
            base = base.payload(p.as_ref());
        }
        loop {
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
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

/// Error codes that mean "the broker is away or busy", not "the request is wrong".
fn broker_unavailable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::OperationTimedOut
            | C::RequestTimedOut
            | C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::NotController
            | C::LeaderNotAvailable
            | C::NetworkException
            | C::BrokerNotAvailable
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::Resolve
    )
}
