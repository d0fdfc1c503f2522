//! `replay` and `run --start-lsn` against real PostgreSQL and tansu: a replayed range holds
//! exactly the events committed in it, the live tailer and its slot are not disturbed, and
//! skipping ahead skips exactly what lies before the LSN, loudly.

mod support;

use std::time::Duration;

use outbox_tailer::config::ReplayTarget;
use outbox_tailer::ops::replay::{replay, ReplayOptions};
use outbox_testkit::KafkaRecord;
use pgoutput::Lsn;
use serde_json::{json, Value};
use support::*;

const TOPIC: &str = "outbox.event.order";
const REPLAY_SLOT: &str = "outbox_replay";

/// `n` transactions of `per_txn` events each; the ids in commit order.
async fn write_txns(env: &Env, n: usize, per_txn: usize, tag: &str) -> anyhow::Result<Vec<String>> {
    let mut client = env.db.connect().await?;
    let mut ids = Vec::new();
    for t in 0..n {
        let tx = client.transaction().await?;
        for e in 0..per_txn {
            let aggregate = format!("{tag}-{t}");
            let id = emit(&tx, "order", &aggregate, "OrderCreated", &json!({"e": e})).await?;
            ids.push(id.to_string());
        }
        tx.commit().await?;
    }
    Ok(ids)
}

fn ids(records: &[KafkaRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.header("id").unwrap_or_default().to_owned())
        .collect()
}

fn commit_lsn(record: &KafkaRecord) -> Lsn {
    record
        .header("outbox-lsn")
        .expect("every record carries its commit LSN")
        .parse()
        .expect("the header is an LSN")
}

/// Everything on the topic once the record with id `last` arrived.
async fn consume_through(env: &Env, last: &str) -> anyhow::Result<Vec<KafkaRecord>> {
    let last = last.to_owned();
    outbox_testkit::consume_until(
        &env.broker.bootstrap_servers(),
        TOPIC,
        Duration::from_secs(120),
        move |r| r.iter().any(|r| r.header("id") == Some(last.as_str())),
    )
    .await
}

/// `outbox-tailer setup --replay-slot`: the replay window, as a copy of the live slot.
fn setup_with_replay_slot(env: &Env) -> Vec<String> {
    [
        "setup",
        "--postgres",
        &env.db.conn_str(),
        "--replay-slot",
        REPLAY_SLOT,
    ]
    .map(String::from)
    .to_vec()
}

fn replay_args(env: &Env, extra: &[&str]) -> Vec<String> {
    let mut args = env.run_args(&[]);
    args[0] = "replay".into();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_range_delivers_exactly_its_events_again_while_the_live_tailer_runs(
) -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let flags = [
        "--replay-slot",
        REPLAY_SLOT,
        "--replay-retention-secs",
        "3600",
    ];
    let tailer = spawn_in_process(env.config(&flags));
    let before = write_txns(&env, 2, 2, "a").await?;
    let range = write_txns(&env, 3, 2, "b").await?;
    let after = write_txns(&env, 2, 1, "c").await?;
    let live = consume_through(&env, after.last().unwrap()).await?;
    let expected: Vec<String> = [before.clone(), range.clone(), after.clone()].concat();
    assert_eq!(
        ids(&live),
        expected,
        "the live tailer published every event once, in order"
    );

    // The range: from the first to the last commit LSN of the middle batch, as an operator
    // reads them off the records' headers.
    let by_id = |id: &str| live.iter().find(|r| r.header("id") == Some(id)).unwrap();
    let from = commit_lsn(by_id(&range[0]));
    let to = commit_lsn(by_id(range.last().unwrap()));
    // The live slot has confirmed past the whole range: only the replay slot still holds it.
    let end = commit_lsn(by_id(after.last().unwrap()));
    wait_until(
        Duration::from_secs(30),
        "the live slot to confirm everything",
        || async { Ok(env.confirmed_lsn_of(SLOT).await? > end) },
    )
    .await?;
    let replay_slot_before = env.confirmed_lsn_of(REPLAY_SLOT).await?;
    assert!(
        replay_slot_before <= from,
        "the replay slot trails (retention 1 h)"
    );

    let config = env.config(&flags);
    let status = outbox_tailer::ops::status::status(&config.source, config.thresholds).await?;
    let window = status
        .replay_window
        .expect("status shows the replay window");
    assert_eq!(
        window.confirmed_flush_lsn,
        Some(replay_slot_before.to_string()),
        "status says how far back replay reaches"
    );
    assert!(window.retained_bytes.unwrap_or(0) > 0, "{window:?}");
    let opts = |target, dry_run| ReplayOptions {
        from,
        to: Some(to),
        target,
        dry_run,
        progress: false,
        // A few changes per SQL call, so the range is read across several calls.
        chunk_changes: 3,
    };
    let dry = replay(
        &config,
        &opts(ReplayTarget::Kafka, true),
        std::future::pending(),
    )
    .await?;
    assert_eq!((dry.events, dry.transactions), (6, 3), "{dry:?}");
    assert!(dry.dry_run && dry.complete);

    let summary = replay(
        &config,
        &opts(ReplayTarget::Kafka, false),
        std::future::pending(),
    )
    .await?;
    assert_eq!(summary.read_from_slot, REPLAY_SLOT);
    assert_eq!(
        (summary.events, summary.transactions),
        (6, 3),
        "{summary:?}"
    );
    assert_eq!(summary.events_by_topic.get(TOPIC), Some(&6));
    assert!(summary.complete);

    // The live tailer keeps running: a later event still arrives, after the replayed ones.
    let later = write_txns(&env, 1, 1, "d").await?;
    let all = consume_through(&env, &later[0]).await?;
    let expected_all: Vec<String> = [expected, range.clone(), later].concat();
    assert_eq!(
        ids(&all),
        expected_all,
        "the replay added exactly the range's events, in commit order, and the dry run nothing"
    );
    for (original, again) in live[4..10].iter().zip(&all[12..18]) {
        assert_eq!(original.key, again.key);
        assert_eq!(original.payload, again.payload);
        assert_eq!(
            original.headers, again.headers,
            "replayed records are identical"
        );
    }
    assert_eq!(
        env.confirmed_lsn_of(REPLAY_SLOT).await?,
        replay_slot_before,
        "replay read a temporary copy: the replay slot did not move"
    );
    let temp_slots: i64 = env
        .client
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'outbox_tailer_%'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(temp_slots, 0, "the temporary copy is gone");

    // Older than anything retained: refused, with the oldest replayable position.
    let err = replay(
        &config,
        &ReplayOptions {
            from: Lsn::new(1),
            to: None,
            target: ReplayTarget::Kafka,
            dry_run: false,
            progress: false,
            chunk_changes: 3,
        },
        std::future::pending(),
    )
    .await
    .expect_err("a range before every slot cannot be replayed");
    let message = err.to_string();
    assert!(message.contains("0/1 is no longer retained"), "{message}");
    assert!(
        message.contains(&format!("{replay_slot_before} (slot {REPLAY_SLOT}")),
        "{message}"
    );
    assert!(message.contains("--replay-retention-secs"), "{message}");

    let stats = tailer.stop().await?;
    assert_eq!(
        stats.events_published, 13,
        "the live tailer published each event once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_slot_trails_the_live_slot_by_the_retention() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let tailer = spawn_in_process(env.config(&[
        "--replay-slot",
        REPLAY_SLOT,
        "--replay-retention-secs",
        "1",
        "--slot-check-interval-ms",
        "100",
    ]));
    let written = write_txns(&env, 3, 1, "t").await?;
    let records = consume_through(&env, written.last().unwrap()).await?;
    let last = commit_lsn(records.last().unwrap());
    wait_until(
        Duration::from_secs(30),
        "the replay slot to move past the events",
        || async { Ok(env.confirmed_lsn_of(REPLAY_SLOT).await? > last) },
    )
    .await?;
    tailer.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_to_stdout_prints_the_waiting_events_and_leaves_the_slot() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    // No tailer runs: the events wait in the live slot, which replay copies.
    let from = env.confirmed_lsn_of(SLOT).await?;
    let written = write_txns(&env, 3, 1, "s").await?;
    let from_flag = from.to_string();
    let (code, out, err) = tailer_cli(&replay_args(
        &env,
        &["--from-lsn", &from_flag, "--to", "stdout"],
    ))
    .await?;
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let printed: Vec<&str> = lines
        .iter()
        .map(|l| l["headers"]["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(printed, written, "one JSON line per event, in commit order");
    assert_eq!(lines[0]["topic"], TOPIC);
    assert_eq!(lines[0]["key"], "s-0");
    assert_eq!(
        serde_json::from_str::<Value>(lines[0]["payload"].as_str().unwrap())?,
        json!({"e": 0})
    );
    assert!(
        err.contains("replayed 3 event(s) from 3 transaction(s)"),
        "{err}"
    );
    assert_eq!(
        env.confirmed_lsn_of(SLOT).await?,
        from,
        "the live slot did not move"
    );

    // `setup --replay-slot` creates the replay window ahead of `run`, as a copy of the slot.
    let setup = setup_with_replay_slot(&env);
    let (code, out, err) = tailer_cli(&setup).await?;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!(
            "created replay slot {REPLAY_SLOT} as a copy of {SLOT}"
        )),
        "{out}"
    );
    assert_eq!(env.confirmed_lsn_of(REPLAY_SLOT).await?, from);

    // Bad and out-of-range LSNs: a clear refusal, exit code 2.
    let (code, _, err) = tailer_cli(&replay_args(&env, &["--from-lsn", "zz/1"])).await?;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("invalid LSN \"zz/1\""), "{err}");
    let (code, _, err) = tailer_cli(&replay_args(&env, &["--from-lsn", "FF/0"])).await?;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("ahead of the server's current WAL position"),
        "{err}"
    );
    // A --to-lsn past the WAL would report a range as complete that was never read.
    let from_flag = from.to_string();
    let (code, _, err) = tailer_cli(&replay_args(
        &env,
        &["--from-lsn", &from_flag, "--to-lsn", "FF/0"],
    ))
    .await?;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--to-lsn FF/0 is ahead"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_start_lsn_skips_exactly_the_earlier_events_and_says_so() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    // The replay window exists before the skipped events: it holds them.
    let setup = setup_with_replay_slot(&env);
    let (code, _, err) = tailer_cli(&setup).await?;
    assert_eq!(code, Some(0), "{err}");
    let skipped = write_txns(&env, 2, 1, "old").await?;
    let start = env.current_wal_lsn().await?;
    let kept = write_txns(&env, 2, 1, "new").await?;
    let start_flag = start.to_string();

    // Without a replay slot that holds the range, and without --force: refused, nothing moves.
    let slot_before = env.confirmed_lsn_of(SLOT).await?;
    let (code, _, err) = tailer_cli(&env.run_args(&["--start-lsn", &start_flag])).await?;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no replay slot holds them") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        env.confirmed_lsn_of(SLOT).await?,
        slot_before,
        "the slot did not move"
    );

    let mut tailer =
        env.spawn_process(&["--replay-slot", REPLAY_SLOT, "--start-lsn", &start_flag])?;
    let records = consume_through(&env, kept.last().unwrap()).await?;
    assert_eq!(ids(&records), kept, "only what committed after --start-lsn");
    assert!(
        !ids(&records).iter().any(|id| skipped.contains(id)),
        "the skipped events are not published"
    );
    let stderr = tailer.stderr();
    assert!(stderr.contains("SKIPPING EVENTS"), "{stderr}");
    assert!(stderr.contains(&format!("to={start}")), "{stderr}");
    tailer.terminate()?;
    assert!(
        env.confirmed_lsn_of(SLOT).await? >= start,
        "the skip is durable"
    );

    // --force skips without a replay slot.
    let skipped = write_txns(&env, 2, 1, "old2").await?;
    let start = env.current_wal_lsn().await?.to_string();
    let kept2 = write_txns(&env, 1, 1, "new2").await?;
    let mut tailer = env.spawn_process(&["--start-lsn", &start, "--force"])?;
    let records = consume_through(&env, kept2.last().unwrap()).await?;
    assert!(
        !ids(&records).iter().any(|id| skipped.contains(id)),
        "the forced skip publishes nothing of the range"
    );
    assert!(tailer.stderr().contains("SKIPPING EVENTS"));
    tailer.terminate()?;
    Ok(())
}
