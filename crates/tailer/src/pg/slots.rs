//! Slot helpers shared by run, the operator commands and the background tasks: read a slot's
//! position, make a temporary copy of it, move a slot forward.
//!
//! A temporary copy (`pg_copy_logical_replication_slot(…, temporary => true)`) belongs to the
//! session that made it and vanishes with it, even on a crash, so reading it through
//! `pg_logical_slot_get_binary_changes` consumes only the copy: the slot it was copied from
//! never moves and a tailer streaming from it is not disturbed.

use pgoutput::Lsn;
use tokio_postgres::Client;

use crate::error::TailerError;

/// What `pg_replication_slots` says about one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub name: String,
    pub confirmed_flush_lsn: Lsn,
    /// `wal_status = lost`: the WAL it needs is gone.
    pub lost: bool,
}

/// The slot's row, or `None` when it does not exist.
pub async fn slot_info(client: &Client, name: &str) -> Result<Option<SlotInfo>, TailerError> {
    let row = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text, wal_status FROM pg_catalog.pg_replication_slots \
             WHERE slot_name = $1",
            &[&name],
        )
        .await
        .map_err(|e| TailerError::postgres("reading pg_replication_slots", e))?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(SlotInfo {
        name: name.to_owned(),
        confirmed_flush_lsn: parse_lsn(row.get::<_, Option<String>>(0))?,
        lost: row.get::<_, Option<String>>(1).as_deref() == Some("lost"),
    }))
}

/// The name this relay signs its records with (`outbox-source`): the cluster's system
/// identifier, which a restore or a new cluster changes, and the slot.
pub async fn source_id(client: &Client, slot: &str) -> Result<String, TailerError> {
    let row = client
        .query_one(
            "SELECT system_identifier::text FROM pg_catalog.pg_control_system()",
            &[],
        )
        .await
        .map_err(|e| TailerError::postgres("reading the system identifier", e))?;
    Ok(format!("{}/{slot}", row.get::<_, String>(0)))
}

/// The server's current WAL write position.
pub async fn current_wal_lsn(client: &Client) -> Result<Lsn, TailerError> {
    let row = client
        .query_one("SELECT pg_catalog.pg_current_wal_lsn()::text", &[])
        .await
        .map_err(|e| TailerError::postgres("reading the current WAL position", e))?;
    parse_lsn(row.get::<_, Option<String>>(0))
}

/// Move `slot` forward to `to` (never backwards; PostgreSQL stops at what is flushed).
/// Returns where the slot is now.
pub async fn advance(client: &Client, slot: &str, to: Lsn) -> Result<Lsn, TailerError> {
    let row = client
        .query_one(
            "SELECT end_lsn::text FROM pg_catalog.pg_replication_slot_advance($1, $2::text::pg_lsn)",
            &[&slot, &to.to_string()],
        )
        .await
        .map_err(|e| TailerError::postgres("advancing a replication slot", e))?;
    parse_lsn(row.get::<_, Option<String>>(0))
}

/// An LSN the server printed (`pg_lsn::text`); NULL reads as 0/0.
pub(crate) fn parse_lsn(text: Option<String>) -> Result<Lsn, TailerError> {
    let text = text.unwrap_or_else(|| "0/0".into());
    text.parse()
        .map_err(|e| TailerError::Bug(format!("unexpected LSN {text:?} from the server: {e}")))
}

/// A temporary copy of a slot, named after its purpose and this session's backend pid.
#[derive(Debug)]
pub struct TempCopy {
    pub name: String,
}

impl TempCopy {
    /// Copy `from` (which must exist and not be invalidated); the copy starts at its
    /// `confirmed_flush_lsn`.
    pub async fn create(
        client: &Client,
        from: &str,
        purpose: &str,
    ) -> Result<TempCopy, TailerError> {
        let pid: i32 = client
            .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
            .await
            .map_err(|e| TailerError::postgres("reading the backend pid", e))?
            .get(0);
        let name = format!("outbox_tailer_{purpose}_{pid}");
        client
            .query_one(
                "SELECT slot_name::text FROM pg_catalog.pg_copy_logical_replication_slot($1, $2, true)",
                &[&from, &name],
            )
            .await
            .map_err(|e| {
                TailerError::Database(format!(
                    "cannot make a temporary copy of slot {from}: {e} (needs a free \
                     max_replication_slots entry and the REPLICATION attribute)"
                ))
            })?;
        Ok(TempCopy { name })
    }

    /// Drop the copy now to free its `max_replication_slots` entry (it would vanish with the
    /// session anyway).
    pub async fn drop(self, client: &Client) {
        let _ = client
            .execute(
                "SELECT pg_catalog.pg_drop_replication_slot($1)",
                &[&self.name],
            )
            .await;
    }
}

/// `pg_logical_slot_get_binary_changes` with the options `run` streams with: `$1` slot,
/// `$2` at most this many changes (whole transactions: a call may return more), `$3` the
/// quoted publication name. Returns one `data` column of pgoutput messages.
pub const CHANGES_SQL: &str = "SELECT data FROM pg_catalog.pg_logical_slot_get_binary_changes(\
     $1, NULL, $2, 'proto_version', '1', 'publication_names', $3, 'messages', 'true')";
