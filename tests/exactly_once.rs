//! `run --exactly-once`: Kafka transactions around whole PostgreSQL transactions.
//!
//! On librdkafka's mock cluster, which accepts the transaction APIs (it neither fences an older
//! producer nor hides aborted records, so those two are covered by injected errors and by the
//! pipeline's unit tests), and on tansu, which has no transactions and must be refused at start.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use outbox_testkit::{consume_until, read_to_end};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use support::crash::*;
use support::*;

const TOPIC: &str = "outbox.event.order";

fn run_on_mock(env: &Env, mock: &outbox_testkit::MockKafka, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["run", "--postgres", &env.db.conn_str(), "--brokers"]
        .iter()
        .map(|s| s.to_string())
        .chain([mock.bootstrap_servers().to_owned()])
        .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_without_transactions_is_refused_at_start() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let before = env.confirmed_lsn().await?;
    let (code, _, stderr) = tailer_cli(&env.run_args(&["--exactly-once"])).await?;
    assert_eq!(code, Some(2), "a configuration error: {stderr}");
    assert!(
        stderr.contains("does not support transactions") && stderr.contains("EndTxn"),
        "{stderr}"
    );
    assert!(stderr.contains("Remove --exactly-once"), "{stderr}");
    assert_eq!(env.confirmed_lsn().await?, before, "nothing streamed");
    Ok(())
}

/// Twenty SIGKILLs mid-stream: every event is in the topic exactly once, each aggregate in
/// commit order. What a killed tailer left in an open Kafka transaction is aborted by the next
/// one's start (on Apache Kafka; the mock keeps it visible), and what a commit made visible
/// before the slot heard of it is skipped by idempotent resume. The topic is read uncommitted:
/// on the mock that shows every record ever written, aborted ones included, so "exactly once"
/// there is stricter than what a `read_committed` consumer sees; and a `read_committed` reader
/// of the mock can stall behind a killed producer's transaction, which the mock is slow to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_leave_every_event_exactly_once() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let mock = outbox_testkit::MockKafka::start_with_topics(1, &[(TOPIC, 3)])?;
    let args = run_on_mock(&env, &mock, &["--exactly-once"]);
    let writer = Writer::start(&env);
    let mut tailer = sigkill_cycles(&env, &args, &writer, 20, 20).await?;
    let ids = writer.finish().await?;
    // First the relay's progress: the slot is confirmed past the last write only after the
    // Kafka commit that holds it. Draining what twenty kills left behind is slow on two busy
    // cores, so this waits on progress (the tailer's log says why when it does not move);
    // then every event must already be in the topic.
    let written = env.current_wal_lsn().await?;
    if let Err(e) = wait_until(
        Duration::from_secs(300),
        "the tailer to confirm past the last write",
        || async { Ok(env.confirmed_lsn().await? >= written) },
    )
    .await
    {
        panic!("{e}\ntailer log:\n{}", tailer.stderr());
    }
    let records = read_to_end(mock.bootstrap_servers(), TOPIC, Duration::from_secs(60)).await?;
    let got: HashSet<&str> = records.iter().filter_map(|r| r.header("id")).collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !got.contains(id.as_str())).collect();
    assert!(
        missing.is_empty(),
        "{} of {} committed events are not in the topic although the slot was confirmed past \
         them: {:?}\ntailer log:\n{}",
        missing.len(),
        ids.len(),
        &missing[..missing.len().min(10)],
        tailer.stderr()
    );
    assert_per_aggregate_order(&records);
    let twice: Vec<String> = by_id(&records)
        .into_iter()
        .filter(|(_, copies)| copies.len() > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(
        twice.is_empty(),
        "{} of {} events seen more than once after 20 SIGKILLs: {:?}",
        twice.len(),
        ids.len(),
        &twice[..twice.len().min(10)]
    );
    let log = tailer.stderr();
    assert!(log.contains("Kafka transactions ready"), "{log}");
    // A clean stop commits the open Kafka transaction and confirms past the last event.
    let last_commit = records
        .iter()
        .map(|r| position_of(r).0)
        .max()
        .expect("records");
    let status = tailer.terminate()?;
    assert_eq!(status.code(), Some(0), "{}", tailer.stderr());
    let confirmed = env.confirmed_lsn().await?;
    assert!(
        confirmed > last_commit,
        "SIGTERM confirmed {confirmed}, the last event's commit is at {last_commit}"
    );
    Ok(())
}

/// The coordinator says another producer took the transactional.id over: the tailer stops at
/// once with a message naming the id and what to do, and confirms nothing past its last commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_tailer_stops_with_a_clear_message() -> anyhow::Result<()> {
    let env = env().await?;
    env.setup().await?;
    let mock = outbox_testkit::MockKafka::start_with_topics(1, &[(TOPIC, 1)])?;
    let args = run_on_mock(
        &env,
        &mock,
        &["--exactly-once", "--transactional-id", "orders-relay"],
    );
    let mut tailer = spawn_raw(&env, &args)?;
    let mut client = env.db.connect().await?;
    let tx = client.transaction().await?;
    emit(&tx, "order", "o-1", "Created", &serde_json::json!({"n": 1})).await?;
    tx.commit().await?;
    consume_until(
        mock.bootstrap_servers(),
        TOPIC,
        Duration::from_secs(30),
        |r| !r.is_empty(),
    )
    .await?;
    let committed = env.current_wal_lsn().await?;
    wait_until(
        Duration::from_secs(30),
        "the first commit to be confirmed",
        || async { Ok(env.confirmed_lsn().await? >= committed) },
    )
    .await?;

    mock.inject_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED],
    )?;
    let tx = client.transaction().await?;
    emit(&tx, "order", "o-1", "Paid", &serde_json::json!({"n": 2})).await?;
    tx.commit().await?;
    let second = env.current_wal_lsn().await?;
    let status = tailer.wait_exit(Duration::from_secs(60)).await?;
    let log = tailer.stderr();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("fenced") && log.contains("orders-relay"),
        "{log}"
    );
    assert!(log.contains("one tailer per slot"), "{log}");
    let confirmed = env.confirmed_lsn().await?;
    assert!(
        confirmed >= committed && confirmed < second,
        "confirmed {confirmed}: the first commit ({committed}) and not the fenced one ({second})"
    );
    Ok(())
}
