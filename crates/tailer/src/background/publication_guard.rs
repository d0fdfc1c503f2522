//! The publication guard (PostgreSQL 18+): the slot is confirmed only up to a WAL position
//! before which the publication is known to have been in place all along.
//!
//! Up to 17, decoding a change while the publication is missing is an error the stream reports.
//! 18 instead logs a WARNING ("skipped loading publication", which the replication protocol
//! does not surface to the client) and streams nothing for the outbox table: keepalives would
//! then confirm the slot past events that were never sent. So on 18+:
//!
//! ```text
//!   every status interval:  W = pg_current_wal_lsn()            (statement 1)
//!                           publication identity unchanged?       (statement 2, a later snapshot)
//!     yes ─▶ ceiling = W: nothing before W was decoded without it
//!     no  ─▶ stop (exit 3), the slot still at or before the last W
//! ```
//!
//! The identity is the publication's oid, that it publishes inserts, and the oid of the outbox
//! table's membership row (or that it is covered by FOR ALL TABLES / TABLES IN SCHEMA): a drop and
//! re-create gives new oids, so a gap in between is caught even when the check misses it.

use std::sync::Arc;
use std::time::Duration;

use pgoutput::Lsn;
use tokio_postgres::Client;

use crate::config::SourceConfig;
use crate::error::TailerError;
use crate::pg::names::quote_ident;
use crate::pg::slots::parse_lsn;

/// The highest LSN the pipeline may confirm; `u64::MAX` when nothing needs guarding. The
/// pipeline watches it, so what it held back is confirmed as soon as it rises.
#[derive(Debug, Clone)]
pub struct Ceiling {
    value: Arc<tokio::sync::watch::Sender<u64>>,
    /// Asks the guard for a check now (a clean stop wants its last confirm to count).
    check_now: Arc<tokio::sync::Notify>,
}

impl Ceiling {
    /// Nothing may be confirmed until the guard's first check passed (or found it unneeded).
    pub fn closed() -> Self {
        Ceiling {
            value: Arc::new(tokio::sync::watch::Sender::new(0)),
            check_now: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn get(&self) -> Lsn {
        Lsn::from(*self.value.borrow())
    }

    /// Wait until the ceiling reaches `lsn`, asking the guard to check at once.
    pub async fn reach(&self, lsn: Lsn) {
        let mut rx = self.value.subscribe();
        self.check_now.notify_one();
        let _ = rx.wait_for(|v| *v >= lsn.as_u64()).await;
    }

    fn set(&self, lsn: Lsn) {
        self.value.send_if_modified(|v| {
            let changed = *v != lsn.as_u64();
            *v = lsn.as_u64();
            changed
        });
    }

    /// Changes of the ceiling, for the pipeline.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.value.subscribe()
    }
}

/// What makes the publication the same one: oids change when it is dropped and re-created.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    publication: u32,
    inserts: bool,
    membership: Option<u32>,
    includes_table: bool,
}

/// Guard the publication from 18 on (returns the error to stop with); up to 17 it returns
/// nothing and leaves the ceiling open.
pub async fn guard(
    config: SourceConfig,
    interval: Duration,
    ceiling: Ceiling,
) -> Option<TailerError> {
    let mut first: Option<Identity> = None;
    let mut client: Option<Client> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = ceiling.check_now.notified() => {}
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = crate::pg::connect::connect(&config).await.ok();
        }
        let Some(c) = client.as_ref() else { continue };
        match check(c, &config, &mut first, &ceiling).await {
            Ok(Verdict::Unneeded) => {
                ceiling.set(Lsn::from(u64::MAX));
                return None;
            }
            Ok(Verdict::Fine) => {}
            Ok(Verdict::Gone(why)) => return Some(gone(&config, ceiling.get(), &why)),
            Err(e) => {
                tracing::debug!(error = %e, "publication check failed, retrying");
                client = None;
            }
        }
    }
}

enum Verdict {
    Unneeded,
    Fine,
    Gone(String),
}

async fn check(
    client: &Client,
    config: &SourceConfig,
    first: &mut Option<Identity>,
    ceiling: &Ceiling,
) -> Result<Verdict, TailerError> {
    if first.is_none() && crate::pg::server::check_version(client).await? < 18 {
        return Ok(Verdict::Unneeded);
    }
    let row = client
        .query_one("SELECT pg_catalog.pg_current_wal_lsn()::text", &[])
        .await
        .map_err(|e| TailerError::postgres("reading pg_current_wal_lsn", e))?;
    let wal = parse_lsn(row.get(0))?;
    let Some(now) = identity(client, config).await? else {
        return Ok(Verdict::Gone("it does not exist".into()));
    };
    if !now.includes_table {
        return Ok(Verdict::Gone(format!(
            "it no longer includes the outbox table {}",
            config.table
        )));
    }
    if !now.inserts {
        return Ok(Verdict::Gone("it no longer publishes inserts".into()));
    }
    match first {
        Some(before) if *before != now => {
            return Ok(Verdict::Gone(
                "it was dropped and created again (or the table removed and added again)".into(),
            ))
        }
        Some(_) => {}
        None => *first = Some(now),
    }
    ceiling.set(wal);
    Ok(Verdict::Fine)
}

async fn identity(client: &Client, config: &SourceConfig) -> Result<Option<Identity>, TailerError> {
    let t = &config.table;
    let row = client
        .query_opt(
            "SELECT p.oid::oid, p.pubinsert, \
               (SELECT pr.oid FROM pg_catalog.pg_publication_rel pr \
                 JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE pr.prpubid = p.oid AND n.nspname = $2 AND c.relname = $3), \
               EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables pt \
                 WHERE pt.pubname = p.pubname AND pt.schemaname = $2 AND pt.tablename = $3) \
             FROM pg_catalog.pg_publication p WHERE p.pubname = $1",
            &[&config.publication, &t.schema, &t.name],
        )
        .await
        .map_err(|e| TailerError::postgres("reading the publication", e))?;
    Ok(row.map(|r| Identity {
        publication: r.get(0),
        inserts: r.get(1),
        membership: r.get(2),
        includes_table: r.get(3),
    }))
}

fn gone(config: &SourceConfig, last_good: Lsn, why: &str) -> TailerError {
    let p = &config.publication;
    TailerError::Database(format!(
        "publication {p} changed while streaming: {why}. PostgreSQL 18 skips the outbox \
         table's changes while its publication is missing (WARNING \"skipped loading \
         publication\"), so events committed after {last_good} may not have been streamed; the \
         slot was not confirmed past it. Restore the publication (`outbox-tailer setup`, or \
         ALTER PUBLICATION {} ADD TABLE {}), then re-publish the outbox rows committed after \
         {last_good} as for an invalidated slot (docs/operations.md, \"Recovering from an \
         invalidated slot\")",
        quote_ident(p),
        config.table.quoted()
    ))
}
