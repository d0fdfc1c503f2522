//! `setup` (publication, then slot) and the checks `run` makes before streaming.
//!
//! Every failed check is one sentence saying what is wrong and what to do.

use pgoutput::Lsn;
use tokio_postgres::{Client, Row};

use crate::config::SourceConfig;
use crate::error::TailerError;
use crate::pg::connect::{connect, server_text};
use crate::pg::names::quote_ident;
use crate::pg::slots::parse_lsn;

/// What `setup` did, for printing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SetupReport {
    pub actions: Vec<String>,
}

/// The slot as found before streaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    pub confirmed_flush_lsn: Lsn,
    /// What this relay's records carry in `outbox-source`.
    pub source_id: String,
}

async fn exists(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<bool, TailerError> {
    Ok(client
        .query_opt(sql, params)
        .await
        .map_err(|e| TailerError::postgres("checking the catalog", e))?
        .is_some())
}

async fn check_wal_level(client: &Client) -> Result<(), TailerError> {
    let level: String = client
        .query_one("SHOW wal_level", &[])
        .await
        .map_err(|e| TailerError::postgres("reading wal_level", e))?
        .get(0);
    if level != "logical" {
        return Err(TailerError::Database(format!(
            "wal_level is '{level}', logical decoding needs 'logical': set wal_level = logical \
             in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL"
        )));
    }
    Ok(())
}

async fn check_table(client: &Client, config: &SourceConfig) -> Result<(), TailerError> {
    let t = &config.table;
    let found = exists(
        client,
        "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
        &[&t.schema, &t.name],
    )
    .await?;
    if !found {
        return Err(TailerError::Database(format!(
            "outbox table {t} does not exist: create it (see migrations/) or set --table"
        )));
    }
    Ok(())
}

async fn check_publication(client: &Client, config: &SourceConfig) -> Result<(), TailerError> {
    let (p, t) = (&config.publication, &config.table);
    let row = client
        .query_opt(
            "SELECT pubinsert FROM pg_catalog.pg_publication WHERE pubname = $1",
            &[p],
        )
        .await
        .map_err(|e| TailerError::postgres("reading pg_publication", e))?;
    let Some(row) = row else {
        return Err(TailerError::Database(format!(
            "publication {p} does not exist: run `outbox-tailer setup` (it creates the \
             publication before the slot)"
        )));
    };
    if !row.get::<_, bool>(0) {
        return Err(TailerError::Database(format!(
            "publication {p} does not publish inserts: ALTER PUBLICATION {} SET (publish = 'insert')",
            quote_ident(p)
        )));
    }
    let holds = exists(
        client,
        "SELECT 1 FROM pg_catalog.pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
        &[p, &t.schema, &t.name],
    )
    .await?;
    if !holds {
        return Err(TailerError::Database(format!(
            "publication {p} does not include the outbox table {t}: ALTER PUBLICATION {} ADD TABLE {}",
            quote_ident(p),
            t.quoted()
        )));
    }
    Ok(())
}

async fn check_role(client: &Client) -> Result<(), TailerError> {
    let row = client
        .query_one(
            "SELECT rolname::text, rolreplication OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| TailerError::postgres("reading the role", e))?;
    if !row.get::<_, bool>(1) {
        let name: String = row.get(0);
        return Err(TailerError::Database(format!(
            "role {name} lacks the REPLICATION attribute: ALTER ROLE {} REPLICATION (plus SELECT on the outbox table)",
            quote_ident(&name)
        )));
    }
    Ok(())
}

async fn create_publication(client: &Client, config: &SourceConfig) -> Result<(), TailerError> {
    let sql = format!(
        "CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert')",
        quote_ident(&config.publication),
        config.table.quoted()
    );
    client.batch_execute(&sql).await.map_err(|e| {
        TailerError::Database(format!(
            "cannot create publication {}: {}; creating a publication FOR TABLE needs \
                 ownership of {} (or superuser) and CREATE on the database: run `outbox-tailer \
                 setup` once as the table's owner, or have the owner run `{sql}` \
                 (see docs/security.md)",
            config.publication,
            server_text(&e),
            config.table
        ))
    })
}

async fn create_slot(client: &Client, config: &SourceConfig) -> Result<Lsn, TailerError> {
    // A failover slot (17+) is synchronised to standbys with sync_replication_slots.
    let sql = if config.failover {
        "SELECT lsn::text FROM pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput', \
         false, false, true)"
    } else {
        "SELECT lsn::text FROM pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')"
    };
    let row = client.query_one(sql, &[&config.slot]).await.map_err(|e| {
        let advice = match e.code().map(|c| c.code()) {
            Some("42501") => {
                "; creating a slot needs the REPLICATION attribute: ALTER ROLE <role> \
                     REPLICATION (see docs/security.md)"
            }
            _ => "",
        };
        TailerError::Database(format!(
            "cannot create slot {}: {}{advice}",
            config.slot,
            server_text(&e)
        ))
    })?;
    parse_lsn(row.get(0))
}

/// Check the slot; create it when missing and `create` is set. Returns its confirmed position.
async fn check_slot(
    client: &Client,
    config: &SourceConfig,
    create: bool,
) -> Result<Lsn, TailerError> {
    let s = &config.slot;
    let Some(row) = read_slot(client, s).await? else {
        if create {
            return create_missing_slot(client, config).await;
        }
        return Err(missing_slot(s));
    };
    check_slot_kind(s, &row)?;
    check_slot_usable(s, &row)?;
    parse_lsn(row.get(6))
}

/// The slot's row, `None` when it does not exist; [`check_slot_kind`], [`check_slot_usable`]
/// and [`check_slot`] read its columns by position.
async fn read_slot(client: &Client, s: &str) -> Result<Option<Row>, TailerError> {
    client
        .query_opt(
            "SELECT plugin::text, slot_type, database::text, current_database()::text, \
                    wal_status, two_phase, confirmed_flush_lsn::text, \
                    to_jsonb(s) ->> 'invalidation_reason' \
             FROM pg_catalog.pg_replication_slots s WHERE slot_name = $1",
            &[&s],
        )
        .await
        .map_err(|e| TailerError::postgres("reading pg_replication_slots", e))
}

async fn create_missing_slot(client: &Client, config: &SourceConfig) -> Result<Lsn, TailerError> {
    let lsn = create_slot(client, config).await?;
    tracing::warn!(slot = %config.slot, lsn = %lsn, "created the replication slot: events committed before this point are not delivered");
    Ok(lsn)
}

fn missing_slot(s: &str) -> TailerError {
    TailerError::Database(format!(
        "replication slot {s} does not exist: run `outbox-tailer setup`, or `outbox-tailer \
         run --create-slot` on a first start (a new slot starts at the current WAL position)"
    ))
}

/// A logical pgoutput slot of this database.
fn check_slot_kind(s: &str, row: &Row) -> Result<(), TailerError> {
    let plugin: Option<String> = row.get(0);
    let slot_type: String = row.get(1);
    let database: Option<String> = row.get(2);
    let current: String = row.get(3);
    if slot_type != "logical" || plugin.as_deref() != Some("pgoutput") {
        return Err(TailerError::Config(format!(
            "slot {s} is a {slot_type} slot with plugin {}, the tailer needs a logical pgoutput slot: \
             choose another --slot and run `outbox-tailer setup`",
            plugin.as_deref().unwrap_or("none")
        )));
    }
    if database.as_deref() != Some(current.as_str()) {
        return Err(TailerError::Config(format!(
            "slot {s} belongs to database {}, not {current}: connect to that database or use another --slot",
            database.as_deref().unwrap_or("?")
        )));
    }
    Ok(())
}

/// Not invalidated, and delivering transactions at commit rather than at PREPARE.
fn check_slot_usable(s: &str, row: &Row) -> Result<(), TailerError> {
    let wal_status: Option<String> = row.get(4);
    let two_phase: bool = row.get(5);
    // `invalidation_reason` exists from PostgreSQL 17 (18 adds `idle_timeout`).
    let reason: Option<String> = row.get(7);
    if wal_status.as_deref() == Some("lost") || reason.is_some() {
        let (why, prevent) = match reason.as_deref() {
            Some("idle_timeout") => (
                "it was inactive for longer than idle_replication_slot_timeout, so PostgreSQL \
                 released the WAL it held",
                " To prevent it, keep the tailer running or raise idle_replication_slot_timeout.",
            ),
            _ => ("the WAL it needed was removed", ""),
        };
        return Err(TailerError::SlotInvalidated(format!(
            "slot {s} is invalidated ({}): {why}, so events may be missing. Follow \
             \"Recovering from an invalidated slot\" in docs/operations.md.{prevent}",
            match reason.as_deref() {
                Some(r) if r != "wal_removed" => r,
                _ => "wal_status = lost",
            }
        )));
    }
    if two_phase {
        return Err(TailerError::Database(format!(
            "slot {s} has two_phase enabled, which would deliver transactions at PREPARE: \
             create a new slot without two_phase (outbox-tailer setup --slot <new>)"
        )));
    }
    Ok(())
}

/// Every check `run` makes before streaming; creates the slot only when `create_slot`.
pub async fn preflight(config: &SourceConfig, create_slot: bool) -> Result<SlotState, TailerError> {
    let client = connect(config).await?;
    let major = crate::pg::server::check_version(&client).await?;
    crate::pg::server::check_standby(&client, major).await?;
    check_wal_level(&client).await?;
    check_role(&client).await?;
    check_table(&client, config).await?;
    check_publication(&client, config).await?;
    let confirmed_flush_lsn = check_slot(&client, config, create_slot).await?;
    Ok(SlotState {
        confirmed_flush_lsn,
        source_id: crate::pg::slots::source_id(&client, &config.slot).await?,
    })
}

/// `outbox-tailer setup`: the publication first, then the slot; idempotent.
pub async fn setup(config: &SourceConfig) -> Result<SetupReport, TailerError> {
    let client = connect(config).await?;
    let mut report = SetupReport::default();
    let major = crate::pg::server::check_version(&client).await?;
    crate::pg::server::check_standby(&client, major).await?;
    if config.failover && major < 17 {
        return Err(TailerError::Config(format!(
            "--failover needs PostgreSQL 17 or later (this server is {major}): before 17 a \
             promotion loses the slot; see docs/ha.md for the recovery without it"
        )));
    }
    check_wal_level(&client).await?;
    check_table(&client, config).await?;
    let has_pub = exists(
        &client,
        "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1",
        &[&config.publication],
    )
    .await?;
    if has_pub {
        report
            .actions
            .push(format!("publication {} exists", config.publication));
    } else {
        create_publication(&client, config).await?;
        report.actions.push(format!(
            "created publication {} FOR TABLE {} WITH (publish = 'insert')",
            config.publication, config.table
        ));
    }
    check_publication(&client, config).await?;
    let slot_existed = exists(
        &client,
        "SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
        &[&config.slot],
    )
    .await?;
    let state = check_slot(&client, config, true).await?;
    if slot_existed {
        report.actions.push(format!(
            "slot {} exists (confirmed_flush_lsn {})",
            config.slot, state
        ));
        if config.failover && !is_failover_slot(&client, &config.slot).await? {
            crate::pg::failover::enable(&client, config).await?;
            report
                .actions
                .push(format!("turned on failover for slot {}", config.slot));
        }
    } else {
        report.actions.push(format!(
            "created slot {} (pgoutput) at {}",
            config.slot, state
        ));
    }
    Ok(report)
}

async fn is_failover_slot(client: &Client, slot: &str) -> Result<bool, TailerError> {
    let row = client
        .query_one(
            "SELECT to_jsonb(s) ->> 'failover' FROM pg_catalog.pg_replication_slots s \
             WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| TailerError::postgres("reading the slot's failover flag", e))?;
    Ok(row.get::<_, Option<String>>(0).as_deref() == Some("true"))
}

/// Create the replay slot as a copy of the live slot when it is missing (it then starts at
/// the live slot's position: nothing older is replayable). Returns what was done.
pub async fn ensure_replay_slot(config: &SourceConfig) -> Result<Option<String>, TailerError> {
    let Some(replay) = &config.replay_slot else {
        return Ok(None);
    };
    let client = connect(config).await?;
    if let Some(info) = crate::pg::slots::slot_info(&client, replay).await? {
        if info.lost {
            tracing::warn!(
                slot = %replay,
                "the replay slot is invalidated (wal_status = lost): nothing can be replayed from \
                 it; drop it with SELECT pg_drop_replication_slot('{replay}') and it is recreated"
            );
        }
        return Ok(Some(format!(
            "replay slot {replay} exists (confirmed_flush_lsn {})",
            info.confirmed_flush_lsn
        )));
    }
    client
        .query_one(
            "SELECT slot_name::text FROM pg_catalog.pg_copy_logical_replication_slot($1, $2, false)",
            &[&config.slot, replay],
        )
        .await
        .map_err(|e| {
            TailerError::Database(format!(
                "cannot create the replay slot {replay} as a copy of {}: {e} (needs the \
                 REPLICATION attribute and a free max_replication_slots entry)",
                config.slot
            ))
        })?;
    Ok(Some(format!(
        "created replay slot {replay} as a copy of {}",
        config.slot
    )))
}
