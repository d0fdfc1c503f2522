//! How `outbox-app` connects: exactly as `outbox-tailer` does (the same connection string, the
//! password from `--postgres-password`/`OUTBOX_POSTGRES_PASSWORD`, the same `sslmode`s and
//! certificates), so the commands of a quickstart work against the same server.

use outbox_tailer::config::describe_pg;
use outbox_tailer::pg::tls::parse_conn_str;
use tokio_postgres::Client;

use crate::error::{AppError, Result};

/// Where to connect: a libpq connection string (or URL) and an optional password that
/// overrides one in the string.
#[derive(Clone, Default)]
pub struct PgTarget {
    pub conn: String,
    pub password: Option<String>,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The string may hold a password too: show neither.
        f.debug_struct("PgTarget").finish_non_exhaustive()
    }
}

impl PgTarget {
    pub fn new(conn: impl Into<String>) -> PgTarget {
        PgTarget {
            conn: conn.into(),
            password: None,
        }
    }

    pub fn with_password(mut self, password: Option<String>) -> PgTarget {
        self.password = password;
        self
    }

    /// A connection, TLS as the string's `sslmode` says.
    pub async fn connect(&self) -> Result<Client> {
        let (mut pg, tls) = parse_conn_str(&self.conn).map_err(AppError::connect)?;
        if let Some(pw) = &self.password {
            pg.password(pw.as_bytes());
        }
        let client = outbox_tailer::pg::connect::connect_to(&pg, &tls)
            .await
            .map_err(AppError::connect)?;
        // Never the password: only where we are.
        tracing::info!(at = %describe_pg(&pg), "connected to PostgreSQL");
        Ok(client)
    }
}
