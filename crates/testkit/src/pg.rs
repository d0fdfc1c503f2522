//! A throwaway PostgreSQL cluster with logical decoding enabled.
//!
//! `initdb` runs into a temp directory, the server listens on a free port of 127.0.0.1 with a
//! Unix socket inside that directory, and `Drop` stops it (`immediate`) and removes the
//! directory, also when the owning test panics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context};
use tempfile::TempDir;
use tokio_postgres::{Client, NoTls};

use crate::net::free_port;
use crate::process::{as_postgres, hand_to_postgres, run_checked};

/// How to stop the server (`pg_ctl stop -m …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    Smart,
    Fast,
    Immediate,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// Settings of a test cluster beyond the defaults every cluster gets.
#[derive(Debug, Clone, Default)]
pub struct PgConfig {
    /// Extra `postgresql.conf` lines as `(name, value)`; values are written verbatim.
    pub settings: Vec<(String, String)>,
    /// Replaces the default `pg_hba.conf` (trust on the socket and on 127.0.0.1) when set.
    pub hba: Option<String>,
    /// Serve TLS (`ssl = on`) with this certificate.
    pub tls: Option<ServerCert>,
    /// Run this major whatever `OUTBOX_PG_VERSION` says (tests of one version's behaviour).
    pub major: Option<u32>,
}

/// A server certificate and its private key, PEM-encoded (tests generate them, e.g. with rcgen).
#[derive(Clone, Default)]
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
    /// CA whose client certificates the server accepts (`ssl_ca_file`, for `cert` rules in
    /// `pg_hba.conf`).
    pub client_ca_pem: Option<String>,
}

impl std::fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCert").finish_non_exhaustive()
    }
}

impl PgConfig {
    /// Add or override one `postgresql.conf` setting.
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Replace `pg_hba.conf` (e.g. `hostssl` or `scram-sha-256` rules).
    pub fn hba(mut self, hba: &str) -> Self {
        self.hba = Some(hba.to_owned());
        self
    }

    /// Serve TLS with `cert` (`ssl = on`); plain connections stay possible unless `hba` says
    /// `hostssl`.
    /// Run PostgreSQL `major` (installed by `scripts/install-postgres`).
    pub fn major(mut self, major: u32) -> Self {
        self.major = Some(major);
        self
    }

    pub fn tls(mut self, cert: ServerCert) -> Self {
        self.tls = Some(cert);
        self
    }
}

const BASE_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "'127.0.0.1'"),
    ("wal_level", "logical"),
    ("max_replication_slots", "32"),
    ("max_wal_senders", "32"),
    ("max_connections", "200"),
    ("max_prepared_transactions", "10"),
    ("wal_sender_timeout", "'10s'"),
    ("logical_decoding_work_mem", "'64kB'"),
    ("fsync", "off"),
    ("full_page_writes", "off"),
    ("log_replication_commands", "on"),
    ("log_min_messages", "warning"),
    ("shared_buffers", "'64MB'"),
];

const DEFAULT_HBA: &str = "\
local   all          all                 trust
host    all          all   127.0.0.1/32  trust
local   replication  all                 trust
host    replication  all   127.0.0.1/32  trust
";

/// A running (or stopped, restartable) PostgreSQL cluster owned by a test.
#[derive(Debug)]
pub struct PgCluster {
    pub(crate) bin: PathBuf,
    pub(crate) dir: TempDir,
    pub(crate) port: u16,
    pub(crate) running: bool,
}

impl PgCluster {
    /// Start a cluster with the default settings.
    pub async fn start() -> anyhow::Result<PgCluster> {
        PgCluster::start_with(PgConfig::default()).await
    }

    /// Start a cluster with extra settings.
    pub async fn start_with(config: PgConfig) -> anyhow::Result<PgCluster> {
        tokio::task::spawn_blocking(move || PgCluster::start_blocking(config))
            .await
            .context("cluster start task")?
    }

    /// Start a cluster from synchronous code (benchmarks, the demo's setup).
    pub fn start_blocking(config: PgConfig) -> anyhow::Result<PgCluster> {
        let bin = match config.major {
            Some(major) => pg_bin_of(major)?,
            None => find_pg_bin()?,
        };
        let dir = tempfile::Builder::new()
            .prefix("outbox-pg-")
            .tempdir()
            .context("creating the cluster's temp directory")?;
        hand_to_postgres(dir.path())?;
        let data = dir.path().join("data");
        run_checked(
            as_postgres(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8"])
                .args(["--locale=C", "-N"]),
            "initdb",
        )?;
        let mut conf = String::from("\n# outbox-testkit\n");
        conf.push_str(&format!(
            "unix_socket_directories = '{}'\n",
            dir.path().display()
        ));
        for (k, v) in BASE_SETTINGS {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        if let Some(cert) = &config.tls {
            write_private(&data.join("server.crt"), &cert.cert_pem)?;
            write_private(&data.join("server.key"), &cert.key_pem)?;
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            if let Some(ca) = &cert.client_ca_pem {
                write_private(&data.join("client-ca.crt"), ca)?;
                conf.push_str("ssl_ca_file = 'client-ca.crt'\n");
            }
        }
        for (k, v) in &config.settings {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        append(&data.join("postgresql.conf"), &conf)?;
        std::fs::write(
            data.join("pg_hba.conf"),
            config.hba.as_deref().unwrap_or(DEFAULT_HBA),
        )
        .context("writing pg_hba.conf")?;
        hand_to_postgres(dir.path())?;

        let mut cluster = PgCluster {
            bin,
            dir,
            port: 0,
            running: false,
        };
        cluster.start_on_a_free_port()?;
        Ok(cluster)
    }

    /// Start on a free port, trying another when one is taken meanwhile.
    pub(crate) fn start_on_a_free_port(&mut self) -> anyhow::Result<()> {
        let mut last_err = None;
        for _ in 0..5 {
            self.port = free_port().context("finding a free port")?;
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("PostgreSQL did not start")))
    }

    pub(crate) fn pg_ctl_start(&mut self) -> anyhow::Result<()> {
        let out = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-p {}", self.port))
            .arg("start")
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            bail!(
                "PostgreSQL did not start on port {}: {}\nserver log:\n{}",
                self.port,
                String::from_utf8_lossy(&out.stderr).trim(),
                self.server_log()
            );
        }
        self.running = true;
        Ok(())
    }

    /// Stop the server, keeping its data for [`PgCluster::start_again`].
    pub fn stop(&mut self, mode: StopMode) -> anyhow::Result<()> {
        if !self.running {
            return Ok(());
        }
        run_checked(
            as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .args(["-w", "-t", "60", "-m", mode.as_arg(), "stop"]),
            "pg_ctl stop",
        )?;
        self.running = false;
        Ok(())
    }

    /// Start a stopped server again on the same port and data.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.running {
            return Ok(());
        }
        self.pg_ctl_start()
    }

    /// Stop with `mode`, then start again.
    pub fn restart(&mut self, mode: StopMode) -> anyhow::Result<()> {
        self.stop(mode)?;
        self.start_again()
    }

    /// Change settings at run time (`ALTER SYSTEM` is avoided so the file stays the truth):
    /// appends to `postgresql.conf` and reloads.
    pub fn reconfigure(&self, settings: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut conf = String::new();
        for (k, v) in settings {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        append(&self.data_dir().join("postgresql.conf"), &conf)?;
        if self.running {
            run_checked(
                as_postgres(&self.bin.join("pg_ctl"))
                    .arg("-D")
                    .arg(self.data_dir())
                    .arg("reload"),
                "pg_ctl reload",
            )?;
        }
        Ok(())
    }

    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The server's major version (from `postgres --version`).
    pub fn major(&self) -> anyhow::Result<u32> {
        let out = Command::new(self.bin.join("postgres"))
            .arg("--version")
            .output()
            .context("postgres --version")?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "postgres (PostgreSQL) 17.10", or "… 15.18 (Debian 15.18-0+deb12u1)".
        text.split_whitespace()
            .skip_while(|w| *w != "(PostgreSQL)")
            .nth(1)
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse().ok())
            .with_context(|| format!("no major version in {text:?}"))
    }

    /// A client program (`pg_recvlogical`, `psql`, …) for this server: from its own bin
    /// directory, else the newest system installation (the npm builds ship the server only;
    /// the replication protocol lets an older client talk to a newer server).
    pub fn client_program(&self, name: &str) -> anyhow::Result<PathBuf> {
        let own = self.bin.join(name);
        if own.is_file() {
            return Ok(own);
        }
        let mut system: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let major = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                let program = e.path().join("bin").join(name);
                program.is_file().then_some((major, program))
            })
            .collect();
        system.sort();
        system.pop().map(|(_, p)| p).with_context(|| {
            format!(
                "no {name} beside {} or under /usr/lib/postgresql/*/bin: install the \
                 PostgreSQL client (apt-get install postgresql-client)",
                self.bin.display()
            )
        })
    }

    /// Directory holding the server binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory holding the Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server log so far (for failure messages).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A libpq-style connection string for `dbname` as the superuser `postgres`.
    pub fn conn_str(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={dbname}",
            self.host(),
            self.port
        )
    }

    /// A connection as `postgres` to `dbname`; the connection task runs on the current runtime.
    pub async fn connect(&self, dbname: &str) -> anyhow::Result<Client> {
        connect(&self.conn_str(dbname)).await
    }

    /// A new, empty database with a unique name.
    pub async fn create_database(&self) -> anyhow::Result<TestDb> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = self.connect("postgres").await?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("creating database {name}"))?;
        Ok(TestDb {
            name,
            host: self.host().to_owned(),
            port: self.port,
        })
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let postmaster = self.postmaster_pid();
            let _ = as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data_dir())
                .args(["-w", "-t", "30", "-m", "immediate", "stop"])
                .output();
            // pg_ctl returns once the pid file is gone; the process may take a moment longer.
            if let Some(pid) = postmaster {
                wait_gone(pid, std::time::Duration::from_secs(10));
            }
        }
    }
}

impl PgCluster {
    fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

/// Wait until `pid` has exited (or is a zombie waiting to be reaped), at most `within`.
fn wait_gone(pid: u32, within: std::time::Duration) {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(stat) => {
                let state = stat
                    .rsplit_once(')')
                    .map(|(_, r)| r.trim_start().chars().next());
                if matches!(state, Some(Some('Z' | 'X'))) {
                    return;
                }
            }
        }
        std::thread::yield_now();
    }
}

/// A database of a [`PgCluster`], unique to one test.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl TestDb {
    /// A libpq-style connection string as the superuser `postgres`.
    pub fn conn_str(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname={}",
            self.host, self.port, self.name
        )
    }

    /// A fresh connection; its connection task runs on the current runtime.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        connect(&self.conn_str()).await
    }
}

async fn connect(conn_str: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(conn_str, NoTls)
        .await
        .with_context(|| format!("connecting to {conn_str}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// PostgreSQL refuses a key file that others can read.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 600 {}", path.display()))
}

pub(crate) fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The major a test run asks for (`OUTBOX_PG_VERSION`), if any.
pub fn requested_major() -> anyhow::Result<Option<u32>> {
    match std::env::var("OUTBOX_PG_VERSION") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u32>()
            .map(Some)
            .with_context(|| format!("OUTBOX_PG_VERSION={v:?}: give a major, e.g. 17")),
        _ => Ok(None),
    }
}

/// Where `scripts/install-postgres` puts the binaries of each major: `OUTBOX_PG_CACHE`, else
/// `/var/cache/outbox-tailer/postgres` as root (the `postgres` user must read it), else
/// `~/.cache/outbox-tailer/postgres`.
pub fn pg_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OUTBOX_PG_CACHE") {
        return PathBuf::from(dir);
    }
    if crate::process::running_as_root() {
        return PathBuf::from("/var/cache/outbox-tailer/postgres");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    cache.join("outbox-tailer/postgres")
}

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() && dir.join("postgres").is_file()
}

/// The server binaries of `major`: the system's (`/usr/lib/postgresql/<major>/bin`), else those
/// `scripts/install-postgres` cached. Never downloads: a missing major is an error that says
/// how to install it.
pub fn pg_bin_of(major: u32) -> anyhow::Result<PathBuf> {
    let system = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    if has_server(&system) {
        return Ok(system);
    }
    let cached = pg_cache_dir().join(major.to_string()).join("bin");
    if has_server(&cached) {
        return Ok(cached);
    }
    bail!(
        "PostgreSQL {major} is not installed (looked in {} and {}): run \
         `scripts/install-postgres {major}` (the README's test command does), or unset \
         OUTBOX_PG_VERSION",
        system.display(),
        cached.display()
    )
}

/// The PostgreSQL server binaries: `PG_BIN`; else the major `OUTBOX_PG_VERSION` names; else
/// `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`.
pub(crate) fn find_pg_bin() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        let dir = PathBuf::from(dir);
        if has_server(&dir) {
            return Ok(dir);
        }
        bail!(
            "PG_BIN={} holds no initdb/pg_ctl: point PG_BIN at a PostgreSQL server bin directory",
            dir.display()
        );
    }
    if let Some(major) = requested_major()? {
        return pg_bin_of(major);
    }
    // The system's servers first (unless a test plays a machine without them), then the
    // newest major `scripts/install-postgres` put in the cache.
    let system = std::env::var_os(IGNORE_SYSTEM_ENV).is_none();
    if let Some(bin) = system.then(system_pg_bin).flatten() {
        return Ok(bin);
    }
    match newest_server_in(&pg_cache_dir()) {
        Some(bin) => Ok(bin),
        None => bail!(
            "no PostgreSQL server binaries found (initdb, pg_ctl): run \
             `scripts/install-postgres 17` (no root or npm needed), install the server package \
             (`apt-get install postgresql-15`), or set PG_BIN to their directory"
        ),
    }
}

/// Set to play a machine without system PostgreSQL (the testkit then looks only in the cache).
pub const IGNORE_SYSTEM_ENV: &str = "OUTBOX_PG_IGNORE_SYSTEM";

/// The newest server of the system's: `pg_config --bindir`, else `/usr/lib/postgresql/*/bin`.
fn system_pg_bin() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Some(dir);
        }
    }
    newest_server_in(Path::new("/usr/lib/postgresql"))
}

/// `<dir>/<major>/bin` of the newest major under `dir` that holds a server.
fn newest_server_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// A PostgreSQL server to run, installing `major` into the cache with the workspace's
/// `scripts/install-postgres` when the machine has none (and, as root, creating the
/// `postgres` user the servers run as, as the server package would). Returns what it did.
pub fn ensure_server(major: u32) -> anyhow::Result<Option<String>> {
    let mut did = Vec::new();
    if find_pg_bin().is_err() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-postgres");
        crate::process::run_checked(
            Command::new("bash").arg(&script).arg(major.to_string()),
            "scripts/install-postgres",
        )?;
        did.push(format!(
            "installed PostgreSQL {major} into {}",
            pg_cache_dir().display()
        ));
    }
    if crate::process::ensure_postgres_user()? {
        did.push("created the system user `postgres` the servers run as".into());
    }
    Ok((!did.is_empty()).then(|| did.join("; ")))
}
