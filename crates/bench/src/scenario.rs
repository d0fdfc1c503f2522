//! The scenarios, each on a fresh cluster and broker, every relay on the same data.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use outbox_testkit::{MockKafka, PgCluster, TansuBroker, TestDb};
use tempfile::TempDir;
use tokio_postgres::Client;

use crate::kafka::{self, Counting, Watcher, LIVE_TOPIC, ORDER_TOPIC};
use crate::measure::{peak_rss_kib, postgres_cpu_ms, process_cpu_ms};
use crate::relay::debezium::Debezium;
use crate::relay::{poll, recvlogical, tailer, RelayKind, Running};
use crate::report::Row;
use crate::workload::{self, Backlog, LiveRate};
use crate::BrokerKind;

/// What the relays need to start.
#[derive(Debug, Clone)]
pub struct Tools {
    pub tailer_bin: PathBuf,
    pub debezium: Option<Debezium>,
    pub relays: Vec<RelayKind>,
    /// Classic polling drains a few events a second by design: its drains stop after this
    /// window and report the rate (and the extrapolated drain time).
    pub poll_window: Duration,
    /// How long after a live run's writes its events may still arrive.
    pub live_grace: Duration,
}

#[allow(dead_code)] // held for their Drop: the services live as long as the scenario
enum Broker {
    Mock(MockKafka),
    Tansu(TansuBroker),
}

/// One scenario's services: a cluster with the schema and a slot per relay, and a broker.
#[allow(missing_debug_implementations)]
pub struct Env {
    pub(crate) pg: PgCluster,
    pub(crate) db: TestDb,
    pub(crate) client: Client,
    broker: Broker,
    kind: BrokerKind,
    pub(crate) tools: Tools,
    /// Debezium's offsets, per variant, kept across restarts within the scenario.
    state: HashMap<RelayKind, TempDir>,
}

impl Env {
    pub async fn start(kind: BrokerKind, tools: &Tools) -> anyhow::Result<Env> {
        let pg = PgCluster::start().await?;
        let db = pg.create_database().await?;
        let client = db.connect().await?;
        workload::create_schema(&client).await?;
        let slots =
            std::iter::once(recvlogical::SLOT).chain(tools.relays.iter().filter_map(|r| r.slot()));
        for slot in slots {
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
                &[(ORDER_TOPIC, 3), (LIVE_TOPIC, 3)],
            )?),
            BrokerKind::Tansu => {
                let t = TansuBroker::start().await?;
                for topic in [ORDER_TOPIC, LIVE_TOPIC] {
                    outbox_testkit::create_topic(&t.bootstrap_servers(), topic, 3).await?;
                }
                Broker::Tansu(t)
            }
        };
        let mut state = HashMap::new();
        for relay in tools.relays.iter().filter(|r| r.is_debezium()) {
            state.insert(
                *relay,
                tempfile::Builder::new()
                    .prefix("outbox-bench-debezium-")
                    .tempdir()?,
            );
        }
        Ok(Env {
            pg,
            db,
            client,
            broker,
            kind,
            tools: tools.clone(),
            state,
        })
    }

    pub(crate) fn bootstrap(&self) -> String {
        match &self.broker {
            Broker::Mock(m) => m.bootstrap_servers().to_owned(),
            Broker::Tansu(t) => t.bootstrap_servers(),
        }
    }

    pub(crate) fn start_relay(&self, relay: RelayKind) -> anyhow::Result<Running> {
        match relay {
            RelayKind::Tailer => tailer::start(
                &self.tools.tailer_bin,
                &self.db.conn_str(),
                &self.bootstrap(),
                relay.slot().unwrap_or_default(),
                self.kind,
            ),
            RelayKind::PollClassic | RelayKind::PollTuned => poll::start(
                &self.tools.tailer_bin,
                relay,
                &self.db.conn_str(),
                &self.bootstrap(),
                self.kind,
            ),
            RelayKind::Debezium | RelayKind::DebeziumTuned | RelayKind::DebeziumEngine => {
                let debezium = self
                    .tools
                    .debezium
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("Debezium is not installed"))?;
                debezium.start(
                    relay,
                    self.pg.port(),
                    &self.db.name,
                    &self.bootstrap(),
                    self.state[&relay].path(),
                    self.kind == BrokerKind::Mock,
                )
            }
        }
    }

    /// The relay's Debezium log, for error messages.
    pub(crate) fn relay_log(&self, relay: RelayKind) -> String {
        self.state
            .get(&relay)
            .and_then(|d| std::fs::read_to_string(d.path().join("debezium.log")).ok())
            .map(|log| {
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            })
            .unwrap_or_default()
    }

    pub(crate) async fn current_lsn(&self) -> anyhow::Result<String> {
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

    /// Bytes of WAL between the slot's confirmed position and now.
    pub(crate) async fn slot_lag(&self, slot: &str) -> anyhow::Result<i64> {
        Ok(self
            .client
            .query_one(
                "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?
            .get(0))
    }

    /// Start the relay without a backlog of earlier relays' events: move its slot to now, or
    /// for a poller empty the table (`TRUNCATE` is not published, so slots do not see it).
    pub(crate) async fn skip_to_now(&self, relay: RelayKind) -> anyhow::Result<()> {
        match relay.slot() {
            Some(slot) => {
                self.client
                    .execute(
                        "SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())",
                        &[&slot],
                    )
                    .await?;
                // Debezium refuses offsets behind its slot (a gap): start it as a new
                // deployment, which streams from the slot's position.
                if let Some(state) = self.state.get(&relay) {
                    crate::relay::debezium::forget_offsets(state.path())?;
                }
            }
            None => self.client.batch_execute("TRUNCATE outbox").await?,
        }
        Ok(())
    }

    /// How counting records works on this broker.
    pub(crate) fn counting(&self) -> Counting {
        match self.kind {
            BrokerKind::Mock => Counting::Watermarks,
            BrokerKind::Tansu => Counting::Consume,
        }
    }

    /// Dead tuples in the outbox table, counted by a scan (`pgstattuple`).
    async fn dead_tuples(&self) -> anyhow::Result<i64> {
        Ok(self
            .client
            .query_one("SELECT dead_tuple_count FROM pgstattuple('outbox')", &[])
            .await?
            .get(0))
    }

    async fn autovacuum_count(&self) -> anyhow::Result<i64> {
        Ok(self
            .client
            .query_one(
                "SELECT autovacuum_count FROM pg_stat_user_tables WHERE relname = 'outbox'",
                &[],
            )
            .await?
            .get(0))
    }

    /// The rows of the backlog unpublished again and the table vacuumed, so every poller starts
    /// from the same table a fresh backlog leaves.
    async fn unpublish_all(&self) -> anyhow::Result<()> {
        self.client
            .batch_execute("UPDATE outbox SET published_at = NULL WHERE published_at IS NOT NULL")
            .await?;
        // VACUUM cannot share a batch (an implicit transaction) with another statement.
        self.client.batch_execute("VACUUM outbox").await?;
        Ok(())
    }

    /// Poll until the slot's confirmed position reaches `end`; `None` if not within `within`.
    /// Fails when the relay exits.
    pub(crate) async fn wait_confirmed(
        &self,
        relay: RelayKind,
        running: &mut Running,
        end: &str,
        within: Duration,
    ) -> anyhow::Result<Option<Duration>> {
        let Some(slot) = relay.slot() else {
            return Ok(None);
        };
        let started = Instant::now();
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
                return Ok(Some(started.elapsed()));
            }
            self.ensure_alive(relay, running)?;
            if started.elapsed() > within {
                return Ok(None);
            }
            tick.tick().await;
        }
    }

    /// Poll until the relay's slot is in use (the relay is streaming). Pollers have no slot:
    /// their first event shows they run.
    pub(crate) async fn wait_active(
        &self,
        relay: RelayKind,
        running: &mut Running,
    ) -> anyhow::Result<()> {
        let Some(slot) = relay.slot() else {
            return self.ensure_alive(relay, running);
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            let active: bool = self
                .client
                .query_one(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await?
                .get(0);
            if active {
                return Ok(());
            }
            self.ensure_alive(relay, running)?;
            anyhow::ensure!(Instant::now() < deadline, "{} never started", relay.label());
            tick.tick().await;
        }
    }

    /// Outbox rows marked published (by a poller).
    async fn marked_rows(&self) -> anyhow::Result<i64> {
        Ok(self
            .client
            .query_one(
                "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL",
                &[],
            )
            .await?
            .get(0))
    }

    pub(crate) fn ensure_alive(
        &self,
        relay: RelayKind,
        running: &mut Running,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            running.is_running(),
            "{} exited early\n{}",
            relay.label(),
            self.relay_log(relay)
        );
        Ok(())
    }

    /// Poll until `n` records after `base` are in the topic's log.
    pub(crate) async fn wait_records(
        &self,
        relay: RelayKind,
        running: &mut Running,
        topic: &str,
        base: &kafka::Marks,
        n: u64,
        within: Duration,
    ) -> anyhow::Result<()> {
        let watcher = Watcher::spawn(
            &self.bootstrap(),
            topic,
            base,
            n,
            Instant::now(),
            self.counting(),
        );
        let deadline = Instant::now() + within;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while !watcher.is_finished() {
            self.ensure_alive(relay, running)?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} did not publish {n} events within {within:?}",
                relay.label()
            );
            tick.tick().await;
        }
        watcher.join()?;
        Ok(())
    }

    pub(crate) fn broker_name(&self) -> &'static str {
        match self.kind {
            BrokerKind::Mock => "mock cluster",
            BrokerKind::Tansu => "tansu",
        }
    }

    /// Drain the backlog already in the slots with every relay, one after the other.
    async fn drain(&self, scenario: &str, events: u64, end: &str) -> anyhow::Result<Vec<Row>> {
        let mut rows = Vec::new();

        let cpu0 = postgres_cpu_ms(&self.pg.data_dir())?;
        let wal0 = self.current_lsn().await?;
        let took = recvlogical::drain(self.pg.bin_dir(), self.pg.port(), &self.db.name, end)?;
        rows.push(Row {
            scenario: scenario.to_owned(),
            relay: recvlogical::LABEL.into(),
            broker: "none".into(),
            events,
            seconds: took.as_secs_f64(),
            pg_cpu_ms: Some(postgres_cpu_ms(&self.pg.data_dir())?.saturating_sub(cpu0)),
            wal_bytes: Some(self.wal_since(&wal0).await?),
            ..Row::default()
        });

        for relay in self.tools.relays.clone() {
            rows.push(self.drain_one(relay, scenario, events, end).await?);
        }
        Ok(rows)
    }

    /// Time from the relay's start until its first event and its last event are in the broker
    /// (acked), and until its slot confirmed `end`; for a poller, the dead tuples and vacuum
    /// work it left. Classic polling stops after `Tools::poll_window`.
    async fn drain_one(
        &self,
        relay: RelayKind,
        scenario: &str,
        events: u64,
        end: &str,
    ) -> anyhow::Result<Row> {
        if relay.is_polling() {
            self.unpublish_all().await?;
        }
        let window = (relay == RelayKind::PollClassic).then_some(self.tools.poll_window);
        // Debezium confirms one transaction behind (see `debezium::confirm_target`); read
        // before the relay's CPU and WAL are counted.
        let end = match relay.is_debezium() {
            true => crate::relay::debezium::confirm_target(&self.client, end).await?,
            false => Some(end.to_owned()),
        };
        let base = kafka::marks(&self.bootstrap(), ORDER_TOPIC, self.counting())?;
        let dead0 = self.dead_tuples().await?;
        let autovacuums0 = self.autovacuum_count().await?;
        // A poller before this relay may have left rows marked: count only this relay's marks.
        let marked0 = self.marked_rows().await?;
        let cpu0 = postgres_cpu_ms(&self.pg.data_dir())?;
        let harness0 = process_cpu_ms("self");
        let wal0 = self.current_lsn().await?;
        let started = Instant::now();
        let watcher = if relay.publishes() {
            Progress::Broker(Watcher::spawn(
                &self.bootstrap(),
                ORDER_TOPIC,
                &base,
                events,
                started,
                self.counting(),
            ))
        } else {
            Progress::Runner { events, started }
        };
        let mut running = self.start_relay(relay)?;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while !watcher.is_finished(&running) {
            self.ensure_alive(relay, &mut running)?;
            if window.is_some_and(|w| started.elapsed() >= w) {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(1800),
                "{} did not drain within 30 min",
                relay.label()
            );
            tick.tick().await;
        }
        let window_end = started.elapsed();
        let seen = watcher.seen(&running);
        let arrivals = watcher.join(&running)?;
        // Debezium with its default offset flush interval (1 min) confirms late; wait for
        // that, but not forever.
        let confirmed = match (arrivals.all, end) {
            (Some(_), Some(end)) => self
                .wait_confirmed(relay, &mut running, &end, Duration::from_secs(120))
                .await?
                .map(|_| started.elapsed()),
            _ => None,
        };
        let rss = peak_rss_kib(running.pid());
        let cpu = postgres_cpu_ms(&self.pg.data_dir())?.saturating_sub(cpu0);
        let relay_cpu = process_cpu_ms(&running.pid().to_string());
        let harness_cpu = process_cpu_ms("self")
            .zip(harness0)
            .map(|(now, then)| now.saturating_sub(then));
        let wal = self.wal_since(&wal0).await?;
        running.stop()?;
        let (seconds, published) = match (arrivals.all, window) {
            (Some(all), _) => (all, None),
            (None, Some(_)) => (window_end, Some(seen)),
            (None, None) => anyhow::bail!("{} did not publish everything", relay.label()),
        };
        let dead = self.dead_tuples().await? - dead0;
        let obsolete = self.marked_rows().await? - marked0;
        let autovacuums = self.autovacuum_count().await? - autovacuums0;
        let vacuum_ms = if relay.is_polling() {
            let t = Instant::now();
            self.client.batch_execute("VACUUM outbox").await?;
            Some(t.elapsed().as_secs_f64() * 1000.0)
        } else {
            None
        };
        Ok(Row {
            scenario: scenario.to_owned(),
            relay: relay.label(),
            broker: if relay.publishes() {
                self.broker_name().into()
            } else {
                "none".into()
            },
            events,
            seconds: seconds.as_secs_f64(),
            first_event_seconds: arrivals.first.map(|d| d.as_secs_f64()),
            confirmed_seconds: confirmed.map(|d| d.as_secs_f64()),
            peak_rss_kib: rss,
            pg_cpu_ms: Some(cpu),
            relay_cpu_ms: relay_cpu,
            harness_cpu_ms: harness_cpu,
            wal_bytes: Some(wal),
            published,
            obsolete_rows: Some(obsolete),
            dead_tuples: Some(dead),
            autovacuums: Some(autovacuums),
            vacuum_ms,
            latency_ms: None,
        })
    }
}

/// How a drain's progress is watched: the records in the broker, or (for the engine-alone
/// diagnosis, which publishes nothing) the runner's own count.
enum Progress {
    Broker(Watcher),
    Runner { events: u64, started: Instant },
}

impl Progress {
    fn runner_count(running: &Running) -> crate::relay::debezium::AckState {
        running.acks.as_ref().map(|a| a.get()).unwrap_or_default()
    }

    fn is_finished(&self, running: &Running) -> bool {
        match self {
            Progress::Broker(w) => w.is_finished(),
            Progress::Runner { events, .. } => Self::runner_count(running).total >= *events,
        }
    }

    fn seen(&self, running: &Running) -> u64 {
        match self {
            Progress::Broker(w) => w.seen(),
            Progress::Runner { .. } => Self::runner_count(running).total,
        }
    }

    fn join(self, running: &Running) -> anyhow::Result<kafka::Arrivals> {
        match self {
            Progress::Broker(w) => w.join(),
            Progress::Runner { events, started } => {
                let count = Self::runner_count(running);
                let since = |t: Option<Instant>| t.map(|t| t.duration_since(started));
                Ok(kafka::Arrivals {
                    first: since(count.first),
                    all: since(count.last).filter(|_| count.total >= events),
                })
            }
        }
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

/// Live: each relay in turn runs (started and warmed up with one event first), writers commit
/// single-event transactions at `rate` for `seconds`, one consumer measures commit-to-consume
/// latency of every event.
pub async fn live(env: &Env, rate: LiveRate, seconds: u64) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for relay in env.tools.relays.clone() {
        rows.push(live_one(env, relay, rate, seconds, env.tools.live_grace).await?);
    }
    Ok(rows)
}

async fn live_one(
    env: &Env,
    relay: RelayKind,
    rate: LiveRate,
    seconds: u64,
    grace: Duration,
) -> anyhow::Result<Row> {
    env.skip_to_now(relay).await?;
    let mut running = env.start_relay(relay)?;
    env.wait_active(relay, &mut running).await?;
    let bootstrap = env.bootstrap();
    let warm = kafka::marks(&bootstrap, LIVE_TOPIC, env.counting())?;
    env.client
        .execute(workload::LIVE_INSERT, &[&-1i64, &1i64])
        .await?;
    env.wait_records(
        relay,
        &mut running,
        LIVE_TOPIC,
        &warm,
        1,
        Duration::from_secs(120),
    )
    .await?;
    let from = kafka::marks(&bootstrap, LIVE_TOPIC, env.counting())?;

    let total = rate.events_per_sec * seconds / rate.per_txn * rate.per_txn;
    // Where the writers cannot reach the rate, the write phase still ends after `seconds`;
    // the consumer then waits for what was written.
    let target = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(total));
    let written = target.clone();
    // A relay still behind this long after the writes stopped does not keep up with the rate
    // (classic polling, by design): its row says how many events arrived.
    let deadline = Instant::now() + Duration::from_secs(seconds) + grace;
    let consumer = std::thread::spawn(move || {
        kafka::consume_latencies(&bootstrap, LIVE_TOPIC, &from, &target, deadline)
    });

    let mut clients = Vec::new();
    for _ in 0..workload::LIVE_CONNECTIONS {
        clients.push(env.db.connect().await?);
    }
    // Where the CPU went while the writes ran: on a 2-core box the writers' own backends
    // compete with the walsender and the relay.
    let pid = running.pid().to_string();
    let cpu0 = (
        postgres_cpu_ms(&env.pg.data_dir())?,
        process_cpu_ms(&pid),
        process_cpu_ms("self"),
    );
    let writes = workload::write_live(&clients, rate, seconds).await?;
    let cpu1 = (
        postgres_cpu_ms(&env.pg.data_dir())?,
        process_cpu_ms(&pid),
        process_cpu_ms("self"),
    );
    let (sent, write_secs) = (writes.events, writes.seconds);
    written.store(sent, std::sync::atomic::Ordering::Relaxed);
    let total = sent;
    let (hist, arrived) = consumer
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    running.stop()?;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(Row {
        scenario: format!(
            "{} for {seconds} s (achieved {:.0}/s)",
            rate.name(),
            total as f64 / write_secs
        ),
        relay: relay.label(),
        broker: env.broker_name().into(),
        events: total,
        seconds: write_secs,
        latency_ms: Some([ms(0.5), ms(0.99), hist.max() as f64 / 1000.0]),
        published: (arrived < total).then_some(arrived),
        pg_cpu_ms: Some(cpu1.0.saturating_sub(cpu0.0)),
        relay_cpu_ms: cpu1.1.zip(cpu0.1).map(|(b, a)| b.saturating_sub(a)),
        harness_cpu_ms: cpu1.2.zip(cpu0.2).map(|(b, a)| b.saturating_sub(a)),
        ..Row::default()
    })
}
