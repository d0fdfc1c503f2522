//! Forward-only SQL migrations, each applied exactly once.
//!
//! ```text
//!   for each NNNN_name.sql, in version order:
//!     BEGIN
//!       SELECT pg_advisory_xact_lock(K)     ← one migrator at a time, across processes
//!       already in outbox_app_migrations?   → same checksum: skip; different: error
//!       <the file's SQL>
//!       INSERT INTO outbox_app_migrations (version, name, checksum)
//!     COMMIT                                ← SQL and record together, or neither
//! ```
//!
//! Why it is safe twice and from two processes at once: the lock is taken in the same
//! transaction as the apply and the record, and the "already applied?" check runs after the
//! lock is granted (read committed, so it sees the other migrator's commit). A migration that
//! fails rolls back whole and stops the run. Files cannot use `BEGIN`/`COMMIT` or statements
//! that refuse to run in a transaction (`CREATE INDEX CONCURRENTLY`).
//!
//! Sources: [`embedded`] is the workspace's `migrations/` compiled into the binary (the CLI's
//! default, so it works from any directory); [`from_dir`] reads a directory at run time.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};
use tokio_postgres::{Client, IsolationLevel};
use tracing::{debug, info};

use crate::error::{AppError, Result};

/// The table recording applied migrations.
pub const TRACKING_TABLE: &str = "outbox_app_migrations";

/// The workspace's migrations directory as it was at compile time.
pub const DEFAULT_MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");

/// Advisory lock key shared by every `outbox-app migrate` ("outboxap" in ASCII).
const LOCK_KEY: i64 = 0x6f75_7462_6f78_6170;

const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/embedded_migrations.rs"));

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The leading number of the file name; migrations apply in this order.
    pub version: i64,
    /// The file name, e.g. `0002_outbox.sql`.
    pub file: String,
    pub sql: String,
}

impl Migration {
    /// SHA-256 of the file's bytes, hex: detects edits to applied migrations.
    pub fn checksum(&self) -> String {
        Sha256::digest(self.sql.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Files applied by this run, in order.
    pub applied: Vec<String>,
    /// Files found already applied (by an earlier run or a concurrent one).
    pub already_applied: Vec<String>,
}

/// The migrations compiled into this binary, in version order.
pub fn embedded() -> Vec<Migration> {
    from_files(
        EMBEDDED
            .iter()
            .map(|(file, sql)| ((*file).to_owned(), (*sql).to_owned())),
    )
    .expect("embedded migrations are checked by the test suite")
}

/// The `*.sql` files of `dir`, in version order; other files are ignored.
pub fn from_dir(dir: &Path) -> Result<Vec<Migration>> {
    let read_err = |source| AppError::ReadMigrations {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.extension().is_some_and(|x| x == "sql") && path.is_file() {
            let sql =
                std::fs::read_to_string(&path).map_err(|source| AppError::ReadMigrations {
                    path: path.clone(),
                    source,
                })?;
            let file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((file, sql));
        }
    }
    from_files(files)
}

/// Migrations from `(file name, SQL)` pairs: names must be `NNNN_name.sql`, versions unique.
pub fn from_files(files: impl IntoIterator<Item = (String, String)>) -> Result<Vec<Migration>> {
    let mut migrations = files
        .into_iter()
        .map(|(file, sql)| {
            let version = parse_version(&file)
                .ok_or_else(|| AppError::MigrationName { file: file.clone() })?;
            Ok(Migration { version, file, sql })
        })
        .collect::<Result<Vec<_>>>()?;
    migrations.sort_by(|a, b| (a.version, &a.file).cmp(&(b.version, &b.file)));
    if let Some(pair) = migrations.windows(2).find(|w| w[0].version == w[1].version) {
        return Err(AppError::DuplicateMigration {
            version: pair[0].version,
            first: pair[0].file.clone(),
            second: pair[1].file.clone(),
        });
    }
    Ok(migrations)
}

/// `0012_add_index.sql` → 12.
fn parse_version(file: &str) -> Option<i64> {
    let stem = file.strip_suffix(".sql")?;
    let (digits, name) = stem.split_once('_')?;
    if digits.is_empty() || name.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Applies the pending `migrations` in order, each in its own transaction.
///
/// Before applying anything, every already-applied file is compared with its recorded checksum,
/// so an edited migration stops the run before newer ones build on it.
pub async fn run(client: &mut Client, migrations: &[Migration]) -> Result<MigrationReport> {
    ensure_tracking_table(client).await?;
    let recorded: HashMap<i64, String> = client
        .query(
            &format!("SELECT version, checksum FROM {TRACKING_TABLE}"),
            &[],
        )
        .await
        .map_err(AppError::pg("reading applied migrations"))?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for migration in migrations {
        if let Some(checksum) = recorded.get(&migration.version) {
            check_unchanged(migration, checksum)?;
        }
    }

    let mut report = MigrationReport::default();
    for migration in migrations {
        if apply_one(client, migration).await? {
            info!(file = %migration.file, version = migration.version, "applied migration");
            report.applied.push(migration.file.clone());
        } else {
            debug!(file = %migration.file, "migration already applied");
            report.already_applied.push(migration.file.clone());
        }
    }
    Ok(report)
}

async fn ensure_tracking_table(client: &mut Client) -> Result<()> {
    let tx = locked_transaction(client).await?;
    // Under the lock: concurrent CREATE TABLE IF NOT EXISTS can otherwise fail on pg_type.
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} (
             version    bigint      PRIMARY KEY,
             name       text        NOT NULL,
             checksum   text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )"
    ))
    .await
    .map_err(AppError::pg("creating the migrations tracking table"))?;
    tx.commit()
        .await
        .map_err(AppError::pg("creating the migrations tracking table"))
}

/// Applies one migration unless recorded; `Ok(true)` when this call applied it.
async fn apply_one(client: &mut Client, migration: &Migration) -> Result<bool> {
    let tx = locked_transaction(client).await?;
    let recorded = tx
        .query_opt(
            &format!("SELECT checksum FROM {TRACKING_TABLE} WHERE version = $1"),
            &[&migration.version],
        )
        .await
        .map_err(AppError::pg("reading applied migrations"))?;
    if let Some(row) = recorded {
        check_unchanged(migration, &row.get::<_, String>(0))?;
        return Ok(false);
    }
    let failed = |source| AppError::MigrationFailed {
        file: migration.file.clone(),
        source,
    };
    tx.batch_execute(&migration.sql).await.map_err(failed)?;
    tx.execute(
        &format!("INSERT INTO {TRACKING_TABLE} (version, name, checksum) VALUES ($1, $2, $3)"),
        &[&migration.version, &migration.file, &migration.checksum()],
    )
    .await
    .map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(true)
}

/// A read-committed transaction holding the migrations lock, so every later statement sees
/// what the previous lock holder committed.
async fn locked_transaction(client: &mut Client) -> Result<tokio_postgres::Transaction<'_>> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(AppError::pg("starting a migration transaction"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(AppError::pg("taking the migrations lock"))?;
    Ok(tx)
}

fn check_unchanged(migration: &Migration, recorded: &str) -> Result<()> {
    let actual = migration.checksum();
    if actual == recorded {
        Ok(())
    } else {
        Err(AppError::ChecksumMismatch {
            file: migration.file.clone(),
            recorded: recorded.to_owned(),
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), format!("-- {n}")))
            .collect()
    }

    #[test]
    fn versions_come_from_file_names() {
        assert_eq!(parse_version("0001_orders.sql"), Some(1));
        assert_eq!(parse_version("12_add_index.sql"), Some(12));
        assert_eq!(parse_version("0003_two_words.sql"), Some(3));
        for bad in [
            "orders.sql",
            "0001.sql",
            "0001_.sql",
            "_orders.sql",
            "00a1_x.sql",
            "0001_orders.txt",
        ] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn migrations_sort_by_version_not_name() {
        let m = from_files(files(&["10_c.sql", "9_b.sql", "0001_a.sql"])).unwrap();
        let order: Vec<i64> = m.iter().map(|m| m.version).collect();
        assert_eq!(order, [1, 9, 10]);
    }

    #[test]
    fn duplicate_versions_and_bad_names_are_errors() {
        assert!(matches!(
            from_files(files(&["0001_a.sql", "1_b.sql"])),
            Err(AppError::DuplicateMigration { version: 1, .. })
        ));
        assert!(matches!(
            from_files(files(&["0001_a.sql", "notes.sql"])),
            Err(AppError::MigrationName { file }) if file == "notes.sql"
        ));
    }

    #[test]
    fn checksum_is_sha256_of_the_sql() {
        let m = Migration {
            version: 1,
            file: "0001_a.sql".into(),
            sql: "abc".into(),
        };
        assert_eq!(
            m.checksum(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn embedded_migrations_match_the_directory() {
        let embedded = embedded();
        let on_disk = from_dir(Path::new(DEFAULT_MIGRATIONS_DIR)).unwrap();
        assert_eq!(embedded, on_disk);
        let names: Vec<&str> = embedded.iter().map(|m| m.file.as_str()).collect();
        assert!(names.starts_with(&["0001_orders.sql", "0002_outbox.sql"]));
    }
}
