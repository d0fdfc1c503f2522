//! The drain scenarios (a backlog, one huge transaction): the workload is written while no relay
//! runs, then every relay drains it in turn, `pg_recvlogical` first.

use std::time::{Duration, Instant};

use crate::kafka::{self, Watcher, ORDER_TOPIC};
use crate::measure::{peak_rss_kib, postgres_cpu_ms, process_cpu_ms};
use crate::relay::{recvlogical, RelayKind, Running};
use crate::rows::Row;
use crate::scenario::env::Env;
use crate::workload::{self, Backlog};

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

impl Env {
    /// Drain the backlog already in the slots with every relay, one after the other.
    async fn drain(&self, scenario: &str, events: u64, end: &str) -> anyhow::Result<Vec<Row>> {
        let mut rows = Vec::new();

        let cpu0 = postgres_cpu_ms(&self.pg.data_dir())?;
        let wal0 = self.current_lsn().await?;
        let took = recvlogical::drain(
            &self.pg.client_program("pg_recvlogical")?,
            self.pg.port(),
            &self.db.name,
            end,
        )?;
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
        self.fresh_broker().await?;
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
            p99_by_third_ms: None,
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
