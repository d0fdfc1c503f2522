//! Errors of the tailer, sorted by what the operator should do about them.
//!
//! Every error maps to one [`Action`], and each action has its own exit code, so systemd units
//! and Kubernetes probes can script on it (`docs/operations.md` has the table):
//!
//! | action | exit | examples |
//! |---|---|---|
//! | fix the configuration | 2 | a bad flag, a wrong password, a TLS or SASL mismatch |
//! | fix the database | 3 | `wal_level`, a missing publication or slot, a missing grant |
//! | operator recovery | 4 | an invalidated slot, a row or record that cannot be delivered |
//! | retry | 5 | PostgreSQL or the broker away longer than a command waits |
//! | report a bug | 70 | an internal invariant broken, a protocol message out of place |
//!
//! `run` retries the transient ones (connection loss, a slot still held by a dying walsender)
//! by itself with backoff; none of the others is ever skipped silently.

use pgoutput::DecodeError;

/// What the operator should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing: it goes away by itself (or running the command again helps).
    Retry,
    /// Fix flags, environment, the file, credentials or certificates.
    FixConfig,
    /// Fix PostgreSQL: grants, the publication, the slot, `wal_level`.
    FixDatabase,
    /// Follow a recovery procedure in `docs/operations.md`.
    Recover,
    /// Report it: the tailer broke one of its own rules.
    ReportBug,
}

impl Action {
    /// The process exit code of an error with this action.
    pub fn exit_code(self) -> u8 {
        match self {
            Action::FixConfig => 2,
            Action::FixDatabase => 3,
            Action::Recover => 4,
            Action::Retry => 5,
            Action::ReportBug => 70,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TailerError {
    // Fix the configuration.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A connection was refused for a reason the configuration controls (credentials, TLS,
    /// SASL, the database name); the message says what to check.
    #[error("{0}")]
    Refused(String),

    // Fix the database.
    /// The database is not set up for tailing; the message says how to fix it.
    #[error("{0}")]
    Database(String),

    // Operator recovery.
    /// The slot was invalidated; the message holds the recovery steps.
    #[error("{0}")]
    SlotInvalidated(String),

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

    /// `replay` was asked for a range no slot holds any more; the message lists the options.
    #[error("{0}")]
    NotRetained(String),

    /// Kafka refused a record for good (not a retriable outage).
    #[error("kafka refused a record for topic {topic}: {reason}")]
    Delivery { topic: String, reason: String },

    // Retry.
    /// PostgreSQL cannot be reached right now (down, starting up, too many connections).
    #[error("{0}")]
    Unreachable(String),

    /// Shutdown was requested while waiting for the broker or the database.
    #[error("interrupted by shutdown: {0}")]
    Interrupted(String),

    // Sorted by what the server said.
    /// PostgreSQL refused or ended the replication stream.
    #[error("replication stream: {message}")]
    Replication {
        message: String,
        sqlstate: Option<String>,
        action: Action,
    },

    #[error("postgres: {context}: {source}")]
    Postgres {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    /// A Kafka transaction (`--exactly-once`) failed; `retry_here` when aborting it and
    /// sending again from the last commit can succeed within this process.
    #[error("{message}")]
    Transaction {
        message: String,
        action: Action,
        retry_here: bool,
    },

    #[error("kafka: {context}: {source}")]
    Kafka {
        context: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },

    // Report a bug.
    /// A pgoutput message the decoder cannot read: the server and the tailer disagree on
    /// the protocol.
    #[error("cannot decode a pgoutput message: {0}; this is a bug, please report it")]
    Decode(#[from] DecodeError),

    /// An internal invariant was broken.
    #[error("{0}; this is a bug, please report it")]
    Bug(String),
}

impl TailerError {
    /// What the operator should do.
    pub fn action(&self) -> Action {
        match self {
            TailerError::Config(_) | TailerError::Refused(_) => Action::FixConfig,
            TailerError::Database(_) => Action::FixDatabase,
            TailerError::SlotInvalidated(_)
            | TailerError::Unroutable { .. }
            | TailerError::NotRetained(_)
            | TailerError::Delivery { .. } => Action::Recover,
            TailerError::Unreachable(_) | TailerError::Interrupted(_) => Action::Retry,
            TailerError::Replication { action, .. } | TailerError::Transaction { action, .. } => {
                *action
            }
            TailerError::Postgres { source, .. } => {
                sqlstate_action(source.code().map(|c| c.code()))
            }
            // Creating a client fails on options it does not understand.
            TailerError::Kafka { .. } => Action::FixConfig,
            TailerError::Decode(_) | TailerError::Bug(_) => Action::ReportBug,
        }
    }

    /// True when reconnecting after a backoff may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            // Handled where it happens: it stops, it is not retried.
            TailerError::Interrupted(_) => false,
            TailerError::Transaction { retry_here, .. } => *retry_here,
            other => other.action() == Action::Retry,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        self.action().exit_code()
    }

    /// A label for the `outbox_tailer_errors_total{kind}` metric.
    /// The SQLSTATE the server answered with, when the error carries one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            TailerError::Replication { sqlstate, .. } => sqlstate.as_deref(),
            TailerError::Postgres { source, .. } => source.code().map(|c| c.code()),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            TailerError::Config(_) => "config",
            TailerError::Refused(_) => "refused",
            TailerError::Database(_) => "database",
            TailerError::SlotInvalidated(_) => "slot_invalidated",
            TailerError::Unroutable { .. } => "unroutable",
            TailerError::NotRetained(_) => "not_retained",
            TailerError::Delivery { .. } => "delivery",
            TailerError::Unreachable(_) => "unreachable",
            TailerError::Interrupted(_) => "interrupted",
            TailerError::Replication { .. } => "replication",
            TailerError::Postgres { .. } => "postgres",
            TailerError::Transaction { .. } => "transaction",
            TailerError::Kafka { .. } => "kafka",
            TailerError::Decode(_) => "decode",
            TailerError::Bug(_) => "bug",
        }
    }

    pub(crate) fn postgres(context: &'static str, source: tokio_postgres::Error) -> Self {
        TailerError::Postgres { context, source }
    }
}

/// What a SQLSTATE asks of the operator; no code at all means the connection broke.
pub fn sqlstate_action(code: Option<&str>) -> Action {
    match code {
        // Connection lost or refused, shutting down, starting up, too many connections, slot
        // held by a walsender that is going away.
        None
        | Some("57P01" | "57P02" | "57P03" | "55006" | "53300" | "08000" | "08001" | "08003")
        | Some("08004" | "08006") => Action::Retry,
        // Authentication, unknown database.
        Some("28000" | "28P01" | "3D000") => Action::FixConfig,
        // Object not in prerequisite state: an invalidated slot.
        Some("55000") => Action::Recover,
        // Internal error in the server or the protocol.
        Some("XX000" | "08P01") => Action::ReportBug,
        // Privileges, missing objects, options the server rejects.
        Some(_) => Action::FixDatabase,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_action_has_its_own_exit_code() {
        let actions = [
            Action::Retry,
            Action::FixConfig,
            Action::FixDatabase,
            Action::Recover,
            Action::ReportBug,
        ];
        let codes: std::collections::BTreeSet<u8> = actions.iter().map(|a| a.exit_code()).collect();
        assert_eq!(codes.len(), actions.len());
        assert!(!codes.contains(&0) && !codes.contains(&1), "{codes:?}");
    }

    #[test]
    fn sqlstates_sort_by_action() {
        assert_eq!(sqlstate_action(None), Action::Retry);
        assert_eq!(sqlstate_action(Some("08001")), Action::Retry);
        assert_eq!(sqlstate_action(Some("55006")), Action::Retry);
        assert_eq!(sqlstate_action(Some("28P01")), Action::FixConfig);
        assert_eq!(sqlstate_action(Some("42501")), Action::FixDatabase);
        assert_eq!(sqlstate_action(Some("55000")), Action::Recover);
    }

    #[test]
    fn internal_errors_say_bug_and_are_never_preflight() {
        let e = TailerError::Bug("publish outside a transaction".into());
        assert_eq!(e.action(), Action::ReportBug);
        assert_eq!(e.exit_code(), 70);
        assert!(e.to_string().contains("this is a bug"), "{e}");
    }
}
