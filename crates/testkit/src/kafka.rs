//! Topic creation and draining a topic from the beginning, for assertions.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// One consumed record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The record's CreateTime in ms. With the tailer's `--record-timestamp produce`, a copy
    /// the producer retried keeps it and a copy sent again by a restarted relay gets a new
    /// one; by default it is the commit time, the same on every copy.
    pub timestamp: Option<i64>,
}

impl KafkaRecord {
    /// The first header named `name`, as UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    pub fn payload_str(&self) -> Option<&str> {
        self.payload
            .as_deref()
            .and_then(|p| std::str::from_utf8(p).ok())
    }
}

/// Create `topic` with `partitions` partitions; an existing topic is fine.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("creating a Kafka admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .with_context(|| format!("creating topic {topic}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}

/// Read `topic` from the beginning of every partition until `done` holds for what was read,
/// or `within` has passed (then an error that says how many records arrived).
///
/// Records come back in partition order, then offset order.
pub async fn consume_until(
    bootstrap: &str,
    topic: &str,
    within: Duration,
    done: impl Fn(&[KafkaRecord]) -> bool + Send + 'static,
) -> anyhow::Result<Vec<KafkaRecord>> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || consume_blocking(&bootstrap, &topic, within, done))
        .await
        .context("consumer task")?
}

/// Read every partition of `topic` from the beginning up to the high watermark it had when
/// the call started: everything the broker acknowledged before that, duplicates included.
/// Fails after `within`, saying how far each partition got.
///
/// Records come back in partition order, then offset order.
pub async fn read_to_end(
    bootstrap: &str,
    topic: &str,
    within: Duration,
) -> anyhow::Result<Vec<KafkaRecord>> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_to_end_blocking(&bootstrap, &topic, within))
        .await
        .context("consumer task")?
}

fn read_to_end_blocking(
    bootstrap: &str,
    topic: &str,
    within: Duration,
) -> anyhow::Result<Vec<KafkaRecord>> {
    let consumer = reader(bootstrap)?;
    let deadline = Instant::now() + within;
    let partitions = partitions_of(&consumer, topic, deadline, within)?;
    let mut ends = Vec::new();
    for p in &partitions {
        let (low, high) = loop {
            match consumer.fetch_watermarks(topic, *p, Duration::from_secs(5)) {
                Ok(w) => break w,
                Err(e) if Instant::now() > deadline => {
                    bail!("watermarks of {topic}/{p} after {within:?}: {e}")
                }
                Err(_) => std::thread::yield_now(),
            }
        };
        ends.push((*p, low, high));
    }
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl).context("assigning partitions")?;
    let mut next: std::collections::HashMap<i32, i64> =
        partitions.iter().map(|p| (*p, 0)).collect();
    let mut records = Vec::new();
    let mut last_error = None;
    while ends.iter().any(|(p, _, high)| next[p] < *high) {
        if Instant::now() > deadline {
            bail!(
                "reading {topic} to its end within {within:?}: reached {next:?}, \
                 (partition, low, high) {ends:?}, last consumer error: {last_error:?}"
            );
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                next.insert(m.partition(), m.offset() + 1);
                records.push(owned(&m));
            }
            Some(Err(e)) => last_error = Some(e.to_string()),
            None => {}
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}

fn reader(bootstrap: &str) -> anyhow::Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("testkit-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        // Nothing here writes transactionally; reading uncommitted does not wait on a last
        // stable offset the broker may compute from producers that were killed.
        .set("isolation.level", "read_uncommitted")
        .set("log_level", "3")
        .create()
        .context("creating a Kafka consumer")
}

/// The partition ids of `topic`, once the broker knows it.
fn partitions_of(
    consumer: &BaseConsumer,
    topic: &str,
    deadline: Instant,
    within: Duration,
) -> anyhow::Result<Vec<i32>> {
    loop {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5));
        if let Ok(md) = md {
            if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                if t.error().is_none() && !t.partitions().is_empty() {
                    return Ok(t.partitions().iter().map(|p| p.id()).collect());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("topic {topic} has no metadata after {within:?}");
        }
        std::thread::yield_now();
    }
}

fn owned(m: &rdkafka::message::BorrowedMessage<'_>) -> KafkaRecord {
    KafkaRecord {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn consume_blocking(
    bootstrap: &str,
    topic: &str,
    within: Duration,
    done: impl Fn(&[KafkaRecord]) -> bool,
) -> anyhow::Result<Vec<KafkaRecord>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("testkit-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("log_level", "3")
        .create()
        .context("creating a Kafka consumer")?;
    let deadline = Instant::now() + within;
    let partitions = loop {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5));
        if let Ok(md) = md {
            if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                if t.error().is_none() && !t.partitions().is_empty() {
                    break t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>();
                }
            }
        }
        if Instant::now() > deadline {
            bail!("topic {topic} has no metadata after {within:?}");
        }
        std::thread::yield_now();
    };
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl).context("assigning partitions")?;
    let mut records = Vec::new();
    while !done(&records) {
        if Instant::now() > deadline {
            bail!(
                "consumed {} records from {topic} within {within:?}, condition still unmet",
                records.len()
            );
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => records.push(owned(&m)),
            Some(Err(e)) => tracing::debug!(error = %e, "consumer poll"),
            None => {}
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}
