//! Writing the workloads, fast and identically for every relay.
//!
//! Backlogs are written by server-side loops (`DO` blocks that `COMMIT` per transaction), so the
//! write phase costs little and every relay sees exactly the same WAL.

use tokio_postgres::Client;

/// The outbox table of the contract, as the project's migrations create it (with the polling
/// relay's `seq` and `published_at`), so every relay reads the same table.
pub const OUTBOX_MIGRATIONS: [&str; 2] = [
    include_str!("../../../migrations/0002_outbox.sql"),
    include_str!("../../../migrations/0003_outbox_polling.sql"),
];

/// The bench's own unpublished table, the publication, and `pgstattuple` (dead tuples).
pub const SCHEMA: &str = "CREATE TABLE orders (id bigserial PRIMARY KEY, note text);
  CREATE PUBLICATION bench_pub FOR TABLE outbox WITH (publish = 'insert');
  CREATE EXTENSION pgstattuple;";

pub async fn create_schema(client: &Client) -> anyhow::Result<()> {
    for sql in OUTBOX_MIGRATIONS.iter().chain([&SCHEMA]) {
        client.batch_execute(sql).await.map_err(|e| {
            let reason = e.as_db_error().map(|d| d.message().to_owned());
            anyhow::anyhow!(
                "creating the bench schema: {e} {}",
                reason.unwrap_or_default()
            )
        })?;
    }
    Ok(())
}

/// A ~300-byte JSON payload like a real event's.
const PAYLOAD: &str = "jsonb_build_object('i', i, 'order', md5(i::text), 'customer', 'customer-' || (i % 1000), \
     'items', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (i % 97), 'qty', 1 + i % 5, 'price', 1999), \
     jsonb_build_object('sku', 'SKU-' || (i % 89), 'qty', 2, 'price', 4999)), 'note', repeat('x', 120))";

fn rows(from: &str, to: &str) -> String {
    format!(
        "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload)
         SELECT gen_random_uuid(), 'order', 'order-' || (i % 1000), 'OrderCreated', {PAYLOAD}
         FROM generate_series({from}, {to}) AS i"
    )
}

/// A backlog shape.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub enum Backlog {
    Batched { events: u64, batch: u64 },
    Single { txns: u64 },
}

impl Backlog {
    pub fn events(&self) -> u64 {
        match self {
            Backlog::Batched { events, .. } => *events,
            Backlog::Single { txns } => *txns,
        }
    }

    pub fn name(&self) -> String {
        match self {
            Backlog::Batched { events, batch } => {
                format!("backlog: {events} events in {batch}-event transactions")
            }
            Backlog::Single { txns } => format!("backlog: {txns} single-event transactions"),
        }
    }
}

/// Write the backlog, one transaction per batch.
pub async fn write_backlog(client: &Client, backlog: Backlog) -> anyhow::Result<()> {
    let (txns, batch) = match backlog {
        Backlog::Batched { events, batch } => (events / batch, batch),
        Backlog::Single { txns } => (txns, 1),
    };
    let insert = rows("(t - 1) * b + 1", "t * b");
    client
        .batch_execute(&format!(
            "DO $$ DECLARE b bigint := {batch}; BEGIN
               FOR t IN 1..{txns} LOOP {insert}; COMMIT; END LOOP;
             END $$"
        ))
        .await?;
    Ok(())
}

/// [`write_backlog`] paced: a pause of `pause_ms` after each transaction, so a relay running
/// meanwhile is caught mid-stream (the behaviour scenario's SIGKILL on the mock cluster, which
/// every relay drains faster than the harness can see half of a backlog arrive).
pub async fn write_paced(client: &Client, backlog: Backlog, pause_ms: u64) -> anyhow::Result<()> {
    let (txns, batch) = match backlog {
        Backlog::Batched { events, batch } => (events / batch, batch),
        Backlog::Single { txns } => (txns, 1),
    };
    let insert = rows("(t - 1) * b + 1", "t * b");
    let pause = pause_ms as f64 / 1000.0;
    client
        .batch_execute(&format!(
            "DO $$ DECLARE b bigint := {batch}; BEGIN
               FOR t IN 1..{txns} LOOP {insert}; COMMIT; PERFORM pg_sleep({pause}); END LOOP;
             END $$"
        ))
        .await?;
    Ok(())
}

/// One transaction of `events` rows.
pub async fn write_huge(client: &Client, events: u64) -> anyhow::Result<()> {
    client
        .batch_execute(&rows("1", &events.to_string()))
        .await?;
    Ok(())
}

/// One live transaction: events `$1 .. $1 + $2`, each carrying `t`, the server's clock (µs since
/// the epoch) as it inserts the row, which in these one-statement transactions is the moment
/// before the commit. Latency counts from there, so time a transaction spent queued on its
/// writer connection (which grows when the box is saturated) is not charged to the relay.
/// Server and consumer share this machine's clock.
pub const LIVE_INSERT: &str = "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload)
     SELECT gen_random_uuid(), 'live', 'agg-' || (n % 64), 'Tick',
            jsonb_build_object('t', (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, 'n', n)
     FROM generate_series($1::bigint, $1::bigint + $2::bigint - 1) AS n";

/// A live rate: events per second, and events per transaction (`10000` or `10000x10` on the
/// command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveRate {
    pub events_per_sec: u64,
    pub per_txn: u64,
}

impl LiveRate {
    pub const fn single(events_per_sec: u64) -> LiveRate {
        LiveRate {
            events_per_sec,
            per_txn: 1,
        }
    }

    /// The scenario's name in the results, e.g. `live: 10000 events/s in 10-event transactions`.
    pub fn name(&self) -> String {
        match self.per_txn {
            1 => format!(
                "live: {} events/s in single-event transactions",
                self.events_per_sec
            ),
            n => format!(
                "live: {} events/s in {n}-event transactions",
                self.events_per_sec
            ),
        }
    }
}

impl std::str::FromStr for LiveRate {
    type Err = String;

    fn from_str(s: &str) -> Result<LiveRate, String> {
        let (rate, per_txn) = s.split_once('x').unwrap_or((s, "1"));
        let parse = |v: &str| {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("live rate {s:?}: use EVENTS_PER_SEC or EVENTS_PER_SECxEVENTS_PER_TXN, e.g. 10000x10"))
        };
        let rate = LiveRate {
            events_per_sec: parse(rate)?,
            per_txn: parse(per_txn)?,
        };
        if rate.per_txn > rate.events_per_sec {
            return Err(format!(
                "live rate {s:?}: more events per transaction than per second"
            ));
        }
        Ok(rate)
    }
}

/// Connections the live writers use. Several transactions are in flight on each connection
/// (pipelined), so the rate is bounded by the server, not by round trips.
pub const LIVE_CONNECTIONS: usize = 8;
/// At most this many live inserts in flight: beyond it the writers fall behind the schedule
/// (and the achieved rate in the results says so) instead of queueing without bound.
const LIVE_MAX_IN_FLIGHT: usize = 256;

/// What the live writers achieved.
#[derive(Debug, Clone, Copy)]
pub struct LiveWrites {
    pub events: u64,
    pub seconds: f64,
}

/// Commit transactions of `rate.per_txn` events at `rate.events_per_sec` for `seconds`:
/// transaction `k` is due `k * per_txn / events_per_sec` seconds after the start and is sent as
/// soon as it is due, on connection `k % clients.len()` (see [`LIVE_INSERT`] for the time its
/// events carry). Where the server cannot keep up, the phase still ends after `seconds`.
pub async fn write_live(
    clients: &[Client],
    rate: LiveRate,
    seconds: u64,
) -> anyhow::Result<LiveWrites> {
    use futures::stream::{FuturesUnordered, StreamExt};

    let mut statements = Vec::with_capacity(clients.len());
    for client in clients {
        statements.push(client.prepare(LIVE_INSERT).await?);
    }
    let per_txn = rate.per_txn as i64;
    let txns_per_sec = rate.events_per_sec as f64 / rate.per_txn as f64;
    let total = rate.events_per_sec * seconds / rate.per_txn;
    let phase = std::time::Duration::from_secs(seconds);
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut in_flight = FuturesUnordered::new();
    let mut sent = 0u64;
    // The tick that ends the phase still sends every transaction due by then (up to the
    // in-flight bound), so a rate the server keeps up with writes exactly `total`.
    while sent < total {
        tokio::select! {
            _ = tick.tick() => {
                let ended = started.elapsed() >= phase;
                let due = if ended {
                    total
                } else {
                    ((started.elapsed().as_secs_f64() * txns_per_sec) as u64).min(total)
                };
                while sent < due && in_flight.len() < LIVE_MAX_IN_FLIGHT {
                    let k = sent as usize % clients.len();
                    let (client, statement) = (&clients[k], &statements[k]);
                    let first = sent as i64 * per_txn;
                    in_flight.push(async move {
                        client
                            .execute(statement, &[&first, &per_txn])
                            .await
                    });
                    sent += 1;
                }
                if ended {
                    break;
                }
            }
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                done?;
            }
        }
    }
    while let Some(done) = in_flight.next().await {
        done?;
    }
    Ok(LiveWrites {
        events: sent * rate.per_txn,
        seconds: started.elapsed().as_secs_f64(),
    })
}
