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

/// One transaction of `events` rows.
pub async fn write_huge(client: &Client, events: u64) -> anyhow::Result<()> {
    client
        .batch_execute(&rows("1", &events.to_string()))
        .await?;
    Ok(())
}

/// One live event in its own transaction, carrying the time just before its commit.
pub const LIVE_INSERT: &str = "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload)
     VALUES (gen_random_uuid(), 'live', 'agg-' || ($1::bigint % 64), 'Tick', jsonb_build_object('t', $2::bigint, 'n', $1::bigint))";
