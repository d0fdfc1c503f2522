//! A physical standby of a test cluster, made by a cold copy (the npm builds of PostgreSQL have
//! no `pg_basebackup`): the primary is stopped cleanly, its data directory copied without its
//! slots, and both are started, the copy in standby mode streaming through a physical slot.

use std::process::Command;

use anyhow::Context;

use crate::pg::{append, PgCluster, StopMode};
use crate::process::{hand_to_postgres, run_checked};

impl PgCluster {
    /// Start a physical standby of this cluster. `slot` must be a physical slot on this
    /// cluster (`pg_create_physical_replication_slot(slot, true)`, created before the call so
    /// it holds the WAL from the copy on); `settings` go into the standby's `postgresql.conf`
    /// (`hot_standby_feedback`, `sync_replication_slots`, …). The primary restarts meanwhile.
    pub fn start_standby(
        &mut self,
        slot: &str,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<PgCluster> {
        self.stop(StopMode::Fast)?;
        let dir = tempfile::Builder::new()
            .prefix("outbox-pg-")
            .tempdir()
            .context("creating the standby's temp directory")?;
        let data = dir.path().join("data");
        let copied = Command::new("cp")
            .arg("-a")
            .arg(self.data_dir())
            .arg(&data)
            .output()
            .context("copying the data directory")?;
        anyhow::ensure!(
            copied.status.success(),
            "copying the data directory: {}",
            String::from_utf8_lossy(&copied.stderr)
        );
        self.start_again()?;
        // The primary's slots are its own; a standby gets its own (or synchronised copies).
        for entry in std::fs::read_dir(data.join("pg_replslot"))? {
            std::fs::remove_dir_all(entry?.path())?;
        }
        for stale in ["postmaster.pid", "postmaster.opts"] {
            let _ = std::fs::remove_file(data.join(stale));
        }
        std::fs::write(data.join("standby.signal"), "").context("writing standby.signal")?;
        let mut conf = format!(
            "\n# outbox-testkit standby\nunix_socket_directories = '{}'\nhot_standby = on\n\
             primary_conninfo = 'host=127.0.0.1 port={} user=postgres dbname=postgres \
             application_name={slot}'\nprimary_slot_name = '{slot}'\n",
            dir.path().display(),
            self.port
        );
        for (k, v) in settings {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        append(&data.join("postgresql.conf"), &conf)?;
        hand_to_postgres(dir.path())?;
        let mut standby = PgCluster {
            bin: self.bin.clone(),
            dir,
            port: 0,
            running: false,
        };
        standby.start_on_a_free_port()?;
        Ok(standby)
    }

    /// Promote a standby to a primary (`pg_ctl promote`, waiting until it is done).
    pub fn promote(&self) -> anyhow::Result<()> {
        run_checked(
            crate::process::as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .args(["-w", "-t", "60", "promote"]),
            "pg_ctl promote",
        )?;
        Ok(())
    }
}
