//! What each relay does around failures and idleness, measured the same way for every relay:
//! duplicates re-published after a clean stop and restart and after SIGKILL (records in the
//! topic minus distinct `id` headers), and how far its slot lags while only a table outside the
//! publication is written.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::kafka::{self, ORDER_TOPIC};
use crate::relay::{RelayKind, Running};
use crate::rows::{BehaviourRow, IdleLag, SlotLost};
use crate::scenario::Env;
use crate::workload::{self, Backlog};
use crate::Sizes;

pub async fn run(env: &Env, sizes: &Sizes) -> anyhow::Result<Vec<BehaviourRow>> {
    let mut rows = Vec::new();
    // Classic polling runs the same code as the tuned poller, 10 rows every 2 s: its restarts
    // would take hours at these sizes and show nothing the tuned poller does not.
    for relay in env
        .tools
        .relays
        .clone()
        .into_iter()
        .filter(|r| *r != RelayKind::PollClassic)
    {
        let mut row = BehaviourRow {
            relay: relay.label(),
            broker: env.broker_name().into(),
            ..BehaviourRow::default()
        };
        clean_restart(env, relay, sizes.restart_events, &mut row).await?;
        sigkill(env, relay, sizes.restart_events, &mut row).await?;
        if relay.slot().is_some() {
            row.idle = Some(idle(env, relay, sizes.idle_seconds).await?);
        }
        rows.push(row);
    }
    // Last: it invalidates every slot of the cluster.
    let slotted: Vec<RelayKind> = slotted_relays(env);
    if !slotted.is_empty() {
        let wait = Duration::from_secs(sizes.slot_lost_wait_seconds);
        let lost = slot_lost(env, &slotted, wait).await?;
        for (relay, outcome) in slotted.iter().zip(lost) {
            if let Some(row) = rows.iter_mut().find(|r| r.relay == relay.label()) {
                row.slot_lost = Some(outcome);
            }
        }
    }
    Ok(rows)
}

fn slotted_relays(env: &Env) -> Vec<RelayKind> {
    env.tools
        .relays
        .iter()
        .copied()
        .filter(|r| r.slot().is_some())
        .collect()
}

/// Invalidate every slot while no relay runs (`max_slot_wal_keep_size` = 1 MB, WAL written to
/// an unpublished table, checkpoints), then start each relay on its lost slot and time how
/// long until it gives up. A relay that keeps running looks healthy to its supervisor while
/// it publishes nothing.
async fn slot_lost(
    env: &Env,
    relays: &[RelayKind],
    wait: Duration,
) -> anyhow::Result<Vec<SlotLost>> {
    // ALTER SYSTEM cannot run in the implicit transaction of a multi-statement batch.
    env.client
        .batch_execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        .await?;
    env.client.batch_execute("SELECT pg_reload_conf()").await?;
    let slots: Vec<String> = relays
        .iter()
        .filter_map(|r| r.slot())
        .map(str::to_owned)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lost: i64 = env
            .client
            .query_one(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = ANY($1) AND wal_status = 'lost'",
                &[&slots],
            )
            .await?
            .get(0);
        if lost as usize == slots.len() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the slots were not invalidated within 120 s"
        );
        env.client
            .batch_execute(
                "INSERT INTO orders (note) SELECT repeat('x', 1000) FROM generate_series(1, 2000); \
                 SELECT pg_switch_wal(); CHECKPOINT;",
            )
            .await?;
    }
    let mut out = Vec::new();
    for relay in relays {
        let mut running = env.start_relay(*relay)?;
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let outcome = loop {
            if let Some(status) = running.exited() {
                break SlotLost {
                    exited_seconds: Some(started.elapsed().as_secs_f64()),
                    exit_code: status.code(),
                    wait_seconds: wait.as_secs(),
                };
            }
            if started.elapsed() >= wait {
                running.kill()?;
                break SlotLost {
                    exited_seconds: None,
                    exit_code: None,
                    wait_seconds: wait.as_secs(),
                };
            }
            tick.tick().await;
        };
        out.push(outcome);
    }
    Ok(out)
}

fn half(events: u64) -> Backlog {
    Backlog::Batched {
        events: events / 2,
        batch: 100.min(events / 2).max(1),
    }
}

/// Poll the topic until every one of `n` distinct events since `base` is there.
async fn wait_distinct(
    env: &Env,
    relay: RelayKind,
    running: &mut Running,
    base: &kafka::Marks,
    n: u64,
) -> anyhow::Result<()> {
    env.wait_records(
        relay,
        running,
        ORDER_TOPIC,
        base,
        n,
        Duration::from_secs(600),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ids = kafka::ids_since(&env.bootstrap(), ORDER_TOPIC, base, env.counting())?;
        if ids.iter().collect::<HashSet<_>>().len() as u64 >= n {
            return Ok(());
        }
        env.ensure_alive(relay, running)?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} never published all {n} events",
            relay.label()
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // polling interval
    }
}

/// (records, duplicates) since `base`.
fn count(env: &Env, base: &kafka::Marks) -> anyhow::Result<(u64, u64)> {
    let ids = kafka::ids_since(&env.bootstrap(), ORDER_TOPIC, base, env.counting())?;
    let distinct = ids.iter().collect::<HashSet<_>>().len();
    Ok((ids.len() as u64, (ids.len() - distinct) as u64))
}

async fn clean_restart(
    env: &Env,
    relay: RelayKind,
    events: u64,
    row: &mut BehaviourRow,
) -> anyhow::Result<()> {
    env.skip_to_now(relay).await?;
    let base = kafka::marks(&env.bootstrap(), ORDER_TOPIC, env.counting())?;
    workload::write_backlog(&env.client, half(events)).await?;
    let mut running = env.start_relay(relay)?;
    wait_distinct(env, relay, &mut running, &base, events / 2).await?;
    running.stop()?;
    workload::write_backlog(&env.client, half(events)).await?;
    let mut running = env.start_relay(relay)?;
    wait_distinct(env, relay, &mut running, &base, 2 * (events / 2)).await?;
    running.stop()?;
    let (published, dups) = count(env, &base)?;
    row.restart_events = 2 * (events / 2);
    row.restart_published = published;
    row.restart_duplicates = dups;
    Ok(())
}

async fn sigkill(
    env: &Env,
    relay: RelayKind,
    events: u64,
    row: &mut BehaviourRow,
) -> anyhow::Result<()> {
    env.skip_to_now(relay).await?;
    let base = kafka::marks(&env.bootstrap(), ORDER_TOPIC, env.counting())?;
    let backlog = Backlog::Batched {
        events,
        batch: 100.min(events),
    };
    // On the mock cluster every relay drains a written backlog before half of it can be seen
    // arriving: write it while the relay runs, 100 events every 20 ms, and kill mid-stream.
    let writer = if env.is_mock() {
        let client = env.db.connect().await?;
        Some(tokio::spawn(async move {
            workload::write_paced(&client, backlog, 20).await
        }))
    } else {
        workload::write_backlog(&env.client, backlog).await?;
        None
    };
    let mut running = env.start_relay(relay)?;
    env.wait_records(
        relay,
        &mut running,
        ORDER_TOPIC,
        &base,
        events / 2,
        Duration::from_secs(600),
    )
    .await?;
    running.kill()?;
    if let Some(writer) = writer {
        writer.await??;
    }
    let after = kafka::total(&kafka::marks(
        &env.bootstrap(),
        ORDER_TOPIC,
        env.counting(),
    )?) - kafka::total(&base);
    let mut running = env.start_relay(relay)?;
    wait_distinct(env, relay, &mut running, &base, events).await?;
    running.stop()?;
    let (published, dups) = count(env, &base)?;
    row.kill_events = events;
    row.kill_after = after.max(0) as u64;
    row.kill_published = published;
    row.kill_duplicates = dups;
    Ok(())
}

async fn idle(env: &Env, relay: RelayKind, seconds: u64) -> anyhow::Result<IdleLag> {
    let slot = relay.slot().unwrap_or_default();
    env.skip_to_now(relay).await?;
    let mut running = env.start_relay(relay)?;
    env.wait_active(relay, &mut running).await?;
    let lsn0 = env.current_lsn().await?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        env.client
            .batch_execute(
                "INSERT INTO orders (note) SELECT repeat('x', 200) FROM generate_series(1, 10)",
            )
            .await?;
    }
    let end = env.current_lsn().await?;
    let wal_bytes = env
        .client
        .query_one(
            "SELECT ($1::text::pg_lsn - $2::text::pg_lsn)::bigint",
            &[&end, &lsn0],
        )
        .await?
        .get(0);
    let lag_at_end = env.slot_lag(slot).await?;
    let caught_up_seconds = env
        .wait_confirmed(relay, &mut running, &end, Duration::from_secs(seconds))
        .await?
        .map(|d| d.as_secs_f64());
    let lag_after_wait = env
        .client
        .query_one(
            "SELECT ($1::text::pg_lsn - confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $2",
            &[&end, &slot],
        )
        .await?
        .get::<_, i64>(0)
        .max(0);
    running.stop()?;
    Ok(IdleLag {
        wal_bytes,
        lag_at_end,
        lag_after_wait,
        wait_seconds: seconds,
        caught_up_seconds,
    })
}
