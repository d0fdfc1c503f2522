//! The topics the sink writes to: created once with `--create-topics`, and their partition
//! counts read from the broker, since the tailer picks each record's partition itself. A broker
//! that is away is waited for, with backoff, like any record; only a definite refusal stops
//! the tailer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use crate::backoff::Backoff;
use crate::config::SinkConfig;
use crate::error::TailerError;
use crate::shutdown::{sleep_or_stop, Shutdown};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Partition counts of the topics seen so far, and how to create a missing one.
pub struct Topics {
    admin: Option<AdminClient<DefaultClientContext>>,
    partitions: HashMap<String, i32>,
    new_partitions: i32,
    replication_factor: i32,
}

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics")
            .field("known", &self.partitions.len())
            .finish()
    }
}

impl Topics {
    /// `admin` is set when missing topics are to be created.
    pub fn new(config: &SinkConfig, admin: Option<AdminClient<DefaultClientContext>>) -> Self {
        Topics {
            admin,
            partitions: HashMap::new(),
            new_partitions: config.topic_partitions.max(1),
            replication_factor: config.topic_replication_factor,
        }
    }

    /// The partition count of `topic`, creating it first when configured to.
    pub async fn partitions<P, C>(
        &mut self,
        topic: &str,
        producer: &Arc<P>,
        stop: Option<&mut Shutdown>,
    ) -> Result<i32, TailerError>
    where
        P: Producer<C> + Send + Sync + 'static,
        C: ProducerContext + 'static,
    {
        if let Some(&n) = self.partitions.get(topic) {
            return Ok(n);
        }
        let mut stop = stop;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let outcome = match self.create(topic).await {
                Ok(()) => partition_count(topic, producer).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(n) => {
                    self.partitions.insert(topic.to_owned(), n);
                    return Ok(n);
                }
                Err(Wait::Refused(e)) => return Err(e),
                Err(Wait::Unavailable(code)) => {
                    tracing::warn!(topic = %topic, error = %code, "broker unavailable while looking up a topic, retrying");
                    if sleep_or_stop(backoff.next_delay(), stop.as_deref_mut()).await {
                        return Err(TailerError::Interrupted(
                            "while waiting for the broker to look up a topic".into(),
                        ));
                    }
                }
            }
        }
    }

    async fn create(&self, topic: &str) -> Result<(), Wait> {
        let Some(admin) = &self.admin else {
            return Ok(());
        };
        let new = NewTopic::new(
            topic,
            self.new_partitions,
            TopicReplication::Fixed(self.replication_factor),
        );
        let opts = AdminOptions::new()
            .operation_timeout(Some(REQUEST_TIMEOUT))
            .request_timeout(Some(REQUEST_TIMEOUT));
        let code = match admin.create_topics([&new], &opts).await {
            Ok(results) => match results.into_iter().next() {
                None | Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {
                    return Ok(())
                }
                Some(Err((_, code))) => code,
            },
            Err(KafkaError::AdminOp(code)) => code,
            Err(source) => {
                return Err(Wait::Refused(TailerError::Kafka {
                    context: "creating a topic",
                    source,
                }))
            }
        };
        Err(classify(topic, code, "could not create the topic"))
    }
}

/// Why a lookup did not answer yet.
enum Wait {
    Unavailable(RDKafkaErrorCode),
    Refused(TailerError),
}

fn classify(topic: &str, code: RDKafkaErrorCode, what: &str) -> Wait {
    if broker_unavailable(code) {
        return Wait::Unavailable(code);
    }
    Wait::Refused(TailerError::Delivery {
        topic: topic.to_owned(),
        reason: format!("{what}: {code}"),
    })
}

/// The partition count from the broker's metadata (off the runtime: the call blocks).
async fn partition_count<P, C>(topic: &str, producer: &Arc<P>) -> Result<i32, Wait>
where
    P: Producer<C> + Send + Sync + 'static,
    C: ProducerContext + 'static,
{
    let producer = Arc::clone(producer);
    let name = topic.to_owned();
    let metadata = tokio::task::spawn_blocking(move || {
        let metadata = producer
            .client()
            .fetch_metadata(Some(&name), REQUEST_TIMEOUT)?;
        let found = metadata.topics().iter().find(|t| t.name() == name);
        Ok::<_, KafkaError>(found.map(|t| (t.error(), t.partitions().len())))
    })
    .await
    .map_err(|e| Wait::Refused(TailerError::Bug(format!("metadata lookup panicked: {e}"))))?;
    match metadata {
        Ok(Some((None, n))) if n > 0 => Ok(i32::try_from(n).unwrap_or(i32::MAX)),
        Ok(Some((Some(err), _))) => Err(classify(
            topic,
            err.into(),
            "the topic does not exist or cannot be described (create it, or run with \
             --create-topics)",
        )),
        // Not in the metadata yet (being created) or no partitions: ask again.
        Ok(_) => Err(Wait::Unavailable(RDKafkaErrorCode::LeaderNotAvailable)),
        Err(KafkaError::MetadataFetch(code)) => Err(classify(topic, code, "metadata")),
        Err(source) => Err(Wait::Refused(TailerError::Kafka {
            context: "reading topic metadata",
            source,
        })),
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
