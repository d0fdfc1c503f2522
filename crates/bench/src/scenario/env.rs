//! A scenario's services (a cluster with the schema and a slot per relay, and a broker) and the
//! relays' lifecycle on them: starting a relay, and waiting until it streams, publishes or
//! confirms.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use outbox_testkit::{MockKafka, PgCluster, TansuBroker, TansuStorage, TestDb};
use tempfile::TempDir;
use tokio_postgres::Client;

use crate::kafka::{self, Counting, Watcher, LIVE_TOPIC, ORDER_TOPIC};
use crate::relay::debezium::Debezium;
use crate::relay::{poll, recvlogical, tailer, RelayKind, Running};
use crate::workload;
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
    /// Partitions of the live topic (the order topic always has 3).
    pub live_partitions: i32,
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
    /// Replaced by an empty one before each relay's measurement (see [`Env::fresh_broker`]).
    broker: std::sync::Mutex<Broker>,
    kind: BrokerKind,
    storage: crate::TansuStore,
    pub(crate) tools: Tools,
    /// Debezium's offsets, per variant, kept across restarts within the scenario.
    state: HashMap<RelayKind, TempDir>,
}

impl Env {
    pub async fn start(
        kind: BrokerKind,
        storage: crate::TansuStore,
        tools: &Tools,
    ) -> anyhow::Result<Env> {
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
            BrokerKind::Mock => Broker::Mock(mock_cluster(tools.live_partitions)?),
            BrokerKind::Tansu => Broker::Tansu(tansu(storage, tools.live_partitions).await?),
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
            broker: std::sync::Mutex::new(broker),
            kind,
            storage,
            tools: tools.clone(),
            state,
        })
    }

    pub(crate) fn is_mock(&self) -> bool {
        self.kind == BrokerKind::Mock
    }

    pub(crate) fn bootstrap(&self) -> String {
        match &*self.broker.lock().expect("broker lock") {
            Broker::Mock(m) => m.bootstrap_servers().to_owned(),
            Broker::Tansu(t) => t.bootstrap_servers(),
        }
    }

    /// Before a relay's drain or live run: an empty broker, so every relay starts from the
    /// same one. On a shared one, a relay measured after others pays for what they left:
    /// idempotent resume scans up to `--resume-scan-records` of their records per partition
    /// looking for its own, and both brokers find a fetch's offset by walking every batch of
    /// the partition (librdkafka's mock cluster its message-set list, tansu's memory storage
    /// a listing of its batch objects), so a consumer's latency grows with the batches earlier
    /// relays wrote.
    pub(crate) async fn fresh_broker(&self) -> anyhow::Result<()> {
        let fresh = match self.kind {
            BrokerKind::Mock => Broker::Mock(mock_cluster(self.tools.live_partitions)?),
            BrokerKind::Tansu => {
                Broker::Tansu(tansu(self.storage, self.tools.live_partitions).await?)
            }
        };
        // The old broker stops once the lock is released.
        let _old = std::mem::replace(&mut *self.broker.lock().expect("broker lock"), fresh);
        Ok(())
    }

    pub(crate) fn start_relay(&self, relay: RelayKind) -> anyhow::Result<Running> {
        match relay {
            RelayKind::Tailer | RelayKind::TailerExactlyOnce | RelayKind::TailerNoResume => {
                tailer::start(
                    &self.tools.tailer_bin,
                    &self.db.conn_str(),
                    &self.bootstrap(),
                    relay.slot().unwrap_or_default(),
                    self.kind,
                    relay.tailer_flags(),
                )
            }
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

    pub(crate) fn broker_name(&self) -> &'static str {
        match self.kind {
            BrokerKind::Mock => "mock cluster",
            BrokerKind::Tansu => "tansu",
        }
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
}

/// A tansu broker with the bench's topics: the order topic with 3 partitions, the live one
/// with `live_partitions`.
async fn tansu(storage: crate::TansuStore, live_partitions: i32) -> anyhow::Result<TansuBroker> {
    let t = TansuBroker::start_with(match storage {
        crate::TansuStore::Memory => TansuStorage::Memory,
        crate::TansuStore::Sqlite => TansuStorage::Sqlite,
    })
    .await?;
    for (topic, partitions) in [(ORDER_TOPIC, 3), (LIVE_TOPIC, live_partitions)] {
        outbox_testkit::create_topic(&t.bootstrap_servers(), topic, partitions).await?;
    }
    Ok(t)
}

/// librdkafka's mock cluster with the bench's topics: the order topic with 3 partitions, the
/// live one with `live_partitions`.
fn mock_cluster(live_partitions: i32) -> anyhow::Result<MockKafka> {
    MockKafka::start_with_topics(1, &[(ORDER_TOPIC, 3), (LIVE_TOPIC, live_partitions)])
}
