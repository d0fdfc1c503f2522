//! Watching the broker the same way for every relay: high watermarks (records in the log, i.e.
//! acknowledged with acks=all), event ids for duplicate counting, and commit-to-consume latency.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

pub const ORDER_TOPIC: &str = "outbox.event.order";
pub const LIVE_TOPIC: &str = "outbox.event.live";

fn consumer(bootstrap: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        // librdkafka's mock cluster answers an empty fetch only after the full wait (it is not
        // woken by a produce), so this wait is the measurement's floor: keep it at 1 ms.
        .set("fetch.wait.max.ms", "1")
        .set("log_level", "3")
        .create()?)
}

/// Per partition: the offset the next record will get.
pub type Marks = Vec<(i32, i64)>;

fn partitions(c: &BaseConsumer, topic: &str, within: Duration) -> anyhow::Result<Vec<i32>> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(1)) {
            let ps: Vec<i32> = md
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if !ps.is_empty() {
                return Ok(ps);
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "topic {topic} never appeared");
    }
}

fn marks_of(c: &BaseConsumer, topic: &str, parts: &[i32]) -> anyhow::Result<Marks> {
    parts
        .iter()
        .map(|p| {
            let (_, high) = c.fetch_watermarks(topic, *p, Duration::from_secs(5))?;
            Ok((*p, high))
        })
        .collect()
}

fn assign_from(c: &BaseConsumer, topic: &str, from: &Marks) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in from {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))?;
    }
    c.assign(&tpl)?;
    Ok(())
}

/// Per partition, the offset the next record will get, while nothing is being produced.
pub fn marks(bootstrap: &str, topic: &str, counting: Counting) -> anyhow::Result<Marks> {
    let c = consumer(bootstrap)?;
    let parts = partitions(&c, topic, Duration::from_secs(30))?;
    let high = marks_of(&c, topic, &parts)?;
    match counting {
        Counting::Watermarks => Ok(high),
        Counting::Consume => true_ends(&c, topic, &high),
    }
}

/// tansu 0.6 reports as high watermark the first offset of the partition's last batch plus
/// one (seen here: 100 records in one batch, watermark 1), so the end is found by reading
/// that last batch: from `high - 1` until the records stop coming.
fn true_ends(c: &BaseConsumer, topic: &str, high: &Marks) -> anyhow::Result<Marks> {
    let mut ends: HashMap<i32, i64> = high.iter().copied().collect();
    let pending: Vec<(i32, i64)> = high.iter().copied().filter(|(_, h)| *h > 0).collect();
    if pending.is_empty() {
        return Ok(high.clone());
    }
    assign_from(
        c,
        topic,
        &pending.iter().map(|(p, h)| (*p, h - 1)).collect::<Marks>(),
    )?;
    let mut unseen: Vec<i32> = pending.iter().map(|(p, _)| *p).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet_since = Instant::now();
    // Every partition's last batch arrives whole; then a quiet spell means the end.
    while !unseen.is_empty() || quiet_since.elapsed() < Duration::from_millis(300) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "could not read the last batch of {topic}"
        );
        if let Some(m) = c.poll(Duration::from_millis(50)) {
            let m = m?;
            let end = ends.entry(m.partition()).or_default();
            *end = (*end).max(m.offset() + 1);
            unseen.retain(|p| *p != m.partition());
            quiet_since = Instant::now();
        }
    }
    c.unassign()?;
    Ok(high.iter().map(|(p, _)| (*p, ends[p])).collect())
}

pub fn total(marks: &Marks) -> i64 {
    marks.iter().map(|(_, o)| *o).sum()
}

/// When the first record after `base` and the `n`-th arrived in the log (times since `t0`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Arrivals {
    pub first: Option<Duration>,
    pub all: Option<Duration>,
}

/// How the watcher counts the records in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// Poll the high watermarks every few milliseconds (cheap: no records are fetched). On the
    /// mock cluster, which lives in the harness's process.
    Watermarks,
    /// Consume the records and count them. On tansu, whose high watermark does not follow
    /// produced records promptly enough to judge completion by.
    Consume,
}

/// Counts the records after `base` until `n` are in the log.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
    handle: JoinHandle<anyhow::Result<Arrivals>>,
}

impl Watcher {
    pub fn spawn(
        bootstrap: &str,
        topic: &str,
        base: &Marks,
        n: u64,
        t0: Instant,
        counting: Counting,
    ) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicU64::new(0));
        let (flag, count) = (stop.clone(), seen.clone());
        let (bootstrap, topic, base) = (bootstrap.to_owned(), topic.to_owned(), base.clone());
        let handle = std::thread::spawn(move || {
            let c = consumer(&bootstrap)?;
            let mut arrivals = Arrivals::default();
            let note = |now: u64, arrivals: &mut Arrivals| {
                count.store(now, Ordering::Relaxed);
                if now > 0 && arrivals.first.is_none() {
                    arrivals.first = Some(t0.elapsed());
                }
                if now >= n {
                    arrivals.all = Some(t0.elapsed());
                }
            };
            match counting {
                Counting::Watermarks => {
                    let parts: Vec<i32> = base.iter().map(|(p, _)| *p).collect();
                    while !flag.load(Ordering::Relaxed) && arrivals.all.is_none() {
                        // A busy in-process mock cluster can miss the 5 s metadata timeout:
                        // ask again next round (a relay that stalls is caught by the caller).
                        if let Ok(marks) = marks_of(&c, &topic, &parts) {
                            note((total(&marks) - total(&base)).max(0) as u64, &mut arrivals);
                        }
                        std::thread::sleep(Duration::from_millis(5)); // polling interval, not a sync
                    }
                }
                Counting::Consume => {
                    assign_from(&c, &topic, &base)?;
                    let mut now = 0u64;
                    while !flag.load(Ordering::Relaxed) && arrivals.all.is_none() {
                        if let Some(m) = c.poll(Duration::from_millis(20)) {
                            m?;
                            now += 1;
                            note(now, &mut arrivals);
                        }
                    }
                }
            }
            Ok(arrivals)
        });
        Watcher { stop, seen, handle }
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Records counted so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    pub fn join(self) -> anyhow::Result<Arrivals> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("watcher panicked"))?
    }
}

/// Every record's `id` header from `from` up to the high watermarks at the time of the call.
pub fn ids_since(
    bootstrap: &str,
    topic: &str,
    from: &Marks,
    counting: Counting,
) -> anyhow::Result<Vec<String>> {
    let to: HashMap<i32, i64> = marks(bootstrap, topic, counting)?.into_iter().collect();
    let c = consumer(bootstrap)?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for (p, o) in from {
        // Records the broker already dropped can never be read: say so instead of waiting.
        let (low, _) = c.fetch_watermarks(topic, *p, Duration::from_secs(5))?;
        anyhow::ensure!(
            low <= *o,
            "{topic} partition {p} starts at offset {low}, past {o}: the broker dropped records \
             this step wrote (librdkafka's mock cluster keeps only a partition's last 5 MB; \
             write fewer events or use --broker tansu)"
        );
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))?;
        remaining += to[p] - o;
    }
    c.assign(&tpl)?;
    let mut next: HashMap<i32, i64> = from.iter().copied().collect();
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while next.iter().any(|(p, o)| *o < to[p]) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "read {} of {remaining} records (librdkafka's mock cluster drops a partition's records \
             beyond its last 5 MB: were more written?)",
            ids.len()
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            next.insert(m.partition(), m.offset() + 1);
            if m.offset() >= to[&m.partition()] {
                continue;
            }
            let id = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "id"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .context("a record without an id header")?;
            ids.push(id);
        }
    }
    Ok(ids)
}

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Commit-to-consume latencies of a live run: all events, and by third of the write phase
/// (by each event's write time), which shows whether the tail grows as the run goes on.
#[derive(Debug)]
pub struct Latencies {
    pub all: Histogram<u64>,
    pub thirds: [Histogram<u64>; 3],
    /// How many events arrived.
    pub seen: u64,
}

/// Read `topic` from `from` until `total` events (set by the writer when it is done) arrived or
/// `deadline` passed (a relay that cannot keep up with the rate); latency = consume time −
/// payload `t`, of the events that arrived. `seconds` is the write phase's planned length,
/// which the thirds divide (the first event's write time is its start).
pub fn consume_latencies(
    bootstrap: &str,
    topic: &str,
    from: &Marks,
    total: &AtomicU64,
    deadline: Instant,
    seconds: u64,
) -> anyhow::Result<Latencies> {
    let c = consumer(bootstrap)?;
    assign_from(&c, topic, from)?;
    let hist = || Histogram::<u64>::new_with_bounds(1, 600_000_000, 3);
    let mut out = Latencies {
        all: hist()?,
        thirds: [hist()?, hist()?, hist()?],
        seen: 0,
    };
    let third_us = (seconds.max(1) * 1_000_000 / 3) as i64;
    let mut origin = None;
    while out.seen < total.load(Ordering::Relaxed) && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let now = now_us();
            let mut payload: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).context("live payload")?;
            // A relay that sends jsonb as a JSON string (Debezium's JsonConverter) is read too.
            if let Some(s) = payload.as_str() {
                payload = serde_json::from_str(s).context("live payload in a string")?;
            }
            let t = payload["t"].as_i64().context("live payload without t")?;
            let latency = (now - t).max(1) as u64;
            out.all.record(latency)?;
            let third = (t - *origin.get_or_insert(t)).clamp(0, 2 * third_us) / third_us;
            out.thirds[third as usize].record(latency)?;
            out.seen += 1;
        }
    }
    Ok(out)
}
