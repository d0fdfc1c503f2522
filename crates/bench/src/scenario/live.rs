//! The live scenario: writers commit at a fixed rate while one relay runs, and one consumer
//! measures every event's commit-to-consume latency.

use std::time::{Duration, Instant};

use crate::kafka::{self, LIVE_TOPIC};
use crate::measure::{postgres_cpu_ms, process_cpu_ms};
use crate::relay::RelayKind;
use crate::rows::Row;
use crate::scenario::env::Env;
use crate::workload::{self, LiveRate};

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
    env.fresh_broker().await?;
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
        kafka::consume_latencies(&bootstrap, LIVE_TOPIC, &from, &target, deadline, seconds)
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
    let latencies = consumer
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    running.stop()?;
    let (hist, arrived) = (&latencies.all, latencies.seen);
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let p99_of = |h: &hdrhistogram::Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1000.0;
    Ok(Row {
        scenario: format!(
            "{} for {seconds} s (achieved {:.0}/s){}",
            rate.name(),
            total as f64 / write_secs,
            match env.tools.live_partitions {
                3 => String::new(),
                n => format!(", topic of {n} partitions"),
            }
        ),
        relay: relay.label(),
        broker: env.broker_name().into(),
        events: total,
        seconds: write_secs,
        latency_ms: Some([ms(0.5), ms(0.99), hist.max() as f64 / 1000.0]),
        p99_by_third_ms: Some(latencies.thirds.each_ref().map(p99_of)),
        published: (arrived < total).then_some(arrived),
        pg_cpu_ms: Some(cpu1.0.saturating_sub(cpu0.0)),
        relay_cpu_ms: cpu1.1.zip(cpu0.1).map(|(b, a)| b.saturating_sub(a)),
        harness_cpu_ms: cpu1.2.zip(cpu0.2).map(|(b, a)| b.saturating_sub(a)),
        ..Row::default()
    })
}
