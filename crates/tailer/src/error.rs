//! Errors of the tailer, sorted by what to do about them.
//!
//! Transient errors (connection loss, a slot still held by a dying walsender, a broker that is
//! away) are retried with backoff. Everything else stops the tailer with a non-zero exit and a
//! message that says what to do; none is ever skipped silently.

use pgoutput::DecodeError;

/// What went wrong, and whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum TailerError {
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The database is not set up for tailing; the message says how to fix it.
    #[error("{0}")]
    Preflight(String),

    /// PostgreSQL cannot be reached right now (down, starting up, too many connections).
    #[error("{0}")]
    Unreachable(String),

    /// PostgreSQL refused or ended the replication stream.
    #[error("replication stream: {message}")]
    Replication {
        message: String,
        sqlstate: Option<String>,
        transient: bool,
    },

    #[error("postgres: {context}: {source}")]
    Postgres {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("cannot decode a pgoutput message: {0}")]
    Decode(#[from] DecodeError),

    /// An outbox row that cannot become a Kafka record, and no dead-letter topic is configured.
    #[error(
        "unroutable outbox row (event id {event_id}, commit LSN {commit_lsn}): {reason}. \
             Fix the row's producer, or set `dead_letter_topic` to park such rows; the tailer \
             stopped without confirming it, so nothing was skipped"
    )]
    Unroutable {
        event_id: String,
        commit_lsn: String,
        reason: String,
    },

    /// Kafka refused a record for good (not a retriable outage).
    #[error("kafka refused a record for topic {topic}: {reason}")]
    Delivery { topic: String, reason: String },

    /// Shutdown was requested while waiting for the broker.
    #[error("interrupted by shutdown while waiting for the broker")]
    Interrupted,

    /// The slot watchdog found the slot invalidated; the message holds the recovery steps.
    #[error("{0}")]
    SlotInvalidated(String),

    #[error("kafka: {context}: {source}")]
    Kafka {
        context: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

impl TailerError {
    /// True when reconnecting after a backoff may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            TailerError::Replication { transient, .. } => *transient,
            TailerError::Postgres { source, .. } => postgres_is_transient(source),
            TailerError::Unreachable(_) => true,
            _ => false,
        }
    }

    /// A label for the `outbox_tailer_errors_total{kind}` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            TailerError::Config(_) => "config",
            TailerError::Preflight(_) => "preflight",
            TailerError::Unreachable(_) => "unreachable",
            TailerError::Replication { .. } => "replication",
            TailerError::Postgres { .. } => "postgres",
            TailerError::Decode(_) => "decode",
            TailerError::Unroutable { .. } => "unroutable",
            TailerError::Delivery { .. } => "delivery",
            TailerError::Interrupted => "interrupted",
            TailerError::SlotInvalidated(_) => "slot_invalidated",
            TailerError::Kafka { .. } => "kafka",
        }
    }

    pub(crate) fn postgres(context: &'static str, source: tokio_postgres::Error) -> Self {
        TailerError::Postgres { context, source }
    }

    /// Classify an error of the replication client, with advice for the fatal kinds.
    pub(crate) fn from_replication(err: pgwire_replication::PgWireError, slot: &str) -> Self {
        use pgwire_replication::PgWireError as E;
        let text = err.to_string();
        let sqlstate = sqlstate_in(&text);
        let (transient, advice) = match (&err, sqlstate.as_deref()) {
            (E::Io(_) | E::Task(_), _) => (true, None),
            // `recv` raced with another branch after the worker ended: the connection is gone.
            (E::Internal(m), _) if m.contains("already joined") => (true, None),
            // pg_hba.conf refused a connection without TLS (hostssl only).
            (E::Auth(_), _) | (_, Some("28000")) if crate::tls::advice(&text).is_some() => {
                (false, crate::tls::advice(&text))
            }
            (E::Auth(_), _) | (_, Some("28000" | "28P01")) => (
                false,
                Some("check the user and password in `postgres`, and pg_hba.conf on the server"),
            ),
            (E::Tls(_), _) => (
                false,
                Some(crate::tls::advice(&text).unwrap_or(
                    "check sslmode, sslrootcert and the server's certificate",
                )),
            ),

            (_, Some("57P01" | "57P02" | "57P03" | "55006" | "53300" | "08006" | "08003")) => {
                (true, None)
            }
            (_, Some("42704")) if text.contains("publication") => (
                false,
                Some(
                    "the publication is missing or was created after the slot: run \
                     `outbox-tailer setup`; if the slot predates the publication, drop and \
                     recreate the slot (a gap: see docs/operations.md)",
                ),
            ),
            (_, Some("42704")) => (
                false,
                Some("the replication slot does not exist: run `outbox-tailer setup` (or `run --create-slot` on first start); a new slot starts at the current WAL position"),
            ),
            (_, Some("55000")) => (
                false,
                Some("the slot was invalidated (WAL it needed was removed, e.g. by max_slot_wal_keep_size); events committed while it was invalid may be missing: follow the recovery steps in docs/operations.md"),
            ),
            (_, Some("0A000" | "22023" | "42601" | "XX000")) => (
                false,
                Some("the server rejected the replication options: PostgreSQL 14 or newer with wal_level=logical is required"),
            ),
            (_, Some("42501")) => (
                false,
                Some("the role lacks the REPLICATION attribute: ALTER ROLE … REPLICATION"),
            ),
            _ => (false, None),
        };
        let message = match advice {
            Some(advice) => format!("{text} (slot {slot}): {advice}"),
            None => text,
        };
        TailerError::Replication {
            message,
            sqlstate,
            transient,
        }
    }
}

fn postgres_is_transient(err: &tokio_postgres::Error) -> bool {
    match err.code() {
        None => true,
        Some(code) => matches!(
            code.code(),
            "57P01" | "57P02" | "57P03" | "55006" | "53300" | "08006" | "08003" | "08001"
        ),
    }
}

/// The `SQLSTATE xxxxx` code pgwire-replication puts into server error messages.
fn sqlstate_in(text: &str) -> Option<String> {
    let at = text.find("SQLSTATE ")? + "SQLSTATE ".len();
    let code: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (code.len() == 5).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwire_replication::PgWireError;

    #[test]
    fn sqlstate_is_found_in_server_text() {
        assert_eq!(
            sqlstate_in("ERROR: replication slot \"x\" does not exist (SQLSTATE 42704)").as_deref(),
            Some("42704")
        );
        assert_eq!(sqlstate_in("no code here"), None);
    }

    #[test]
    fn missing_slot_is_fatal_and_says_what_to_do() {
        let e = TailerError::from_replication(
            PgWireError::Server("replication slot \"s\" does not exist (SQLSTATE 42704)".into()),
            "s",
        );
        assert!(!e.is_transient());
        assert!(e.to_string().contains("outbox-tailer setup"), "{e}");
    }

    #[test]
    fn slot_held_by_another_pid_is_transient() {
        let e = TailerError::from_replication(
            PgWireError::Server(
                "replication slot \"s\" is active for PID 42 (SQLSTATE 55006)".into(),
            ),
            "s",
        );
        assert!(e.is_transient());
    }

    #[test]
    fn invalidated_slot_is_fatal() {
        let e = TailerError::from_replication(
            PgWireError::Server(
                "cannot read from logical replication slot \"s\" (SQLSTATE 55000)".into(),
            ),
            "s",
        );
        assert!(!e.is_transient());
        assert!(e.to_string().contains("invalidated"));
    }
}
