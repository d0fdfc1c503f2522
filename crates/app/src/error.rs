//! The crate's one error type, sorted by what a caller does about it: fix the input
//! (invalid identifier, configuration, headers), fix the migrations (changed or malformed
//! files), or look at the database (a [`tokio_postgres::Error`] kept as the source).

use std::path::PathBuf;

/// Everything that can go wrong in `outbox-app`.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A PostgreSQL call failed; `during` says which step.
    #[error("{during}")]
    Postgres {
        during: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    /// A table this program writes to does not exist yet.
    #[error("{during}: a table is missing; run `outbox-app migrate` first")]
    NotMigrated {
        during: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },

    /// A table name that is not a plain (optionally schema-qualified) SQL identifier.
    #[error(
        "invalid table name {name:?}: use `table` or `schema.table`, each part 1-63 \
         characters of letters, digits, `_` or `$`, not starting with a digit or `$`"
    )]
    InvalidIdentifier { name: String },

    /// Event headers must be a JSON object (or absent) so they can become record headers.
    #[error("event headers must be a JSON object or absent, got {kind}")]
    InvalidHeaders { kind: &'static str },

    /// The migrations directory could not be read.
    #[error("reading migrations from {path}")]
    ReadMigrations {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A `.sql` file in the migrations directory not named `NNNN_name.sql`.
    #[error("migration file {file} is not named NNNN_name.sql (a number, `_`, a name)")]
    MigrationName { file: String },

    /// Two migration files share a version number.
    #[error("migration files {first} and {second} share version {version}")]
    DuplicateMigration {
        version: i64,
        first: String,
        second: String,
    },

    /// An already-applied migration file was edited afterwards.
    #[error(
        "migration {file} was changed after it was applied (recorded checksum {recorded}, \
         file has {actual}): migrations are forward-only, put the change in a new file"
    )]
    ChecksumMismatch {
        file: String,
        recorded: String,
        actual: String,
    },

    /// A migration's SQL failed; nothing of it was applied.
    #[error("applying migration {file}")]
    MigrationFailed {
        file: String,
        #[source]
        source: tokio_postgres::Error,
    },

    /// Load generator or order settings that cannot work.
    #[error("invalid settings: {0}")]
    InvalidConfig(String),

    /// A duration such as `90s`, `2m` or `1h30m` was expected.
    #[error("invalid duration {0:?}: expected a number with a unit, e.g. 500ms, 2s, 1m30s, 1h")]
    InvalidDuration(String),

    /// The test hook of [`crate::orders::create_order`] fired after the order insert.
    #[error("injected failure after the order insert (the transaction was rolled back)")]
    InjectedFailure,

    /// No connection: the message says what to check (address, password, TLS settings).
    #[error("{0}")]
    Connect(String),

    /// A load generator worker task ended abnormally.
    #[error("load generator worker stopped unexpectedly")]
    WorkerPanicked(#[source] tokio::task::JoinError),
}

impl AppError {
    /// A failed connection, with the tailer's advice on what to check.
    pub(crate) fn connect(e: outbox_tailer::TailerError) -> AppError {
        AppError::Connect(e.to_string())
    }

    /// Wraps a PostgreSQL error with the step it happened in.
    pub(crate) fn pg(during: &'static str) -> impl FnOnce(tokio_postgres::Error) -> AppError {
        move |source| {
            if source.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) {
                AppError::NotMigrated { during, source }
            } else {
                AppError::Postgres { during, source }
            }
        }
    }
}

/// `Result` with [`AppError`].
pub type Result<T, E = AppError> = std::result::Result<T, E>;
