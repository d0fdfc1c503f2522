//! The pipeline with a transactional sink (`--exactly-once`): confirms wait for the Kafka
//! commit, commits fall between PostgreSQL transactions, and an abandoned or failed batch is
//! aborted and streamed again from the last commit.

use super::tests::{begin, commit, insert, relation, settle};
use super::*;
use crate::config::RouteConfig;
use crate::pg::names::TableName;
use crate::relay::scripted_source::ScriptedSource;
use crate::relay::sink::memory::MemorySink;

fn transactional(max_events: usize) -> Pipeline<MemorySink> {
    let (tx, rx) = mpsc::unbounded_channel();
    let route = RouteConfig::default();
    let decoder =
        EventDecoder::new(TableName::parse("public.outbox").unwrap(), route.clone()).unwrap();
    let sink = MemorySink::new(tx, true).transactional(max_events);
    let window = Window {
        max_events: 1000,
        max_bytes: u64::MAX,
    };
    Pipeline::new(
        decoder,
        Router::new(route).unwrap(),
        sink,
        rx,
        window,
        Lsn::ZERO,
    )
}

fn txn(sink: &MemorySink) -> &crate::relay::sink::memory::MemoryTxn {
    sink.txn.as_ref().expect("transactional sink")
}

#[tokio::test]
async fn acked_events_are_confirmed_only_after_the_kafka_commit() {
    let mut p = transactional(100);
    let mut source = ScriptedSource::default();
    source.events.extend([
        begin(100),
        relation(),
        insert(1),
        commit(200),
        SourceEvent::Keepalive {
            wal_end: Lsn::from(300),
        },
    ]);
    settle(&mut p, &mut source).await;
    assert_eq!(p.sink().records.len(), 1);
    assert!(source.confirmed.is_empty(), "acked but not committed");
    assert_eq!(p.durable(), Lsn::ZERO);

    p.settle(Some(&mut source)).await.expect("commit");
    assert_eq!(txn(p.sink()).commits, vec![1]);
    assert_eq!(source.confirmed, vec![Lsn::from(200)]);
    assert_eq!(p.durable(), Lsn::from(200));
}

#[tokio::test]
async fn a_full_batch_commits_between_postgres_transactions_only() {
    let mut p = transactional(2);
    let mut source = ScriptedSource::default();
    source.events.extend([
        begin(100),
        relation(),
        insert(1),
        insert(2),
        commit(200),
        begin(300),
        insert(3),
        insert(4),
        insert(5),
        commit(400),
        begin(500),
        insert(6),
        commit(600),
    ]);
    settle(&mut p, &mut source).await;
    // Full after the 2nd and the 4th record, but a commit waits for the PostgreSQL commit.
    assert_eq!(txn(p.sink()).commits, vec![2, 5]);
    assert_eq!(source.confirmed, vec![Lsn::from(200), Lsn::from(400)]);
    assert_eq!(
        p.durable(),
        Lsn::from(400),
        "the third is not committed yet"
    );
}

#[tokio::test]
async fn a_transaction_cut_by_a_disconnect_aborts_the_batch_and_rewinds() {
    let mut p = transactional(100);
    let mut source = ScriptedSource::default();
    source.events.extend([
        begin(100),
        relation(),
        insert(1),
        commit(200),
        begin(300),
        insert(2),
    ]);
    settle(&mut p, &mut source).await;
    assert_eq!(p.sink().records.len(), 2);
    p.reset_stream();
    p.settle(Some(&mut source)).await.expect("abort");
    assert_eq!(
        txn(p.sink()).aborts,
        1,
        "part of a transaction is never committed"
    );
    assert!(txn(p.sink()).commits.is_empty());
    assert!(source.confirmed.is_empty());
    assert_eq!(
        p.durable(),
        Lsn::ZERO,
        "streamed again from the last commit"
    );
    assert_eq!(p.in_flight(), 0);
}

#[tokio::test]
async fn a_failed_commit_aborts_and_rewinds_to_the_last_commit() {
    let mut p = transactional(1);
    let mut source = ScriptedSource::default();
    source
        .events
        .extend([begin(100), relation(), insert(1), commit(200)]);
    settle(&mut p, &mut source).await;
    assert_eq!(source.confirmed, vec![Lsn::from(200)]);

    p.sink_mut().txn.as_mut().unwrap().fail_next_commit = true;
    source.events.extend([begin(300), insert(2), commit(400)]);
    let mut stop = Shutdown::default();
    let err = p
        .stream(&mut source, &mut stop, Duration::from_secs(1))
        .await
        .expect_err("the commit fails");
    assert!(err.is_transient(), "{err}");
    p.reset_stream();
    p.settle(Some(&mut source)).await.expect("abort");
    assert_eq!(txn(p.sink()).aborts, 1);
    assert_eq!(p.durable(), Lsn::from(200));
    assert_eq!(source.confirmed, vec![Lsn::from(200)]);
}
