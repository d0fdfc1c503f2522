//! The one way the tailer opens a SQL connection to PostgreSQL: the connection string's TLS
//! settings applied, failures turned into an error that says what to check.

use tokio_postgres::Client;

use crate::config::{describe_pg, SourceConfig};
use crate::error::TailerError;
use crate::pg::tls::PgTls;

/// A SQL connection with the connection string's TLS settings (every SQL connection the tailer
/// makes goes through here).
pub async fn connect(config: &SourceConfig) -> Result<Client, TailerError> {
    connect_to(&config.pg, &config.tls).await
}

/// A SQL connection to `pg` with `tls` (sslmode and certificates): what the tailer's commands
/// use, and what other programs of the workspace (`outbox-app`) connect with, so a connection
/// string means the same to all of them.
pub async fn connect_to(
    pg: &tokio_postgres::Config,
    settings: &PgTls,
) -> Result<Client, TailerError> {
    let tls = settings.connector()?;
    let (client, conn) = pg.connect(tls).await.map_err(|e| {
        let text = server_text(&e);
        let tls_failure = crate::pg::tls::is_tls_failure(&e);
        let advice = match (e.code().map(|c| c.code()), crate::pg::tls::advice(&text)) {
            (_, Some(advice)) => advice,
            (Some("28P01") | Some("28000"), None) => {
                "authentication failed: check the user and password, and pg_hba.conf"
            }
            (Some("3D000"), None) => "the database does not exist: check dbname",
            (_, None) if tls_failure => "check sslmode, sslrootcert and the server's certificate",
            _ => "check that the server is up and the connection string is right",
        };
        let message = format!(
            "cannot connect to PostgreSQL at {}: {text}; {advice}",
            describe_pg(pg)
        );
        // No SQLSTATE: the server is not there (yet); 57P03: it is starting up; 53300: full.
        // A failed TLS handshake fails the same way next time: not worth waiting for.
        match e.code().map(|c| c.code()) {
            None | Some("57P03") | Some("53300") if !tls_failure => {
                TailerError::Unreachable(message)
            }
            _ => TailerError::Refused(message),
        }
    })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "admin connection ended");
        }
    });
    Ok(client)
}

/// The server's own message when there is one (tokio-postgres prints only "db error"), else
/// the error with its causes (a TLS failure says why only in its cause).
pub(crate) fn server_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_owned();
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}
