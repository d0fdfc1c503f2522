use super::*;
use crate::config::RouteConfig;
use crate::pg::names::TableName;
use crate::relay::scripted_source::ScriptedSource;
use crate::relay::sink::memory::MemorySink;
use bytes::Bytes;
use pgoutput::encode::encode;
use pgoutput::{
    Column, Insert, Message, PgTimestamp, Relation, ReplicaIdentity, TupleData, TupleValue,
};

pub(super) fn relation() -> SourceEvent {
    let col = |name: &str, type_oid: u32| Column {
        flags: 0,
        name: name.into(),
        type_oid,
        type_modifier: -1,
    };
    SourceEvent::Data(encode(&Message::Relation(Relation {
        stream_xid: None,
        oid: 16385,
        namespace: "public".into(),
        name: "outbox".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: vec![
            col("id", 2950),
            col("aggregatetype", 25),
            col("aggregateid", 25),
            col("type", 25),
            col("payload", 3802),
        ],
    })))
}

pub(super) fn insert(n: u32) -> SourceEvent {
    let t = |s: String| TupleValue::Text(Bytes::from(s));
    SourceEvent::Data(encode(&Message::Insert(Insert {
        stream_xid: None,
        relation_oid: 16385,
        new: TupleData::new(vec![
            t(format!("00000000-0000-0000-0000-{n:012}")),
            t("order".into()),
            t(format!("o-{n}")),
            t("Created".into()),
            t(format!("{{\"n\":{n}}}")),
        ]),
    })))
}

pub(super) fn begin(lsn: u64) -> SourceEvent {
    SourceEvent::Begin {
        final_lsn: Lsn::from(lsn),
        xid: 7,
        commit_time: PgTimestamp::from_pg_micros(0),
    }
}

pub(super) fn commit(end: u64) -> SourceEvent {
    SourceEvent::Commit {
        commit_lsn: Lsn::from(end - 8),
        end_lsn: Lsn::from(end),
    }
}

pub(super) fn pipeline(max_events: u64) -> (Pipeline<MemorySink>, mpsc::UnboundedSender<Ack>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let route = RouteConfig::default();
    let decoder =
        EventDecoder::new(TableName::parse("public.outbox").unwrap(), route.clone()).unwrap();
    let sink = MemorySink::new(tx.clone(), false);
    let window = Window {
        max_events,
        max_bytes: u64::MAX,
    };
    (
        Pipeline::new(
            decoder,
            Router::new(route).unwrap(),
            sink,
            rx,
            window,
            Lsn::ZERO,
        ),
        tx,
    )
}

/// Runs the loop until the script ends. A loop blocked on a full window never ends: the
/// timeout is how such a test observes "it stopped reading", not a synchronisation.
pub(super) async fn settle(p: &mut Pipeline<MemorySink>, source: &mut ScriptedSource) {
    let mut stop = Shutdown::default();
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        p.stream(source, &mut stop, Duration::from_secs(1)),
    )
    .await;
}

#[tokio::test]
async fn publishes_before_commit_and_confirms_only_after_acks() {
    let (mut p, _tx) = pipeline(100);
    let mut source = ScriptedSource::default();
    source
        .events
        .extend([begin(100), relation(), insert(1), insert(2), commit(200)]);
    settle(&mut p, &mut source).await;
    assert_eq!(p.sink().records.len(), 2, "published as inserts arrived");
    assert!(source.confirmed.is_empty(), "nothing acked yet");
    let first = &p.sink().records[0].0;
    assert_eq!(first.topic, "outbox.event.order");
    assert_eq!(first.key.as_deref(), Some(&b"o-1"[..]));

    p.sink().ack(1);
    settle(&mut p, &mut source).await;
    assert!(source.confirmed.is_empty(), "one event still unacked");
    p.sink().ack(0);
    source.events.push_back(SourceEvent::Keepalive {
        wal_end: Lsn::from(300),
    });
    settle(&mut p, &mut source).await;
    assert_eq!(source.confirmed, vec![Lsn::from(200), Lsn::from(300)]);
}

/// The sink hears that the source is idle once what it held is handed over (not between the
/// transactions of a burst), and again when acks come back while it still is.
#[tokio::test]
async fn the_sink_hears_when_the_source_has_nothing_more() {
    let (mut p, _tx) = pipeline(100);
    let mut source = ScriptedSource {
        wait_when_done: true,
        ..ScriptedSource::default()
    };
    source.events.extend([
        begin(100),
        relation(),
        insert(1),
        insert(2),
        commit(200),
        begin(300),
        insert(3),
        commit(400),
    ]);
    settle(&mut p, &mut source).await;
    assert_eq!(
        p.sink().idle_at,
        vec![3],
        "idle after the last queued event only"
    );
    for i in 0..3 {
        p.sink().ack(i);
    }
    settle(&mut p, &mut source).await;
    assert_eq!(source.confirmed, vec![Lsn::from(200), Lsn::from(400)]);
    assert_eq!(
        p.sink().idle_at.len(),
        2,
        "and again with the acks: {:?}",
        p.sink().idle_at
    );
}

#[tokio::test]
async fn a_full_window_stops_reading() {
    let (mut p, _tx) = pipeline(2);
    let mut source = ScriptedSource::default();
    source.events.extend([
        begin(100),
        relation(),
        insert(1),
        insert(2),
        insert(3),
        commit(200),
    ]);
    settle(&mut p, &mut source).await;
    assert_eq!(p.sink().records.len(), 2, "window of 2 events");
    p.sink().ack(0);
    settle(&mut p, &mut source).await;
    assert_eq!(p.sink().records.len(), 3);
}

#[tokio::test]
async fn keepalive_is_not_confirmed_while_a_transaction_is_unacked() {
    let (mut p, _tx) = pipeline(100);
    let mut source = ScriptedSource::default();
    source.events.extend([
        begin(100),
        relation(),
        insert(1),
        commit(200),
        SourceEvent::Keepalive {
            wal_end: Lsn::from(900),
        },
    ]);
    settle(&mut p, &mut source).await;
    assert!(source.confirmed.is_empty());
    assert_eq!(p.durable(), Lsn::ZERO);
}

#[tokio::test]
async fn a_standalone_message_is_confirmed_at_its_lsn_without_a_commit_time() {
    let (p, _tx) = pipeline(100);
    let mut p = p.with_message_prefix(Some("outbox".into()));
    let mut source = ScriptedSource::default();
    source.events.push_back(SourceEvent::Message {
        transactional: false,
        lsn: Lsn::from(500),
        prefix: "outbox".into(),
        content: Bytes::from_static(
            b"{\"id\":\"m-1\",\"aggregatetype\":\"order\",\"aggregateid\":\"o-1\"}",
        ),
    });
    settle(&mut p, &mut source).await;
    let record = &p.sink().records[0].0;
    let names: Vec<&str> = record.headers.iter().map(|(n, _)| n.as_ref()).collect();
    assert_eq!(names, ["id", "outbox-lsn", "outbox-seq", "outbox-xid"]);
    assert!(source.confirmed.is_empty(), "not acked yet");
    p.sink().ack(0);
    settle(&mut p, &mut source).await;
    assert_eq!(source.confirmed, vec![Lsn::from(500)]);
    assert_eq!(p.stats.transactions, 0, "a message is not a transaction");
}

/// A Begin while a transaction is open breaks the protocol the confirm rule relies on: the
/// stream stops with an error instead of letting the next Commit confirm past the first.
#[tokio::test]
async fn a_begin_inside_an_open_transaction_is_fatal() {
    let (mut p, _tx) = pipeline(100);
    let mut source = ScriptedSource::default();
    source.events.extend([
        begin(100),
        relation(),
        insert(1),
        begin(300),
        insert(2),
        commit(400),
    ]);
    p.sink_mut().auto_ack = true;
    let mut stop = Shutdown::default();
    let ended = p
        .stream(&mut source, &mut stop, Duration::from_secs(1))
        .await;
    let err = ended.expect_err("a Begin inside a transaction stops the stream");
    assert!(
        err.to_string().contains("arrived while the transaction"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 70);
    assert!(
        source.confirmed.is_empty(),
        "nothing confirmed: {:?}",
        source.confirmed
    );
}

/// With one ack stuck, transactions without events do not queue up behind it.
#[tokio::test]
async fn transactions_without_events_do_not_queue_behind_a_stuck_ack() {
    let (mut p, _tx) = pipeline(100);
    let mut source = ScriptedSource::default();
    source
        .events
        .extend([begin(100), relation(), insert(1), commit(200)]);
    for n in 0..1000u64 {
        source
            .events
            .extend([begin(300 + n * 10), commit(305 + n * 10)]);
    }
    settle(&mut p, &mut source).await;
    assert!(source.events.is_empty(), "everything read");
    assert_eq!(p.tracker.unconfirmed_transactions(), 1);
    assert_eq!(
        p.committed.len(),
        1,
        "one entry for the stuck one and all merged into it"
    );
    p.sink().ack(0);
    source.events.push_back(SourceEvent::Keepalive {
        wal_end: Lsn::from(20_000),
    });
    settle(&mut p, &mut source).await;
    assert_eq!(source.confirmed.first(), Some(&Lsn::from(305 + 999 * 10)));
    assert!(p.committed.is_empty());
}

/// With one ack stuck, transactions whose events were all acked still wait behind it; the
/// window bounds how many, and reading stops there until the stuck one is acked.
#[tokio::test]
async fn a_stuck_ack_bounds_the_transactions_waiting_behind_it() {
    let (mut p, _tx) = pipeline(10);
    let mut source = ScriptedSource::default();
    source.events.push_back(relation());
    for n in 0..50u64 {
        source
            .events
            .extend([begin(100 + n * 10), insert(n as u32), commit(105 + n * 10)]);
    }
    let mut acked = 1;
    loop {
        settle(&mut p, &mut source).await;
        let published = p.sink().records.len();
        if published == acked {
            break;
        }
        // Ack everything but the first record.
        for i in acked..published {
            p.sink().ack(i);
        }
        acked = published;
    }
    // The tenth transaction's Begin filled the queue: its insert waits.
    assert_eq!(
        p.tracker.unconfirmed_transactions(),
        10,
        "reading stopped at the window"
    );
    assert_eq!(p.sink().records.len(), 9);
    assert!(source.confirmed.is_empty());
    p.sink().ack(0);
    settle(&mut p, &mut source).await;
    assert!(
        p.sink().records.len() > 9,
        "reading resumes once the stuck ack arrives"
    );
    assert_eq!(source.confirmed.first(), Some(&Lsn::from(105 + 8 * 10)));
}
