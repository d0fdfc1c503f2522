//! The edges of the delivery guarantee, on librdkafka's mock cluster (which can inject broker
//! errors): what the producer is allowed to do after a refused record.

use std::time::Duration;

use bytes::Bytes;
use outbox_tailer::config::SinkConfig;
use outbox_tailer::relay::progress::AckTracker;
use outbox_tailer::relay::route::Record;
use outbox_tailer::relay::sink::{Ack, KafkaSink, Sink};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::ClientConfig;
use tokio::sync::mpsc;

fn sink_config(brokers: String, options: &[(&str, &str)]) -> SinkConfig {
    sink_config_sending_at_once_below(brokers, options, 2_000)
}

fn sink_config_sending_at_once_below(
    brokers: String,
    options: &[(&str, &str)],
    send_at_once_below: u64,
) -> SinkConfig {
    SinkConfig {
        brokers,
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        create_topics: false,
        topic_partitions: 1,
        topic_replication_factor: -1,
        resume_scan: 0,
        send_at_once_below,
        transactions: None,
        partitioner: Default::default(),
    }
}

fn record(topic: &str, n: u32) -> Record {
    Record {
        topic: topic.into(),
        key: Some(Bytes::from_static(b"aggregate-1")),
        payload: Some(Bytes::from(format!("{{\"n\":{n}}}"))),
        headers: Vec::new(),
        position: None,
        timestamp_ms: None,
    }
}

/// Hand up to `n` records of one aggregate to the sink, one transaction each, and return their
/// acks in order. Once the producer has failed for good (`enable.gapless.guarantee` makes a
/// refused record fatal) it refuses further records at hand-over, which is the point: the
/// pipeline stops there. Only the records handed over are waited for.
async fn send(
    sink: &mut KafkaSink,
    acks: &mut mpsc::UnboundedReceiver<Ack>,
    topic: &str,
    n: u32,
) -> Vec<Ack> {
    let mut tracker = AckTracker::new(pgoutput::Lsn::ZERO);
    let mut handed = 0;
    for i in 0..n {
        tracker.begin();
        let ticket = tracker.publish(16).expect("open transaction");
        match sink.send(record(topic, i), ticket).await {
            Ok(()) => handed += 1,
            Err(e) => {
                assert!(handed > 0, "the first record is handed over: {e:?}");
                break;
            }
        }
        tracker.commit(pgoutput::Lsn::from(u64::from(i + 1) * 100));
    }
    let mut got = Vec::new();
    while got.len() < handed {
        let ack = tokio::time::timeout(Duration::from_secs(30), acks.recv())
            .await
            .expect("every record handed over is acked or failed")
            .expect("ack channel open");
        got.push(ack);
    }
    got.sort_by_key(|a| a.ticket.txn);
    got
}

/// Records of `topic` partition 0 the broker holds (low and high watermark).
fn watermarks(brokers: &str, topic: &str) -> (i64, i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "delivery-edges")
        .create()
        .expect("consumer");
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks")
}

/// A record the broker refuses for good (here: too large for the topic) must not be followed
/// into its partition by later records already queued: after a restart the tailer resends
/// from the refused one, and consumers would otherwise see N+1 before N. Everything queued
/// behind it is purged; only a request already on the wire can land on the mock cluster, which
/// skips the idempotent sequence check that makes Apache Kafka refuse that one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_record_reaches_a_partition_after_an_earlier_one_failed() {
    let mock = MockCluster::<DefaultProducerContext>::new(1).expect("mock cluster");
    let topic = "edges.gapless";
    mock.create_topic(topic, 1, 1).expect("topic");
    let brokers = mock.bootstrap_servers();
    // One record per request, one request on the wire at a time.
    let config = sink_config(
        brokers.clone(),
        &[
            ("linger.ms", "0"),
            ("batch.num.messages", "1"),
            ("max.in.flight.requests.per.connection", "1"),
        ],
    );
    let (tx, mut acks) = mpsc::unbounded_channel();
    let mut sink = KafkaSink::new(&config, tx, 1000, 1 << 20, 1 << 20).expect("sink");
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let got = send(&mut sink, &mut acks, topic, 10).await;
    assert!(
        got[0].result.is_err(),
        "the first record is refused: {:?}",
        got[0]
    );
    let delivered = got.iter().filter(|a| a.result.is_ok()).count();
    let (low, high) = watermarks(&brokers, topic);
    assert_eq!(
        high - low,
        delivered as i64,
        "the partition holds what was acked"
    );
    assert!(
        delivered <= 1,
        "records queued behind the refused one reached the partition: {got:?}"
    );
}

/// Hand `n` records over, one transaction each, then tell the sink the source is idle.
async fn hand_over_then_idle(sink: &mut KafkaSink, topic: &str, n: u32) {
    let mut tracker = AckTracker::new(pgoutput::Lsn::ZERO);
    for i in 0..n {
        tracker.begin();
        let ticket = tracker.publish(16).expect("open transaction");
        sink.send(record(topic, i), ticket)
            .await
            .expect("handed over");
        tracker.commit(pgoutput::Lsn::from(u64::from(i + 1) * 100));
    }
    sink.source_idle();
}

/// A linger far longer than any test: a record acked before it ended was sent at once.
const LONG_LINGER_MS: &str = "600000";

/// A light stream does not wait for the linger: once the source is idle, what the producer
/// holds goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_record_goes_out_without_waiting_for_the_linger() {
    let mock = MockCluster::<DefaultProducerContext>::new(1).expect("mock cluster");
    let topic = "edges.send-now";
    mock.create_topic(topic, 1, 1).expect("topic");
    let config = sink_config(mock.bootstrap_servers(), &[("linger.ms", LONG_LINGER_MS)]);
    let (tx, mut acks) = mpsc::unbounded_channel();
    let mut sink = KafkaSink::new(&config, tx, 1000, 1 << 20, 1 << 20).expect("sink");
    for round in 0..3 {
        hand_over_then_idle(&mut sink, topic, 1).await;
        let ack = tokio::time::timeout(Duration::from_secs(60), acks.recv())
            .await
            .unwrap_or_else(|_| panic!("round {round}: the record waited for the linger"))
            .expect("ack channel open");
        assert_eq!(ack.result, Ok(()), "round {round}");
    }
}

/// With sending at once off, records batch for the linger: none is acked while it runs. (A
/// stream above the rate batches too: the rate's windows are unit-tested in
/// `relay::sink::send_now`, as wall-clock windows cannot be held steady here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_wait_for_the_linger_when_sending_at_once_is_off() {
    let mock = MockCluster::<DefaultProducerContext>::new(1).expect("mock cluster");
    let topic = "edges.linger";
    mock.create_topic(topic, 1, 1).expect("topic");
    let options = [("linger.ms", LONG_LINGER_MS)];
    let config = sink_config_sending_at_once_below(mock.bootstrap_servers(), &options, 0);
    let (tx, mut acks) = mpsc::unbounded_channel();
    let mut sink = KafkaSink::new(&config, tx, 1000, 1 << 20, 1 << 20).expect("sink");
    hand_over_then_idle(&mut sink, topic, 1).await;
    let early = tokio::time::timeout(Duration::from_secs(3), acks.recv()).await;
    assert!(early.is_err(), "acked before the linger ended: {early:?}");
}
