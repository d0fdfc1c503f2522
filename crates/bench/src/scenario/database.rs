//! What the scenarios read from the cluster (WAL positions, slot lag, the outbox table's dead
//! tuples, autovacuum runs and published marks) and the reset of the outbox between pollers.

use crate::scenario::env::Env;

impl Env {
    pub(crate) async fn current_lsn(&self) -> anyhow::Result<String> {
        Ok(self
            .client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await?
            .get(0))
    }

    pub(super) async fn wal_since(&self, lsn: &str) -> anyhow::Result<i64> {
        Ok(self
            .client
            .query_one(
                "SELECT (pg_current_wal_lsn() - $1::text::pg_lsn)::bigint",
                &[&lsn],
            )
            .await?
            .get(0))
    }

    /// Bytes of WAL between the slot's confirmed position and now.
    pub(crate) async fn slot_lag(&self, slot: &str) -> anyhow::Result<i64> {
        Ok(self
            .client
            .query_one(
                "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?
            .get(0))
    }

    /// Dead tuples in the outbox table, counted by a scan (`pgstattuple`).
    pub(super) async fn dead_tuples(&self) -> anyhow::Result<i64> {
        Ok(self
            .client
            .query_one("SELECT dead_tuple_count FROM pgstattuple('outbox')", &[])
            .await?
            .get(0))
    }

    pub(super) async fn autovacuum_count(&self) -> anyhow::Result<i64> {
        Ok(self
            .client
            .query_one(
                "SELECT autovacuum_count FROM pg_stat_user_tables WHERE relname = 'outbox'",
                &[],
            )
            .await?
            .get(0))
    }

    /// The rows of the backlog unpublished again and the table vacuumed, so every poller starts
    /// from the same table a fresh backlog leaves.
    pub(super) async fn unpublish_all(&self) -> anyhow::Result<()> {
        self.client
            .batch_execute("UPDATE outbox SET published_at = NULL WHERE published_at IS NOT NULL")
            .await?;
        // VACUUM cannot share a batch (an implicit transaction) with another statement.
        self.client.batch_execute("VACUUM outbox").await?;
        Ok(())
    }

    /// Outbox rows marked published (by a poller).
    pub(super) async fn marked_rows(&self) -> anyhow::Result<i64> {
        Ok(self
            .client
            .query_one(
                "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL",
                &[],
            )
            .await?
            .get(0))
    }
}
