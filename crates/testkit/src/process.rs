//! Running helper commands, as the `postgres` user when we are root (initdb and postgres refuse
//! to run as root, and CI runs as root).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use anyhow::{bail, Context};

/// True when this process runs as root (the owner of `/proc/self` is our effective uid).
pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A command for `program`, wrapped in `runuser -u postgres --` when running as root.
pub fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// As root, make sure the `postgres` user exists (initdb and postgres refuse root); true when
/// it had to be created.
pub fn ensure_postgres_user() -> anyhow::Result<bool> {
    if !running_as_root() {
        return Ok(false);
    }
    let known = Command::new("id")
        .arg("postgres")
        .output()
        .is_ok_and(|o| o.status.success());
    if known {
        return Ok(false);
    }
    run_checked(
        Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "postgres",
        ]),
        "useradd postgres",
    )?;
    Ok(true)
}

/// Give `dir` to the `postgres` user when running as root, so the server may write there.
pub fn hand_to_postgres(dir: &Path) -> anyhow::Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let out = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .output()
        .context("running chown")?;
    if !out.status.success() {
        bail!(
            "chown postgres {} failed: {} (running as root needs a `postgres` user: install the \
             PostgreSQL server package, e.g. `apt-get install postgresql-15`)",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Run a command to completion and fail with its output when it exits non-zero.
pub fn run_checked(cmd: &mut Command, what: &str) -> anyhow::Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("could not run {what}: {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}
