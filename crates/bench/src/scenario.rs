//! The scenarios, each on a fresh cluster and broker.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::Histogram;
use outbox_testkit::{MockKafka, PgCluster, TansuBroker, TestDb};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_postgres::Client;

use crate::measure::{peak_rss_kib, postgres_cpu_ms};
use crate::relay::{recvlogical, TailerRelay};
use crate::report::Row;
use crate::workload::{self, Backlog};
use crate::BrokerKind;

const TAILER_SLOT: &str = "bench_tailer";
const RECV_SLOT: &str = "bench_recv";

#[allow(dead_code)] // held for their Drop: the services live as long as the scenario
enum Broker {
    Mock(MockKafka),
    Tansu(TansuBroker),
}

/// One scenario's services: a cluster with the schema and a slot per relay, and a broker.
#[allow(missing_debug_implementations)]
pub struct Env {
    pg: PgCluster,
    db: TestDb,
    client: Client,
    broker: Broker,
    kind: BrokerKind,
    tailer_bin: PathBuf,
}

impl Env {
    pub async fn start(kind: BrokerKind, tailer_bin: &Path) -> anyhow::Result<Env> {
        let pg = PgCluster::start().await?;
        let db = pg.create_database().await?;
        let client = db.connect().await?;
        client.batch_execute(workload::SCHEMA).await?;
        for slot in [TAILER_SLOT, RECV_SLOT] {
            client
                .execute(
                    "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                    &[&slot],
                )
                .await?;
        }
        let broker = match kind {
            BrokerKind::Mock => Broker::Mock(MockKafka::start_with_topics(
                1,
                &[("outbox.event.order", 3), ("outbox.event.live", 3)],
            )?),
            BrokerKind::Tansu => Broker::Tansu(TansuBroker::start().await?),
        };
        Ok(Env {
            pg,
            db,
            client,
            broker,
            kind,
            tailer_bin: tailer_bin.to_owned(),
        })
    }

    fn bootstrap(&self) -> String {
        match &self.broker {
            Broker::Mock(m) => m.bootstrap_servers().to_owned(),
            Broker::Tansu(t) => t.bootstrap_servers(),
        }
    }

    fn tailer(&self) -> anyhow::Result<TailerRelay> {
        TailerRelay::start(
            &self.tailer_bin,
            &self.db.conn_str(),
            &self.bootstrap(),
            TAILER_SLOT,
            self.kind,
        )
    }

    async fn current_lsn(&self) -> anyhow::Result<String> {
        Ok(self
            .client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await?
            .get(0))
    }

    async fn wal_since(&self, lsn: &str) -> anyhow::Result<i64> {
        Ok(self
            .client
            .query_one(
                "SELECT (pg_current_wal_lsn() - $1::text::pg_lsn)::bigint",
                &[&lsn],
            )
            .await?
            .get(0))
    }

    /// Poll until the slot's confirmed position reaches `end`.
    async fn wait_confirmed(&self, slot: &str, end: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            let done: bool = self
                .client
                .query_one(
                    "SELECT confirmed_flush_lsn >= $2::text::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot, &end],
                )
                .await?
                .get(0);
            if done {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "slot {slot} did not reach {end} within {within:?}"
            );
            tick.tick().await;
        }
    }

    fn broker_name(&self) -> &'static str {
        match self.kind {
            BrokerKind::Mock => "mock cluster",
            BrokerKind::Tansu => "tansu",
        }
    }

    /// Drain the backlog already in the slots with both relays, one after the other.
    async fn drain(&self, scenario: &str, events: u64, end: &str) -> anyhow::Result<Vec<Row>> {
        let mut rows = Vec::new();

        let cpu0 = postgres_cpu_ms(&self.pg.data_dir())?;
        let wal0 = self.current_lsn().await?;
        let took = recvlogical(
            self.pg.bin_dir(),
            self.pg.port(),
            &self.db.name,
            RECV_SLOT,
            end,
        )?;
        rows.push(Row {
            scenario: scenario.to_owned(),
            relay: "pg_recvlogical (to /dev/null)".into(),
            broker: "none".into(),
            events,
            seconds: took.as_secs_f64(),
            peak_rss_kib: None,
            pg_cpu_ms: Some(postgres_cpu_ms(&self.pg.data_dir())?.saturating_sub(cpu0)),
            wal_bytes: Some(self.wal_since(&wal0).await?),
            latency_ms: None,
        });

        let cpu0 = postgres_cpu_ms(&self.pg.data_dir())?;
        let wal0 = self.current_lsn().await?;
        let started = Instant::now();
        let relay = self.tailer()?;
        self.wait_confirmed(TAILER_SLOT, end, Duration::from_secs(1800))
            .await?;
        let took = started.elapsed();
        let rss = peak_rss_kib(relay.pid());
        let cpu = postgres_cpu_ms(&self.pg.data_dir())?.saturating_sub(cpu0);
        relay.stop()?;
        rows.push(Row {
            scenario: scenario.to_owned(),
            relay: "outbox-tailer".into(),
            broker: self.broker_name().into(),
            events,
            seconds: took.as_secs_f64(),
            peak_rss_kib: rss,
            pg_cpu_ms: Some(cpu),
            wal_bytes: Some(self.wal_since(&wal0).await?),
            latency_ms: None,
        });
        Ok(rows)
    }
}

/// Backlog drain: the workload is written while no relay runs, then each relay drains it.
pub async fn backlog(env: &Env, backlog: Backlog) -> anyhow::Result<Vec<Row>> {
    workload::write_backlog(&env.client, backlog).await?;
    let end = env.current_lsn().await?;
    env.drain(&backlog.name(), backlog.events(), &end).await
}

/// One huge transaction, written while no relay runs.
pub async fn huge(env: &Env, events: u64) -> anyhow::Result<Vec<Row>> {
    workload::write_huge(&env.client, events).await?;
    let end = env.current_lsn().await?;
    env.drain(&format!("one transaction of {events} events"), events, &end)
        .await
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Live: the tailer runs, writers commit single-event transactions at `rate` for `seconds`,
/// one consumer measures commit-to-consume latency of every event.
pub async fn live(env: &Env, rate: u64, seconds: u64) -> anyhow::Result<Row> {
    let relay = env.tailer()?;
    let total = rate * seconds;
    let bootstrap = env.bootstrap();
    let consumer = std::thread::spawn(move || {
        consume_latencies(&bootstrap, total, Duration::from_secs(seconds + 120))
    });

    const WRITERS: usize = 4;
    let mut clients = Vec::new();
    for _ in 0..WRITERS {
        clients.push(env.db.connect().await?);
    }
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0u64;
    while sent < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        while sent < due {
            let batch: Vec<_> = (0..WRITERS as u64)
                .take_while(|k| sent + k < due)
                .map(|k| {
                    let n = (sent + k) as i64;
                    let client = &clients[k as usize];
                    async move {
                        client
                            .execute(workload::LIVE_INSERT, &[&n, &now_us()])
                            .await
                    }
                })
                .collect();
            let n = batch.len() as u64;
            for r in futures::future::join_all(batch).await {
                r?;
            }
            sent += n;
        }
    }
    let write_secs = started.elapsed().as_secs_f64();
    let hist = consumer
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    relay.stop()?;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(Row {
        scenario: format!(
            "live: {rate} events/s for {seconds} s (achieved {:.0}/s)",
            total as f64 / write_secs
        ),
        relay: "outbox-tailer".into(),
        broker: env.broker_name().into(),
        events: total,
        seconds: write_secs,
        peak_rss_kib: None,
        pg_cpu_ms: None,
        wal_bytes: None,
        latency_ms: Some([ms(0.5), ms(0.99), hist.max() as f64 / 1000.0]),
    })
}

/// Read `outbox.event.live` until `total` events arrived; latency = consume time − payload `t`.
fn consume_latencies(
    bootstrap: &str,
    total: u64,
    within: Duration,
) -> anyhow::Result<Histogram<u64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .set("log_level", "3")
        .create()?;
    let deadline = Instant::now() + within;
    let topic = "outbox.event.live";
    let partitions = loop {
        if let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(1)) {
            let ps: Vec<i32> = md
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if !ps.is_empty() {
                break ps;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "topic {topic} never appeared");
    };
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut seen = 0u64;
    while seen < total {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {seen} of {total} live events arrived"
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let now = now_us();
            let payload: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).context("live payload")?;
            let t = payload["t"].as_i64().unwrap_or(now);
            hist.record((now - t).max(1) as u64)?;
            seen += 1;
        }
    }
    Ok(hist)
}
