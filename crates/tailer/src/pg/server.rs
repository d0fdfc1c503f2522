//! What the server must be for tailing: a supported major, and outbox columns that logical
//! replication actually publishes.
//!
//! ```text
//!   13 and older ─────────────────────────▶ refused (exit 3): no logical messages in pgoutput
//!   a column the tailer reads is generated:
//!     VIRTUAL (18) ───────────────────────▶ refused: never published
//!     STORED, before 18 ──────────────────▶ refused: never published
//!     STORED, 18+, publish_generated_columns = stored ─▶ fine
//!     STORED, 18+, otherwise ─────────────▶ refused, with the ALTER PUBLICATION to run
//! ```

use tokio_postgres::Client;

use crate::config::{RouteConfig, SourceConfig};
use crate::error::TailerError;
use crate::pg::names::quote_ident;

/// The oldest major the tailer supports.
pub const MIN_MAJOR: u32 = 14;

/// The server's major version, refusing one the tailer does not support.
pub async fn check_version(client: &Client) -> Result<u32, TailerError> {
    let num: String = client
        .query_one("SHOW server_version_num", &[])
        .await
        .map_err(|e| TailerError::postgres("reading server_version_num", e))?
        .get(0);
    let num: u32 = num.trim().parse().map_err(|_| {
        TailerError::Database(format!("server_version_num {num:?} is not a number"))
    })?;
    let major = num / 10_000;
    if major < MIN_MAJOR {
        return Err(TailerError::Database(format!(
            "PostgreSQL {major} is not supported: outbox-tailer needs {MIN_MAJOR} or later \
             (pgoutput's logical decoding messages and streaming of large transactions arrived \
             in 14). Upgrade the server; until then `outbox-tailer poll` publishes by polling"
        )));
    }
    Ok(major)
}

/// Decoding on a physical standby needs 16 or later; there, warn when the standby does not
/// hold the primary back (`hot_standby_feedback`), which lets the primary remove catalog rows
/// the slot needs and invalidates it (`rows_removed`).
pub async fn check_standby(client: &Client, major: u32) -> Result<(), TailerError> {
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_is_in_recovery(), \
                    pg_catalog.current_setting('hot_standby_feedback')",
            &[],
        )
        .await
        .map_err(|e| TailerError::postgres("reading pg_is_in_recovery()", e))?;
    if !row.get::<_, bool>(0) {
        return Ok(());
    }
    if major < 16 {
        return Err(TailerError::Database(format!(
            "PostgreSQL {major} cannot decode on a standby (logical decoding on standbys \
             arrived in 16): point --postgres at the primary, or upgrade to 16 or later"
        )));
    }
    if row.get::<_, String>(1) != "on" {
        tracing::warn!(
            "decoding on a standby without hot_standby_feedback: the primary may remove rows \
             the slot needs and invalidate it (rows_removed); set hot_standby_feedback = on and \
             a primary_slot_name on the standby"
        );
    }
    Ok(())
}

/// The columns of the outbox table the tailer reads, as configured.
fn read_columns(route: &RouteConfig) -> Vec<&str> {
    let mut cols = vec![
        route.id_column.as_str(),
        route.route_by.as_str(),
        route.key_column.as_str(),
        route.type_column.as_str(),
        route.payload_column.as_str(),
        route.headers_column.as_str(),
    ];
    cols.extend(route.header_columns.iter().map(|(c, _)| c.as_str()));
    cols
}

/// Refuse an outbox table whose columns the tailer reads are generated columns logical
/// replication would not publish (the events would arrive without them).
pub async fn check_generated_columns(
    client: &Client,
    source: &SourceConfig,
    route: &RouteConfig,
) -> Result<(), TailerError> {
    let major = check_version(client).await?;
    let t = &source.table;
    let rows = client
        .query(
            "SELECT a.attname::text, a.attgenerated::text FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 \
             AND NOT a.attisdropped AND a.attgenerated <> ''",
            &[&t.schema, &t.name],
        )
        .await
        .map_err(|e| TailerError::postgres("reading the outbox table's columns", e))?;
    let read = read_columns(route);
    let generated: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
        .filter(|(name, _)| read.contains(&name.as_str()))
        .collect();
    if generated.is_empty() {
        return Ok(());
    }
    let publishes_stored = major >= 18 && publishes_stored_columns(client, source).await?;
    for (column, kind) in generated {
        let fix = match (kind.as_str(), major) {
            ("v", _) => format!(
                "{column} of {t} is a VIRTUAL generated column, which logical replication never \
                 publishes: make it STORED (and set publish_generated_columns = stored on the \
                 publication), or a plain column the writer fills"
            ),
            (_, m) if m < 18 => format!(
                "{column} of {t} is a generated column, which PostgreSQL {m} does not publish \
                 to logical replication (18 can, with publish_generated_columns = stored): \
                 make it a plain column the writer fills"
            ),
            _ if publishes_stored => continue,
            _ => format!(
                "{column} of {t} is a STORED generated column, which publication {p} does not \
                 publish: ALTER PUBLICATION {q} SET (publish_generated_columns = stored)",
                p = source.publication,
                q = quote_ident(&source.publication)
            ),
        };
        return Err(TailerError::Database(fix));
    }
    Ok(())
}

async fn publishes_stored_columns(
    client: &Client,
    source: &SourceConfig,
) -> Result<bool, TailerError> {
    let row = client
        .query_opt(
            "SELECT pubgencols::text FROM pg_catalog.pg_publication WHERE pubname = $1",
            &[&source.publication],
        )
        .await
        .map_err(|e| TailerError::postgres("reading publish_generated_columns", e))?;
    Ok(row.is_some_and(|r| r.get::<_, String>(0) == "s"))
}
