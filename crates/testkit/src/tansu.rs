//! A real Kafka-protocol broker for tests: the tansu binary on a free port of 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use tempfile::TempDir;

use crate::net::free_port;
use crate::{ServerCert, TlsFront};

/// The command that installs the pinned tansu version with the storage engines we use.
pub const TANSU_INSTALL: &str =
    "cargo install tansu --version 0.6.0 --locked --features dynostore,libsql";

/// Where the broker keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TansuStorage {
    /// Lost when the broker stops.
    Memory,
    /// A SQLite file in the broker's temp directory: survives [`TansuBroker::stop`] and
    /// [`TansuBroker::start_again`].
    Sqlite,
}

/// A running tansu broker, killed and cleaned up on drop.
#[derive(Debug)]
pub struct TansuBroker {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    storage: TansuStorage,
    /// `--authentication`: every client must log in with SASL (SCRAM credentials from storage).
    authentication: bool,
    /// `localhost:<port>` advertised instead of its own address (a [`TlsFront`] in front).
    advertised_port: Option<u16>,
    child: Option<Child>,
}

impl TansuBroker {
    /// Start a broker with memory storage.
    pub async fn start() -> anyhow::Result<TansuBroker> {
        TansuBroker::start_with(TansuStorage::Memory).await
    }

    /// True when a tansu binary can be found (`TANSU_BIN`, PATH, `~/.cargo/bin`).
    pub fn installed() -> bool {
        find_tansu().is_ok()
    }

    pub async fn start_with(storage: TansuStorage) -> anyhow::Result<TansuBroker> {
        tokio::task::spawn_blocking(move || TansuBroker::start_blocking(storage))
            .await
            .context("broker start task")?
    }

    /// Start a broker (memory storage) that requires SASL authentication of every client;
    /// returns once it accepts connections.
    pub async fn start_authenticating() -> anyhow::Result<TansuBroker> {
        tokio::task::spawn_blocking(|| TansuBroker::start_inner(TansuStorage::Memory, true))
            .await
            .context("broker start task")?
    }

    /// Start a broker from synchronous code; returns once it answers a metadata request.
    pub fn start_blocking(storage: TansuStorage) -> anyhow::Result<TansuBroker> {
        TansuBroker::start_inner(storage, false)
    }

    /// Start a broker (memory storage) that clients reach only through a [`TlsFront`] serving
    /// `cert` (whose names must include `localhost`): bootstrap `localhost:<front port>`,
    /// `security.protocol=SSL`. The broker advertises the front, so clients never see its
    /// plaintext port.
    pub async fn start_behind_tls(cert: ServerCert) -> anyhow::Result<(TansuBroker, TlsFront)> {
        tokio::task::spawn_blocking(move || {
            let front_port = free_port().context("finding a free port")?;
            let broker = TansuBroker::start_advertising(Some(front_port))?;
            let front = TlsFront::start(&cert, front_port, broker.port)?;
            Ok((broker, front))
        })
        .await
        .context("broker start task")?
    }

    fn start_inner(storage: TansuStorage, authentication: bool) -> anyhow::Result<TansuBroker> {
        TansuBroker::start_full(storage, authentication, None)
    }

    fn start_advertising(port: Option<u16>) -> anyhow::Result<TansuBroker> {
        TansuBroker::start_full(TansuStorage::Memory, false, port)
    }

    fn start_full(
        storage: TansuStorage,
        authentication: bool,
        advertised_port: Option<u16>,
    ) -> anyhow::Result<TansuBroker> {
        let bin = find_tansu()?;
        let dir = tempfile::Builder::new()
            .prefix("outbox-tansu-")
            .tempdir()
            .context("creating the broker's temp directory")?;
        let mut broker = TansuBroker {
            bin,
            dir,
            port: 0,
            storage,
            authentication,
            advertised_port,
            child: None,
        };
        let mut last_err = None;
        for _ in 0..5 {
            broker.port = free_port().context("finding a free port")?;
            match broker.spawn_and_wait() {
                Ok(()) => return Ok(broker),
                Err(e) => {
                    broker.kill();
                    last_err = Some(e)
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("tansu did not start")))
    }

    fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = match self.advertised_port {
            Some(port) => format!("tcp://localhost:{port}"),
            None => url.clone(),
        };
        let storage = match self.storage {
            TansuStorage::Memory => "memory://tansu/".to_owned(),
            TansuStorage::Sqlite => "sqlite://tansu.db".to_owned(),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the broker log")?;
        let child = Command::new(&self.bin)
            .current_dir(self.dir.path())
            .args(["broker", "--storage-engine", &storage])
            .args([
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(self.authentication.then_some("--authentication"))
            .env_remove("CLUSTER_ID")
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cloning the log handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30))?;
        if self.storage == TansuStorage::Sqlite {
            self.index_headers()?;
        }
        Ok(())
    }

    /// tansu 0.6's SQLite schema has no index on `header (topition, offset_id)`, so a fetch
    /// costs a scan of every stored header: 3,000 records with six headers each took 7.7 s to
    /// read back, 0.5 s with this index (measured here), and ~10k did not come back within
    /// 3 minutes. The index changes no data; the broker's statements re-prepare on the schema
    /// change.
    fn index_headers(&self) -> anyhow::Result<()> {
        let db = self.dir.path().join("tansu.db");
        let conn = rusqlite::Connection::open(&db)
            .with_context(|| format!("opening the broker's {}", db.display()))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.execute(
            "CREATE INDEX IF NOT EXISTS testkit_header_record ON header (topition, offset_id)",
            [],
        )
        .with_context(|| format!("indexing the headers in {}", db.display()))?;
        Ok(())
    }

    fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        if self.authentication {
            return self.wait_listening(within);
        }
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap_servers())
            .set("log_level", "0")
            .create()
            .context("creating a metadata client")?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "tansu exited ({status}) on port {}:\n{}",
                        self.port,
                        self.log()
                    );
                }
            }
            if consumer
                .fetch_metadata(None, Duration::from_millis(500))
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "tansu did not answer metadata within {within:?} on port {}:\n{}",
                    self.port,
                    self.log()
                );
            }
        }
    }

    /// Without credentials a metadata request is refused: wait until the port accepts.
    fn wait_listening(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .map(|c| c.try_wait())
                .transpose()?
                .flatten()
            {
                bail!(
                    "tansu exited ({status}) on port {}:\n{}",
                    self.port,
                    self.log()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "tansu did not listen within {within:?} on port {}:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("tansu.log")
    }

    /// The broker's output so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kill the broker (SIGKILL); with SQLite storage its records survive for `start_again`.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Start a stopped broker again on the same port and storage. Blocks until it answers
    /// metadata (a few seconds at most); from async code call it inside
    /// `tokio::task::block_in_place` on a multi-thread runtime.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        self.spawn_and_wait()
    }

    /// Require SASL authentication (`--authentication`) from the next `start_again` on; with
    /// SQLite storage, SCRAM credentials stored meanwhile survive the restart.
    pub fn set_authentication(&mut self, on: bool) {
        self.authentication = on;
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TansuBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The tansu binary: `TANSU_BIN`, else `tansu` on PATH, else `~/.cargo/bin/tansu`.
pub(crate) fn find_tansu() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "TANSU_BIN={} does not exist: install tansu with `{TANSU_INSTALL}`",
            path.display()
        );
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file());
    let in_cargo = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".cargo/bin/tansu"))
        .filter(|p| p.is_file());
    on_path.or(in_cargo).ok_or_else(|| {
        anyhow::anyhow!(
            "the tansu broker is not installed (looked at TANSU_BIN, PATH and ~/.cargo/bin): \
             install it with `{TANSU_INSTALL}`, or run scripts/test which does"
        )
    })
}
