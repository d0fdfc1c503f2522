//! What the Debezium comparison tests share: Debezium installed once per machine, the tailer as
//! its own process with its log kept, relays watched while a test waits on the broker, and the
//! broker read back record by record with null keys, values and header values kept apart from
//! empty ones (Debezium and the tailer must agree on that too).

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use outbox_bench::relay::debezium::{self, Debezium};
use outbox_bench::relay::Running;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The tailer binary built with this package.
pub const TAILER_BIN: &str = env!("CARGO_BIN_EXE_outbox-bench-tailer");

/// Install Debezium (once per machine; later calls find it in place).
pub async fn debezium() -> anyhow::Result<Debezium> {
    let dir = debezium::default_tools_dir();
    tokio::task::spawn_blocking(move || Debezium::install(&dir)).await?
}

/// A relay process and the log that says why it stopped.
#[derive(Debug)]
pub struct Relay {
    pub name: String,
    pub running: Option<Running>,
    pub log: PathBuf,
}

impl Relay {
    /// Debezium's runner with `props`; its offsets and log in `state_dir`.
    pub fn debezium(
        name: &str,
        debezium: &Debezium,
        props: &[(String, String)],
        state_dir: &Path,
    ) -> anyhow::Result<Relay> {
        Ok(Relay {
            name: name.into(),
            running: Some(debezium.start_with(props, state_dir)?),
            log: state_dir.join("debezium.log"),
        })
    }

    /// `outbox-tailer run` with `args` after the connection and slot; its log in `log_dir`.
    pub fn tailer(
        name: &str,
        log_dir: &Path,
        args: &[String],
        config: Option<&Path>,
    ) -> anyhow::Result<Relay> {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut cmd = Command::new(TAILER_BIN);
        cmd.arg("run");
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        cmd.args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        Ok(Relay {
            name: name.into(),
            running: Some(Running::spawn(&mut cmd)?),
            log,
        })
    }

    /// An error naming the relay and its log's last lines when it has exited.
    pub fn ensure_alive(&mut self) -> anyhow::Result<()> {
        if let Some(running) = self.running.as_mut() {
            if let Some(status) = running.exited() {
                bail!(
                    "{} exited ({status}); its log ends:\n{}",
                    self.name,
                    log_tail(&self.log)
                );
            }
        }
        Ok(())
    }

    /// SIGTERM and wait: the relay's clean stop.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        match self.running.take() {
            Some(running) => running
                .stop()
                .with_context(|| format!("{}: {}", self.name, log_tail(&self.log))),
            None => Ok(()),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(Running::pid)
    }
}

pub fn log_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn consumer(bootstrap: &str) -> anyhow::Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "debezium-compare")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "10")
        .set("log_level", "3")
        .create()
        .context("creating a Kafka consumer")
}

/// Records in the logs of `topics` (the sum of their high watermarks).
pub fn records_in(c: &BaseConsumer, topics: &[String]) -> anyhow::Result<i64> {
    let md = c.fetch_metadata(None, Duration::from_secs(5))?;
    let mut total = 0;
    for topic in topics {
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .with_context(|| format!("topic {topic} is missing"))?;
        for p in t.partitions() {
            total += c.fetch_watermarks(topic, p.id(), Duration::from_secs(5))?.1;
        }
    }
    Ok(total)
}

/// Wait until `topics` hold `n` records in all, while every relay in `relays` keeps running;
/// `what` names the wait in the error.
pub async fn wait_for_records(
    bootstrap: &str,
    topics: &[String],
    n: i64,
    within: Duration,
    relays: &mut [&mut Relay],
    what: &str,
) -> anyhow::Result<()> {
    let c = consumer(bootstrap)?;
    let deadline = Instant::now() + within;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        let seen = tokio::task::block_in_place(|| records_in(&c, topics)).unwrap_or(0);
        if seen >= n {
            return Ok(());
        }
        for relay in relays.iter_mut() {
            relay.ensure_alive()?;
        }
        if Instant::now() > deadline {
            bail!("{what}: {seen} of {n} records in {topics:?} after {within:?}");
        }
        tick.tick().await;
    }
}

/// One consumed record, owned, with nulls kept apart from empty bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// The first `id` header, as text.
    pub fn id(&self) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == "id")
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Every record of `topic` up to the high watermarks at the time of the call, in partition and
/// offset order.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    within: Duration,
) -> anyhow::Result<Vec<Record>> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_blocking(&bootstrap, &topic, within)).await?
}

fn read_blocking(bootstrap: &str, topic: &str, within: Duration) -> anyhow::Result<Vec<Record>> {
    let c = consumer(bootstrap)?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    anyhow::ensure!(!parts.is_empty(), "topic {topic} has no partitions");
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        let (low, high) = c.fetch_watermarks(topic, *p, Duration::from_secs(5))?;
        anyhow::ensure!(
            low == 0,
            "{topic}/{p} starts at {low}: records were dropped"
        );
        ends.insert(*p, high);
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let mut next: HashMap<i32, i64> = parts.iter().map(|p| (*p, 0)).collect();
    let mut out = Vec::new();
    let deadline = Instant::now() + within;
    while parts.iter().any(|p| next[p] < ends[p]) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "reading {topic}: at {next:?} of {ends:?} after {within:?}"
        );
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m?;
            next.insert(m.partition(), m.offset() + 1);
            if m.offset() >= ends[&m.partition()] {
                continue;
            }
            out.push(Record {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}

/// Bytes as an escaped literal: printable ASCII as is, everything else `\xNN`, so two values
/// that differ in one byte show where.
pub fn show(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "null".into(),
        Some(b) => {
            let escaped: String = b
                .iter()
                .flat_map(|c| std::ascii::escape_default(*c))
                .map(char::from)
                .collect();
            format!("b\"{escaped}\" ({} bytes)", b.len())
        }
    }
}
