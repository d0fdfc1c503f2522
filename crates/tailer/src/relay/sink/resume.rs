//! Idempotent resume: before the first record to a topic, read the tail of each of its
//! partitions, find the newest position this relay itself published there, and acknowledge
//! without sending every event at or below it.
//!
//! ```text
//!   partition 3:  … [other] [own 0/1A2:0] [own 0/1A2:1] [other]  ← high watermark
//!                                          └─ watermark (0/1A2, 1)
//!   after a restart, from the slot's confirmed LSN:  0/1A2:0 skip, 0/1A2:1 skip, 0/1B0:0 send
//! ```
//!
//! Why it is exact: the tailer publishes events in position order, the key fixes the partition,
//! the idempotent producer keeps a partition's order across retries, and a refused record stops
//! the producer before anything queued behind it is sent (`enable.gapless.guarantee`). So every
//! own event of a partition at or below the newest own one found there is in Kafka. Own records
//! carry `outbox-source` (the cluster's system identifier and the slot), so other producers in a
//! shared topic never count. Where the tail holds no own record within `scan` records (retention,
//! compaction, a new topic, a flood from others) the partition falls back to at-least-once,
//! logged once and counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::backoff::Backoff;
use crate::error::TailerError;
use crate::metrics::Metrics;
use crate::relay::record::{EventPosition, HEADER_SOURCE};
use crate::shutdown::{sleep_or_stop, Shutdown};

/// Records read back per partition in the first round; each further round reads four times
/// as many, up to the scan limit.
const FIRST_ROUND: i64 = 64;

/// How long one round of reading may take before the topic falls back to at-least-once.
const ROUND_TIMEOUT: Duration = Duration::from_secs(30);

/// The highest own position known per partition: read from the tail at first use, then
/// raised by every record handed over. Looked up per record, so by `&str` without allocating.
#[derive(Debug, Default)]
pub struct ResumePoints {
    /// Per topic, per partition.
    known: HashMap<String, Vec<Option<EventPosition>>>,
}

/// What the tail read of one topic found.
#[derive(Debug, Default)]
pub struct TopicTails {
    /// Per partition: the newest own position, or `None` when no own record was found.
    pub watermarks: Vec<Option<EventPosition>>,
    /// Partitions that hold records, none of them this relay's within the scan.
    pub without_own: Vec<i32>,
}

impl ResumePoints {
    pub fn learn(&mut self, topic: &str, tails: TopicTails) {
        self.known.insert(topic.to_owned(), tails.watermarks);
    }

    /// `None` when the topic's tails were never read. Otherwise true when an event at
    /// `position` is already in `partition` of `topic`; false when it is not, and then it
    /// counts as handed over (it will be in Kafka, or the tailer stops), so a re-send after a
    /// reconnect is skipped too. One lookup per record.
    pub fn check(&mut self, topic: &str, partition: i32, position: EventPosition) -> Option<bool> {
        let partitions = self.known.get_mut(topic)?;
        let Ok(index) = usize::try_from(partition) else {
            return Some(false);
        };
        if partitions.len() <= index {
            partitions.resize(index + 1, None);
        }
        let entry = &mut partitions[index];
        if entry.is_some_and(|watermark| position <= watermark) {
            return Some(true);
        }
        *entry = Some(position);
        Some(false)
    }
}

/// Idempotent resume for one sink: the tail reader's settings and what it learnt.
pub struct Resume {
    points: ResumePoints,
    consumer: ClientConfig,
    source: Bytes,
    scan: i64,
}

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resume").field("scan", &self.scan).finish()
    }
}

impl Resume {
    /// `consumer`: the connection settings (brokers, security) of the tail reader.
    pub fn new(mut consumer: ClientConfig, source: &str, scan: u64) -> Self {
        consumer
            .set("group.id", "outbox-tailer-resume")
            .set("enable.auto.commit", "false")
            // Only what is committed counts as published (aborted transactions do not).
            .set("isolation.level", "read_committed")
            .set("client.id", "outbox-tailer-resume");
        Resume {
            points: ResumePoints::default(),
            consumer,
            source: Bytes::from(source.to_owned()),
            scan: i64::try_from(scan).unwrap_or(i64::MAX),
        }
    }

    /// Forget every watermark (the records that raised them were aborted): tails are read
    /// again before the next record to each topic.
    pub fn forget(&mut self) {
        self.points = ResumePoints::default();
    }

    /// True when the event at `position` is already in `partition` of `topic` (reading the
    /// topic's tails first if this is its first record); otherwise it is noted as handed over.
    pub async fn already_sent(
        &mut self,
        topic: &str,
        partitions: i32,
        partition: i32,
        position: EventPosition,
        metrics: Option<&Metrics>,
        stop: Option<&mut Shutdown>,
    ) -> Result<bool, TailerError> {
        if let Some(sent) = self.points.check(topic, partition, position) {
            return Ok(sent);
        }
        let tails = self.read(topic, partitions, stop).await?;
        for p in &tails.without_own {
            tracing::warn!(topic = %topic, partition = p, scanned = self.scan, "no record of this relay in the partition's tail: events already published there may be published again (at-least-once)");
            if let Some(m) = metrics {
                m.resume_fallbacks.inc();
            }
        }
        self.points.learn(topic, tails);
        Ok(self.points.check(topic, partition, position) == Some(true))
    }

    /// The tails of `topic`; a broker that is away is waited for, like for any record.
    async fn read(
        &self,
        topic: &str,
        partitions: i32,
        mut stop: Option<&mut Shutdown>,
    ) -> Result<TopicTails, TailerError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let (consumer, source, scan) = (self.consumer.clone(), self.source.clone(), self.scan);
            let name = topic.to_owned();
            let started = Instant::now();
            let read = tokio::task::spawn_blocking(move || {
                read_tails(&consumer, &name, partitions, &source, scan)
            })
            .await
            .map_err(|e| TailerError::Bug(format!("the tail reader panicked: {e}")))?;
            match read {
                Ok(tails) => {
                    let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    tracing::info!(topic = %topic, partitions, took_ms, "read the partitions' tails for idempotent resume");
                    return Ok(tails);
                }
                Err(e) => {
                    tracing::warn!(topic = %topic, error = %e, "cannot read the partitions' tails yet, retrying");
                }
            }
            if sleep_or_stop(backoff.next_delay(), stop.as_deref_mut()).await {
                return Err(TailerError::Interrupted(
                    "while reading the partitions' tails".into(),
                ));
            }
        }
    }
}

/// Read the tails of `partitions` partitions of `topic` (blocking: run it off the runtime).
/// A partition whose tail cannot be read counts as holding no own record.
pub fn read_tails(
    consumer_config: &ClientConfig,
    topic: &str,
    partitions: i32,
    source: &Bytes,
    scan: i64,
) -> Result<TopicTails, String> {
    let consumer: BaseConsumer = consumer_config
        .create()
        .map_err(|e| format!("cannot create the consumer that reads the tails: {e}"))?;
    let bounds = (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, ROUND_TIMEOUT)
                .map_err(|e| format!("cannot read the offsets of {topic} [{p}]: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut watermarks = vec![None; bounds.len()];
    let mut pending: Vec<usize> = (0..bounds.len())
        .filter(|&p| bounds[p].1 > bounds[p].0)
        .collect();
    // Each round reads [start, end) of every partition still without an own record.
    let mut ends: Vec<i64> = bounds.iter().map(|&(_, high)| high).collect();
    let mut depth = FIRST_ROUND.min(scan);
    let mut read = 0;
    while !pending.is_empty() && read < scan {
        let starts: Vec<i64> = pending
            .iter()
            .map(|&p| (ends[p] - depth).max(bounds[p].0))
            .collect();
        let ranges: Vec<(usize, i64, i64)> = pending
            .iter()
            .zip(&starts)
            .map(|(&p, &start)| (p, start, ends[p]))
            .collect();
        for (p, position) in read_round(&consumer, topic, &ranges, source)? {
            watermarks[p] = Some(position);
        }
        for (&p, &start) in pending.iter().zip(&starts) {
            ends[p] = start;
        }
        read += depth;
        pending.retain(|&p| watermarks[p].is_none() && ends[p] > bounds[p].0);
        depth = (depth * 4).min(scan - read).max(1);
    }
    let without_own = (0..bounds.len())
        .filter(|&p| bounds[p].1 > bounds[p].0 && watermarks[p].is_none())
        .map(|p| i32::try_from(p).unwrap_or(i32::MAX))
        .collect();
    Ok(TopicTails {
        watermarks,
        without_own,
    })
}

/// Read `[start, end)` of each listed partition; the newest own position found in each.
fn read_round(
    consumer: &BaseConsumer,
    topic: &str,
    ranges: &[(usize, i64, i64)],
    source: &Bytes,
) -> Result<Vec<(usize, EventPosition)>, String> {
    let mut assignment = TopicPartitionList::new();
    let mut left: HashMap<i32, i64> = HashMap::new();
    for &(p, start, end) in ranges {
        let partition = i32::try_from(p).unwrap_or(i32::MAX);
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(|e| e.to_string())?;
        left.insert(partition, end);
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("cannot read the tails of {topic}: {e}"))?;
    let mut found: HashMap<i32, EventPosition> = HashMap::new();
    let deadline = Instant::now() + ROUND_TIMEOUT;
    while !left.is_empty() {
        let Some(wait) = deadline.checked_duration_since(Instant::now()) else {
            return Err(format!(
                "reading the tails of {topic} took over {ROUND_TIMEOUT:?}"
            ));
        };
        match consumer.poll(wait.min(Duration::from_millis(100))) {
            Some(Ok(message)) => {
                let partition = message.partition();
                let Some(&end) = left.get(&partition) else {
                    continue;
                };
                if message.offset() < end {
                    if let Some(position) = own_position(&message, source) {
                        let newest = found.entry(partition).or_insert(position);
                        *newest = (*newest).max(position);
                    }
                }
                if message.offset() + 1 >= end {
                    left.remove(&partition);
                }
            }
            Some(Err(e)) => return Err(format!("reading the tails of {topic}: {e}")),
            None => {
                // Nothing more to read: offsets up to `end` that were never delivered are
                // transaction markers or compacted away, which the position has passed.
                let positions = consumer.position().map_err(|e| e.to_string())?;
                left.retain(|&partition, end| {
                    let at = positions
                        .find_partition(topic, partition)
                        .and_then(|e| e.offset().to_raw());
                    at.is_none_or(|at| at < *end)
                });
            }
        }
    }
    Ok(found
        .into_iter()
        .map(|(p, position)| (usize::try_from(p).unwrap_or(usize::MAX), position))
        .collect())
}

/// The position of a record this relay published, or `None` for anyone else's.
fn own_position<M: Message>(message: &M, source: &Bytes) -> Option<EventPosition> {
    let headers = message.headers()?;
    let header = |name: &str| headers.iter().find(|h| h.key == name).and_then(|h| h.value);
    if header(HEADER_SOURCE)? != source.as_ref() {
        return None;
    }
    EventPosition::from_headers(header)
}
