//! Shared fixtures of the end-to-end suites: a PostgreSQL cluster with the migrations applied,
//! a tansu broker, and ways to run the tailer in-process or as a process.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use outbox_tailer::config::{Command as TailerCommand, CommandLine, TailerConfig};
use outbox_tailer::{Stats, TailerError};
use outbox_testkit::{
    consume_until, KafkaRecord, PgCluster, PgConfig, TansuBroker, TansuStorage, TestDb,
};
use pgoutput::Lsn;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

pub mod crash;

pub const SLOT: &str = "outbox_slot";
pub const PUBLICATION: &str = "outbox_pub";

/// One test's services.
pub struct Env {
    pub pg: PgCluster,
    pub db: TestDb,
    pub broker: TansuBroker,
    pub client: Client,
}

pub async fn env() -> anyhow::Result<Env> {
    env_with(PgConfig::default(), TansuStorage::Memory).await
}

pub async fn env_with(pg_config: PgConfig, storage: TansuStorage) -> anyhow::Result<Env> {
    let (pg, broker) = tokio::try_join!(
        PgCluster::start_with(pg_config),
        TansuBroker::start_with(storage)
    )?;
    let db = pg.create_database().await?;
    let client = db.connect().await?;
    apply_migrations(&client).await?;
    Ok(Env {
        pg,
        db,
        broker,
        client,
    })
}

/// Apply `migrations/*.sql` in name order.
pub async fn apply_migrations(client: &Client) -> anyhow::Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "sql"))
    {
        client.batch_execute(&std::fs::read_to_string(f)?).await?;
    }
    Ok(())
}

impl Env {
    /// Flags for `outbox-tailer run` against this environment, plus `extra`.
    pub fn run_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--postgres".into(),
            self.db.conn_str(),
            "--brokers".into(),
            self.broker.bootstrap_servers(),
            "--create-topics".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// A resolved configuration for the in-process tailer.
    pub fn config(&self, extra: &[&str]) -> TailerConfig {
        let mut argv = vec!["outbox-tailer".to_string()];
        argv.extend(self.run_args(extra));
        match CommandLine::try_parse_from(argv)
            .expect("valid flags")
            .command
        {
            TailerCommand::Run(args) => args.resolve().expect("valid configuration"),
            _ => unreachable!(),
        }
    }

    /// `outbox-tailer setup`: publication, then slot.
    pub async fn setup(&self) -> anyhow::Result<()> {
        let config = self.config(&[]);
        outbox_tailer::pg::setup::setup(&config.source).await?;
        Ok(())
    }

    /// The tailer binary as a process, its stderr in a file next to the cluster's log.
    pub fn spawn_process(&self, extra: &[&str]) -> anyhow::Result<TailerProcess> {
        let log = self.pg.socket_dir().join(format!(
            "tailer-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_outbox-tailer-under-test"))
            .args(self.run_args(extra))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        Ok(TailerProcess { child, log })
    }

    /// The slot's `confirmed_flush_lsn`.
    pub async fn confirmed_lsn(&self) -> anyhow::Result<Lsn> {
        self.confirmed_lsn_of(SLOT).await
    }

    /// The slot's `wal_status` (`lost` once invalidated).
    pub async fn wal_status(&self) -> anyhow::Result<Option<String>> {
        Ok(self
            .client
            .query_one(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1",
                &[&SLOT],
            )
            .await?
            .get(0))
    }

    /// Write WAL in another table and force checkpoints until the slot is invalidated
    /// (`max_slot_wal_keep_size` must be small).
    pub async fn invalidate_slot(&self) -> anyhow::Result<()> {
        self.client
            .batch_execute("CREATE TABLE IF NOT EXISTS filler (id int, pad text)")
            .await?;
        wait_until(Duration::from_secs(120), "wal_status = lost", || async {
            if self.wal_status().await?.as_deref() == Some("lost") {
                return Ok(true);
            }
            self.client
                .batch_execute(
                    "INSERT INTO filler SELECT g, repeat('x', 1000) FROM generate_series(1, 2000) g; \
                     SELECT pg_switch_wal(); CHECKPOINT;",
                )
                .await?;
            Ok(false)
        })
        .await
    }

    /// The server's current WAL write position.
    pub async fn current_wal_lsn(&self) -> anyhow::Result<Lsn> {
        let row = self
            .client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await?;
        Ok(row.get::<_, String>(0).parse()?)
    }

    /// `confirmed_flush_lsn` of the slot named `slot`.
    pub async fn confirmed_lsn_of(&self, slot: &str) -> anyhow::Result<Lsn> {
        let row = self
            .client
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await?;
        Ok(row.get::<_, String>(0).parse()?)
    }

    /// Bytes of WAL between the slot's confirmed position and the current insert position.
    pub async fn slot_lag_bytes(&self) -> anyhow::Result<i64> {
        let row = self
            .client
            .query_one(
                "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $1",
                &[&SLOT],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Everything on `topic` once at least `n` records arrived.
    pub async fn consume(&self, topic: &str, n: usize) -> anyhow::Result<Vec<KafkaRecord>> {
        consume_until(
            &self.broker.bootstrap_servers(),
            topic,
            Duration::from_secs(120),
            move |r| r.len() >= n,
        )
        .await
    }
}

/// Insert one outbox row inside the caller's transaction; returns its id.
pub async fn emit(
    tx: &impl tokio_postgres::GenericClient,
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
    payload: &serde_json::Value,
) -> anyhow::Result<uuid::Uuid> {
    let id = uuid::Uuid::new_v4();
    tx.execute(
        "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) VALUES ($1, $2, $3, $4, $5)",
        &[&id, &aggregate_type, &aggregate_id, &event_type, payload],
    )
    .await?;
    Ok(id)
}

/// Commit `n` events of aggregate `key` in the `order` type, one per transaction, their
/// payloads numbered `{"n": from..}`; their ids.
pub async fn commit_events(
    client: &mut Client,
    key: &str,
    from: usize,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for i in from..from + n {
        let tx = client.transaction().await?;
        let id = emit(&tx, "order", key, "Created", &serde_json::json!({ "n": i })).await?;
        tx.commit().await?;
        ids.push(id.to_string());
    }
    Ok(ids)
}

/// Read `topic` until every event of `ids` is there (by its `id` header); what was read.
pub async fn consume_ids(
    bootstrap: &str,
    topic: &str,
    ids: &[String],
    within: Duration,
) -> anyhow::Result<Vec<outbox_testkit::KafkaRecord>> {
    let want = ids.to_vec();
    outbox_testkit::consume_until(bootstrap, topic, within, move |records| {
        want.iter()
            .all(|id| records.iter().any(|r| r.header("id") == Some(id.as_str())))
    })
    .await
}

/// The in-process tailer: `run` on a task, stopped through a oneshot.
pub struct InProcessTailer {
    pub handle: JoinHandle<Result<Stats, TailerError>>,
    stop: Option<oneshot::Sender<()>>,
}

pub fn spawn_in_process(config: TailerConfig) -> InProcessTailer {
    // The tailer's logs, shown by the test harness when a test fails (`RUST_LOG` filters).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(outbox_tailer::run(config, async move {
        let _ = rx.await;
    }));
    InProcessTailer {
        handle,
        stop: Some(tx),
    }
}

impl InProcessTailer {
    /// Request a clean stop and wait for the result.
    pub async fn stop(mut self) -> Result<Stats, TailerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle.await.expect("tailer task panicked")
    }
}

/// The tailer binary running as a child process.
pub struct TailerProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl TailerProcess {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        Ok(self.child.wait()?)
    }

    /// Wait for the process to exit on its own within `within`.
    pub async fn wait_exit(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "tailer still running after {within:?}:\n{}",
                self.stderr()
            );
            tick.tick().await;
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TailerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `<command> --postgres <env's database> <extra>`: the flags of an operator command.
pub fn db_args(env: &Env, command: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![command.to_owned(), "--postgres".into(), env.db.conn_str()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `outbox-tailer <args>` as a process, to its end; (exit code, stdout, stderr).
pub async fn tailer_cli(args: &[String]) -> anyhow::Result<(Option<i32>, String, String)> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_outbox-tailer-under-test"))
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .await?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Poll `check` until it returns true, failing after `within`.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + within;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tick.tick().await;
    }
}

/// GET `path` from `addr` with a bare HTTP/1.1 request; (status code, body).
pub async fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// The value of an unlabelled sample in a Prometheus text exposition.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

pub async fn scrape(addr: &str) -> anyhow::Result<String> {
    let (code, body) = http_get(addr, "/metrics").await?;
    anyhow::ensure!(code == 200, "/metrics answered {code}");
    Ok(body)
}
