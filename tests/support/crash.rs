//! What the crash suites share: a paced writer, the tailer binary run with exact arguments,
//! and checks of what a consumer read (duplicates by event id, per-aggregate order).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outbox_testkit::KafkaRecord;
use pgoutput::Lsn;
use serde_json::json;

use super::{emit, Env, TailerProcess, SLOT};

pub fn id_of(r: &KafkaRecord) -> String {
    r.header("id")
        .expect("record without an id header")
        .to_owned()
}

/// `(outbox-lsn, outbox-seq)` of a record.
pub fn position_of(r: &KafkaRecord) -> (Lsn, u32) {
    let lsn = r
        .header("outbox-lsn")
        .expect("record without outbox-lsn")
        .parse::<Lsn>()
        .expect("outbox-lsn parses");
    let seq = r
        .header("outbox-seq")
        .expect("record without outbox-seq")
        .parse::<u32>()
        .expect("outbox-seq parses");
    (lsn, seq)
}

/// The walsender serving the slot: its pid and `sent_lsn`, or `None` while the slot is inactive.
pub async fn walsender(env: &Env) -> anyhow::Result<Option<(i32, Option<Lsn>)>> {
    let row = env
        .client
        .query_opt(
            "SELECT s.active_pid, r.sent_lsn::text FROM pg_replication_slots s \
             LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid \
             WHERE s.slot_name = $1 AND s.active",
            &[&SLOT],
        )
        .await?;
    Ok(match row {
        None => None,
        Some(row) => {
            let pid: i32 = row.get(0);
            let sent: Option<String> = row.get(1);
            Some((pid, sent.map(|s| s.parse()).transpose()?))
        }
    })
}

/// The records of each event id, in partition/offset order.
pub fn by_id(records: &[KafkaRecord]) -> HashMap<String, Vec<&KafkaRecord>> {
    let mut map: HashMap<String, Vec<&KafkaRecord>> = HashMap::new();
    for r in records {
        map.entry(id_of(r)).or_default().push(r);
    }
    map
}

/// After removing duplicates (first occurrence wins), each aggregate's events are in
/// `(commit LSN, position in transaction)` order.
pub fn assert_per_aggregate_order(records: &[KafkaRecord]) {
    let mut seen = HashSet::new();
    let mut last: HashMap<(i32, Vec<u8>), (Lsn, u32)> = HashMap::new();
    for r in records {
        if !seen.insert(id_of(r)) {
            continue;
        }
        let key = (r.partition, r.key.clone().unwrap_or_default());
        let pos = position_of(r);
        if let Some(prev) = last.insert(key, pos) {
            assert!(
                prev < pos,
                "aggregate {:?}: event {} at {pos:?} comes after {prev:?} (offset {})",
                r.key_str(),
                id_of(r),
                r.offset
            );
        }
    }
}

/// A task that keeps committing transactions of three `order` events (seven aggregates) until
/// told to stop, paced so that a fault lands while transactions keep coming.
pub struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<anyhow::Result<Vec<String>>>,
}

impl Writer {
    pub fn start(env: &Env) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicUsize::new(0));
        let db = env.db.clone();
        let (s, w) = (stop.clone(), written.clone());
        let task = tokio::spawn(async move {
            let mut client = db.connect().await?;
            let mut ids = Vec::new();
            let mut t = 0usize;
            // Paces the load (about 200 transactions/s), so kills land mid-stream.
            let mut pace = tokio::time::interval(Duration::from_millis(5));
            while !s.load(Ordering::SeqCst) {
                pace.tick().await;
                let tx = client.transaction().await?;
                for k in 0..3 {
                    let n = t * 3 + k;
                    let agg = format!("agg-{}", n % 7);
                    let id = emit(&tx, "order", &agg, "Evt", &json!({"n": n})).await?;
                    ids.push(id.to_string());
                }
                tx.commit().await?;
                t += 1;
                w.store(t, Ordering::SeqCst);
            }
            anyhow::Ok(ids)
        });
        Writer {
            stop,
            written,
            task,
        }
    }

    /// Transactions committed so far.
    pub fn written(&self) -> usize {
        self.written.load(Ordering::SeqCst)
    }

    /// Stop writing; the ids of every committed event, in commit order.
    pub async fn finish(self) -> anyhow::Result<Vec<String>> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await?
    }
}

/// Run the tailer binary with exactly `args` (no fixture defaults), stderr to a log file.
pub fn spawn_raw(env: &Env, args: &[String]) -> anyhow::Result<TailerProcess> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let log = env.pg.socket_dir().join(format!(
        "tailer-raw-{}.log",
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_outbox-tailer-under-test"))
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("OUTBOX_POSTGRES_PASSWORD")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    Ok(TailerProcess { child, log })
}

/// `kills` times: wait until the writer committed `more` transactions and the slot moved,
/// SIGKILL the tailer, wait for the walsender to let the slot go, and start it again with
/// `args`. Returns the last tailer, still running.
pub async fn sigkill_cycles(
    env: &Env,
    args: &[String],
    writer: &Writer,
    kills: usize,
    more: usize,
) -> anyhow::Result<TailerProcess> {
    let mut tailer = spawn_raw(env, args)?;
    for _ in 0..kills {
        let before = env.confirmed_lsn().await?;
        let written = writer.written();
        super::wait_until(
            Duration::from_secs(60),
            "the tailer to confirm more events",
            || async {
                Ok(writer.written() >= written + more && env.confirmed_lsn().await? > before)
            },
        )
        .await?;
        tailer.kill();
        super::wait_until(
            Duration::from_secs(30),
            "the walsender to release the slot",
            || async { Ok(walsender(env).await?.is_none()) },
        )
        .await?;
        tailer = spawn_raw(env, args)?;
    }
    Ok(tailer)
}
